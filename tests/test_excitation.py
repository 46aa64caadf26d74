"""Excitation backprop, contrastive EB and EB-R against numpy references written from the rules
(vjx.attribution.excitation's docstring) on tiny networks with random weights; the same through a
real family's model path (R(2+1)D, random weights, a small clip) with its mass conserved; and the
models each method refuses."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vjx.attribution import (ContrastiveExcitationConfig, ExcitationConfig, ExcitationRnnConfig,
                             contrastive_excitation_backprop, excitation_backprop, excitation_backprop_rnn)
from vjx.errors import ArgumentError
from vjx.models import layers
from vjx.models.vgg16lstm import VGG16LSTM

EPS = 1e-20


# --- numpy: the layers and their rules ----------------------------------------------------------

def _windows(shape, kernel, strides, padding):
    """Output positions and the input slices (of the padded input) each reads."""
    out = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(shape, kernel, strides, padding)]
    for o in np.ndindex(*out):
        yield o, tuple(slice(i * s, i * s + k) for i, s, k in zip(o, strides, kernel))


def conv_np(x, w, strides, padding, bias=None):
    """One video ``T x H x W x C``, kernel ``kT x kH x kW x Cin x Cout``."""
    xp = np.pad(x, list(padding) + [(0, 0)])
    out = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(x.shape[:3], w.shape[:3], strides, padding)]
    y = np.zeros(out + [w.shape[-1]])
    for o, window in _windows(x.shape[:3], w.shape[:3], strides, padding):
        y[o] = np.einsum("thwc,thwcd->d", xp[window], w)
    return y if bias is None else y + bias


def conv_eb_np(x, w, strides, padding, p):
    """P at the input of a convolution: ``x * W+^T (P / (W+ x + eps))``."""
    wp = np.maximum(w, 0)
    q = p / (conv_np(x, wp, strides, padding) + EPS)
    g = np.zeros(np.pad(x, list(padding) + [(0, 0)]).shape)
    for o, window in _windows(x.shape[:3], w.shape[:3], strides, padding):
        g[window] += np.einsum("d,thwcd->thwc", q[o], wp)
    (t0, _), (h0, _), (w0, _) = padding
    return x * g[t0:t0 + x.shape[0], h0:h0 + x.shape[1], w0:w0 + x.shape[2]]


def pool_np(x, window):
    """Non-overlapping max pool of ``T x H x W x C``: (output, winner mask)."""
    t, h, w, c = x.shape
    kt, kh, kw = window
    blocks = x.reshape(t // kt, kt, h // kh, kh, w // kw, kw, c).transpose(0, 2, 4, 6, 1, 3, 5)
    flat = blocks.reshape(*blocks.shape[:4], -1)
    winner = np.zeros_like(flat)
    np.put_along_axis(winner, flat.argmax(-1)[..., None], 1.0, axis=-1)
    mask = winner.reshape(blocks.shape).transpose(0, 4, 1, 5, 2, 6, 3).reshape(x.shape)
    return flat.max(-1), mask


def unpool_np(p, mask, window):
    return np.repeat(np.repeat(np.repeat(p, window[0], 0), window[1], 1), window[2], 2) * mask


def dense_eb_np(x, w, p):
    wp = np.maximum(w, 0)
    return x * (wp @ (p / (x @ wp + EPS)))


# --- a tiny 3-D CNN: strided conv, max pool, residual block with BatchNorm, global pool, dense ---

class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(layers.Conv(4, (3, 3, 3), (1, 2, 2), padding=1, use_bias=True, name="conv1")(x))
        x = layers.max_pool(x, (1, 2, 2), (1, 2, 2), [(0, 0)] * 3)
        x = layers.tap(self, "block1", x)
        y = layers.Conv(4, (3, 3, 3), padding=1, name="conv2")(x)
        y = nn.BatchNorm(use_running_average=True, name="bn")(y)
        x = layers.tap(self, "block2", nn.relu(layers.Add()(y, x)))
        x = layers.AvgPool(axes=(1, 2, 3))(x)
        return nn.Dense(3, name="fc")(x)


@pytest.fixture(scope="module")
def tiny():
    video = np.random.default_rng(0).normal(0, 1, (2, 3, 8, 8, 3)).astype(np.float32)
    variables = Tiny().init(jax.random.key(0), video)
    rng = np.random.default_rng(1)
    randomise = lambda a: jnp.asarray(rng.normal(0, 0.7, a.shape), jnp.float32)   # noqa: E731
    variables = jax.tree_util.tree_map(randomise, variables)
    variables["batch_stats"]["bn"]["var"] = jnp.abs(variables["batch_stats"]["bn"]["var"]) + 0.5
    # every class has excitatory and inhibitory weights (each unit and its dual unit excite something)
    signs = jnp.where(jnp.arange(4) % 2 == 0, 1.0, -1.0)[:, None]
    variables["params"]["fc"]["kernel"] = jnp.abs(variables["params"]["fc"]["kernel"]) * signs
    return Tiny().apply, variables, video


def _tiny_np(variables, video, target, negate=False):
    """(P at block1, P at block2) of one video, from the rules in numpy."""
    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["params"])
    stats = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["batch_stats"])
    pad = [(1, 1)] * 3
    a1 = np.maximum(conv_np(video.astype(np.float64), params["conv1"]["kernel"], (1, 2, 2), pad,
                            params["conv1"]["bias"]), 0)
    b1, mask = pool_np(a1, (1, 2, 2))
    z2 = conv_np(b1, params["conv2"]["kernel"], (1, 1, 1), pad)
    y = (z2 - stats["bn"]["mean"]) / np.sqrt(stats["bn"]["var"] + 1e-5) * params["bn"]["scale"] + params["bn"]["bias"]
    s = y + b1
    b2 = np.maximum(s, 0)
    pooled = b2.mean(axis=(0, 1, 2))
    w = -params["fc"]["kernel"] if negate else params["fc"]["kernel"]
    p_pooled = dense_eb_np(pooled, w, np.eye(3)[target])
    p_b2 = b2 / b2[..., 0].size * (p_pooled / (pooled + EPS))

    def down(p):                                   # block2 -> block1
        p_s = p * (s > 0)
        p_y, p_short = np.where(s != 0, y / s, 0) * p_s, np.where(s != 0, b1 / s, 0) * p_s
        return p_short + conv_eb_np(b1, params["conv2"]["kernel"], (1, 1, 1), pad, p_y)

    return down, p_b2


def test_excitation_backprop_matches_numpy(tiny):
    apply_fn, variables, video = tiny
    targets = np.array([0, 2])
    for layer in ("block2", "block1"):
        attr = excitation_backprop(apply_fn, video, targets, ExcitationConfig(layer=layer, normalize=False),
                                   variables=variables)
        for b, target in enumerate(targets):
            down, p_b2 = _tiny_np(variables, video[b], target)
            expected = (p_b2 if layer == "block2" else down(p_b2)).sum(-1)
            np.testing.assert_allclose(attr.raw[b], expected, rtol=1e-5, atol=1e-7)
            # mass conserved through the dense layer, the pool, the residual block and the convolution
            np.testing.assert_allclose(float(attr.diagnostics["mass"][b]), 1.0, rtol=1e-5)
        assert attr.maps.shape == video.shape[:4]
    shown = excitation_backprop(apply_fn, video, targets, ExcitationConfig(layer="block1"), variables=variables)
    assert float(shown.maps.min()) == 0.0 and float(shown.maps.max()) == 1.0


def test_contrastive_excitation_backprop_matches_numpy(tiny):
    apply_fn, variables, video = tiny
    targets = np.array([1, 0])
    config = ContrastiveExcitationConfig(layer="block1", contrast_layer="block2", normalize=False)
    attr = contrastive_excitation_backprop(apply_fn, video, targets, config, variables=variables)
    assert attr.diagnostics["classifier"] == "fc"
    for b, target in enumerate(targets):
        down, positive = _tiny_np(variables, video[b], target)
        _, negative = _tiny_np(variables, video[b], target, negate=True)
        expected = np.maximum(down(positive - negative).sum(-1), 0)
        assert expected.max() > 0 and (expected == 0).any()          # the contrast removes something
        np.testing.assert_allclose(attr.raw[b], expected, rtol=1e-5, atol=1e-7)
    same = contrastive_excitation_backprop(apply_fn, video, targets, ContrastiveExcitationConfig(
        layer="block2", contrast_layer="block2", normalize=False), variables=variables)
    down, positive = _tiny_np(variables, video[0], targets[0])
    _, negative = _tiny_np(variables, video[0], targets[0], negate=True)
    np.testing.assert_allclose(same.raw[0], np.maximum((positive - negative).sum(-1), 0), rtol=1e-5, atol=1e-7)


# --- a real family: R(2+1)D with random weights on a small clip ------------------------------------

@pytest.fixture(scope="module")
def r2plus1d():
    import vjx
    return vjx.load_model("r2plus1d_18")


def test_eb_and_contrastive_eb_on_r2plus1d(r2plus1d):
    video = np.random.default_rng(2).normal(0, 1, (1, 4, 32, 32, 3)).astype(np.float32)
    for layer in ("layer4", "layer3"):
        attr = excitation_backprop(r2plus1d, video, [5], ExcitationConfig(layer=layer))
        assert attr.maps.shape == (1, 4, 32, 32) and 0 <= float(attr.maps.min()) <= float(attr.maps.max()) <= 1
        # every rule on the way (dense, global pool, convolutions, BatchNorm, residual sums) conserves
        np.testing.assert_allclose(float(attr.diagnostics["mass"][0]), 1.0, rtol=1e-4)
    contrast = contrastive_excitation_backprop(r2plus1d, video, [5])
    assert contrast.diagnostics["layer"] == "layer3" and contrast.diagnostics["contrast_layer"] == "layer4"
    assert contrast.diagnostics["classifier"] == "fc" and contrast.raw.shape == (1, 1, 4, 4)
    assert contrast.maps.shape == (1, 4, 32, 32) and float(contrast.raw.min()) >= 0


# --- EB-R on a tiny VGG16-LSTM -------------------------------------------------------------------

RNN = dict(stages=((3,), (4,)), fc_width=6, hidden=5)


@pytest.fixture(scope="module")
def tiny_rnn():
    module = VGG16LSTM(num_classes=3, **RNN)
    video = np.random.default_rng(3).normal(0, 1, (2, 3, 8, 8, 3)).astype(np.float32)
    variables = module.init(jax.random.key(0), video)
    rng = np.random.default_rng(4)
    variables = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.normal(0, 0.6, a.shape), jnp.float32), variables)
    return module.apply, variables, video


def _rnn_np(variables, video, target, through_time):
    """P at conv2 (the tap) of one video by the EB-R rules, in numpy; and fc7's total P."""
    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["params"])
    pad = [(0, 0), (1, 1), (1, 1)]
    k = lambda name: params[name]["kernel"][None]                 # noqa: E731  (a 2-D kernel as 1 x kH x kW)
    a1 = np.maximum(conv_np(video.astype(np.float64), k("conv1_1"), (1, 1, 1), pad, params["conv1_1"]["bias"]), 0)
    b1, _ = pool_np(a1, (1, 2, 2))
    a2 = np.maximum(conv_np(b1, k("conv2_1"), (1, 1, 1), pad, params["conv2_1"]["bias"]), 0)     # the tap
    b2, mask = pool_np(a2, (1, 2, 2))
    flat = b2.transpose(0, 3, 1, 2).reshape(b2.shape[0], -1)                               # C x H x W order
    f6 = np.maximum(flat @ params["fc6"]["kernel"] + params["fc6"]["bias"], 0)
    f7 = np.maximum(f6 @ params["fc7"]["kernel"] + params["fc7"]["bias"], 0)
    wx, bx = params["lstm1"]["fc_x"]["kernel"], params["lstm1"]["fc_x"]["bias"]
    wh, w8, b8 = params["lstm1"]["fc_h"]["kernel"], params["fc8_final"]["kernel"], params["fc8_final"]["bias"]
    n = wh.shape[0]
    sig = lambda v: 1 / (1 + np.exp(-v))                          # noqa: E731
    h, c, steps, probs = np.zeros(n), np.zeros(n), [], []
    for x in f7:
        if not through_time:
            h, c = np.zeros(n), np.zeros(n)
        gates = x @ wx + bx + h @ wh
        i, f, o, g = sig(gates[:n]), sig(gates[n:2 * n]), sig(gates[2 * n:3 * n]), gates[3 * n:]
        c_new = f * c + i * np.maximum(g, 0)
        h_new = o * np.maximum(c_new, 0)
        logits = h_new @ w8 + b8
        probs.append(np.exp(logits[target]) / np.exp(logits).sum())
        steps.append((x, h, c, i, f, g, c_new, h_new))
        h, c = h_new, c_new
    top = np.array(probs) / sum(probs)
    p_h_next, p_c_next, p_f7 = np.zeros(n), np.zeros(n), np.zeros_like(f7)
    wgx, wgh = np.maximum(wx[:, 3 * n:], 0), np.maximum(wh[:, 3 * n:], 0)
    for t in reversed(range(len(steps))):
        x, h_prev, c_prev, i, f, g, c_new, h_new = steps[t]
        p_h = dense_eb_np(h_new, w8[:, [target]], np.array([top[t]])) + p_h_next
        share = lambda part: np.divide(part, c_new, out=np.zeros(n), where=c_new != 0)   # noqa: E731
        p_g = share(i * np.maximum(g, 0)) * (p_h + p_c_next)
        p_c_next = share(f * c_prev) * (p_h + p_c_next)
        q = p_g / (x @ wgx + h_prev @ wgh + EPS)
        p_f7[t] = x * (wgx @ q)
        p_h_next = h_prev * (wgh @ q)
    p_f6 = np.stack([dense_eb_np(f6[t], params["fc7"]["kernel"], p_f7[t]) for t in range(len(f7))])
    p_flat = np.stack([dense_eb_np(flat[t], params["fc6"]["kernel"], p_f6[t]) for t in range(len(f7))])
    p_b2 = p_flat.reshape(b2.shape[0], b2.shape[3], *b2.shape[1:3]).transpose(0, 2, 3, 1)
    return unpool_np(p_b2, mask, (1, 2, 2)), p_f7.sum()


@pytest.mark.parametrize("through_time", [True, False])
def test_eb_r_matches_numpy(tiny_rnn, through_time):
    apply_fn, variables, video = tiny_rnn
    targets = np.array([2, 1])
    attr = excitation_backprop_rnn(apply_fn, video, targets,
                                   ExcitationRnnConfig(through_time=through_time, normalize=False),
                                   variables=variables)
    assert attr.diagnostics["layer"] == "conv2" and attr.maps.shape == (2, 3, 8, 8)
    for b, target in enumerate(targets):
        p, feature_mass = _rnn_np(variables, video[b], target, through_time)
        np.testing.assert_allclose(attr.raw[b], p.sum(-1), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(float(attr.diagnostics["feature_mass"][b]), feature_mass, rtol=1e-5)
        if through_time:                            # every EB-R rule conserves mass
            np.testing.assert_allclose(feature_mass, 1.0, rtol=1e-5)


# --- the models each method refuses --------------------------------------------------------------

def test_each_method_refuses_the_models_it_cannot_explain(tiny, tiny_rnn):
    from vjx import pipeline
    from vjx.pipeline import methods
    from vjx.models.registry import get_spec

    apply_fn, variables, video = tiny
    with pytest.raises(ArgumentError, match="explains the recurrent VGG16-LSTM") as caught:
        excitation_backprop_rnn(apply_fn, video, [0, 1], variables=variables)
    assert caught.value.argument == "method"
    assert methods.get("eb").name == "excitation_backprop"
    cases = {("excitation_backprop_rnn", "r3d"): "explains only the recurrent vgg16lstm, not r3d_18",
             ("eb", "vgg16lstm"): "explain the recurrent vgg16lstm with excitation_backprop_rnn",
             ("contrastive_excitation_backprop", "videomae"): "videomae_base is a video transformer"}
    for (method, model), message in cases.items():
        assert not methods.get(method).applies_to(get_spec(model))
        with pytest.raises(ArgumentError, match=message) as caught:
            pipeline.resolve(pipeline.Request(videos=("v",), model=model, method=method, random_weights=True,
                                              dataset="ucf101-24" if model == "vgg16lstm" else "kinetics"))
        assert caught.value.argument == "method"
    assert methods.get("excitation_backprop_rnn").applies_to(get_spec("vgg16lstm"))
    assert all(methods.get("eb").applies_to(get_spec(m)) for m in ("i3d", "r3d", "mc3", "r2plus1d", "tsm"))


def test_the_pipeline_runs_them_on_a_cnn(planted, planted_videos, tmp_path):
    """The registry entries through a run (the planted model: a CNN; its spec names no
    excitation_layer, so contrastive EB reads its map at the Grad-CAM layer, where the contrast is)."""
    from vjx import pipeline

    for method in ("eb", "contrastive_excitation_backprop"):
        out = tmp_path / method
        summary = pipeline.explain(pipeline.Request(videos=tuple(planted_videos[:1]), method=method, batch_size=1,
                                                    output_dir=str(out), progress=False), model=planted)
        maps = np.load(out / "abseiling-full.npz")["maps"]
        assert summary["config"]["layer"] == "features" and maps.shape == (1, 8, 32, 32)
        assert 0 <= maps.min() and maps.max() <= 1
