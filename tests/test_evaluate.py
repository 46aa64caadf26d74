"""The evaluation in process on the planted model: rows and table, the metrics' inputs, joined pairs,
annotations carried into the model's frames, resume and merge, bad input; and the sweep and the
evaluation across two jax.distributed processes on this machine."""
import dataclasses
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from tests.planted import PLANTED_SPEC, TARGET, write_planted_frames
from vjx import attribution, metrics, pipeline
from vjx.data import sample_indices
from vjx.errors import ArgumentError, VjxError
from vjx.pipeline import cases, evaluate, processes, sweep, table
from vjx.pipeline.annotations import Truth, VideoShape, model_truth
from vjx.pipeline.methods import Explanation
from vjx.pipeline.runner import Runner
from vjx.pipeline.scores import score_batch

REPO = pathlib.Path(__file__).resolve().parents[1]
AREAS = (0.1, 0.3)
METHODS = ("gradient", "grad_cam", "ep3d")
# The planted evidence (tests/planted.py): frames 2-5, rows 10-21, columns 8-19.
TRUTH = "video,kind,start,stop,x0,y0,x1,y1\nclass_1-a,segment,2,6\nclass_1-a,box,2,6,8,10,19,21\n"
TIMINGS = ("attribution_s", "scoring_s")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three planted clips: two of label ``class_1`` (8 frames), one of ``class_2`` (6 frames)."""
    root = tmp_path_factory.mktemp("clips")
    return tuple(write_planted_frames(root / name, n) for name, n in (("class_1-a", 8), ("class_1-b", 8),
                                                                       ("class_2-c", 6)))


@pytest.fixture(scope="module")
def truth_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("truth") / "truth.csv"
    path.write_text(TRUTH)
    return str(path)


def evaluation(clips, out, truth=None, **overrides):
    request = pipeline.Request(videos=tuple(clips), areas=AREAS, num_iter=2, batch_size=2, output_dir=str(out),
                               progress=False)
    settings = dict(request=request, methods=METHODS, pairs=tuple(clips), annotations=truth, curve_steps=4)
    return evaluate.Evaluation(**{**settings, **overrides})


@pytest.fixture(scope="module")
def evaluated(planted, clips, truth_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate.run(evaluation(clips, out, truth_file), model=planted)
    return result, out


def test_rows_cover_every_method_case_and_area(evaluated):
    result, out = evaluated
    pairs = [("class_1-a", "class_2-c"), ("class_1-b", "class_2-c"), ("class_2-c", "class_1-a"),
             ("class_2-c", "class_1-b")]
    names = ["class_1-a", "class_1-b", "class_2-c"] + [f"{a}+{b}@{s}" for a, b in pairs for s in ("first", "second")]
    assert [(r["method"], r["case"], r["area"]) for r in result.rows] == [
        (m, n, a) for m in METHODS for n in names for a in AREAS]
    assert not result.missing
    by = {(r["method"], r["case"], r["area"]): r for r in result.rows}
    for method in METHODS:
        # The annotated clip: the pointing games; the other clips: no ground truth, no pointing.
        annotated = by[method, "class_1-a", 0.1]
        assert "spatial_pointing" in annotated and "temporal_pointing" in annotated
        assert "spatial_pointing" not in by[method, "class_1-b", 0.1]
        for name in names[3:]:                                  # joined pairs: the temporal game only
            row = by[method, name, 0.1]
            assert row["kind"] == "pair" and row["temporal_pointing"] in (0.0, 1.0)
            assert "deletion_auc" not in row and 0 <= row["hard_preserved_probability"] <= 1
            assert row["target"] == (1 if row["label"] == "class_1" else 2)
        for name in names[:3]:
            row = by[method, name, 0.3]
            assert row["kind"] == "clip" and 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
    for name in names:
        assert by["gradient", name, 0.1]["target"] == by["gradient", name, 0.3]["target"]
    assert by["ep3d", "class_1-a", 0.1]["mask_area"] != by["ep3d", "class_1-a", 0.3]["mask_area"]
    assert "mask_area" not in by["gradient", "class_1-a", 0.1]
    for name in names:                   # the extremal method's own per-area numbers, its hard mask's included
        row = by["ep3d", name, 0.3]
        assert row["converged"] in (0.0, 1.0) and 0 <= row["undecided"] <= 1
        assert 0 <= row["hard_preserved_probability"] <= 1 and 0 <= row["preserved_probability"] <= 1
    # The planted evidence is the annotated box in the annotated frames: gradients find both.
    for method in ("gradient", "grad_cam"):
        assert by[method, "class_1-a", 0.1]["spatial_pointing"] == 1.0
        assert by[method, "class_1-a", 0.1]["temporal_pointing"] == 1.0
        one, other = by[method, "class_1-a", 0.1], by[method, "class_1-a", 0.3]
        assert one["deletion_auc"] == other["deletion_auc"]          # one map, scored at both areas
        # The top 10% of the voxels hold the whole evidence (7%): the class stays as probable.
        assert one["hard_preserved_probability"] == pytest.approx(one["target_probability"], rel=1e-5)


def test_scores_are_the_metrics_of_the_unclipped_maps(planted, clips, evaluated):
    result, _ = evaluated
    row = next(r for r in result.rows if (r["method"], r["case"], r["area"]) == ("gradient", "class_1-a", 0.1))
    video, x = cases.load(cases.clip_cases(clips[:1], PLANTED_SPEC)[0], PLANTED_SPEC)
    maps = attribution.gradient(planted, x[None], np.array([TARGET]), attribution.GradientConfig(normalize=False)).maps
    deletion = metrics.deletion_curve(planted, x[None], np.array([TARGET]), maps, steps=4)
    hard = metrics.hard_masks(maps, 0.1)
    kept = metrics.preserved_probability(planted, x[None], np.array([TARGET]), hard)
    np.testing.assert_allclose(row["deletion_auc"], float(deletion.auc[0]), rtol=1e-5)
    np.testing.assert_allclose(row["hard_preserved_probability"], float(kept[0]), rtol=1e-5)
    np.testing.assert_allclose(row["target_probability"], float(deletion.probabilities[0, 0]), rtol=1e-5)


def test_extremal_masks_keep_their_own_hard_mask_probability(planted, clips, monkeypatch):
    """An extremal method reports its hard mask's probability (loop.hard_masks): scoring does not redo it."""
    case = cases.clip_cases(clips[:1], PLANTED_SPEC)[0]
    _, x = cases.load(case, PLANTED_SPEC)
    masks = np.random.default_rng(0).random((2, 8, 32, 32), dtype=np.float32)
    own = ({"area": 0.1, "preserved_probability": 0.0, "hard_preserved_probability": 0.0},
           {"area": 0.3, "preserved_probability": 1.0, "hard_preserved_probability": 0.9})
    explanation = Explanation(maps=masks, row_names=("area 0.1", "area 0.3"), areas=own,
                              numbers={"extremal_area": 0.3})
    calls = []
    monkeypatch.setattr(metrics, "preserved_probability", lambda *a, **k: calls.append(1))
    scores = score_batch(planted.apply_fn, planted.variables, x[None], np.array([TARGET]), [case], [explanation],
                         AREAS, extremal=True, curve_steps=2)
    assert not calls and all("hard_preserved_probability" not in area for area in scores[0])
    # Its own soft masks' probabilities give the confidence change, its Eq. 3 area the minimum ratio.
    assert [area["average_drop"] for area in scores[0]] == [1.0, 0.0]
    assert [area["confidence_increase"] for area in scores[0]] == [0.0, 1.0]
    assert [area["minimum_preservation_ratio"] for area in scores[0]] == [0.3, 0.3]
    assert scores[0][0]["deletion_auc"] != scores[0][1]["deletion_auc"]          # area j is scored on row j


def test_the_table_is_mean_and_std_over_cases(evaluated):
    result, out = evaluated
    stored = json.loads((out / "table.json").read_text())
    assert stored["table"] == json.loads(json.dumps(result.table))
    assert stored["cases"] == {"clips": 3, "pairs": 8, "spatial_pairs": 0}
    assert stored["settings"]["ep3d"]["num_iter"] == 2
    assert [(line["method"], line["area"]) for line in result.table] == [(m, a) for m in METHODS for a in AREAS]
    for line in result.table:
        members = [r for r in result.rows if (r["method"], r["area"]) == (line["method"], line["area"])]
        for name in ("deletion_auc", "temporal_pointing", "hard_preserved_probability"):
            values = [r[name] for r in members if name in r]
            stats = line["metrics"][name]
            assert {k: stats[k] for k in ("mean", "std", "n")} == pytest.approx(
                {"mean": np.mean(values), "std": np.std(values), "n": len(values)})
            assert min(values) <= stats["low"] <= stats["mean"] <= stats["high"] <= max(values)
    assert result.table[0]["metrics"]["temporal_pointing"]["n"] == 9     # 8 joined pairs + the annotated clip
    markdown = (out / "table.md").read_text().splitlines()
    assert markdown[0] == "## All cases"
    assert markdown[2].startswith("| method | area | spatial pointing ↑ (n=1) | energy pointing ↑ (n=1) | "
                                  "temporal pointing ↑ (n=9) | deletion auc ↓ (n=3) |")
    assert markdown[4].startswith("| gradient | 0.1 | 1.000 [1.000, 1.000] |")
    assert "## Ordering (all cases): is the best method better than the runner-up?" in markdown
    assert [(e["metric"], e["area"]) for e in stored["ordering"]][:2] == [("spatial_pointing", 0.1),
                                                                          ("spatial_pointing", 0.3)]
    header = (out / "table.csv").read_text().splitlines()[0]
    assert header.startswith("method,area,spatial_pointing_mean,spatial_pointing_std,spatial_pointing_n,"
                             "spatial_pointing_low,spatial_pointing_high,")
    assert len((out / "rows.csv").read_text().splitlines()) == 1 + len(result.rows)


def test_a_rerun_resumes_merges_and_refuses_other_settings(planted, clips, truth_file, evaluated, tmp_path,
                                                           monkeypatch, capsys):
    result, out = evaluated
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    calls = []
    explain = Runner.explain
    monkeypatch.setattr(Runner, "explain", lambda self, *a, **k: calls.append(1) or explain(self, *a, **k))
    again = evaluate.run(evaluation(clips, copy, truth_file), model=planted)
    assert not calls and "0 method x case runs to do, 33 already done" in capsys.readouterr().out
    assert again.rows == result.rows and again.table == result.table

    (copy / "rows" / "ep3d" / "class_2-c.json").unlink()
    merged = evaluate.run(evaluation(clips, copy, truth_file), model=planted, merge_only=True)
    assert not calls and merged.missing == ["ep3d/class_2-c"] and len(merged.rows) == len(result.rows) - 2
    assert json.loads((copy / "table.json").read_text())["missing"] == ["ep3d/class_2-c"]
    resumed = evaluate.run(evaluation(clips, copy, truth_file), model=planted)
    assert len(calls) == 1 and not resumed.missing
    assert [r["case"] for r in resumed.rows] == [r["case"] for r in result.rows]

    with pytest.raises(ArgumentError, match="another configuration") as caught:
        evaluate.run(evaluation(clips, copy, truth_file, curve_steps=2), model=planted)
    assert caught.value.argument == "output_dir"
    (copy / "truth.csv").write_text(TRUTH.replace("2,6\n", "3,6\n", 1))
    with pytest.raises(ArgumentError, match="another configuration"):                  # the truth changed
        evaluate.run(evaluation(clips, copy, str(copy / "truth.csv")), model=planted)


def test_joined_pairs_are_the_halves_of_two_clips(clips):
    pairs = cases.pair_cases(clips, PLANTED_SPEC, ("class 0", "class 1", "class 2"))
    assert len(pairs) == 8                                  # 4 ordered pairs of different labels, 2 halves each
    first, second = pairs[0], pairs[1]
    assert first.name == "class_1-a+class_2-c@first" and first.paths == (clips[0], clips[2])
    assert (first.label, first.target, first.truth.segment) == ("class_1", 1, (0, 4))
    assert (second.label, second.target, second.truth.segment) == ("class_2", 2, (4, 8))
    video, x = cases.load(first, PLANTED_SPEC)

    def frames(folder, indices):
        files = sorted(pathlib.Path(folder).iterdir())
        return np.stack([np.asarray(Image.open(files[i]), np.float32) / 255 for i in indices])

    expected = np.concatenate([frames(clips[0], sample_indices(8, 4)), frames(clips[2], sample_indices(6, 4))])
    np.testing.assert_allclose(x, expected, atol=1e-6)                  # identity preprocessing of the spec
    assert x.shape == (8, 32, 32, 3) and video.name == first.name and video.label == "class_1"
    assert video.frames.shape == (8, 32, 32, 3)


@pytest.mark.parametrize("names, match", [
    (("class_1-a", "notaclass-x"), "'notaclass' .* is not a class of planted"),
    (("class_1-a", "class_1-b"), "at least two labels"),
    (("class_1-a", "class_1-a"), "two videos named 'class_1-a'"),
])
def test_pairs_need_two_labels_that_are_classes(names, match, tmp_path):
    paths = [write_planted_frames(tmp_path / f"{i}" / n, 2) for i, n in enumerate(names)]
    with pytest.raises(ArgumentError, match=match) as caught:
        cases.pair_cases(paths, PLANTED_SPEC, ("class 0", "class 1", "class 2"))
    assert caught.value.argument == "pairs"


def test_annotations_follow_sampling_resize_and_crop():
    spec = dataclasses.replace(PLANTED_SPEC, num_frames=4, resize=16, crop=16)
    shape = VideoShape(num_frames=10, height=40, width=64)   # resized to 16 x 25, crop columns 4 ... 19
    truth = Truth(segment=(5, 9), boxes=((4, 5, (0, 0, 63, 39)), (4, 5, (10, 5, 20, 9)), (8, 10, (0, 0, 5, 39))))
    mapped = model_truth(truth, shape, spec)                 # input frames show video frames 2, 4, 6, 8
    assert mapped.segment == (2, 4)
    assert mapped.annotated.tolist() == [[False, False], [True, True], [False, False], [False, False]]
    np.testing.assert_allclose(mapped.boxes[1], [[0, 0, 15, 15], [0, 2, 3, 3]])   # the third box is cropped away
    with pytest.warns(UserWarning, match="holds none of the 4 frames"):
        assert model_truth(Truth(segment=(3, 4)), shape, spec).segment is None
    same = model_truth(Truth(boxes=((0, 8, (8, 10, 19, 21)),)), VideoShape(8, 32, 32), PLANTED_SPEC)
    np.testing.assert_array_equal(same.boxes[:, 0], [[8, 10, 19, 21]] * 8)         # no resize: the same pixels


BAD_TRUTH = {
    "missing video": ("class_9-x,segment,0,2", "line 2: video 'class_9-x' is not among the videos evaluated"),
    "box outside the frame": ("class_1-a,box,0,,8,10,32,21", "line 2: box (8, 10, 32, 21) lies outside the 32x32"),
    "frame out of range": ("class_1-a,box,8,,8,10,19,21", "line 2: frames [8, 9) are out of range"),
    "segment past the end": ("class_2-c,segment,2,7", "line 2: frames [2, 7) are out of range: video 'class_2-c' "
                             "has 6 frames"),
    "malformed box": ("class_1-a,box,1,,a,b,c,d", "line 2: a box row needs four numbers"),
    "malformed frame": ("class_1-a,segment,one,2", "line 2: start must be a frame index"),
    "unknown kind": ("class_1-a,tube,1,2", "line 2: kind 'tube'"),
    "second segment": ("class_1-a,segment,1,2\nclass_1-a,segment,3,4", "line 3: a second segment"),
    "too many values": ("class_1-a,box,1,2,3,4,5,6,7", "line 2: 9 values"),
    "bad header": (None, "line 1: the header must be video,kind,start,stop,x0,y0,x1,y1"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRUTH))
def test_a_bad_annotation_file_names_its_line_and_writes_nothing(case, planted, clips, tmp_path):
    row, match = BAD_TRUTH[case]
    path = tmp_path / "truth.csv"
    path.write_text("video,kind,first,last\n" if row is None else f"{TRUTH.splitlines()[0]}\n{row}\n")
    out = tmp_path / "out"
    with pytest.raises(VjxError, match=re.escape(match)) as caught:
        evaluate.run(evaluation(clips, out, str(path)), model=planted)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert not out.exists()


@pytest.mark.parametrize("overrides, argument", [
    (dict(methods=()), "methods"), (dict(methods=("grad", "grad")), "methods"), (dict(methods=("lime",)), "method"),
    (dict(curve_steps=-1), "curve_steps"), (dict(tolerance=-1.0), "tolerance"), (dict(spatial_gap=-2), "spatial_gap"),
])
def test_bad_settings_name_their_argument(overrides, argument, planted, clips, tmp_path):
    with pytest.raises(ArgumentError) as caught:
        evaluate.run(evaluation(clips, tmp_path / "out", **overrides), model=planted)
    assert caught.value.argument == argument and not (tmp_path / "out").exists()


def test_the_table_of_hand_rows():
    rows = [{"method": "grad*input", "area": 0.1, "case": "a", "deletion_auc": 0.2, "temporal_pointing": 1.0},
            {"method": "grad*input", "area": 0.1, "case": "b", "deletion_auc": 0.4, "temporal_pointing": None},
            {"method": "step", "area": 0.1, "case": "a", "deletion_auc": float("nan"), "converged": True}]
    lines = table.summarise(rows)
    assert lines[0]["metrics"] == {"temporal_pointing": {"mean": 1.0, "std": 0.0, "n": 1, "low": 1.0, "high": 1.0},
                                   "deletion_auc": {"mean": pytest.approx(0.3), "std": pytest.approx(0.1), "n": 2,
                                                    "low": 0.2, "high": 0.4}}
    assert lines[1]["metrics"] == {"converged": {"mean": 1.0, "std": 0.0, "n": 1, "low": 1.0, "high": 1.0}}
    markdown = table.table_markdown(lines).splitlines()
    assert markdown[0] == "| method | area | temporal pointing ↑ (n=1) | deletion auc ↓ (n=2) | converged (n=1) |"
    assert markdown[2] == "| grad\\*input | 0.1 | 1.000 [1.000, 1.000] | 0.300 [0.200, 0.400] | – |"
    lines[1]["metrics"]["deletion_auc"] = {"mean": 0.5, "std": 0.0, "n": 1, "low": 0.5, "high": 0.5}
    assert table.table_markdown(lines).splitlines()[3] == (                            # counts differ: per cell
        "| step | 0.1 | – | 0.500 [0.500, 0.500] (n=1) | 1.000 [1.000, 1.000] |")


def test_the_ordering_of_hand_rows():
    """Three cases rank grad over step on deletion (lower is better) every time: alpha 1, a clear gap."""
    rows = [{"method": m, "area": 0.1, "case": c, "deletion_auc": auc + (0.1 if m == "step" else 0.0),
             "target_rank": rank} for c, auc, rank in (("a", 0.2, 1), ("b", 0.5, 7), ("c", 0.3, 2))
            for m in ("step", "grad")]
    (entry,) = table.ordering(rows)
    assert (entry["metric"], entry["best"], entry["runner_up"], entry["cases"]) == ("deletion_auc", "grad", "step", 3)
    assert entry["alpha"] == 1.0
    assert entry["versus"]["step"] == pytest.approx({"mean": -0.1, "low": -0.1, "high": -0.1, "flipped": 0.0, "n": 3})
    assert [r["case"] for r in table.recognised(rows)] == ["a", "a", "c", "c"]
    report = table.report_markdown(rows)
    assert "## Cases whose class is in the model's top 5 (2 of 3)" in report
    assert "| deletion auc | 0.1 | 3 | grad | step | -0.100 [-0.100, -0.100] | 0.000 | 1.00 |" in report


def test_a_process_takes_every_nth_item(monkeypatch):
    import jax
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    assert processes.share(range(8)) == [1, 4, 7] and not processes.is_coordinator() and processes.count() == 3


@pytest.mark.parametrize("args, argument", [
    (("localhost:1", None, None), "coordinator_address"), (("localhost:1", 2, 2), "process_id"),
    (("localhost:1", 0, 0), "num_processes"),
])
def test_a_partial_process_description_is_refused(args, argument):
    with pytest.raises(ArgumentError) as caught:
        processes.initialize(*args)
    assert caught.value.argument == argument


TWO_PROCESSES = """
import json, sys, warnings
warnings.simplefilter("ignore")
from vjx.pipeline import processes
processes.initialize(f"localhost:{sys.argv[1]}", 2, int(sys.argv[2]), timeout_s=120)
from tests.planted import planted_model
from vjx import pipeline
from vjx.pipeline import evaluate, sweep
clips, out = tuple(sys.argv[3:6]), sys.argv[6]
model = planted_model()
swept = sweep.run(pipeline.Request(videos=clips, method="3d_ep", areas=(0.1, 0.3), num_iter=2,
                                   output_dir=out + "/sweep", progress=False), model=model)
request = pipeline.Request(videos=clips, areas=(0.1,), num_iter=2, output_dir=out + "/evaluate", progress=False)
result = evaluate.run(evaluate.Evaluation(request=request, methods=("grad", "3d_ep"), pairs=clips, curve_steps=2),
                      model=model)
print(json.dumps({"sweep": swept, "evaluate": result.rows}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow   # two coordinated processes (~55 s)
def test_two_processes_share_the_videos_and_merge_one_table(planted, clips, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    port = _free_port()
    runs = [subprocess.Popen([sys.executable, "-c", TWO_PROCESSES, str(port), str(i), *clips, str(tmp_path)],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]
    try:
        outputs = [run.communicate(timeout=300) for run in runs]
    finally:
        for run in runs:
            run.kill()
    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr[-3000:]
    assert "sweep: process 0 of 2: 2 videos" in outputs[0][0] and "sweep: process 1 of 2: 1 videos" in outputs[1][0]
    assert "evaluate: process 1 of 2: 5 cases" in outputs[1][0]                     # 3 clips + 8 pairs, every 2nd
    distributed = [json.loads(stdout.splitlines()[-1]) for stdout, _ in outputs]
    assert distributed[0] == distributed[1]                              # both read the merged rows

    request = pipeline.Request(videos=clips, areas=(0.1,), num_iter=2, output_dir=str(tmp_path / "single"),
                               progress=False)
    single = evaluate.run(evaluate.Evaluation(request=request, methods=("grad", "3d_ep"), pairs=clips, curve_steps=2),
                          model=planted)
    swept = sweep.run(pipeline.Request(videos=clips, method="3d_ep", areas=(0.1, 0.3), num_iter=2,
                                       output_dir=str(tmp_path / "single_sweep"), progress=False), model=planted)
    for merged, alone in ((distributed[0]["evaluate"], single.rows), (distributed[0]["sweep"], swept)):
        assert len(merged) == len(alone)
        for one, other in zip(merged, alone):
            assert one.keys() == other.keys()
            for key in one.keys() - set(TIMINGS):
                if isinstance(one[key], float):
                    assert one[key] == pytest.approx(other[key], rel=1e-4, abs=1e-6), key
                else:
                    assert one[key] == other[key], key
    table_md = (tmp_path / "evaluate" / "table.md").read_text()
    all_cases = table_md.split("\n\n")[1]                                 # header, rule, one line per method
    assert all_cases.count("\n") == 3 and (tmp_path / "sweep" / "results.csv").is_file()


@pytest.fixture(scope="module")
def side_clips(tmp_path_factory):
    """Two planted clips of 8 frames (the model's T) with different labels."""
    root = tmp_path_factory.mktemp("sides")
    return tuple(write_planted_frames(root / name, 8) for name in ("class_1-a", "class_2-d"))


def test_spatial_pairs_are_two_clips_side_by_side(side_clips, clips):
    sides = cases.spatial_cases(side_clips, PLANTED_SPEC, ("class 0", "class 1", "class 2"))
    assert [(c.name, c.kind, c.target) for c in sides] == [
        ("class_1-a+class_2-d@left", "spatial", 1), ("class_1-a+class_2-d@right", "spatial", 2),
        ("class_2-d+class_1-a@left", "spatial", 2), ("class_2-d+class_1-a@right", "spatial", 1)]
    np.testing.assert_array_equal(sides[0].truth.boxes[:, 0], np.tile([0, 0, 31, 31], (8, 1)))
    np.testing.assert_array_equal(sides[1].truth.boxes[:, 0], np.tile([32, 0, 63, 31], (8, 1)))
    assert sides[0].truth.annotated.all() and sides[0].truth.segment is None
    video, x = cases.load(sides[0], PLANTED_SPEC)
    _, left = cases.load(cases.clip_cases(side_clips[:1], PLANTED_SPEC)[0], PLANTED_SPEC)
    _, right = cases.load(cases.clip_cases(side_clips[1:], PLANTED_SPEC)[0], PLANTED_SPEC)
    np.testing.assert_array_equal(x, np.concatenate([left, right], axis=2))
    assert x.shape == (8, 32, 64, 3) and video.frames.shape == (8, 32, 64, 3)
    gapped = cases.spatial_cases(side_clips, PLANTED_SPEC, ("class 0", "class 1", "class 2"), gap=4)
    np.testing.assert_array_equal(gapped[1].truth.boxes[0, 0], [36, 0, 67, 31])
    _, x = cases.load(gapped[0], PLANTED_SPEC)
    np.testing.assert_array_equal(x, np.concatenate([left, np.zeros((8, 32, 4, 3)), right], axis=2))
    with pytest.raises(ArgumentError, match="'class_2-c' .* has 6 frames; this test needs 8") as caught:
        cases.spatial_cases((side_clips[0], clips[2]), PLANTED_SPEC, ("class 0", "class 1", "class 2"))
    assert caught.value.argument == "spatial_pairs"


def test_spatial_pairs_on_the_planted_model_find_the_true_half(planted, side_clips, tmp_path):
    """The planted evidence lies in the left half: explaining class 1 there is a hit with all the mass
    inside; explaining it on the right (where the model does not look) is a miss with none."""
    request = pipeline.Request(videos=(), areas=(0.1,), num_iter=2, output_dir=str(tmp_path / "out"), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate.run(evaluate.Evaluation(request=request, methods=("gradient", "grad_cam", "ep3d"),
                                                  spatial_pairs=side_clips, curve_steps=0), model=planted)
    by = {(r["method"], r["case"]): r for r in result.rows}
    hit, miss = by["gradient", "class_1-a+class_2-d@left"], by["gradient", "class_2-d+class_1-a@right"]
    assert (hit["half_pointing"], hit["half_energy"]) == (1.0, 1.0)
    assert (miss["half_pointing"], miss["half_energy"]) == (0.0, 0.0)
    assert hit["target_rank"] == 1 and "spatial_pointing" not in hit and "temporal_pointing" not in hit
    flat = by["gradient", "class_1-a+class_2-d@right"]          # class 2's logit is constant: a zero map, chance
    assert (flat["half_pointing"], flat["half_energy"]) == (0.5, None) and flat["target_rank"] == 2
    # Grad-CAM weighs the redness layer by one weight per frame: it lights both halves' red blocks alike
    # (not class-discriminative here), so its maximum is a tie and half its mass is on the wrong side.
    for case in ("class_1-a+class_2-d@left", "class_2-d+class_1-a@right"):
        assert (by["grad_cam", case]["half_pointing"], by["grad_cam", case]["half_energy"]) == (0.5, 0.5)
    for row in result.rows:                       # every method, every side: the numbers the table needs
        assert 0 <= row["half_pointing"] <= 1 and 0 <= row["average_drop"] <= 1
        assert row["target_rank"] in (1.0, 2.0, 3.0) and 0 < row["target_probability"] < 1
    stored = json.loads((tmp_path / "out" / "table.json").read_text())
    assert stored["cases"] == {"clips": 0, "pairs": 0, "spatial_pairs": 4}
    assert {e["metric"] for e in stored["ordering"]} >= {"half_pointing", "half_energy"}
