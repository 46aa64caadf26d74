"""The sweep in process on the planted model (rows, resume, a foreign configuration, a failed batch),
and once in a subprocess with four forced CPU devices, where the batch is sharded."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.planted import write_planted_frames
from vjx import pipeline
from vjx.errors import ArgumentError
from vjx.pipeline import sweep
from vjx.pipeline.files import jsonable
from vjx.pipeline.runner import Runner

REPO = pathlib.Path(__file__).resolve().parents[1]


def request(videos, out, **overrides):
    settings = dict(videos=tuple(videos), method="3d_ep", areas=(0.1, 0.3), num_iter=2, output_dir=str(out),
                    progress=False)
    return pipeline.Request(**{**settings, **overrides})


def test_rows_then_resume_then_a_foreign_configuration(planted, planted_videos, tmp_path, capsys):
    out = tmp_path / "sweep"
    rows = sweep.run(request(planted_videos, out), model=planted)
    assert "2 videos (0 already done), 2 areas, batches of 1 over 1 device(s)" in capsys.readouterr().out
    assert [(r["video"], r["area"]) for r in rows] == [("abseiling-full", 0.1), ("abseiling-full", 0.3),
                                                      ("notaclass-short", 0.1), ("notaclass-short", 0.3)]
    assert all(0 <= r["preserved_probability"] <= 1 and 0 < r["mask_area"] <= 1 for r in rows)
    assert {(r["method"], r["model"], r["target"]) for r in rows} == {("ep3d", "planted", 1)}
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0] == ("video,label,target,target_name,area,preserved_probability,hard_preserved_probability,"
                            "mask_area,undecided,converged,extremal_area,extremal_bound,base_probability_top1,method,model")
    assert len(csv_lines) == 5
    masks = np.load(out / "videos" / "abseiling-full.npz")
    assert masks["masks"].shape == (2, 8, 32, 32) and masks["areas"].tolist() == pytest.approx([0.1, 0.3])

    stamp = (out / "videos" / "abseiling-full.json").stat().st_mtime_ns
    again = sweep.run(request(planted_videos, out), model=planted)          # everything done: nothing recomputed
    assert "(2 already done)" in capsys.readouterr().out
    assert (out / "videos" / "abseiling-full.json").stat().st_mtime_ns == stamp
    assert again == json.loads((out / "results.json").read_text())["rows"] == jsonable(rows)   # NaN -> null

    with pytest.raises(ArgumentError, match="another configuration") as caught:
        sweep.run(request(planted_videos, out, seed=1), model=planted)
    assert caught.value.argument == "output_dir"


def test_a_failed_batch_keeps_the_finished_videos(planted, planted_videos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    calls = []
    explain = Runner.explain

    def fail_on_second_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return explain(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "explain", fail_on_second_batch)
    with pytest.raises(RuntimeError):
        sweep.run(request(planted_videos, out), model=planted)
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["abseiling-full.json", "abseiling-full.npz"]
    assert not (out / "results.csv").exists()
    monkeypatch.setattr(Runner, "explain", explain)
    capsys.readouterr()
    assert len(sweep.run(request(planted_videos, out), model=planted)) == 4
    assert "(1 already done)" in capsys.readouterr().out


def test_only_extremal_methods_and_distinct_names(planted, planted_videos, tmp_path):
    with pytest.raises(ArgumentError, match="'grad' has no areas to sweep; use one of ep2d \\(2d_ep\\), ep3d \\(3d_ep\\), step"):
        sweep.run(request(planted_videos, tmp_path / "a", method="grad"), model=planted)
    twin = pathlib.Path(write_planted_frames(tmp_path / "other" / "abseiling-full"))
    with pytest.raises(ArgumentError, match="two videos with the same name"):
        sweep.run(request((planted_videos[0], str(twin)), tmp_path / "b"), model=planted)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


SHARDED = """
import json, sys
from tests.planted import planted_model
from vjx import pipeline
from vjx.pipeline import sweep
request = pipeline.Request(videos=tuple(sys.argv[1:3]), method="3d_ep", areas=(0.1, 0.3), num_iter=2,
                           output_dir=sys.argv[3], progress=False)
print(json.dumps(sweep.run(request, model=planted_model())))
"""


@pytest.mark.slow   # a process with four host devices (~15 s)
def test_sharded_over_four_devices_gives_the_same_rows(planted, planted_videos, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    result = subprocess.run([sys.executable, "-c", SHARDED, *planted_videos, str(tmp_path / "sharded")], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batches of 4 over 4 device(s)" in result.stdout
    sharded = json.loads(result.stdout.splitlines()[-1])
    single = sweep.run(request(planted_videos, tmp_path / "single"), model=planted)
    assert [(r["video"], r["area"]) for r in sharded] == [(r["video"], r["area"]) for r in single]
    for key in ("preserved_probability", "mask_area"):
        np.testing.assert_allclose([r[key] for r in sharded], [r[key] for r in single], rtol=1e-4, atol=1e-6)
