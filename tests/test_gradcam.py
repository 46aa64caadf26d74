"""Grad-CAM: hand-computed maps on the planted model, parity with torch hooks, registry models."""
import jax
import numpy as np
import pytest

from planted import SIZE, TARGET, T, block_indicator, planted_apply, planted_variables, planted_video
from test_backprop import tiny_apply, tiny_pair, tiny_videos, to_torch
from vjx.attribution import GradCamConfig, grad_cam, gradcam
from vjx.errors import VjxError


def test_planted_grad_cam_is_the_hand_computed_map():
    video, gain = planted_video(), 20.0
    attr = grad_cam(planted_apply, video, [TARGET], variables=planted_variables(gain))
    assert attr.diagnostics == {"layer": "features", "layer_shape": (1, T, SIZE, SIZE, 1)}
    inside = block_indicator()
    redness = np.maximum(video[0, ..., 0] - video[0, ..., 1:].mean(-1), 0)
    weights = (gain / inside.sum()) * inside.mean((1, 2))                       # per frame, over H and W
    np.testing.assert_allclose(attr.raw[0], weights[:, None, None] * redness, rtol=1e-5)
    maps = np.asarray(attr.maps[0])
    assert maps.max() == pytest.approx(1.0) and maps.min() == 0
    assert np.all(maps[inside == 0] == 0) and np.all(maps[inside == 1] == 1)


def test_layer_selection_and_errors():
    video, variables = planted_video(), planted_variables()
    a = grad_cam(planted_apply, video, [TARGET], GradCamConfig(layer="features"), variables=variables)
    b = grad_cam(planted_apply, video, [TARGET], variables=variables)            # the only tap
    np.testing.assert_array_equal(a.maps, b.maps)
    with pytest.raises(VjxError, match="'layer9'.*features"):
        grad_cam(planted_apply, video, [TARGET], GradCamConfig(layer="layer9"), variables=variables)
    with pytest.raises(VjxError, match="NaN"):
        grad_cam(planted_apply, video * np.nan, [TARGET], variables=variables)
    with pytest.raises(VjxError, match="out of range"):
        grad_cam(planted_apply, video, [7], variables=variables)


def test_parity_with_torch_hooks_and_no_recompile():
    torch = pytest.importorskip("torch")
    from vjx.torch_reference import backprop as ref

    model, variables = tiny_pair()
    videos, targets = tiny_videos(2), np.array([1, 3])
    ours = grad_cam(tiny_apply, videos, targets, variables=variables)          # features: 2 x 4 x 8 x 8 x 6
    assert ours.diagnostics["layer_shape"] == (2, 4, 8, 8, 6)
    maps, raw = ref.grad_cam(model, to_torch(videos), torch.from_numpy(targets), model.features)
    np.testing.assert_allclose(ours.raw, raw.numpy(), rtol=1e-4, atol=1e-5 * float(raw.abs().max()))
    np.testing.assert_allclose(ours.maps, maps.numpy(), atol=1e-5)
    assert ours.maps.shape == (2, 8, 16, 16)

    size = gradcam._grad_cam_core._cache_size()
    grad_cam(tiny_apply, videos + 1, targets[::-1], variables=variables)
    assert gradcam._grad_cam_core._cache_size() == size


def test_randomised_model_gives_different_maps():
    _, variables = tiny_pair(0)
    _, random_variables = tiny_pair(1)
    video = tiny_videos(1)
    a = np.asarray(grad_cam(tiny_apply, video, [1], variables=variables).maps).ravel()
    b = np.asarray(grad_cam(tiny_apply, video, [1], variables=random_variables).maps).ravel()
    assert np.corrcoef(a, b)[0, 1] < 0.5


@pytest.mark.parametrize("name", ["i3d", "r3d_18", "mc3_18", "r2plus1d_18", "tsm_resnet50", "vgg16lstm"])
def test_registry_models_tap_their_gradcam_layer(name):
    """The spec's default layer is a 5-D tap of every registry model (shapes only, no compute)."""
    from vjx.models.registry import get_spec

    spec = get_spec(name)
    try:
        module = spec.make_module()
    except ImportError:
        pytest.skip(f"{spec.module_path} not written yet")
    video = jax.ShapeDtypeStruct((1, spec.num_frames, spec.crop, spec.crop, 3), np.float32)
    variables = jax.eval_shape(module.init, jax.random.key(0), video)
    taps = gradcam._taps(module.apply, variables, video)
    path = gradcam._resolve_layer(None, GradCamConfig(layer=spec.gradcam_layer), taps)
    b, t, h, w, c = taps[path].shape
    assert b == 1 and spec.num_frames % t == 0 and h == w and c >= 512


def test_video_resnet_parity_with_torch(name="r2plus1d_18"):
    """Default layer (layer4) of a randomised torchvision-layout model, converted, vs torch hooks.

    One model (the paper's) to keep the suite fast; r3d_18 agrees as closely (raw 5e-7 of max).
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("vjx.models.resnet3d")
    pytest.importorskip("vjx.torch_reference.resnet3d")
    import vjx
    from vjx.torch_reference import backprop as ref
    from vjx.torch_reference import build_torch_model
    from vjx.torch_reference.parity import randomize_torch_model, state_dict_numpy
    from weight_conversion import convert_state_dict

    spec = vjx.get_spec(name)
    torch_model = randomize_torch_model(build_torch_model(name), seed=1)
    model = vjx.Model(spec.make_module(), convert_state_dict(state_dict_numpy(torch_model), spec), spec)
    video = np.random.default_rng(0).normal(size=(1, 8, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        target = int(torch_model(to_torch(video)).argmax())
    ours = grad_cam(model, video, [target])
    maps, raw = ref.grad_cam(torch_model, to_torch(video), torch.tensor([target]), torch_model.layer4)
    assert ours.diagnostics["layer_shape"] == (1, 1, 4, 4, 512)
    np.testing.assert_allclose(ours.raw, raw.numpy(), atol=1e-4 * float(raw.abs().max()))
    np.testing.assert_allclose(ours.maps, maps.numpy(), atol=1e-4)
