"""The experiment scripts end to end (subprocesses), and every bad-input path: one line, exit 2, no output.

Compiles of real models dominate, so the successful runs are few and tiny: r3d_18 with random
weights, 2 areas, 2 iterations, frames of 40x48 (resized to 112).
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


def run_script(script, *args, devices=None, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
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
        result = run_script("explain", "--videos_dir", videos, "--model", "r3d", "--vis_method", "step",
                            "--num_iter", 2, "--perturb_area", "0.05,0.2", "--batch_size", 3,
                            "--output_dir", out)
    finally:
        (videos / clip.name).unlink()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RANDOM weights" in result.stderr
    assert "notaclass" in result.stderr and "explaining the prediction" in result.stderr
    assert "repeated frames" in result.stderr
    assert str(out.resolve()) in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["areas"] == [0.05, 0.2] and summary["config"]["num_iter"] == 2
    assert summary["flags"]["perturb_area"] == ["0.05", "0.2"] and summary["versions"]["jax"]
    by_name = {v["video"]: v for v in summary["videos"]}
    assert set(by_name) == {"abseiling-clip1", "notaclass-clip2", clip.name}
    assert by_name["abseiling-clip1"]["target_name"] == "abseiling"
    assert by_name["ironing-3sEk_w2T8Fw_15_10"]["target_name"] == "ironing"
    assert by_name["notaclass-clip2"]["target_source"] == "pred"
    for entry in summary["videos"]:
        assert [a["area"] for a in entry["areas"]] == [0.05, 0.2]
        assert all(0 <= a["preserved_probability"] <= 1 for a in entry["areas"])
        assert len(entry["predictions"]) == 3
        probs = [p["probability"] for p in entry["predictions"]]
        assert probs == sorted(probs, reverse=True)
        maps = np.load(out / f"{entry['video']}.npz")
        assert maps["maps"].shape == (2, 16, 112, 112) and maps["frames"].shape == (16, 112, 112, 3)
        assert 0 <= maps["maps"].min() and maps["maps"].max() <= 1
        np.testing.assert_allclose(maps["preserved"], [a["preserved_probability"] for a in entry["areas"]], rtol=1e-6)
        assert iio.imread(out / f"{entry['video']}.png").shape[0] > 300
        gif = iio.imread(out / f"{entry['video']}_area0.05.gif", index=None)
        assert gif.shape[1:3] == (112, 224)
        # Pillow merges identical consecutive frames (the short clip's repeats) into longer ones
        assert len(gif) == 16 if entry["video"] != "notaclass-clip2" else 8 <= len(gif) <= 16
    assert not [p for p in out.iterdir() if p.name.startswith(".")]     # no temporary files left


def test_sweep_shards_over_four_devices_and_resumes(videos, tmp_path):
    out = tmp_path / "sweep"
    args = ("--videos_dir", videos, "--model", "r3d", "--vis_method", "3d_ep", "--num_iter", 1,
            "--perturb_area", "0.1,0.3", "--output_dir", out)
    first = run_script("sweep", *args, devices=4)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "batches of 4 over 4 device(s)" in first.stdout
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["video"], r["area"]) for r in rows] == [("abseiling-clip1", 0.1), ("abseiling-clip1", 0.3),
                                                      ("notaclass-clip2", 0.1), ("notaclass-clip2", 0.3)]
    assert all(0 <= r["preserved_probability"] <= 1 and 0 < r["mask_area"] <= 1 for r in rows)
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("video,label,target")
    stamp = (out / "videos" / "abseiling-clip1.json").stat().st_mtime_ns
    again = run_script("sweep", *args, devices=4)               # everything done: nothing recomputed
    assert again.returncode == 0 and "(2 already done)" in again.stdout, again.stderr[-2000:]
    assert (out / "videos" / "abseiling-clip1.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["rows"] == rows
    other = run_script("sweep", *args[:-2], "--output_dir", out, "--seed", 1)
    assert_usage_error(other, "another configuration")


def test_parity_end_to_end(videos, tmp_path):
    pytest.importorskip("torch")
    report = tmp_path / "parity.json"
    result = run_script("parity", "--arch", "r3d", "--videos_dir", videos, "--max_videos", 1, "--json", report)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(report.read_text())
    assert measured["pass"] and measured["relative_logit_diff"] < 1e-5
    assert measured["grad_cosine"] > 0.9999 and measured["gradcam_corr"] > 0.999


def test_benchmark_end_to_end(tmp_path):
    pytest.importorskip("torch")
    report = tmp_path / "bench.json"
    result = run_script("benchmark", "--arch", "r3d", "--num_iter", 1, "--perturb_area", "0.1", "--json", report)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(report.read_text())
    assert measured["vjx_s"] > 0 and measured["torch_s"] > 0 and measured["speedup"] > 0


@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    write_frames(root / "abseiling-ok", 16)
    (root / "abseiling-ok" / "00003.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return root


BAD_EXPLAIN = {
    "missing dir": (["--videos_dir", "{tmp}/nope"], "nope"),
    "empty dir": (["--videos_dir", "{empty}"], "holds no frame folder"),
    "corrupt image": (["--videos_dir", "{corrupt}"], "00003.png"),
    "corrupt video": (["--video", "{badvideo}"], "bad.mp4"),
    "i3d with epic": (["--model", "i3d", "--pretrain_dataset", "epic-kitchens-noun"], "only tsm"),
    "unknown model": (["--model", "r4d"], "r4d"),
    "unknown method": (["--vis_method", "lime"], "lime"),
    "area above 1": (["--perturb_area", "0.1,1.5"], "--perturb_area 1.5"),
    "area not a number": (["--perturb_area", "big"], "--perturb_area"),
    "bad checkpoint": (["--model", "r3d", "--checkpoint", "{badckpt}"], "bad.pth"),
    "unknown flag": (["--areas", "0.1"], "areas"),
    "stray argument": (["oops"], "oops"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPLAIN))
def test_explain_bad_input(case, tmp_path, corrupt_dir):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    (tmp_path / "bad.pth").write_bytes(b"PK\x03\x04 not a checkpoint")
    args, what = BAD_EXPLAIN[case]
    args = [a.format(tmp=tmp_path, empty=tmp_path / "empty", corrupt=corrupt_dir, badvideo=tmp_path / "bad.mp4",
                     badckpt=tmp_path / "bad.pth") for a in args]
    out = tmp_path / "out"
    result = run_script("explain", *args, "--output_dir", out, timeout=300)
    assert_usage_error(result, what, out)


def test_sweep_and_parity_bad_input(tmp_path):
    out = tmp_path / "sweep"
    assert_usage_error(run_script("sweep", "--output_dir", out), "--videos_dir", out)
    assert_usage_error(run_script("sweep", "--videos_dir", tmp_path, "--output_dir", out), "holds no frame", out)
    assert_usage_error(run_script("parity", "--arch", "r9d"), "r9d")
