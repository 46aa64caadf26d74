"""The explain pipeline in process on the planted model: outputs, summaries, targets, rollback, errors.

The planted model (tests/planted.py) is wrapped as a ``vjx.Model`` with a tiny spec (8 frames of
32 x 32), so a whole run compiles in seconds; one model object (conftest's ``planted``) serves every
test, so each method compiles once per session.
"""
import dataclasses
import json
import os
import pathlib
import stat
import warnings

import imageio.v3 as iio
import numpy as np
import pytest

from tests.planted import PLANTED_SPEC, TARGET, planted_video, write_planted_frames
from vjx import attribution, data, pipeline, prototypes
from vjx.errors import ArgumentError, VjxError
from vjx.attribution import registry
from vjx.pipeline import methods
from vjx.pipeline.runner import Runner
from vjx.pipeline.targets import choose_target

AREAS = (0.05, 0.2)


def request(videos, out, **overrides):
    settings = dict(videos=tuple(videos), method="step", areas=AREAS, num_iter=2, batch_size=2,
                    output_dir=str(out), progress=False, flags={"perturb_area": ["0.05", "0.2"]})
    return pipeline.Request(**{**settings, **overrides})


@pytest.fixture(scope="module")
def step_run(planted, planted_videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("step") / "out" / "nested"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = pipeline.explain(request(planted_videos, out), model=planted)
    return summary, out, [str(w.message) for w in caught]


def test_step_run_writes_every_output(step_run):
    summary, out, warned = step_run
    assert any("repeated frames" in w and "notaclass-short" in w for w in warned)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary).replace("NaN", "null"))
    assert summary["config"]["areas"] == list(AREAS) and summary["config"]["num_iter"] == 2
    assert summary["flags"] == {"perturb_area": ["0.05", "0.2"]} and summary["versions"]["jax"]
    assert summary["model"] == "planted" and summary["weights"] == "given model"
    assert [v["video"] for v in summary["videos"]] == ["abseiling-full", "notaclass-short"]
    for entry in summary["videos"]:
        assert entry["target"] == TARGET and entry["target_source"] == "pred"   # no label file: the prediction
        assert [a["area"] for a in entry["areas"]] == list(AREAS)
        assert all(0 <= a["preserved_probability"] <= 1 and 0 < a["mask_area"] <= 1 for a in entry["areas"])
        assert "extremal_area" in entry
        probs = [p["probability"] for p in entry["predictions"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        stored = np.load(out / f"{entry['video']}.npz")
        assert stored["maps"].shape == (2, 8, 32, 32) and stored["frames"].shape == (8, 32, 32, 3)
        assert 0 <= stored["maps"].min() and stored["maps"].max() <= 1
        np.testing.assert_allclose(stored["preserved"], [a["preserved_probability"] for a in entry["areas"]])
        np.testing.assert_allclose(stored["areas"], AREAS)
        assert json.loads(str(stored["meta"]))["rows"] == ["area 0.05", "area 0.2"]
        assert iio.imread(out / f"{entry['video']}.png").shape[0] > 200
        gif = iio.imread(out / f"{entry['video']}_area0.05.gif", index=None)
        assert gif.shape[1:3] == (32, 64) and 5 <= len(gif) <= 8   # Pillow merges repeated frames
        assert entry["files"] == [f"{entry['video']}{s}" for s in (
            ".png", "_area0.05.gif", "_area0.05.mp4", "_area0.2.gif", "_area0.2.mp4", ".npz")]
        mp4 = iio.imread(out / f"{entry['video']}_area0.2.mp4", index=None, plugin="pyav")
        assert mp4.shape == (8, 32, 64, 3)                                  # the model's input size, side by side
        assert 0 < entry["clip_probability"] <= 1
        for area in entry["areas"]:
            assert len(area["frame_probabilities"]) == 8 and all(0 <= q <= 1 for q in area["frame_probabilities"])
            assert area["hard_mask_loses_class"] == (area["hard_preserved_probability"]
                                                     < 0.1 * entry["clip_probability"])
        assert stored["frame_probabilities"].shape == (2, 8)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]     # no temporary files left


def test_the_console_says_what_runs_before_during_and_after(planted, planted_videos, tmp_path, capsys):
    pipeline.explain(request(planted_videos, tmp_path / "out", progress=True), model=planted)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("Model: planted") and "the weights of the model passed in" in lines[0]
    assert lines[1].startswith("Input: 8 frames of 32 x 32 px")
    assert lines[2].startswith("Videos: 2") and lines[3].startswith("Method: STEP") and "2 iterations" in lines[3]
    assert any(line.startswith("Loading planted ...") and line.endswith(" s") for line in lines)
    assert any("abseiling-full: explaining" in line and "top-3:" in line for line in lines)
    assert sum("kept by the top 5%: p = " in line and "of the clip's" in line for line in lines) == 2
    extremal = [line for line in lines if "extremal area (smallest area whose converged top-a mask keeps p >=" in line]
    assert len(extremal) == 2 and all(line.split(": ")[-1][:4] in ("none", "5%", "20%") or "%" in line
                                      for line in extremal)
    assert "(compiling ...)" in err and "compiling and the first step" in err


def test_the_frames_shown_are_the_model_input(step_run):
    _, out, _ = step_run
    frames = np.load(out / "abseiling-full.npz")["frames"]
    assert frames[3, 12, 10].tolist() == [255, 0, 0] and frames[0, 12, 10].tolist() == [128, 128, 128]


def test_a_backprop_method_has_one_row_and_no_areas(planted, planted_videos, tmp_path):
    summary = pipeline.explain(request(planted_videos[:1], tmp_path, method="grad", target="2"), model=planted)
    entry = summary["videos"][0]
    assert entry["target"] == 2 and entry["target_source"] == "given"
    assert "areas" not in entry and "extremal_area" not in entry
    assert summary["config"]["polarity"] == "both"
    assert entry["files"] == ["abseiling-full.png", "abseiling-full.gif", "abseiling-full.mp4", "abseiling-full.npz"]
    assert np.load(tmp_path / "abseiling-full.npz")["maps"].shape == (1, 8, 32, 32)


def test_a_failed_run_removes_what_it_wrote(planted, planted_videos, tmp_path, monkeypatch):
    calls = []
    explain_batch = Runner.explain

    def fail_on_second_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return explain_batch(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "explain", fail_on_second_batch)
    kept = tmp_path / "existing"
    kept.mkdir()
    (kept / "mine.txt").write_text("keep me")
    for out in (tmp_path / "new" / "nested", kept):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            pipeline.explain(request(planted_videos, out, method="grad", batch_size=1), model=planted)
        assert len(calls) == 2                        # the first video's files had been written
    assert not (tmp_path / "new").exists()
    assert [p.name for p in kept.iterdir()] == ["mine.txt"]



@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_have_the_permissions_of_a_plain_open(tmp_path, umask):
    """Atomic writes (mkstemp makes 0600 files) end with the mode open() gives under the umask."""
    from vjx.pipeline.files import OutputWriter
    previous = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "wb"):
            pass
        with OutputWriter(tmp_path / "out") as writer:
            written = writer.write("result.json", b"{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["result.json"]        # no temporary left

def test_methods_report_progress_to_the_end(planted):
    for name, total in (("grad", 1), ("3d_ep", 2)):                   # 3d_ep: one report per iteration
        method = methods.get(name)
        config = method.make_config(pipeline.Request(videos=(), areas=(0.1, 0.3), num_iter=2), planted.spec)
        seen = []
        Runner(planted, method, config).explain(planted_video(1), np.array([TARGET]),
                                                progress=lambda done, of: seen.append((done, of)))
        assert seen[-1] == (total, total) and {of for _, of in seen} == {total}


BAD_INPUT = {
    "missing video": (dict(videos=("{tmp}/nope",)), "nope"),
    "corrupt image": (dict(videos=("{corrupt}",)), "00003.png"),
    "corrupt video": (dict(videos=("{tmp}/bad.mp4",)), "bad.mp4"),
    "i3d with epic": (dict(model="i3d", dataset="epic-kitchens-noun"), "has no head on i3d; use kinetics"),
    "vgg16lstm with kinetics": (dict(model="vgg16lstm"), "has no head on vgg16lstm; use ucf101-24 or ucf101"),
    "unknown model": (dict(model="r4d"), "r4d"),
    "unknown method": (dict(method="lime"), "method 'lime'"),
    "unknown dataset": (dict(dataset="ucf"), "dataset 'ucf'"),
    "area above 1": (dict(areas=(0.1, 1.5)), "areas 1.5"),
    "no areas": (dict(areas=()), "areas is empty"),
    "zero iterations": (dict(num_iter=0), "num_iter must be at least 1"),
    "unknown schedule": (dict(schedule="slow"), "schedule 'slow'"),
    "tiny input": (dict(input_size=8), "input_size must be at least 32"),
    "zero batch": (dict(batch_size=0), "batch_size must be at least 1"),
    "unknown polarity": (dict(polarity="up"), "polarity 'up'"),
    "unknown dtype": (dict(dtype="int8"), "dtype 'int8'"),
    "no videos": (dict(videos=()), "videos is empty"),
    "missing checkpoint": (dict(model="r3d", checkpoint="{tmp}/none.pth"), "checkpoint"),
    "bad checkpoint": (dict(model="r3d", checkpoint="{tmp}/bad.pth"), "bad.pth"),
    "unknown target": (dict(target="klass 1"), "target 'klass 1'"),
    "no weights": (dict(model="r3d"), "checkpoint is needed: r3d_18 on kinetics400 has no weights"),
    "random and checkpoint": (dict(model="r3d", checkpoint="{tmp}/bad.pth", random_weights=True),
                              "checkpoint and random_weights exclude each other"),
}


def test_a_target_name_is_checked_before_any_model_loads(planted_videos, tmp_path, monkeypatch):
    def no_loading(resolved):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(pipeline.session, "load_model", no_loading)
    with pytest.raises(ArgumentError, match="target 'cricket' is not a class name.*did you mean playing cricket"):
        pipeline.explain(request(planted_videos, tmp_path / "out", model="i3d", target="cricket"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_names_the_argument_and_writes_nothing(case, planted, planted_videos, tmp_path):
    corrupt = pathlib.Path(write_planted_frames(tmp_path / "abseiling-corrupt"))
    (corrupt / "00003.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    (tmp_path / "bad.pth").write_bytes(b"PK\x03\x04 not a checkpoint")
    changes, what = BAD_INPUT[case]
    changes = {k: tuple(p.format(tmp=tmp_path, corrupt=corrupt) for p in v) if k == "videos"
               else v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in changes.items()}
    settings = {**dict(videos=planted_videos[:1], model="r3d", method="grad"), **changes}
    out = tmp_path / "out"
    given = planted if "model" not in changes and "checkpoint" not in changes else None
    with pytest.raises(VjxError, match=what) as caught:
        pipeline.explain(request(settings.pop("videos"), out, **settings), model=given)
    assert "\n" not in str(caught.value)
    assert not out.exists()
    argument = what.split()[0]
    if argument in pipeline.Request.__dataclass_fields__:
        assert isinstance(caught.value, ArgumentError) and caught.value.argument == argument


def test_a_request_is_resolved_once_into_what_the_run_reads():
    resolved = pipeline.resolve(pipeline.Request(videos=("v",), model="tsm", dataset="epic-kitchens-verb",
                                                 method="3d_ep", areas=(0.1,), num_iter=7, random_weights=True))
    assert resolved.spec.name == "tsm_resnet50" and resolved.spec.label_set == "epic-kitchens-verb"
    assert resolved.spec.num_classes == 125 and resolved.method is methods.get("3d_ep")
    assert resolved.config.areas == (0.1,) and resolved.config.num_iter == 7
    by_schedule = pipeline.resolve(pipeline.Request(videos=("v",), model="r3d", method="step", random_weights=True))
    assert by_schedule.config.schedule == attribution.extremal.DEFAULT_SCHEDULE
    assert by_schedule.config.num_iter == attribution.extremal.SCHEDULES[by_schedule.config.schedule].num_iter
    assert resolved.config.sigma == resolved.spec.ep_sigma
    assert resolved.weights.source == "random" and resolved.weights.describe("x") == "random"
    i3d = pipeline.resolve(pipeline.Request(videos=("v",), method="grad_cam"))
    assert i3d.weights.describe(i3d.spec.label_set) == "pretrained kinetics400"
    assert i3d.config == attribution.GradCamConfig(layer="mixed_5c")


def test_an_input_size_resizes_the_frames_and_the_mask_sigma():
    """I3D fed 112 px frames: resized to 128 then cropped (the spec's 256/224 proportion), sigma 11."""
    resolved = pipeline.resolve(pipeline.Request(videos=("v",), method="step", input_size=112))
    assert (resolved.spec.resize, resolved.spec.crop, resolved.spec.ep_sigma) == (128, 112, 11.0)
    assert resolved.config.sigma == 11.0 and resolved.config.schedule == attribution.extremal.DEFAULT_SCHEDULE
    full = pipeline.resolve(pipeline.Request(videos=("v",), method="step"))
    assert (full.spec.crop, full.config.sigma) == (224, 23.0)


def test_the_method_table_is_the_registry():
    assert tuple(methods.METHODS) == registry.names()
    assert methods.extremal_names() == registry.names(registry.MASKS)
    for original, name in (("grad", "gradient"), ("grad*input", "gradient_x_input"),
                           ("integrated_grad", "integrated_gradients"), ("2d_ep", "ep2d"), ("3d_ep", "ep3d"),
                           ("3d_ep_smooth", "ep3d_temporal_smoothing"), ("step", "step"), ("grad_cam", "grad_cam")):
        assert methods.get(original) is methods.get(name) and methods.get(original).name == name
    for entry in registry.ENTRIES:
        module = prototypes if entry.needs_prototype_model else attribution
        assert getattr(module, entry.name) is entry.function               # the canonical name is the function's
        assert entry.output in registry.OUTPUTS
        for name in entry.names:
            assert registry.get(name) is entry and name in registry.describe()
        config = entry.make_config(pipeline.Request(videos=(), areas=(0.1, 0.2), num_iter=5), PLANTED_SPEC)
        assert isinstance(config, entry.config_type)
        assert entry.scores_unclipped == any(f.name == "normalize" for f in dataclasses.fields(config))
    with pytest.raises(ArgumentError, match="'lime' is unknown; choose one of gradient \\(grad\\)"):
        registry.get("lime")


def test_a_setting_suffix_makes_separate_methods():
    """Table 4's variants: 3D-EP with seeds smoothed over time at chosen sigmas, each its own method."""
    request = pipeline.Request(videos=(), areas=(0.1,), num_iter=5)
    one, three = methods.get("3d_ep_smooth@1"), methods.get("ep3d_temporal_smoothing@3.5")
    assert (one.name, three.name) == ("ep3d_temporal_smoothing@1", "ep3d_temporal_smoothing@3.5")
    assert one.make_config(request, PLANTED_SPEC).temporal_sigma == 1.0
    assert three.make_config(request, PLANTED_SPEC).temporal_sigma == 3.5
    assert three.function is attribution.ep3d_temporal_smoothing and three.extremal
    resolved = pipeline.resolve(dataclasses.replace(request, videos=("v",), model="r3d", method="3d_ep_smooth@2",
                                                   random_weights=True))
    assert resolved.method.name == "ep3d_temporal_smoothing@2" and resolved.config.temporal_sigma == 2.0
    for bad, message in (("grad@2", "gradient takes no @value"), ("3d_ep_smooth@wide", "must be a number")):
        with pytest.raises(ArgumentError, match=message) as caught:
            methods.get(bad)
        assert caught.value.argument == "method"


def test_the_method_table_declares_every_method():
    assert "prototype_activation" in methods.METHODS
    assert "prototype_activation" not in methods.any_model_names()
    assert [name for name, m in methods.METHODS.items() if not m.applies_to(PLANTED_SPEC)] == [
        "excitation_backprop_rnn", "attention_rollout", "attention_relevance"]
    assert not set(methods.any_model_names()) & {"attention_rollout", "attention_relevance", "excitation_backprop",
                                                 "contrastive_excitation_backprop", "excitation_backprop_rnn"}
    for name, method in methods.METHODS.items():
        config = method.make_config(pipeline.Request(videos=(), areas=(0.1, 0.2), num_iter=5), PLANTED_SPEC)
        assert method.name == name and callable(method.function)
        assert (method.scoring_config(config).normalize is False) if method.entry.scores_unclipped else True
        if method.extremal:
            assert isinstance(config, attribution.ExtremalConfig) and config.areas == (0.1, 0.2)
            assert config.num_iter == 5 and config.sigma == PLANTED_SPEC.ep_sigma
            assert config.schedule == attribution.extremal.DEFAULT_SCHEDULE
            assert method.row_names(config) == ("area 0.1", "area 0.2")
        else:
            assert method.row_names(config) == (name,)
    with pytest.raises(ArgumentError, match="choose one of gradient \\(grad\\), gradient_x_input"):
        methods.get("lime")


def test_polarity_defaults_agree_on_both():
    from experiments import explain as explain_script

    assert pipeline.Request(videos=()).polarity == "both"
    assert explain_script._POLARITY.default == "both"
    assert attribution.GradientConfig().polarity == "both"
    assert attribution.IntegratedGradientsConfig().polarity == "both"
    config = methods.get("grad").make_config(pipeline.Request(videos=()), PLANTED_SPEC)
    assert config.polarity == "both"


def _video(label: str, name: str | None = None) -> data.Video:
    return data.Video(frames=np.zeros((1, 1, 1, 3), np.uint8), name=name or f"{label}-x", fps=None, label=label,
                      path="x")


def test_target_choice():
    names = ("abseiling", "air drumming", "zumba")
    probs = np.array([0.1, 0.2, 0.7])
    assert choose_target("label", _video("air_drumming"), probs, names) == (1, "label")
    assert choose_target("pred", _video("abseiling"), probs, names) == (2, "pred")
    assert choose_target("Zumba", _video("abseiling"), probs, names) == (2, "given")
    assert choose_target("0", _video("abseiling"), probs, names) == (0, "given")
    with pytest.warns(UserWarning, match="close: abseiling.*explaining the prediction 'zumba'"):
        assert choose_target("label", _video("abseilin"), probs, names) == (2, "pred")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # a name without a label part: no warning
        assert choose_target("label", _video("clip", name="clip"), probs, names) == (2, "pred")
    with pytest.raises(ArgumentError, match="target 'zumbaa' .* did you mean zumba"):
        choose_target("zumbaa", _video("abseiling"), probs, names)


def test_grad_cam_maps_shared_by_frames_are_said_to_be_and_the_animation_keeps_the_clips_pace():
    """Grad-CAM on I3D: mixed_5c has 2 time steps for 16 frames; the console and figure say so."""
    from vjx.pipeline import report
    from vjx.pipeline.session import VideoResult
    resolved = pipeline.resolve(pipeline.Request(videos=("v",), method="grad_cam"))
    maps = np.repeat(np.random.default_rng(0).random((1, 2, 7, 7), dtype=np.float32), 8, axis=1)
    video = data.Video(frames=np.zeros((80, 8, 8, 3), np.uint8), name="clip", fps=25.0, label="clip", path="clip.mp4")
    result = VideoResult(video=video, frames=np.zeros((16, 8, 8, 3), np.uint8),
                         explanation=methods.Explanation(maps=maps, row_names=("grad_cam",)), target=3,
                         target_name="arm wrestling", target_source="pred", probability=0.5,
                         top=[("arm wrestling", 0.5)])
    note = "Grad-CAM's layer mixed_5c has 2 time steps for 16 frames, so each map is shared by 8 consecutive frames"
    assert note in report.shared_note(result, resolved)
    assert any(note in line for line in report.result_lines(result, resolved))
    assert report.animation_fps(result) == pytest.approx(25.0 * 16 / 80)        # 16 frames over the clip's 3.2 s
    distinct = dataclasses.replace(result, explanation=methods.Explanation(
        maps=np.random.default_rng(1).random((1, 16, 7, 7)), row_names=("grad_cam",)))
    assert report.shared_note(distinct, resolved) == ""
