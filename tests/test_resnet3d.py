"""torchvision's video ResNets: Flax port against the torch reference, conversion paths and errors."""
import jax
import numpy as np
import pytest
from flax import traverse_util

import vjx
from vjx.models.registry import get_spec

torch = pytest.importorskip("torch")

from vjx.torch_reference import build_torch_model  # noqa: E402
from vjx.torch_reference.parity import compare_models, randomize_torch_model, state_dict_numpy  # noqa: E402
import weight_conversion as wc  # noqa: E402

NAMES = ("r3d_18", "mc3_18", "r2plus1d_18")
# One case at the real input size; the others with 4 frames to stay within the time budget.
FRAMES = {"r3d_18": 4, "mc3_18": 4, "r2plus1d_18": 16}


@pytest.fixture(scope="module")
def torch_models():
    return {name: randomize_torch_model(build_torch_model(name), seed=i) for i, name in enumerate(NAMES)}


def _clip(frames: int, size: int = 112) -> np.ndarray:
    return np.random.default_rng(frames).normal(size=(1, frames, size, size, 3)).astype(np.float32)


def test_reference_has_torchvisions_parameter_counts_and_shapes(torch_models):
    # Parameter counts of torchvision's r3d_18 / mc3_18 / r2plus1d_18 (its model docs).
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in torch_models.items()}
    assert counts == {"r3d_18": 33_371_472, "mc3_18": 11_695_440, "r2plus1d_18": 31_505_325}
    state = torch_models["r2plus1d_18"].state_dict()
    assert tuple(state["stem.0.weight"].shape) == (45, 3, 1, 7, 7)
    # The second conv of a stage's first block keeps that block's mid width, (64*128*27)//(64*9+3*128).
    assert tuple(state["layer2.0.conv2.0.0.weight"].shape) == (230, 128, 1, 3, 3)
    assert tuple(state["layer2.1.conv1.0.0.weight"].shape) == (288, 128, 1, 3, 3)
    assert tuple(torch_models["mc3_18"].state_dict()["layer3.0.downsample.0.weight"].shape) == (256, 128, 1, 1, 1)


@pytest.mark.parametrize("name", NAMES)
def test_pth_checkpoint_matches_torch_and_survives_orbax(name, torch_models, tmp_path):
    model_t = torch_models[name]
    path = tmp_path / f"{name}.pth"
    torch.save(model_t.state_dict(), path)
    model = vjx.load_model(name, checkpoint=path)

    parity = compare_models(model_t, model.apply_fn, model.variables, _clip(FRAMES[name]))
    assert parity.max_abs_diff <= 1e-4 * parity.logit_scale, parity
    assert parity.grad_cosine >= 0.999
    assert parity.topk_agree == 1.0

    wc.save_checkpoint(tmp_path / "ckpt", model.variables, model.spec)
    restored = vjx.load_model(name, checkpoint=tmp_path / "ckpt")
    expected = traverse_util.flatten_dict(model.variables, sep="/")
    got = traverse_util.flatten_dict(restored.variables, sep="/")
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(value), err_msg=key)


def test_taps_match_torch_intermediates(torch_models):
    name = "mc3_18"
    model_t = torch_models[name]
    video = _clip(4)
    variables = wc.convert_state_dict(state_dict_numpy(model_t), get_spec(name))
    module = get_spec(name).make_module()
    _, state = jax.jit(lambda v, x: module.apply(v, x, mutable=["intermediates"]))(variables, video)
    with torch.no_grad():
        expected = model_t.forward_features(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy()))
    for tap in ("stem", "layer1", "layer2", "layer3", "layer4"):
        (got,) = state["intermediates"][tap]
        want = expected[tap].numpy().transpose(0, 2, 3, 4, 1)
        assert got.shape == want.shape, tap
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-4 * max(1.0, np.abs(want).max()), err_msg=tap)


@pytest.mark.parametrize("source, target, message", [
    ("r3d_18", "r2plus1d_18", r"holds r3d_18 weights, not r2plus1d_18"),
    ("r3d_18", "mc3_18", r"holds r3d_18 weights, not mc3_18"),
    ("mc3_18", "r3d_18", r"holds mc3_18 weights, not r3d_18"),
    ("r2plus1d_18", "r3d_18", r"holds r2plus1d_18 weights, not r3d_18"),
])
def test_other_variants_weights_are_refused(source, target, message, torch_models):
    with pytest.raises(vjx.VjxError, match=message):
        wc.convert_state_dict(state_dict_numpy(torch_models[source]), get_spec(target), what="ckpt.pth")


def test_missing_unexpected_and_misshaped_keys_are_named(torch_models):
    state = state_dict_numpy(torch_models["r3d_18"])
    spec = get_spec("r3d_18")
    missing = {k: v for k, v in state.items() if k != "layer3.1.conv2.1.running_var"}
    with pytest.raises(vjx.VjxError, match=r"ckpt.pth: checkpoint is missing 'layer3.1.conv2.1.running_var'"):
        wc.convert_state_dict(missing, spec, what="ckpt.pth")
    extra = {**state, "layer4.2.conv1.0.weight": state["layer4.1.conv1.0.weight"]}
    with pytest.raises(vjx.VjxError, match=r"unexpected keys.*layer4\.2\.conv1\.0\.weight"):
        wc.convert_state_dict(extra, spec, what="ckpt.pth")
    ten_classes = {**state, "fc.weight": state["fc.weight"][:10], "fc.bias": state["fc.bias"][:10]}
    with pytest.raises(vjx.VjxError, match=r"shape mismatch: params/fc/bias \(10,\) != \(400,\), params/fc/kernel"):
        wc.convert_state_dict(ten_classes, spec, what="ckpt.pth")


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(vjx.VjxError, match=r"r2plus1d_18-91a641e6.pth' does not exist"):
        vjx.load_model("r2plus1d", checkpoint=tmp_path / "r2plus1d_18-91a641e6.pth")
