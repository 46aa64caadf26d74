"""Backprop attributions: gradient, gradient x input, integrated gradients, SmoothGrad.

Each method is ``fn(model, videos, targets, config, *, variables=None, key=None) -> Attribution``
with videos float32 ``B x T x H x W x C`` (already normalised, as the model takes them) and targets
int ``B``. The backward signal is one-hot on the target *logit* (pre-softmax), as in the original.
The compiled core of each method is cached per (model, config, shapes): a second call with the same
shapes and config does not recompile.

    attr = integrated_gradients(model, x, targets)      # model: vjx.Model
    attr.maps          # B x T x H x W in [0, 1]
    attr.diagnostics["completeness_gap"]                # B
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vjx.attribution import _stepping
from vjx.attribution._common import check_inputs, resolve_model
from vjx.attribution._stepping import Progress
from vjx.attribution.display import check_polarity, gray_display, percentile_normalize
from vjx.errors import VjxError

IG_RULES = ("left", "right", "midpoint", "trapezoid")
IG_BASELINES = ("black", "zeros")
SMOOTHGRAD_VARIANTS = ("mean", "square", "variance")


@dataclasses.dataclass(frozen=True)
class Attribution:
    """What an attribution method returns.

    Attributes:
      maps: ``B x T x H x W`` gray maps at input resolution, in ``[0, 1]`` unless the config asked
        for raw maps.
      raw: the signed attribution before display, ``B x T x H x W x C`` for the gradient methods;
        for Grad-CAM the un-normalised map at the layer's resolution, ``B x T' x H' x W'``.
      target_logits: ``B``, the target logit at the input.
      probabilities: ``B``, the target's softmax probability at the input.
      diagnostics: method-specific extras (see each method).
    """

    maps: jax.Array
    raw: jax.Array
    target_logits: jax.Array
    probabilities: jax.Array
    diagnostics: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class GradientConfig:
    """Options of :func:`gradient` and :func:`gradient_x_input`.

    Attributes:
      polarity: ``"both"`` (``|g|``, the default, as the original's command line), ``"positive"``
        (``max(g, 0)``) or ``"negative"`` (``max(-g, 0)``); docs/original.md ("Polarity") says how
        the original's README and its ``grad`` display differ.
      normalize: percentile display normalisation of the maps (False: raw gray maps).
    """

    polarity: str = "both"
    normalize: bool = True


@dataclasses.dataclass(frozen=True)
class IntegratedGradientsConfig:
    """Options of :func:`integrated_gradients`.

    Attributes:
      steps: number of path points (the original: 25).
      rule: Riemann rule for the path integral. ``"left"`` (alphas ``i/steps``, i = 0..steps-1) is
        the original's and the default; vjx adds ``"right"``, ``"midpoint"`` and ``"trapezoid"``
        (steps + 1 points), which converge faster (check ``completeness_gap``).
      baseline: ``"black"`` (a black frame in the model's own normalisation, per channel
        ``(0 - mean) / std``) or ``"zeros"`` (zeros in normalised space). The original hard-codes
        black in the Kinetics normalisation, (-1.8952, -1.7822, -1.7349), for every model: black
        for the models it fed Kinetics-normalised clips, but for TSM (ImageNet-normalised) the
        colour (13, 14, 4) / 255. vjx's ``"black"`` is black for every model.
      mean, std: per-channel normalisation for the black baseline; default the vjx.Model's spec.
      polarity: display polarity (see :class:`GradientConfig`).
      normalize: percentile display normalisation of the maps.
      batch_size: path points evaluated per forward/backward pass (memory vs speed); points are
        scanned in chunks of this size.
    """

    steps: int = 25
    rule: str = "left"
    baseline: str = "black"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    polarity: str = "both"
    normalize: bool = True
    batch_size: int = 5


@dataclasses.dataclass(frozen=True)
class SmoothGradConfig:
    """Options of :func:`smooth_grad`.

    Attributes:
      samples: noisy copies of each video (the original: 25).
      noise_level: noise std as a fraction of each video's ``max - min`` (the original: 0.15).
      variant: ``"mean"`` of the gradients, ``"square"`` (mean of squares; what the original's CLI
        runs, the default) or ``"variance"`` (unbiased, as torch.var).
      normalize: percentile display normalisation of the maps.
      batch_size: samples evaluated per forward/backward pass.
    """

    samples: int = 25
    noise_level: float = 0.15
    variant: str = "square"
    normalize: bool = True
    batch_size: int = 5


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise VjxError(f"config.{name} must be a positive integer, got {value!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise VjxError(f"config.{name} must be one of {', '.join(choices)}, got {value!r}")


def target_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``logits[b, targets[b]]``: ``B x K``, ``B`` -> ``B``."""
    return jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]


def target_summary(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(target logit, target softmax probability), each ``B``."""
    return target_logits(logits, targets), target_logits(jax.nn.softmax(logits), targets)


def _input_gradients(apply_fn, variables, x, targets) -> tuple[jax.Array, jax.Array]:
    """Gradient of each video's target logit w.r.t. that video: (grads like ``x``, logits ``B x K``)."""
    def total(video):
        logits = apply_fn(variables, video)
        return target_logits(logits, targets).sum(), logits

    (_, logits), grads = jax.value_and_grad(total, has_aux=True)(x)
    return grads, logits


def _stacked_gradients(apply_fn, variables, xs, targets) -> jax.Array:
    """Input gradients for ``N x B x ...`` inputs in one pass (N folded into the batch)."""
    n, b = xs.shape[:2]
    grads, _ = _input_gradients(apply_fn, variables, xs.reshape((n * b,) + xs.shape[2:]), jnp.tile(targets, n))
    return grads.reshape(xs.shape)


def _chunks(values: np.ndarray, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pads to a multiple of ``size`` (padding has weight 0) and reshapes to ``chunks x size``."""
    size = min(size, len(values))
    pad = -len(values) % size
    values = np.concatenate([values, np.zeros(pad, values.dtype)])
    weights = np.concatenate([weights, np.zeros(pad, weights.dtype)])
    return values.reshape(-1, size), weights.reshape(-1, size)


@functools.partial(jax.jit, static_argnames=("apply_fn", "multiply_input", "config"))
def _gradient_core(apply_fn, variables, x, targets, *, multiply_input: bool, config: GradientConfig):
    grads, logits = _input_gradients(apply_fn, variables, x, targets)
    raw = grads * x if multiply_input else grads
    return gray_display(raw, config.polarity, config.normalize), raw, *target_summary(logits, targets)


def _gradient_method(model, videos, targets, config, variables, progress, multiply_input) -> Attribution:
    check_polarity(config.polarity)
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    maps, raw, logit, prob = _gradient_core(apply_fn, variables, x, t, multiply_input=multiply_input,
                                            config=config)
    _stepping.finished(progress, maps)
    return Attribution(maps, raw, logit, prob)


def gradient(model, videos, targets, config: GradientConfig = GradientConfig(), *,
             variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
             progress: Progress | None = None) -> Attribution:
    """Vanilla gradient: d target logit / d input.

    Args:
      model: a ``vjx.Model``, or ``apply_fn(variables, video) -> logits`` with ``variables=``.
      videos: float32 ``B x T x H x W x C``, normalised as the model expects.
      targets: int ``B`` class indices.
      config: polarity and normalisation.
      variables: weights overriding the model's (required with an ``apply_fn``).
      key: unused (deterministic method; accepted so every method has one signature).
      progress: optional ``progress(done, total)``, called as the work advances (here once, at the end).
    Returns:
      :class:`Attribution`; ``raw`` is the gradient ``B x T x H x W x C``.
    """
    return _gradient_method(model, videos, targets, config, variables, progress, multiply_input=False)


def gradient_x_input(model, videos, targets, config: GradientConfig = GradientConfig(), *,
                     variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
                     progress: Progress | None = None) -> Attribution:
    """Gradient times the (normalised) input; arguments as :func:`gradient`.

    Returns:
      :class:`Attribution`; ``raw`` is ``gradient * videos``, ``B x T x H x W x C``.
    """
    return _gradient_method(model, videos, targets, config, variables, progress, multiply_input=True)


def ig_path(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Path points ``alphas`` and quadrature weights of the IG integral over [0, 1]."""
    i = np.arange(steps, dtype=np.float32)
    if rule == "trapezoid":
        weights = np.full(steps + 1, 1.0 / steps, np.float32)
        weights[[0, -1]] *= 0.5
        return np.arange(steps + 1, dtype=np.float32) / steps, weights
    offset = {"left": 0.0, "right": 1.0, "midpoint": 0.5}[rule]
    return (i + offset) / steps, np.full(steps, 1.0 / steps, np.float32)


@functools.partial(jax.jit, static_argnames=("apply_fn",), donate_argnames=("total",))
def _ig_accumulate(total, chunks, variables, x, baseline, targets, *, apply_fn):
    """Adds ``sum_i w_i grad f(baseline + alpha_i (x - baseline))`` over ``chunks`` (alphas, weights: ``n x size``)."""
    delta = x - baseline

    def add_chunk(total, chunk):
        """Adds one chunk of path points' weighted gradients to the running sum."""
        alpha, weight = chunk
        xs = baseline[None] + alpha[:, None, None, None, None, None] * delta[None]
        grads = _stacked_gradients(apply_fn, variables, xs, targets)
        return total + jnp.tensordot(weight, grads, axes=1), None

    return _stepping.scan(add_chunk, total, chunks)[0]


@functools.partial(jax.jit, static_argnames=("apply_fn", "config"))
def _ig_finish(mean_grad, variables, x, baseline, targets, *, apply_fn, config: IntegratedGradientsConfig):
    raw = mean_grad * (x - baseline)
    ends = apply_fn(variables, jnp.concatenate([x, baseline]))
    logits, baseline_logits = jnp.split(ends, 2)
    gap = raw.sum(axis=tuple(range(1, x.ndim))) - (target_logits(logits, targets)
                                                    - target_logits(baseline_logits, targets))
    diagnostics = {"completeness_gap": gap, "baseline_logits": target_logits(baseline_logits, targets)}
    return gray_display(raw, config.polarity, config.normalize), raw, *target_summary(logits, targets), diagnostics


def _baseline(model, config: IntegratedGradientsConfig, channels: int) -> jax.Array:
    """The baseline pixel ``C`` in normalised space."""
    if config.baseline == "zeros":
        return jnp.zeros(channels, jnp.float32)
    spec = getattr(model, "spec", None)
    mean = config.mean if config.mean is not None else getattr(spec, "mean", None)
    std = config.std if config.std is not None else getattr(spec, "std", None)
    if mean is None or std is None:
        raise VjxError("a black IG baseline needs the input normalisation: pass "
                       "IntegratedGradientsConfig(mean=..., std=...) or a vjx.Model, or baseline='zeros'")
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean.shape != (channels,) or std.shape != (channels,) or not (std > 0).all():
        raise VjxError(f"IntegratedGradientsConfig mean/std must be {channels} numbers (std > 0), "
                       f"got {config.mean} / {config.std}")
    return jnp.asarray((0.0 - mean) / std)


def integrated_gradients(model, videos, targets,
                         config: IntegratedGradientsConfig = IntegratedGradientsConfig(), *,
                         variables: Mapping[str, Any] | None = None,
                         key: jax.Array | None = None,
                         progress: Progress | None = None) -> Attribution:
    """Integrated gradients from a black-frame baseline (Sundararajan et al. 2017).

    ``raw = (x - baseline) * sum_i w_i grad f(baseline + alpha_i (x - baseline))`` with the
    original's 25-step left Riemann rule by default (see :class:`IntegratedGradientsConfig`).
    Path points are scanned in chunks of ``config.batch_size``, each chunk one batched pass.

    Args: as :func:`gradient`; ``progress`` counts chunks of path points.
    Returns:
      :class:`Attribution`; ``raw`` ``B x T x H x W x C``; diagnostics ``completeness_gap``
      (``B``: ``sum(raw) - (f(x) - f(baseline))``, 0 for an exact integral) and ``baseline_logits``.
    """
    check_polarity(config.polarity)
    _check_choice("rule", config.rule, IG_RULES)
    _check_choice("baseline", config.baseline, IG_BASELINES)
    _check_positive(steps=config.steps, batch_size=config.batch_size)
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    baseline = jnp.broadcast_to(_baseline(model, config, x.shape[-1]), x.shape)
    chunks = tuple(jnp.asarray(a) for a in _chunks(*ig_path(config.steps, config.rule), config.batch_size))
    mean_grad = _stepping.drive(
        lambda total, chunk: _ig_accumulate(total, chunk, variables, x, baseline, t, apply_fn=apply_fn),
        jnp.zeros_like(x), chunks, progress=progress)
    maps, raw, logit, prob, diagnostics = _ig_finish(mean_grad, variables, x, baseline, t, apply_fn=apply_fn,
                                                     config=config)
    return Attribution(maps, raw, logit, prob, diagnostics)


def _welford_merge(a, b):
    """Chan et al.'s merge of (count, mean, M2) statistics."""
    (na, ma, sa), (nb, mb, sb) = a, b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), sa + sb + delta ** 2 * (na * nb / n)


@functools.partial(jax.jit, static_argnames=("apply_fn", "noise_level"), donate_argnames=("stats",))
def _smooth_grad_accumulate(stats, chunks, variables, x, targets, key, *, apply_fn, noise_level: float):
    """Merges the gradients of the noisy copies ``chunks`` (sample ids, validity: ``n x size``) into
    the (count, mean, M2) statistics."""
    axes = tuple(range(1, x.ndim))
    sigma = noise_level * (x.max(axis=axes) - x.min(axis=axes))                   # B

    def merge_chunk(stats, chunk):
        """Merges one chunk of noisy samples' gradient statistics into the running ones."""
        idx, mask = chunk
        noise = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), x.shape))(idx)
        grads = _stacked_gradients(apply_fn, variables, x[None] + noise * sigma[None, :, None, None, None, None],
                                   targets)
        m = mask[:, None, None, None, None, None]
        count = mask.sum()
        mean = (grads * m).sum(0) / count
        return _welford_merge(stats, (count, mean, (((grads - mean) * m) ** 2).sum(0))), None

    return _stepping.scan(merge_chunk, stats, chunks)[0]


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _target_summary(variables, x, targets, *, apply_fn):
    return target_summary(apply_fn(variables, x), targets)


@functools.partial(jax.jit, static_argnames=("variant", "normalize"))
def _smooth_grad_display(count, mean, m2, *, variant: str, normalize: bool):
    if variant == "mean":
        raw = mean
    elif variant == "square":
        raw = m2 / count + mean ** 2
    else:
        raw = m2 / jnp.maximum(count - 1, 1)
    gray = jnp.abs(raw).sum(-1)
    return (percentile_normalize(gray) if normalize else gray), raw


def smooth_grad(model, videos, targets, config: SmoothGradConfig = SmoothGradConfig(), *,
                variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
                progress: Progress | None = None) -> Attribution:
    """SmoothGrad (Smilkov et al. 2017): gradient statistics over noisy copies of each video.

    Noise ``N(0, (noise_level * (max - min))^2)`` per video; sample ``i`` draws its noise from
    ``fold_in(key, i)``, so the result depends on ``key`` only (not on ``batch_size``). The map is
    the sum over channels of ``|statistic|``, then display-normalised. The gradient statistics are
    compiled per (samples, noise_level, batch_size); switching ``variant`` or ``normalize`` does not
    recompile them.

    Args: as :func:`gradient`; ``key`` (a ``jax.random`` key) is required; ``progress`` counts chunks
      of samples.
    Returns:
      :class:`Attribution`; ``raw`` is the statistic ``B x T x H x W x C``.
    """
    if key is None:
        raise VjxError("smooth_grad draws noise: pass key=jax.random.key(seed)")
    _check_choice("variant", config.variant, SMOOTHGRAD_VARIANTS)
    _check_positive(samples=config.samples, batch_size=config.batch_size)
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    chunks = tuple(jnp.asarray(a) for a in _chunks(np.arange(config.samples), np.ones(config.samples, np.float32),
                                                   config.batch_size))
    init = (jnp.zeros(()), jnp.zeros_like(x), jnp.zeros_like(x))
    stats = _stepping.drive(
        lambda stats, chunk: _smooth_grad_accumulate(stats, chunk, variables, x, t, key, apply_fn=apply_fn,
                                                     noise_level=config.noise_level),
        init, chunks, progress=progress)
    logit, prob = _target_summary(variables, x, t, apply_fn=apply_fn)
    maps, raw = _smooth_grad_display(*stats, variant=config.variant, normalize=config.normalize)
    return Attribution(maps, raw, logit, prob)
