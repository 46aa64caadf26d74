"""Pieces the video transformers share: multi-head attention whose maps can be read and
differentiated, the GELU of Hugging Face's ``"gelu"``, and the input check against the config.

Attention maps are reached without hooks, like Grad-CAM's activations (:func:`vjx.models.layers.tap`):
:func:`attention` sows every map ``B' x heads x N x N`` into the ``attention`` collection and passes it
through ``module.perturb`` in the ``attention_grads`` collection, so the gradient of a logit with
respect to a map is the gradient with respect to a zero entry there. Both are no-ops unless asked for.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from vjx.errors import VjxError

ATTENTION = "attention"              # collection of the sown attention maps
ATTENTION_GRADS = "attention_grads"  # collection whose zero entries give d logit / d map

gelu = functools.partial(nn.gelu, approximate=False)   # Hugging Face's "gelu" is the exact (erf) one


def attention(module: nn.Module, name: str, q: jax.Array, k: jax.Array, v: jax.Array, num_heads: int) -> jax.Array:
    """Scaled dot-product attention of ``B' x N x D`` queries, keys and values over ``num_heads`` heads.

    The probabilities ``B' x heads x N x N`` are tapped under ``name`` (see the module docstring).
    Returns the context ``B' x N x D`` (heads concatenated in order, as torch's reshape does).
    """
    b, n, d = q.shape
    split = lambda x: x.reshape(b, n, num_heads, d // num_heads).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    probs = jax.nn.softmax(jnp.einsum("bhqc,bhkc->bhqk", q, k) * (d // num_heads) ** -0.5, axis=-1)
    if not module.is_initializing():          # init creates neither collection: variables stay params only
        probs = module.perturb(name, probs, collection=ATTENTION_GRADS)
        module.sow(ATTENTION, name, probs)
    return jnp.einsum("bhqk,bhkc->bhqc", probs, v).transpose(0, 2, 1, 3).reshape(b, n, d)


def check_clip(x: jax.Array, num_frames: int, image_size: int, model: str) -> None:
    """A VjxError unless ``x`` is ``B x num_frames x image_size x image_size x 3``."""
    if x.ndim != 5 or x.shape[1:] != (num_frames, image_size, image_size, 3):
        raise VjxError(f"{model} was built for clips of {num_frames} frames of {image_size}x{image_size} "
                       f"(its checkpoint's num_frames and image_size), got B x T x H x W x C = {tuple(x.shape)}; "
                       "sample and crop clips with model.spec.prepare")
