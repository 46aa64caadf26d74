"""The CAM family on 5-D activations (Grad-CAM++, XGrad-CAM, LayerCAM, Saliency Tubes, Score-CAM)
against pytorch-grad-cam's formulas written out in numpy on TinyNet, whose gradient at the tap is
known in closed form: the head is a global mean and a dense layer, so dlogit_k/dA = W[:, k] / (T'H'W')."""
import numpy as np
import pytest

from planted import planted_apply, planted_variables, planted_video
from test_backprop import tiny_apply, tiny_pair, tiny_videos
from vjx.attribution import (GradCamConfig, ScoreCamConfig, grad_cam_plus_plus, layer_cam, saliency_tubes, score_cam,
                             xgrad_cam)
from vjx.errors import ArgumentError

EPS = 1e-7


def _activation_and_gradient(variables, videos, targets):
    """A (B T' H' W' C, numpy) and its closed-form gradient."""
    _, state = tiny_apply(variables, videos, mutable=["intermediates"])
    (a,) = state["intermediates"]["features"]
    a = np.asarray(a, np.float64)
    w = np.asarray(variables["params"]["fc"]["kernel"], np.float64)[:, targets].T          # B x C
    g = np.broadcast_to(w[:, None, None, None, :] / np.prod(a.shape[1:4]), a.shape)
    return a, g, w


def _reference(name, a, g, w):
    """pytorch-grad-cam's weights (sums over H', W' per time step), then ReLU(sum_c)."""
    if name == "grad_cam_plus_plus":
        g2, g3 = g ** 2, g ** 3
        alpha = g2 / (2 * g2 + a.sum((2, 3), keepdims=True) * g3 + EPS)
        alpha = np.where(g != 0, alpha, 0)
        cam = ((alpha * np.maximum(g, 0)).sum((2, 3), keepdims=True) * a).sum(-1)
    elif name == "xgrad_cam":
        cam = (((g * a).sum((2, 3), keepdims=True) / (a.sum((2, 3), keepdims=True) + EPS)) * a).sum(-1)
    elif name == "layer_cam":
        cam = (np.maximum(g, 0) * a).sum(-1)
    else:                                                       # saliency tubes: the fc weights themselves
        cam = (w[:, None, None, None, :] * a).sum(-1)
    return np.maximum(cam, 0)


@pytest.mark.parametrize("method", [grad_cam_plus_plus, xgrad_cam, layer_cam, saliency_tubes])
def test_gradient_cams_are_the_hand_computed_maps(method):
    _, variables = tiny_pair()
    videos, targets = tiny_videos(2), np.array([1, 3])
    a, g, w = _activation_and_gradient(variables, videos, targets)
    attr = method(tiny_apply, videos, targets, variables=variables)
    expected = _reference(method.__name__, a, g, w)
    assert expected.max() > 0
    np.testing.assert_allclose(attr.raw, expected, rtol=2e-4, atol=1e-6 * expected.max())
    maps = np.asarray(attr.maps)
    assert maps.shape == (2, 8, 16, 16) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    raw = method(tiny_apply, videos, targets, GradCamConfig(normalize=False), variables=variables)
    np.testing.assert_allclose(raw.raw, attr.raw, rtol=1e-6)


def test_score_cam_is_the_hand_computed_map():
    """Every channel's upsampled, min-max normalised map masks the input; the softmax of the target's
    scores weights the channels."""
    import jax

    _, variables = tiny_pair()
    videos, targets = tiny_videos(1), np.array([2])
    a, _, _ = _activation_and_gradient(variables, videos, targets)
    attr = score_cam(tiny_apply, videos, targets, ScoreCamConfig(batch=4), variables=variables)
    up = np.asarray(jax.image.resize(a[0].transpose(3, 0, 1, 2), (a.shape[-1], 8, 16, 16), "linear"))
    lo, hi = up.min((1, 2, 3), keepdims=True), up.max((1, 2, 3), keepdims=True)
    masks = (up - lo) / (hi - lo + 1e-8)
    logits = np.asarray(tiny_apply(variables, (videos[0][None] * masks[..., None]).astype(np.float32)))
    scores = logits[:, 2]
    weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    expected = np.maximum((weights * a[0]).sum(-1), 0)
    np.testing.assert_allclose(attr.raw[0], expected, rtol=1e-4, atol=1e-6 * expected.max())
    one_call = score_cam(tiny_apply, videos, targets, ScoreCamConfig(batch=6), variables=variables)
    np.testing.assert_allclose(one_call.raw, attr.raw, rtol=1e-5)


def test_no_tap_is_an_argument_error_of_the_method():
    video = planted_video()

    def untapped(variables, x, mutable=None):
        logits = planted_apply(variables, x)
        return logits if mutable is None else (logits, {})

    for method in (saliency_tubes, layer_cam):
        with pytest.raises(ArgumentError, match="needs a tapped 3-D activation") as caught:
            method(untapped, video, [0], variables=planted_variables())
        assert caught.value.argument == "method"
    with pytest.raises(ArgumentError, match="clips per model call") as caught:
        ScoreCamConfig(batch=0)
    assert caught.value.argument == "batch"

