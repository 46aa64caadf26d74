"""How fast extremal masks converge: each schedule's masks scored against iterations, on real clips.

    python -m experiments.convergence --videos_dir ../shared/data/kinetics/sampled_frames \\
        --output_dir convergence                  # fast (200 it., the reference) and native (60) at 224 px
    python -m experiments.convergence --schedules original,fast --size 112   # the original's 2000 SGD steps
    python -m experiments.convergence --output_dir convergence --report_only   # tables + plot again
    python -m experiments.convergence --schedules native --hard_from 1 --output_dir st   # the model never
                                                  # sees the hard mask (native's default: the last 10%)

For every clip x method x schedule it runs the pretrained I3D's extremal perturbation over the areas
(the class explained is the model's top prediction) and scores the masks at several iterations:
- the target probability the HARD mask keeps (each mask's top ``a`` set to 1, the rest 0, blur
  elsewhere) - it should reach the reference schedule's final value (within 0.02);
- the soft mask's area on the padded mask the area loss counts - within 0.02 of ``a``;
- the fraction of mask values between 0.1 and 0.9 - at most 10%.
Against the reference schedule (the first given) each other schedule's final masks are checked:
converged (both bounds above), the hard mask keeps at least 0.8x what the soft mask keeps, and at
least 0.9x what the reference's hard mask keeps; the Spearman rank correlation of the two soft masks
is reported. Each run is written to ``<output_dir>/runs/`` as soon as it ends (scores in a .json,
the final soft masks in a float16 .npz beside it; named by clip, method, schedule, iterations and
size; the areas it ran are stored in it), so a rerun continues where the last stopped (2000
iterations of three areas take hours on a 2-core CPU). Then it writes ``report.md`` (the criteria
table, and every run at every checkpoint) and ``convergence.png`` (the three scores against
iterations).
"""
from __future__ import annotations

import io
import json
import os
import time

import numpy as np
from absl import flags

from experiments import _cli
from vjx.attribution import registry

_VIDEOS_DIR = flags.DEFINE_string("videos_dir", None, "Folder of clips (frame folders or video files).")
_VIDEO = flags.DEFINE_list("video", None, "Clip(s) to add (default: the bundled clip).")
_SIZE = flags.DEFINE_integer("size", 224, "Input side: 224 (the model's own) or 112 (frames resized to 128, "
                             "centre crop; the pretrained I3D recognises little at that size).")
_METHODS = flags.DEFINE_list("methods", ["step", "ep3d"], f"Extremal methods, of: {registry.describe(registry.MASKS)}.")
_AREAS = flags.DEFINE_list("perturb_area", ["0.05", "0.1", "0.2"], "Area ratios.")
_SCHEDULES = flags.DEFINE_list("schedules", ["fast", "native"], "Schedules to compare (the first is the reference).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "convergence", "Where runs, report.md and convergence.png go.")
_NUM_ITER = flags.DEFINE_integer("num_iter", None, "Iterations of every schedule (default: each schedule's own).")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rebuild the report from the finished runs.")
_HARD_FROM = flags.DEFINE_float("hard_from", None, "From this fraction of the run on the model sees the hard mask's "
                                "perturbation (gradient through the soft mask), for every schedule; default: each "
                                "schedule's own. Runs with it are kept apart (their file names end in __hardF).")

# Iterations at which the masks are scored, per schedule length.
CHECKPOINTS = (10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500)
AREA_TOLERANCE, MAX_UNDECIDED = 0.02, 0.10
HARD_TO_SOFT, HARD_TO_REFERENCE = 0.8, 0.9


def clips() -> list[str]:
    from vjx import data

    paths = list(_VIDEO.value or [])
    if _VIDEOS_DIR.value:
        paths += data.list_videos(_VIDEOS_DIR.value)
    return paths or [data.sample_video_path()]


def model_input(model, path: str, size: int) -> np.ndarray:
    """float32 ``1 x T x size x size x 3`` for the model (short side resized in the spec's proportion)."""
    from vjx import data
    from vjx.attribution.extremal import default_sigma
    from vjx.pipeline import inputs

    return inputs.model_input(model.spec.at_size(size, default_sigma(size)), data.read_video(path))[None]


def run_one(model, x, target: int, method: str, schedule: str, areas: tuple[float, ...],
            num_iter: int, hard_from: float | None = None) -> tuple[dict, np.ndarray]:
    """One clip x method x schedule: scores at every checkpoint and at the end, and the final soft
    masks (float16 ``A x T x H x W``)."""
    import jax

    from vjx.attribution import extremal
    from vjx.pipeline import methods

    config = extremal.ExtremalConfig(areas=areas, schedule=schedule, num_iter=num_iter,
                                     sigma=extremal.default_sigma(x.shape[2]), hard_from=hard_from)
    start = time.perf_counter()
    result = methods.get(method).function(model, x, np.array([target]), config,
                                          evaluate_at=tuple(c for c in CHECKPOINTS if c < num_iter))
    jax.block_until_ready(result.masks)
    seconds = time.perf_counter() - start
    scores = {**{int(i): s for i, s in result.snapshots.items()}, num_iter: result}
    return ({"seconds": seconds, "num_iter": num_iter, "base_probability": float(result.base_probability[0]),
             "checkpoints": {str(i): {name: np.asarray(getattr(s, name))[0].tolist()
                                      for name in ("hard_probabilities", "probabilities", "mask_area", "undecided")}
                             for i, s in sorted(scores.items())}},
            np.asarray(result.masks[0], np.float16))


def final_hard(run: dict) -> list[float]:
    """The hard masks' probabilities after the last iteration, one per area."""
    return run["checkpoints"][str(run["num_iter"])]["hard_probabilities"]


def extremal_area(run: dict) -> float:
    """Eq. 3: the smallest area whose converged hard mask keeps at least the clip's probability (NaN if none)."""
    final = run["checkpoints"][str(run["num_iter"])]
    kept = [area for a, area in enumerate(run["areas"])
            if final["hard_probabilities"][a] >= run["base_probability"]
            and abs(final["mask_area"][a] - area) <= AREA_TOLERANCE and final["undecided"][a] <= MAX_UNDECIDED]
    return min(kept, default=float("nan"))


def ratio(a: float, b: float) -> float:
    """a / b, NaN where b is 0."""
    return a / b if b else float("nan")


def mask_correlation(runs_dir: str, files: tuple[str, str], areas: tuple[float, float]) -> float:
    """Spearman correlation of two runs' final soft masks at the given areas (NaN without masks)."""
    from vjx.metrics import rank_correlation

    masks = []
    for file, area in zip(files, areas):
        path = os.path.join(runs_dir, os.path.splitext(file)[0] + ".npz")
        if not os.path.exists(path):
            return float("nan")
        with np.load(path) as stored:
            masks.append(stored["masks"][list(stored["areas"]).index(area)][None].astype(np.float32))
    return float(rank_correlation(*masks)[0])


def report(runs: dict, schedules: list[str], runs_dir: str) -> str:
    """Markdown tables: each schedule's final masks against the reference (the first schedule) and
    the criteria, and every schedule's scores at every checkpoint."""
    reference = schedules[0]
    lines = []
    for schedule in schedules[1:]:
        lines += [f"### {schedule} against {reference}", "",
                  f"| clip (class, p) | method | area | soft p | hard p | hard / soft | {reference} hard p | "
                  f"x {reference} | rank corr. | soft area | undecided | converged, >= {HARD_TO_SOFT}x soft, "
                  f">= {HARD_TO_REFERENCE}x {reference} |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for (clip, method), by_schedule in sorted(runs.items()):
            if schedule not in by_schedule:
                continue
            run, ref = by_schedule[schedule], by_schedule.get(reference)
            final = run["checkpoints"][str(run["num_iter"])]
            for a, area in enumerate(run["areas"]):
                soft, hard = final["probabilities"][a], final["hard_probabilities"][a]
                converged = (abs(final["mask_area"][a] - area) <= AREA_TOLERANCE
                             and final["undecided"][a] <= MAX_UNDECIDED)
                verdicts = ["yes" if converged else "NO", "yes" if hard >= HARD_TO_SOFT * soft else "NO"]
                ref_hard = ref_ratio = correlation = float("nan")
                if ref is not None and area in ref["areas"]:
                    ref_hard = ref["checkpoints"][str(ref["num_iter"])]["hard_probabilities"][ref["areas"].index(area)]
                    ref_ratio = ratio(hard, ref_hard)
                    correlation = mask_correlation(runs_dir, (ref["file"], run["file"]), (area, area))
                    verdicts.append("yes" if hard >= HARD_TO_REFERENCE * ref_hard else "NO")
                else:
                    verdicts.append("not run")
                lines.append(f"| {clip} ({run['target_name']}, {run['base_probability']:.3f}) | {method} | {area:g} | "
                             f"{soft:.3f} | {hard:.3f} | {ratio(hard, soft):.2f} | {ref_hard:.3f} | {ref_ratio:.2f} | "
                             f"{correlation:.2f} | {final['mask_area'][a]:.3f} | {final['undecided'][a]:.3f} | "
                             f"{' '.join(verdicts)} |")
        lines.append("")
    lines += ["### Eq. 3's extremal area: the smallest area whose converged hard mask keeps the clip's probability",
              "", "| clip (class, p) | method | schedule | hard p per area | extremal area |", "|---|---|---|---|---|"]
    for (clip, method), by_schedule in sorted(runs.items()):
        for schedule in schedules:
            if schedule in by_schedule:
                run = by_schedule[schedule]
                lines.append(f"| {clip} ({run['target_name']}, {run['base_probability']:.3f}) | {method} | {schedule} | "
                             + ", ".join(f"{a:g}: {p:.3f}" for a, p in zip(run["areas"], final_hard(run)))
                             + f" | {extremal_area(run):g} |")
    lines += ["", "### Every run at every checkpoint", "",
              "| clip | method | schedule | iterations | area | hard p | soft p | soft area | undecided |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (clip, method), by_schedule in sorted(runs.items()):
        for schedule in schedules:
            run = by_schedule.get(schedule)
            for it in sorted(int(i) for i in (run or {}).get("checkpoints", {})):
                row = run["checkpoints"][str(it)]
                for a, area in enumerate(run["areas"]):
                    lines.append(f"| {clip} | {method} | {schedule} | {it} | {area:g} | "
                                 f"{row['hard_probabilities'][a]:.3f} | {row['probabilities'][a]:.3f} | "
                                 f"{row['mask_area'][a]:.3f} | {row['undecided'][a]:.3f} |")
    lines += ["", "Seconds per run: " + ", ".join(
        f"{clip} {method} {schedule} {run['seconds']:.0f}" for (clip, method), by_schedule in sorted(runs.items())
        for schedule, run in by_schedule.items())]
    return "\n".join(lines) + "\n"


def plot(runs: dict, schedules: list[str]) -> bytes:
    """PNG against iterations: the hard mask's preserved probability, the soft area's error and the
    undecided share; one line per clip x method x schedule x area (colour: schedule, style: method)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("hard_probabilities", "target probability kept by the hard mask"),
              ("area_error", "|soft mask area - a|"), ("undecided", "share of mask values in (0.1, 0.9)"))
    colours = dict(zip(schedules, ("tab:red", "tab:blue", "tab:green", "tab:orange")))
    styles = dict(zip(sorted({m for _, m in runs}), ("-", "--", ":", "-.")))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8))
    for ax, (key, label) in zip(axes, panels):
        for (clip, method), by_schedule in sorted(runs.items()):
            for schedule, run in by_schedule.items():
                its = sorted(int(i) for i in run["checkpoints"])
                for a, area in enumerate(run["areas"]):
                    rows = [run["checkpoints"][str(i)] for i in its]
                    values = ([abs(r["mask_area"][a] - area) for r in rows] if key == "area_error"
                              else [r[key][a] for r in rows])
                    ax.plot(its, values, styles[method], color=colours.get(schedule, "gray"), marker=".",
                            linewidth=1, alpha=0.8)
        if key != "hard_probabilities":
            ax.axhline(AREA_TOLERANCE if key == "area_error" else MAX_UNDECIDED, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("iterations")
        ax.set_title(label, fontsize=9)
    handles = [plt.Line2D([], [], color=c, label=s) for s, c in colours.items() if any(s in r for r in runs.values())]
    handles += [plt.Line2D([], [], color="black", linestyle=st, label=m) for m, st in styles.items()]
    axes[0].legend(handles=handles, fontsize=7)
    fig.suptitle("Extremal masks of the pretrained I3D against iterations (every clip, method and area; "
                 "black lines: the convergence bounds)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    import vjx
    from vjx.attribution import extremal
    from vjx.errors import VjxError
    from vjx.pipeline import methods
    from vjx.pipeline.files import OutputWriter, json_bytes

    for method in _METHODS.value:
        if methods.get(method).name not in methods.extremal_names():
            raise VjxError(f"--methods: {method!r} is not one of {registry.describe(registry.MASKS)}")
    for schedule in _SCHEDULES.value:
        if schedule not in extremal.SCHEDULES:
            raise VjxError(f"--schedules: {schedule!r} is not one of {', '.join(extremal.SCHEDULES)}")
    if _SIZE.value not in (112, 224):
        raise VjxError(f"--size must be 112 or 224, got {_SIZE.value}")
    hard_from = _HARD_FROM.value
    if hard_from is not None and not 0 <= hard_from <= 1:
        raise VjxError(f"--hard_from must be a fraction of the run in [0, 1], got {hard_from}")
    suffix = "" if hard_from is None else f"__hard{hard_from:g}"
    areas = extremal.ExtremalConfig(areas=tuple(float(a) for a in _AREAS.value)).areas
    runs_dir = os.path.join(_OUTPUT_DIR.value, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    runs: dict = {}
    model = None                                              # loaded once a run is missing
    for path in clips():
        name = vjx.data.video_name(path)
        x = None
        for method in _METHODS.value:
            for schedule in _SCHEDULES.value:
                num_iter = _NUM_ITER.value or extremal.SCHEDULES[schedule].num_iter
                file = os.path.join(runs_dir, f"{name}__{method}__{schedule}{num_iter}__{_SIZE.value}px{suffix}.json")
                if not os.path.exists(file):
                    if _REPORT_ONLY.value:
                        continue
                    if model is None:
                        model = vjx.load_model("i3d", pretrained="kinetics400")
                    if x is None:
                        x = model_input(model, path, _SIZE.value)
                        target = int(np.argmax(np.asarray(model(x))))
                    print(f"{name} {method} {schedule}: running", flush=True)
                    scores, masks = run_one(model, x, target, method, schedule, areas, num_iter, hard_from)
                    result = {"clip": name, "method": method, "schedule": schedule, "size": _SIZE.value,
                              "hard_from": extremal.SCHEDULES[schedule].hard_from if hard_from is None else hard_from,
                              "areas": list(areas), "target": target,
                              "target_name": model.spec.labels[target], **scores}
                    buffer = io.BytesIO()
                    np.savez_compressed(buffer, masks=masks, areas=np.asarray(areas))
                    with OutputWriter(runs_dir) as writer:
                        writer.write(os.path.splitext(os.path.basename(file))[0] + ".npz", buffer.getvalue())
                        writer.write(os.path.basename(file), json_bytes(result))
                    print(f"{name} {method} {schedule}: {result['seconds']:.0f} s", flush=True)
                with open(file) as f:
                    runs.setdefault((name, method), {})[schedule] = {**json.load(f), "file": os.path.basename(file)}
    text = report(runs, _SCHEDULES.value, runs_dir)
    print(text)
    with OutputWriter(_OUTPUT_DIR.value) as writer:
        writer.write("report.md", text.encode())
        writer.write("convergence.png", plot(runs, _SCHEDULES.value))


if __name__ == "__main__":
    _cli.run(main, {"method": "--methods"})
