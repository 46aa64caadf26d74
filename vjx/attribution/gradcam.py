"""Class activation maps for video models (Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, Saliency
Tubes) through Flax's own mechanisms: no hooks, no model rewrites.

Each method is one rule of :data:`RULES` that turns the tapped activation A and its gradient dA
(both ``B x T' x H' x W' x C``) into a map; everything else is shared.

Every vjx model marks named activations with :func:`vjx.models.layers.tap`, which sows them into
the ``intermediates`` collection and passes them through ``module.perturb``. The activation A comes
back from ``apply(..., mutable=["intermediates"])``; its gradient dA is the gradient with respect
to a zero entry of the ``perturbations`` collection.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import traverse_util

from vjx.attribution import _stepping
from vjx.attribution._common import check_inputs, resolve_model
from vjx.attribution._stepping import Progress
from vjx.attribution.backprop import Attribution, target_logits, target_summary
from vjx.attribution.display import min_max_normalize
from vjx.errors import ArgumentError, VjxError


@dataclasses.dataclass(frozen=True)
class GradCamConfig:
    """Options of :func:`grad_cam`.

    Attributes:
      layer: tap name (``"mixed_5c"``, ``"layer4"``, or a ``/``-joined path for nested taps);
        default the vjx.Model spec's ``gradcam_layer``, or the only tap of a model with one.
      normalize: min-max normalise each video's map (the original's ``norm_vis=True``).
    """

    layer: str | None = None
    normalize: bool = True


def _taps(apply_fn, variables, x) -> dict[tuple[str, ...], jax.ShapeDtypeStruct]:
    """Path -> shape of every tapped activation (shapes only, nothing is computed)."""
    def run(v, video):
        return apply_fn(v, video, mutable=["perturbations"])

    _, state = jax.eval_shape(run, variables, x)
    return traverse_util.flatten_dict(dict(state.get("perturbations", {})))


def _select(taps, layer: str) -> tuple[str, ...]:
    names = {"/".join(path): path for path in taps}
    if layer in names:
        return names[layer]
    matches = [path for path in taps if path[-1] == layer]
    if len(matches) == 1:
        return matches[0]
    if not names:
        raise ArgumentError("method", "needs a tapped 3-D activation (vjx.models.layers.tap) and this model has "
                            "none; use a method that reads only the input (e.g. gradient, rise, occlusion)")
    available = ", ".join(sorted(names))
    raise VjxError(f"Grad-CAM layer {layer!r} is not a tapped activation of this model; "
                   f"set GradCamConfig(layer=...) to one of: {available}")


def _resolve_layer(model, config: GradCamConfig, taps) -> tuple[str, ...]:
    layer = config.layer or getattr(getattr(model, "spec", None), "gradcam_layer", None)
    if layer is None:
        if len(taps) == 1:
            return next(iter(taps))
        layer = "<unset>"
    return _select(taps, layer)


EPS = 1e-7       # pytorch-grad-cam's guard in Grad-CAM++ and XGrad-CAM


def _grad_cam_rule(a: jax.Array, g: jax.Array) -> jax.Array:
    """Grad-CAM: channel weights = the gradient's mean over H' and W' (per time step)."""
    return (g.mean(axis=(2, 3), keepdims=True) * a).sum(-1)


def _grad_cam_plus_plus_rule(a: jax.Array, g: jax.Array) -> jax.Array:
    """Grad-CAM++ (Chattopadhay et al. 2018), pytorch-grad-cam's closed form, per time step:
    ``alpha = g^2 / (2 g^2 + sum_hw(A) g^3)`` (0 where g = 0), weights ``sum_hw alpha relu(g)``."""
    g2, g3 = g ** 2, g ** 3
    alpha = g2 / (2 * g2 + a.sum(axis=(2, 3), keepdims=True) * g3 + EPS)
    alpha = jnp.where(g != 0, alpha, 0.0)
    return ((alpha * jax.nn.relu(g)).sum(axis=(2, 3), keepdims=True) * a).sum(-1)


def _xgrad_cam_rule(a: jax.Array, g: jax.Array) -> jax.Array:
    """XGrad-CAM (Fu et al. 2020): weights ``sum_hw(g A) / sum_hw(A)``, per time step."""
    weights = (g * a).sum(axis=(2, 3), keepdims=True) / (a.sum(axis=(2, 3), keepdims=True) + EPS)
    return (weights * a).sum(-1)


def _layer_cam_rule(a: jax.Array, g: jax.Array) -> jax.Array:
    """LayerCAM (Jiang et al. 2021): ``sum_c relu(g) A`` at every position (no pooling)."""
    return (jax.nn.relu(g) * a).sum(-1)


def _saliency_tubes_rule(a: jax.Array, g: jax.Array) -> jax.Array:
    """Saliency Tubes (Stergiou et al. 2019): ``sum_c w_c A`` with ``w`` the target's fully connected
    weights. Under a head that averages the activation and applies a linear layer (every vjx 3-D CNN),
    the gradient summed over T' H' W' is exactly those weights, so they are read from it."""
    return (g.sum(axis=(1, 2, 3), keepdims=True) * a).sum(-1)


# rule name -> (A, dA) both B x T' x H' x W' x C -> the map before ReLU, B x T' x H' x W'
RULES = {"grad_cam": _grad_cam_rule, "grad_cam_plus_plus": _grad_cam_plus_plus_rule, "xgrad_cam": _xgrad_cam_rule,
         "layer_cam": _layer_cam_rule, "saliency_tubes": _saliency_tubes_rule}


def upsample(cam: jax.Array, shape: tuple[int, int, int], time: str = "nearest") -> jax.Array:
    """``B x T' x H' x W'`` -> ``B x T x H x W``: in time by repeating (``"nearest"``, Grad-CAM's
    per-time-step maps) or ``"linear"``; bilinear in space."""
    t, h, w = shape
    if time == "nearest":
        cam = cam[:, (jnp.arange(t) * cam.shape[1]) // t]
    else:
        cam = jax.image.resize(cam, (cam.shape[0], t, *cam.shape[2:]), method="linear")
    return jax.image.resize(cam, (cam.shape[0], t, h, w), method="bilinear")


@functools.partial(jax.jit, static_argnames=("apply_fn", "path", "normalize", "rule", "time"))
def _grad_cam_core(apply_fn, variables, x, targets, *, path: tuple[str, ...], normalize: bool,
                   rule: str = "grad_cam", time: str = "nearest"):
    def run(perturbation):
        perturbations = traverse_util.unflatten_dict({**zeros, path: perturbation})
        logits, state = apply_fn({**variables, "perturbations": perturbations}, x, mutable=["intermediates"])
        (activation,) = traverse_util.flatten_dict(dict(state["intermediates"]))[path]
        return target_logits(logits, targets).sum(), (logits, activation)

    zeros = {p: jnp.zeros(s.shape, s.dtype) for p, s in _taps(apply_fn, variables, x).items()}
    d_activation, (logits, activation) = jax.grad(run, has_aux=True)(zeros[path])
    raw = jax.nn.relu(RULES[rule](activation, d_activation))                    # B T' H' W'
    cam = min_max_normalize(raw) if normalize else raw
    maps = upsample(cam, x.shape[1:4], time)
    return maps, raw, *target_summary(logits, targets)


def class_activation_map(rule: str, model, videos, targets, config: GradCamConfig, variables, progress,
                         time: str = "nearest") -> Attribution:
    """Runs the CAM ``rule`` of :data:`RULES` (the shared body of every method of this module)."""
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    taps = _taps(apply_fn, variables, x)
    path = _resolve_layer(model, config, taps)
    maps, raw, logit, prob = _grad_cam_core(apply_fn, variables, x, t, path=path, normalize=config.normalize,
                                            rule=rule, time=time)
    _stepping.finished(progress, maps)
    return Attribution(maps, raw, logit, prob, {"layer": "/".join(path), "layer_shape": tuple(taps[path].shape)})


def grad_cam(model, videos, targets, config: GradCamConfig = GradCamConfig(), *,
             variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
             progress: Progress | None = None) -> Attribution:
    """Grad-CAM (Selvaraju et al. 2017) with the original's per-time-step channel weights.

    Channel weights are the gradient of the target logit averaged over H' and W' only (one weight
    vector per time step); the map is ``ReLU(sum_c w * A)``, min-max normalised per video, stretched
    back to T frames by repeating (nearest) and bilinearly upsampled to the input size (the original
    upsamples at display time and normalises over the whole batch).

    Args:
      model: a ``vjx.Model``, or ``apply_fn(variables, video, **flax_kwargs) -> logits`` whose module
        taps activations with :func:`vjx.models.layers.tap`, with ``variables=``.
      videos: float32 ``B x T x H x W x C``.
      targets: int ``B``.
      config: layer and normalisation.
      variables: weights overriding the model's (required with an ``apply_fn``).
      key: unused (deterministic method).
      progress: optional ``progress(done, total)``, called once at the end.
    Returns:
      :class:`Attribution`: ``maps`` ``B x T x H x W``; ``raw`` the un-normalised ``B x T' x H' x W'``
      map; diagnostics ``layer`` (tap path) and ``layer_shape`` (``B x T' x H' x W' x C``).
    """
    return class_activation_map("grad_cam", model, videos, targets, config, variables, progress)


def grad_cam_plus_plus(model, videos, targets, config: GradCamConfig = GradCamConfig(), *,
                       variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
                       progress: Progress | None = None) -> Attribution:
    """Grad-CAM++ on 5-D activations, weights per time step. Args and result as :func:`grad_cam`."""
    return class_activation_map("grad_cam_plus_plus", model, videos, targets, config, variables, progress)


def xgrad_cam(model, videos, targets, config: GradCamConfig = GradCamConfig(), *,
              variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
              progress: Progress | None = None) -> Attribution:
    """XGrad-CAM on 5-D activations, weights per time step. Args and result as :func:`grad_cam`."""
    return class_activation_map("xgrad_cam", model, videos, targets, config, variables, progress)


def layer_cam(model, videos, targets, config: GradCamConfig = GradCamConfig(), *,
              variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
              progress: Progress | None = None) -> Attribution:
    """LayerCAM on 5-D activations (a weight per position). Args and result as :func:`grad_cam`."""
    return class_activation_map("layer_cam", model, videos, targets, config, variables, progress)


def saliency_tubes(model, videos, targets, config: GradCamConfig = GradCamConfig(), *,
                   variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
                   progress: Progress | None = None) -> Attribution:
    """Saliency Tubes: the tapped 3-D activation weighted by the target's fully connected weights,
    ReLU, min-max normalised, upsampled linearly in time and bilinearly in space. Args and result
    as :func:`grad_cam` (the layer: the spec's ``gradcam_layer``, the last 3-D convolution block)."""
    return class_activation_map("saliency_tubes", model, videos, targets, config, variables, progress, time="linear")
