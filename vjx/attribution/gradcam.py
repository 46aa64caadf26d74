"""Grad-CAM for video models through Flax's own mechanisms: no hooks, no model rewrites.

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
from vjx.attribution.display import min_max_normalize, to_input_size
from vjx.errors import VjxError


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
    available = ", ".join(sorted(names)) or "none (the model has no vjx.models.layers.tap)"
    raise VjxError(f"Grad-CAM layer {layer!r} is not a tapped activation of this model; "
                   f"set GradCamConfig(layer=...) to one of: {available}")


def _resolve_layer(model, config: GradCamConfig, taps) -> tuple[str, ...]:
    layer = config.layer or getattr(getattr(model, "spec", None), "gradcam_layer", None)
    if layer is None:
        if len(taps) == 1:
            return next(iter(taps))
        layer = "<unset>"
    return _select(taps, layer)


@functools.partial(jax.jit, static_argnames=("apply_fn", "path", "normalize"))
def _grad_cam_core(apply_fn, variables, x, targets, *, path: tuple[str, ...], normalize: bool):
    def run(perturbation):
        perturbations = traverse_util.unflatten_dict({**zeros, path: perturbation})
        logits, state = apply_fn({**variables, "perturbations": perturbations}, x, mutable=["intermediates"])
        (activation,) = traverse_util.flatten_dict(dict(state["intermediates"]))[path]
        return target_logits(logits, targets).sum(), (logits, activation)

    zeros = {p: jnp.zeros(s.shape, s.dtype) for p, s in _taps(apply_fn, variables, x).items()}
    d_activation, (logits, activation) = jax.grad(run, has_aux=True)(zeros[path])
    weights = d_activation.mean(axis=(2, 3), keepdims=True)                     # B T' 1 1 C
    raw = jax.nn.relu((weights * activation).sum(-1))                          # B T' H' W'
    maps = to_input_size(min_max_normalize(raw) if normalize else raw, x.shape[1:4])
    return maps, raw, *target_summary(logits, targets)


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
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    taps = _taps(apply_fn, variables, x)
    path = _resolve_layer(model, config, taps)
    maps, raw, logit, prob = _grad_cam_core(apply_fn, variables, x, t, path=path, normalize=config.normalize)
    _stepping.finished(progress, maps)
    return Attribution(maps, raw, logit, prob, {"layer": "/".join(path), "layer_shape": tuple(taps[path].shape)})
