"""The command-line contract of the experiment scripts, in subprocesses: flags in, files out; bad
input gives one line on stderr, exit code 2 and no output.

What the scripts run is tested in process (tests/test_pipeline.py, tests/test_sweep.py, on the
planted model); here compiles of real models dominate, so the successful runs are few and tiny:
r3d_18 with random weights, frames of 40x48 (resized to 112), gradients rather than an extremal loop.
"""
import json
import os
import pathlib
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_script(script, *args, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", f"experiments.{script}", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_frames(folder: pathlib.Path, n: int, seed: int = 0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:40, 0:48]
    for i in range(n):
        frame = np.stack([x * 5 + i * 3, y * 6, 128 + 0 * x], -1) + rng.integers(0, 20, (40, 48, 3))
        Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.png")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_frames(root / "abseiling-clip1", 20, 0)
    write_frames(root / "notaclass-clip2", 8, 1)             # short (8 < 16 frames) and an unknown label
    return root


def assert_usage_error(result, what: str, output: pathlib.Path | None = None):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and what in errors[0], result.stderr[-2000:]
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]
    if output is not None:
        assert not output.exists()


def test_explain_end_to_end(videos, tmp_path, shared_data):
    clip = shared_data / "kinetics" / "sampled_frames" / "ironing-3sEk_w2T8Fw_15_10"
    (videos / clip.name).symlink_to(clip)                    # a real clip next to the synthetic ones
    out = tmp_path / "out" / "nested"
    try:
        result = run_script("explain", "--videos_dir", videos, "--model", "r3d", "--random_weights", "--vis_method",
                            "grad", "--perturb_area", "0.05,0.2", "--batch_size", 3, "--input_size", 32, "--output_dir", out)
    finally:
        (videos / clip.name).unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RANDOM weights (seed 0), as asked: an untrained network" in result.stdout.splitlines()[0]
    assert "explaining 'abseiling' (the class in its file name), p = " in result.stdout
    assert "notaclass" in result.stderr and "explaining the prediction" in result.stderr
    assert "repeated frames" in result.stderr
    assert str(out.resolve()) in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["polarity"] == "both"            # the CLI's default is the library's
    assert summary["flags"]["perturb_area"] == ["0.05", "0.2"] and summary["versions"]["jax"]
    by_name = {v["video"]: v for v in summary["videos"]}
    assert set(by_name) == {"abseiling-clip1", "notaclass-clip2", clip.name}
    assert by_name["abseiling-clip1"]["target_name"] == "abseiling"
    assert by_name["ironing-3sEk_w2T8Fw_15_10"]["target_name"] == "ironing"
    assert by_name["notaclass-clip2"]["target_source"] == "pred"
    for entry in summary["videos"]:
        assert len(entry["predictions"]) == 3
        probs = [p["probability"] for p in entry["predictions"]]
        assert probs == sorted(probs, reverse=True)
        maps = np.load(out / f"{entry['video']}.npz")
        assert maps["maps"].shape == (1, 16, 32, 32) and maps["frames"].shape == (16, 32, 32, 3)
        assert 0 <= maps["maps"].min() and maps["maps"].max() <= 1
        assert iio.imread(out / f"{entry['video']}.png").shape[0] > 200
        gif = iio.imread(out / f"{entry['video']}.gif", index=None)
        assert gif.shape[1:3] == (32, 64)                                # the model's input size, side by side
        # Pillow merges identical consecutive frames (the short clip's repeats) into longer ones
        assert len(gif) == 16 if entry["video"] != "notaclass-clip2" else 8 <= len(gif) <= 16
    assert not [p for p in out.iterdir() if p.name.startswith(".")]     # no temporary files left


def test_sweep_flags_match_the_library_and_resume(videos, tmp_path):
    """The finished results are planted with the fingerprint the library gives these flags: the CLI
    must find them all done (no model is built), rebuild the results, and refuse another seed."""
    from vjx import pipeline
    from vjx.pipeline import sweep

    out = tmp_path / "sweep"
    args = ("--videos_dir", videos, "--model", "r3d", "--random_weights", "--vis_method", "3d_ep", "--num_iter", 1,
            "--perturb_area", "0.1,0.3", "--output_dir", out)
    names = ["abseiling-clip1", "notaclass-clip2"]
    resolved = pipeline.resolve(pipeline.Request(videos=tuple(str(videos / n) for n in names), model="r3d",
                                                 method="3d_ep", areas=(0.1, 0.3), num_iter=1, random_weights=True))
    (out / "videos").mkdir(parents=True)
    planted = {name: [{"video": name, "area": area, "preserved_probability": 0.5} for area in (0.1, 0.3)]
               for name in names}
    for name, rows in planted.items():
        (out / "videos" / f"{name}.json").write_text(json.dumps({"fingerprint": sweep.fingerprint(resolved),
                                                                 "rows": rows}))
    again = run_script("sweep", *args)
    assert again.returncode == 0 and "(2 already done)" in again.stdout, again.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["rows"] == planted[names[0]] + planted[names[1]]
    assert (out / "results.csv").read_text().splitlines()[0] == "video,area,preserved_probability"
    other = run_script("sweep", *args[:-2], "--output_dir", out, "--seed", 1)
    assert_usage_error(other, "--output_dir")
    assert "another configuration" in other.stderr


def test_parity_end_to_end(videos, tmp_path):
    pytest.importorskip("torch")
    report = tmp_path / "parity.json"
    result = run_script("parity", "--arch", "r3d", "--videos_dir", videos, "--max_videos", 1, "--input_size", 32,
                        "--json", report)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(report.read_text())
    assert measured["pass"] and measured["relative_logit_diff"] < 1e-5
    assert measured["grad_cosine"] > 0.9999 and measured["gradcam_corr"] > 0.999


@pytest.mark.slow   # three script runs with torch beside (~65 s)
def test_benchmark_end_to_end(tmp_path):
    pytest.importorskip("torch")
    report = tmp_path / "bench.json"
    result = run_script("benchmark", "--arch", "r3d", "--num_iter", 2, "--perturb_area", "0.1", "--json", report)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(report.read_text())
    assert measured["vjx_per_iter_ms"] > 0 and measured["torch_s"] > 0 and measured["speedup"] > 0
    result = run_script("benchmark", "--arch", "r3d", "--method", "integrated_grad", "--num_iter", 2, "--json", report)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(report.read_text())
    assert measured["path_points"] == 2 and measured["vjx_s"] > 0 and measured["torch_s"] > 0
    assert measured["torch_input_only_s"] > 0 and measured["speedup_input_only"] > 0
    assert_usage_error(run_script("benchmark", "--method", "grad_cam"), "--method 'grad_cam'", tmp_path / "none")


@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    write_frames(root / "abseiling-ok", 16)
    (root / "abseiling-ok" / "00003.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (root / "empty.mp4").write_bytes(b"")
    return root


# The CLI contract on a few cases (the library's errors for every argument: tests/test_pipeline.py):
# a flag error, a library ArgumentError renamed to its flag, and a deep library error. Each case is a
# process start (~5-15 s on 2 cores), so renamings are tested once, not per argument.
BAD_EXPLAIN = {
    "corrupt image": (["--videos_dir", "{corrupt}"], "00003.png"),
    "unknown method": (["--vis_method", "lime"], "--vis_method 'lime'"),
    "unknown warm start": (["--warm_start", "top"], "--warm_start 'top' is unknown"),
    "no RISE masks": (["--vis_method", "rise", "--num_masks", "0"], "--num_masks must be a whole number"),
    "EB-R on a 3-D CNN": (["--vis_method", "excitation_backprop_rnn"], "--vis_method 'excitation_backprop_rnn' "
                          "explains only the recurrent vgg16lstm, not i3d"),
    "area above 1": (["--perturb_area", "0.1,1.5"], "--perturb_area 1.5"),
    "area not a number": (["--perturb_area", "big"], "--perturb_area"),
    "unknown flag": (["--areas", "0.1"], "areas"),
    "stray argument": (["oops"], "oops"),
    "target checked before loading": (["--target", "cricket"], "--target 'cricket' is not a class name"),
    "empty video file": (["--video", "{corrupt}/empty.mp4"], "empty.mp4' is an empty file"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPLAIN))
def test_explain_bad_input(case, tmp_path, corrupt_dir):
    args, what = BAD_EXPLAIN[case]
    args = [a.format(corrupt=corrupt_dir) for a in args]
    out = tmp_path / "out"
    result = run_script("explain", *args, "--output_dir", out, timeout=300)
    assert_usage_error(result, what, out)


def test_sweep_and_parity_bad_input(tmp_path):
    out = tmp_path / "sweep"
    assert_usage_error(run_script("sweep", "--output_dir", out), "--videos_dir", out)
    assert_usage_error(run_script("sweep", "--videos_dir", tmp_path, "--output_dir", out), "holds no frame", out)
    (tmp_path / "abseiling-a").mkdir()
    write_frames(tmp_path / "abseiling-a" / "frames", 2)
    no_weights = run_script("sweep", "--videos_dir", tmp_path / "abseiling-a", "--model", "r3d", "--output_dir", out)
    assert_usage_error(no_weights, "--checkpoint is needed: r3d_18 on kinetics400 has no weights", out)
    assert "or --random_weights to explain an untrained network" in no_weights.stderr
    assert_usage_error(run_script("parity", "--arch", "r9d"), "r9d")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Two short clips of two Kinetics classes, for the joined-pair test."""
    root = tmp_path_factory.mktemp("labelled")
    write_frames(root / "abseiling-x", 16, 2)
    write_frames(root / "ironing-y", 16, 3)
    return root


@pytest.mark.slow   # every case kind through the script (~70 s)
def test_evaluate_end_to_end_then_resume(labelled, tmp_path):
    out = tmp_path / "evaluate"
    truth = tmp_path / "truth.csv"
    truth.write_text("video,kind,start,stop,x0,y0,x1,y1\nabseiling-x,segment,0,8\nabseiling-x,box,0,16,5,5,30,30\n")
    args = ("--videos_dir", labelled, "--temporal_pairs", labelled, "--spatial_pairs", labelled, "--annotations", truth,
            "--model", "r3d", "--random_weights", "--methods", "grad", "--curve_steps", 1, "--batch_size", 6,
            "--input_size", 32, "--output_dir", out)
    result = run_script("evaluate", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "10 cases (4 joined pairs, 4 spatial pairs) x 1 methods x 1 areas" in result.stdout
    assert "| gradient | 0.1 |" in result.stdout and "10 rows in" in result.stdout
    stored = json.loads((out / "table.json").read_text())
    assert stored["cases"] == {"clips": 2, "pairs": 4, "spatial_pairs": 4} and stored["flags"]["curve_steps"] == 1
    assert stored["settings"]["gradient"]["input_size"] == 32                  # r3d at 32 px, not its 112
    line = stored["table"][0]
    assert (line["method"], line["area"]) == ("gradient", 0.1) and line["metrics"]["temporal_pointing"]["n"] == 5
    assert line["metrics"]["spatial_pointing"]["n"] == 1 and line["metrics"]["deletion_auc"]["n"] == 2
    again = run_script("evaluate", *args)
    assert again.returncode == 0 and "0 method x case runs to do, 10 already done" in again.stdout
    assert "with RANDOM weights" in again.stdout                              # the console says which weights
    other = run_script("evaluate", *args, "--seed", 1)
    assert_usage_error(other, "--output_dir")
    assert "another configuration" in other.stderr


# The evaluation's contract for bad input: one line naming the file and line, exit 2, nothing written.
BAD_EVALUATE = {
    "missing video": ("clipX,segment,0,2", "line 2: video 'clipX' is not among the videos evaluated"),
    "box outside the frame": ("abseiling-x,box,0,,0,0,48,10", "line 2: box (0, 0, 48, 10) lies outside the 48x40"),
    "frame out of range": ("abseiling-x,segment,10,17", "line 2: frames [10, 17) are out of range"),
    "malformed row": ("abseiling-x,box,3", "line 2: a box row needs four numbers"),
}


@pytest.mark.parametrize("case", sorted(BAD_EVALUATE))
def test_evaluate_bad_annotations(case, labelled, tmp_path):
    row, what = BAD_EVALUATE[case]
    truth = tmp_path / "truth.csv"
    truth.write_text(f"video,kind,start,stop,x0,y0,x1,y1\n{row}\n")
    out = tmp_path / "out"
    result = run_script("evaluate", "--videos_dir", labelled, "--annotations", truth, "--model", "r3d",
                        "--random_weights", "--output_dir", out, timeout=300)
    assert_usage_error(result, what, out)
    assert str(truth) in result.stderr


def test_evaluate_bad_flags(labelled, tmp_path):
    out = tmp_path / "out"
    assert_usage_error(run_script("evaluate", "--model", "r3d", "--random_weights", "--output_dir", out),
                       "--videos_dir/--videos", out)
    assert_usage_error(run_script("evaluate", "--videos_dir", labelled, "--methods", "grad,lime", "--output_dir", out),
                       "--methods 'lime'", out)
    one_label = tmp_path / "one"
    write_frames(one_label / "abseiling-a", 16, 2)
    write_frames(one_label / "abseiling-b", 16, 3)
    assert_usage_error(run_script("evaluate", "--spatial_pairs", one_label, "--model", "r3d", "--random_weights",
                                  "--output_dir", out),
                       "--spatial_pairs needs clips of at least two labels", out)
    assert_usage_error(run_script("evaluate", "--videos_dir", labelled, "--num_processes", 2, "--process_id", 5,
                                  "--coordinator_address", "localhost:1", "--output_dir", out), "--process_id 5", out)



SCRIPTS = sorted((REPO / "experiments").glob("[!_]*.py")) + [REPO / "weight_conversion" / "convert.py"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_every_script_runs_through_the_shared_cli_contract(script):
    """``_cli.run`` gives --help exit 0, flag errors one line and exit 2 (checked below on three scripts)."""
    assert "_cli.run(main" in script.read_text()


@pytest.mark.parametrize("script, names", [("explain", "all"), ("sweep", "extremal"), ("evaluate", "all")])
def test_help_exits_0_and_lists_every_accepted_method(script, names):
    from vjx.pipeline import methods
    result = run_script(script, "--help", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    help_text = " ".join(result.stdout.split())
    expected = methods.any_model_names() if names == "all" else methods.extremal_names()
    assert all(name in help_text for name in expected), help_text


def test_sigterm_rolls_back_like_ctrl_c(tmp_path):
    """``timeout`` and batch schedulers stop a run with SIGTERM: it must leave no empty folder behind."""
    import signal

    from experiments import _cli
    from vjx.pipeline.files import OutputWriter
    previous = signal.signal(signal.SIGTERM, _cli._exit_on_sigterm)
    try:
        with pytest.raises(KeyboardInterrupt):
            with OutputWriter(tmp_path / "sweep_res") as writer:
                writer.subdir("videos")
                os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []


def test_convergence_report_checks_each_mask_against_the_criteria(tmp_path):
    """The schedule comparison's verdicts, rank correlation and Eq. 3 area, on made-up runs (no model:
    ``--report_only`` reads the runs a real run would have written)."""
    rng = np.random.default_rng(0)
    reference_masks = rng.random((2, 2, 4, 4)).astype(np.float16)
    candidate_masks = np.stack([reference_masks[0], 1 - reference_masks[1]])    # same ranking; reversed
    runs = tmp_path / "runs"
    runs.mkdir()

    def write_run(schedule, masks, soft, hard, area, undecided):
        name = f"clip__step__{schedule}5__224px"
        np.savez(runs / f"{name}.npz", masks=masks, areas=np.array([0.1, 0.2]))
        final = {"probabilities": soft, "hard_probabilities": hard, "mask_area": area, "undecided": undecided}
        (runs / f"{name}.json").write_text(json.dumps(
            {"num_iter": 5, "areas": [0.1, 0.2], "target_name": "abseiling", "base_probability": 0.5,
             "checkpoints": {"5": final}, "seconds": 1.0}))

    def report():
        result = run_script("convergence", "--report_only", "--video", tmp_path / "clip.mp4", "--methods", "step",
                            "--schedules", "fast,native", "--num_iter", 5, "--perturb_area", "0.1,0.2",
                            "--size", 224, "--output_dir", tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        return (tmp_path / "report.md").read_text()

    write_run("fast", reference_masks, [0.9, 0.9], [0.50, 0.50], [0.1, 0.2], [0.0, 0.0])
    write_run("native", candidate_masks, [0.60, 0.70], [0.48, 0.40], [0.11, 0.25], [0.05, 0.05])
    text = report()
    rows = [line for line in text.splitlines() if line.startswith("| clip (abseiling, 0.500) | step | 0.")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert len(cells) == 2
    # area 0.1: converged, 0.48 >= 0.8 x 0.60, 0.48 >= 0.9 x 0.50, identical ranking
    assert cells[0][5:9] == ["0.80", "0.500", "0.96", "1.00"] and cells[0][-1] == "yes yes yes"
    # area 0.2: area 0.25 is off by more than 0.02; 0.40 < 0.8 x 0.70 and < 0.9 x 0.50; reversed ranking
    assert cells[1][5:9] == ["0.57", "0.500", "0.80", "-1.00"] and cells[1][-1] == "NO NO NO"
    # Eq. 3 over converged masks that keep the clip's 0.5: fast's smallest area 0.1; native's 0.1 keeps 0.48
    assert "| clip (abseiling, 0.500) | step | fast | 0.1: 0.500, 0.2: 0.500 | 0.1 |" in text
    assert "| clip (abseiling, 0.500) | step | native | 0.1: 0.480, 0.2: 0.400 | nan |" in text
    (runs / "clip__step__fast5__224px.json").unlink()
    row = [line for line in report().splitlines() if line.startswith("| clip (abseiling, 0.500) | step | 0.1 |")][0]
    assert row.rstrip(" |").endswith("yes yes not run") and "| nan |" in row


def test_convergence_keeps_straight_through_runs_apart(tmp_path):
    """``--hard_from`` runs are read from their own files (``__hardF``); a value outside [0, 1] exits 2
    naming the flag, before anything is written."""
    runs = tmp_path / "out" / "runs"
    runs.mkdir(parents=True)
    for suffix, hard in (("", 0.1), ("__hard0.9", 0.7)):
        final = {"probabilities": [0.9], "hard_probabilities": [hard], "mask_area": [0.1], "undecided": [0.0]}
        (runs / f"clip__step__native5__224px{suffix}.json").write_text(json.dumps(
            {"num_iter": 5, "areas": [0.1], "target_name": "abseiling", "base_probability": 0.5,
             "checkpoints": {"5": final}, "seconds": 1.0}))
    args = ("--report_only", "--video", tmp_path / "clip.mp4", "--methods", "step", "--schedules", "native",
            "--num_iter", 5, "--perturb_area", "0.1", "--output_dir", tmp_path / "out")
    result = run_script("convergence", *args, "--hard_from", 0.9)
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "0.1: 0.700" in text and "0.1: 0.100" not in text

    bad = run_script("convergence", *args[:-1], tmp_path / "bad", "--hard_from", 1.5)
    assert bad.returncode == 2 and "--hard_from" in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "bad").exists()
