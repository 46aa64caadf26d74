"""Score-CAM (Wang et al. 2020) on 5-D activations: every channel of the tapped activation, upsampled
to the clip and min-max normalised, masks the input; the channels are weighted by the softmax over
channels of the target logit under their masks (pytorch-grad-cam's form).

    attr = score_cam(model, videos, targets, ScoreCamConfig(batch=16))
    attr.maps        # B x T x H x W in [0, 1]

One forward pass per channel and video (C of them: 1024 for I3D's ``mixed_5c``), ``batch`` masked
clips per compiled call.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import traverse_util

from vjx.attribution import _batched, gradcam
from vjx.attribution._common import check_inputs, resolve_model
from vjx.attribution._stepping import Progress
from vjx.attribution.backprop import Attribution, target_summary
from vjx.attribution.display import min_max_normalize

MASK_EPS = 1e-8          # pytorch-grad-cam's guard in the per-channel min-max normalisation


@dataclasses.dataclass(frozen=True)
class ScoreCamConfig:
    """Options of :func:`score_cam`.

    Attributes:
      layer: tap name, as :class:`vjx.attribution.GradCamConfig` (default: the spec's ``gradcam_layer``).
      normalize: min-max normalise each video's map.
      batch: masked clips per model call (memory bound).
    """

    layer: str | None = None
    normalize: bool = True
    batch: int = 16

    def __post_init__(self):
        _batched.check_batch(self.batch)


@functools.partial(jax.jit, static_argnames=("apply_fn", "path"))
def _activation(apply_fn, variables, x, *, path):
    logits, state = apply_fn(variables, x, mutable=["intermediates"])
    (activation,) = traverse_util.flatten_dict(dict(state["intermediates"]))[path]
    return logits, activation


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _masked_scores(apply_fn, variables, x, activation, targets, chunk):
    """Target logits of ``x[video] * mask(channel)`` for a chunk of (video, channel) pairs."""
    videos, channels = chunk
    maps = activation[videos, ..., channels]                                     # n x T' x H' x W'
    masks = jax.image.resize(maps, (maps.shape[0], *x.shape[1:4]), method="linear")
    lo = masks.min(axis=(1, 2, 3), keepdims=True)
    hi = masks.max(axis=(1, 2, 3), keepdims=True)
    masks = (masks - lo) / (hi - lo + MASK_EPS)
    logits = apply_fn(variables, x[videos] * masks[..., None])
    return jnp.take_along_axis(logits, targets[videos][:, None], axis=1)[:, 0]


def score_cam(model, videos, targets, config: ScoreCamConfig = ScoreCamConfig(), *,
              variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
              progress: Progress | None = None) -> Attribution:
    """Score-CAM: ``ReLU(sum_c softmax_c(s)_c A_c)``, ``s_c`` the target logit of the clip masked by channel c.

    Args:
      model, videos, targets, variables: as :func:`vjx.attribution.grad_cam`.
      config: layer, normalisation and clips per call.
      key: unused (deterministic method).
      progress: optional ``progress(done, total)`` over the ``B x C`` masked clips.
    Returns:
      :class:`Attribution`: ``maps`` ``B x T x H x W`` (linear in time, bilinear in space); ``raw``
      the ``B x T' x H' x W'`` map before normalisation; diagnostics ``layer``, ``layer_shape`` and
      ``channel_weights`` (``B x C``).
    """
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    taps = gradcam._taps(apply_fn, variables, x)
    path = gradcam._resolve_layer(model, config, taps)
    logits, activation = _activation(apply_fn, variables, x, path=path)
    b, c = activation.shape[0], activation.shape[-1]
    pairs = (jnp.repeat(jnp.arange(b), c), jnp.tile(jnp.arange(c), b))
    score = functools.partial(_masked_scores, apply_fn, variables, x, activation, t)
    scores = _batched.batched(score, pairs, batch=config.batch, progress=progress).reshape(b, c)
    weights = jax.nn.softmax(scores, axis=1)
    raw = jax.nn.relu((weights[:, None, None, None, :] * activation).sum(-1))
    cam = min_max_normalize(raw) if config.normalize else raw
    maps = gradcam.upsample(cam, x.shape[1:4], time="linear")
    return Attribution(maps, raw, *target_summary(logits, t),
                       {"layer": "/".join(path), "layer_shape": tuple(activation.shape), "channel_weights": weights})
