"""The registry, load_model's argument handling, and the torch-free import."""
import dataclasses
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import vjx
from vjx.models.registry import ALIASES, MODELS


def test_short_names_map_onto_registry():
    assert {alias: vjx.get_spec(alias).name for alias in ALIASES} == {
        "r3d": "r3d_18", "mc3": "mc3_18", "r2plus1d": "r2plus1d_18", "tsm": "tsm_resnet50"}
    assert vjx.get_spec("i3d").gradcam_layer == "mixed_5c"
    assert {s.ep_sigma for s in MODELS.values() if s.crop == 112} == {11.0}
    assert {s.ep_sigma for s in MODELS.values() if s.crop == 224} == {23.0}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_batch_norm_takes_the_spec_epsilon(name):
    """The spec's batch_norm_epsilon reaches every BatchNorm of the module (checked on shapes only)."""
    spec = dataclasses.replace(MODELS[name], batch_norm_epsilon=0.0123)
    seen = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
            seen.append(context.module.epsilon)
        return next_fun(*args, **kwargs)

    video = jax.ShapeDtypeStruct((1, spec.num_frames, spec.crop, spec.crop, 3), jnp.float32)
    with nn.intercept_methods(record):
        jax.eval_shape(spec.make_module().init, jax.random.key(0), video)
    if MODELS[name].batch_norm_epsilon == 0.0:                # the spec's way to say: no BatchNorm at all
        assert seen == []
    else:
        assert len(seen) > 10 and set(seen) == {0.0123}


def test_unknown_architecture_names_the_choices():
    with pytest.raises(vjx.VjxError, match=r"unknown model architecture 'r2plus1'.*Did you mean r2plus1d"):
        vjx.get_spec("r2plus1")


@pytest.mark.parametrize("kwargs, message", [
    (dict(pretrained="imagenet"), r"no pretrained weights 'imagenet' for i3d"),
    (dict(pretrained="kinetics400", checkpoint="x.pth"), r"either pretrained= or checkpoint="),
    (dict(checkpoint="/nonexistent/r3d.pth"), r"'/nonexistent/r3d.pth' does not exist"),
])
def test_load_model_argument_errors(kwargs, message):
    with pytest.raises(vjx.VjxError, match=message):
        vjx.load_model("i3d", **kwargs)


def test_checkpoint_dir_without_metadata_is_refused(tmp_path):
    with pytest.raises(vjx.VjxError, match="is not a vjx checkpoint directory"):
        vjx.load_model("r3d", checkpoint=tmp_path)


def test_import_vjx_needs_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import vjx, vjx.attribution, weight_conversion\n"
            "assert vjx.get_spec('tsm').num_frames == 8")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_convert_cli_reports_bad_input_in_one_line(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "weight_conversion.convert", "--arch", "r3d",
                           "--checkpoint", str(tmp_path / "missing.pth"), "--output", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.pth" in proc.stderr
    assert not out.exists()
