"""Backprop attributions: ground truth on the planted model, finite differences, parity with torch."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from planted import (NUM_CLASSES, SIZE, TARGET, T, block_indicator, planted_apply, planted_variables,
                     planted_video)
from vjx.attribution import (GradientConfig, IntegratedGradientsConfig, SmoothGradConfig, gradient,
                             gradient_x_input, integrated_gradients, smooth_grad)
from vjx.attribution import backprop
from vjx.attribution.display import apply_polarity, gray_display, min_max_normalize, percentile_normalize
from vjx.errors import VjxError
from vjx.models.layers import Conv, tap

MEAN, STD = (0.43216, 0.39467, 0.37645), (0.22803, 0.22145, 0.21699)


def off_kink_video(seed: int, batch: int = 1) -> np.ndarray:
    """Random video whose redness r - (g + b)/2 is at least 0.1 away from the ReLU kink everywhere."""
    rng = np.random.default_rng(seed)
    gb = rng.uniform(0.2, 0.6, (batch, T, SIZE, SIZE, 2))
    red = gb.mean(-1) + rng.choice([-1, 1], gb.shape[:-1]) * rng.uniform(0.1, 0.4, gb.shape[:-1])
    return np.concatenate([red[..., None], gb], -1).astype(np.float32)


def planted_gradient(video: np.ndarray, gain: float = 20.0) -> np.ndarray:
    """Hand-derived d logit_1 / d video of the planted model."""
    inside = block_indicator()[None, ..., None]
    red = video[..., :1] - video[..., 1:].mean(-1, keepdims=True) > 0
    return (gain / inside.sum()) * inside * red * np.array([1.0, -0.5, -0.5], np.float32)


class TinyNet(nn.Module):
    """conv 3x3x3 -> relu -> strided conv -> relu (tap "features") -> global mean -> dense(5)."""

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = nn.relu(Conv(4, (3, 3, 3), padding=1, use_bias=True, name="conv1")(x))
        x = nn.relu(Conv(6, (3, 3, 3), strides=(2, 2, 2), padding=1, use_bias=True, name="conv2")(x))
        x = tap(self, "features", x)
        return nn.Dense(5, name="fc")(x.mean((1, 2, 3)))


def tiny_apply(variables, video, **kwargs):
    return TinyNet().apply(variables, video, **kwargs)


def tiny_pair(seed: int = 0):
    """A random torch twin of TinyNet and the Flax variables converted from it."""
    torch = pytest.importorskip("torch")

    class Torch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                                torch.nn.Conv3d(4, 6, 3, stride=2, padding=1), torch.nn.ReLU())
            self.fc = torch.nn.Linear(6, 5)

        def forward(self, x):
            return self.fc(self.features(x).mean((2, 3, 4)))

    torch.manual_seed(seed)
    model = Torch().eval()
    with torch.no_grad():
        model.fc.weight.mul_(50.0)      # logits that move by O(1) with the input
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    conv = lambda i: {"kernel": sd[f"features.{i}.weight"].transpose(2, 3, 4, 1, 0), "bias": sd[f"features.{i}.bias"]}
    variables = {"params": {"conv1": conv(0), "conv2": conv(2),
                            "fc": {"kernel": sd["fc.weight"].T, "bias": sd["fc.bias"]}}}
    return model, jax.tree_util.tree_map(jnp.asarray, variables)


def tiny_videos(batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 8, 16, 16, 3)).astype(np.float32)


def to_torch(x):
    import torch
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 4, 1, 2, 3)))


def from_torch(x):
    return x.detach().numpy().transpose(0, 2, 3, 4, 1)


# ---------------------------------------------------------------- ground truth (planted model)

def test_gradient_is_the_hand_derived_one_and_zero_outside_the_block():
    video = off_kink_video(0)
    attr = gradient(planted_apply, video, [TARGET], GradientConfig(normalize=False), variables=planted_variables())
    np.testing.assert_allclose(attr.raw, planted_gradient(video), rtol=1e-5, atol=1e-9)
    outside = block_indicator()[None] == 0
    assert np.all(np.asarray(attr.raw)[outside] == 0)
    assert np.all(np.asarray(attr.maps)[outside] == 0) and np.asarray(attr.maps)[~outside].max() > 0


def test_gradient_matches_central_finite_differences():
    """Directional derivatives along random directions (the model is linear between its kinks)."""
    video, variables = off_kink_video(1), planted_variables()
    g = np.asarray(gradient(planted_apply, video, [TARGET], variables=variables).raw, np.float64)
    f = jax.jit(lambda x: planted_apply(variables, x)[0, TARGET])
    eps, rng = 1e-2, np.random.default_rng(0)
    for _ in range(3):
        v = rng.uniform(-1, 1, video.shape).astype(np.float32)
        fd = (float(f(video + eps * v)) - float(f(video - eps * v))) / (2 * eps)
        assert fd == pytest.approx(float((g * v).sum()), rel=2e-3)


def test_gradient_matches_finite_differences_in_float64_on_a_nonlinear_net():
    _, variables = tiny_pair()
    video = tiny_videos(1)[:, :4, :8, :8]
    with jax.enable_x64(True):
        v64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), variables)
        x64 = jnp.asarray(video, jnp.float64)
        grad = jax.grad(lambda x: tiny_apply(v64, x)[0, 2])(x64)
        direction = jnp.asarray(np.random.default_rng(1).normal(size=video.shape))
        eps = 1e-6
        fd = (tiny_apply(v64, x64 + eps * direction)[0, 2] - tiny_apply(v64, x64 - eps * direction)[0, 2]) / (2 * eps)
        expected = float((grad * direction).sum())
    assert float(fd) == pytest.approx(expected, rel=1e-6)
    ours = gradient(tiny_apply, video, [2], variables=variables).raw
    np.testing.assert_allclose(ours, np.asarray(grad, np.float32), rtol=1e-4, atol=1e-6)


def test_gradient_x_input_and_polarity():
    video, variables = off_kink_video(2), planted_variables()
    raw = planted_gradient(video) * video
    for polarity, expected in [("both", np.abs(raw)), ("positive", np.maximum(raw, 0)),
                               ("negative", np.maximum(-raw, 0))]:
        attr = gradient_x_input(planted_apply, video, [TARGET], GradientConfig(polarity, normalize=False),
                                variables=variables)
        np.testing.assert_allclose(attr.raw, raw, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(attr.maps, expected.mean(-1), rtol=1e-5, atol=1e-9)


def test_integrated_gradients_completeness_and_block():
    video, variables = planted_video(), planted_variables()   # logit 15 at x, -5 at the black baseline
    config = IntegratedGradientsConfig(steps=64, mean=MEAN, std=STD, normalize=False, batch_size=16)
    attr = integrated_gradients(planted_apply, video, [TARGET], config, variables=variables)
    change = float(attr.target_logits[0] - attr.diagnostics["baseline_logits"][0])
    assert change > 10
    assert abs(float(attr.diagnostics["completeness_gap"][0])) < 0.05 * change
    assert float(attr.raw.sum()) == pytest.approx(change + float(attr.diagnostics["completeness_gap"][0]), rel=1e-5)
    outside = block_indicator()[None] == 0
    assert np.all(np.asarray(attr.raw)[outside] == 0)


def test_integrated_gradients_rules_on_a_nonlinear_net():
    """Left rule (the original) is within 5% at 64 steps; vjx's trapezoid rule does better."""
    _, variables = tiny_pair()
    video = tiny_videos(2)
    gaps = {}
    for rule in ("left", "trapezoid"):
        config = IntegratedGradientsConfig(steps=64, rule=rule, baseline="zeros", batch_size=32)
        attr = integrated_gradients(tiny_apply, video, [4, 0], config, variables=variables)
        change = np.abs(np.asarray(attr.target_logits - attr.diagnostics["baseline_logits"]))
        assert change.min() > 1.0
        gaps[rule] = np.abs(np.asarray(attr.diagnostics["completeness_gap"])) / change
    assert gaps["left"].max() < 0.05
    assert gaps["trapezoid"].max() < 0.2 * gaps["left"].max()


def test_batched_equals_per_sample():
    """Same configs and batch shape as the parity test, so the batched calls hit the compile cache."""
    _, variables = tiny_pair()
    videos, targets = tiny_videos(2), np.array([1, 3])
    for method, cfg in [(gradient, GradientConfig("positive")),
                        (integrated_gradients, IntegratedGradientsConfig(mean=MEAN, std=STD))]:
        together = method(tiny_apply, videos, targets, cfg, variables=variables)
        for b in range(2):
            alone = method(tiny_apply, videos[b:b + 1], targets[b:b + 1], cfg, variables=variables)
            np.testing.assert_allclose(together.raw[b], alone.raw[0], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(together.maps[b], alone.maps[0], rtol=1e-4, atol=1e-5)


def test_ig_batch_size_does_not_change_the_result():
    _, variables = tiny_pair()
    videos = tiny_videos(1)
    a = integrated_gradients(tiny_apply, videos, [1], IntegratedGradientsConfig(steps=7, baseline="zeros",
                                                                                batch_size=7), variables=variables)
    b = integrated_gradients(tiny_apply, videos, [1], IntegratedGradientsConfig(steps=7, baseline="zeros",
                                                                                batch_size=3), variables=variables)
    np.testing.assert_allclose(a.raw, b.raw, rtol=1e-4, atol=1e-6)


def test_smooth_grad_same_key_same_map_and_variants():
    """On a gray video the planted gradient switches on and off with the noise: exact statistics."""
    video, variables = np.full((1, T, SIZE, SIZE, 3), 0.5, np.float32), planted_variables()
    video[0, 0, 0, :2] = [[0, 0, 0], [1, 1, 1]]              # outside the block: max - min = 1
    key = jax.random.key(3)
    run = lambda variant, batch_size=4, k=key: smooth_grad(
        planted_apply, video, [TARGET], SmoothGradConfig(samples=6, batch_size=batch_size, variant=variant,
                                                          normalize=False), variables=variables, key=k)
    a = run("variance")
    np.testing.assert_array_equal(a.raw, run("variance").raw)
    np.testing.assert_allclose(a.raw, run("variance", batch_size=6).raw, rtol=1e-5, atol=1e-9)
    assert not np.allclose(a.raw, run("variance", k=jax.random.key(4)).raw, atol=1e-6)

    noise = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), video.shape))(jnp.arange(6))
    grads = np.stack([planted_gradient(video + 0.15 * n) for n in np.asarray(noise)])
    expected = {"mean": grads.mean(0), "square": (grads ** 2).mean(0), "variance": grads.var(0, ddof=1)}
    for variant, value in expected.items():
        got = run(variant)
        np.testing.assert_allclose(got.raw, value, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(got.maps, np.abs(value).sum(-1), rtol=1e-4, atol=1e-7)
    outside = block_indicator()[None] == 0
    assert np.all(np.asarray(got.maps)[outside] == 0) and np.asarray(got.maps)[~outside].max() > 0


def test_second_call_does_not_recompile():
    video, variables = planted_video(), planted_variables()
    config = IntegratedGradientsConfig(steps=4, baseline="zeros")
    integrated_gradients(planted_apply, video, [TARGET], config, variables=variables)
    gradient(planted_apply, video, [TARGET], variables=variables)
    compiled = (backprop._ig_accumulate, backprop._ig_finish, backprop._gradient_core)
    sizes = [f._cache_size() for f in compiled]
    integrated_gradients(planted_apply, video + 0.1, [0], config, variables=planted_variables(5.0))
    gradient(planted_apply, video + 0.1, [0], variables=planted_variables(5.0))
    assert [f._cache_size() for f in compiled] == sizes


def test_randomised_model_gives_different_maps():
    _, variables = tiny_pair(0)
    _, random_variables = tiny_pair(1)
    video = tiny_videos(1)
    a = np.asarray(gradient(tiny_apply, video, [1], variables=variables).maps).ravel()
    b = np.asarray(gradient(tiny_apply, video, [1], variables=random_variables).maps).ravel()
    assert np.corrcoef(a, b)[0, 1] < 0.5


# ---------------------------------------------------------------- parity with the torch reference

def test_parity_with_torch_gradient_ig_and_display():
    torch = pytest.importorskip("torch")
    from vjx.torch_reference import backprop as ref

    model, variables = tiny_pair()
    videos, targets = tiny_videos(2), np.array([1, 3])
    labels = torch.from_numpy(targets)
    for multiply in (False, True):
        method = gradient_x_input if multiply else gradient
        ours = method(tiny_apply, videos, targets, GradientConfig("positive"), variables=variables)
        theirs = ref.gradient(model, to_torch(videos), labels, multiply_input=multiply)
        scale = np.abs(from_torch(theirs)).max()
        np.testing.assert_allclose(ours.raw, from_torch(theirs), atol=1e-5 * scale)
        np.testing.assert_allclose(ours.maps, ref.display(theirs, "positive"), atol=1e-4)

    config = IntegratedGradientsConfig(mean=MEAN, std=STD)
    ours = integrated_gradients(tiny_apply, videos, targets, config, variables=variables)
    theirs = ref.integrated_gradients(model, to_torch(videos), labels, [-m / s for m, s in zip(MEAN, STD)], steps=25)
    scale = np.abs(from_torch(theirs)).max()
    np.testing.assert_allclose(ours.raw, from_torch(theirs), atol=1e-5 * scale)
    np.testing.assert_allclose(ours.maps, ref.display(theirs, "both"), atol=1e-4)


# ---------------------------------------------------------------- display and errors

def test_display_functions():
    x = jnp.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    np.testing.assert_array_equal(apply_polarity(x, "both"), [2, 0.5, 0, 1, 3])
    np.testing.assert_array_equal(apply_polarity(x, "positive"), [0, 0, 0, 1, 3])
    np.testing.assert_array_equal(apply_polarity(x, "negative"), [2, 0.5, 0, 0, 0])

    rng = np.random.default_rng(0)
    maps = rng.exponential(size=(2, 4, 10, 10)).astype(np.float32)
    maps[1] = maps[0] * 100                                         # per-video scale must not matter
    got = np.asarray(percentile_normalize(jnp.asarray(maps)))
    for b in range(2):
        q = np.percentile(maps[b], 99.9)
        np.testing.assert_allclose(got[b], np.clip(maps[b], 0, q) / q, rtol=1e-5)
        assert (got[b] == 1).sum() == (maps[b] >= q).sum()
    np.testing.assert_allclose(got[0], got[1], rtol=1e-5)
    assert np.all(np.asarray(percentile_normalize(jnp.zeros((1, 3, 3)))) == 0)

    mm = np.asarray(min_max_normalize(jnp.asarray(maps)))
    assert mm.reshape(2, -1).min(1).tolist() == [0, 0] and mm.reshape(2, -1).max(1).tolist() == [1, 1]

    rgb = jnp.asarray(rng.normal(size=(1, 2, 3, 3, 3)), jnp.float32)
    np.testing.assert_allclose(gray_display(rgb, "both", normalize=False), np.abs(rgb).mean(-1), rtol=1e-6)


def test_errors():
    video, variables = planted_video(), planted_variables()
    with pytest.raises(VjxError, match="NaN"):
        gradient(planted_apply, np.full_like(video, np.nan), [TARGET], variables=variables)
    with pytest.raises(VjxError, match="out of range"):
        integrated_gradients(planted_apply, video, [NUM_CLASSES], variables=variables,
                             config=IntegratedGradientsConfig(baseline="zeros"))
    with pytest.raises(VjxError, match="polarity"):
        gradient(planted_apply, video, [TARGET], GradientConfig("absolute"), variables=variables)
    with pytest.raises(VjxError, match="mean=.*std="):
        integrated_gradients(planted_apply, video, [TARGET], variables=variables)
    with pytest.raises(VjxError, match="rule"):
        integrated_gradients(planted_apply, video, [TARGET], IntegratedGradientsConfig(rule="simpson"),
                             variables=variables)
    with pytest.raises(VjxError, match="key="):
        smooth_grad(planted_apply, video, [TARGET], variables=variables)
    with pytest.raises(VjxError, match="variant"):
        smooth_grad(planted_apply, video, [TARGET], SmoothGradConfig(variant="max"), variables=variables,
                    key=jax.random.key(0))
    with pytest.raises(VjxError, match="variables="):
        gradient(planted_apply, video, [TARGET])
