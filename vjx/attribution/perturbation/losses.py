"""Losses of extremal perturbation: the reward, the area loss and STEP's ellipsoid-kernel loss."""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vjx.models.layers import conv

CORE_SHAPE = (7, 11, 11)      # STEP's kernel: frames x rows x cols
CORE_FILL = 0.5236            # ~pi/6, the fraction of a box an inscribed ellipsoid fills


def log_prob(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(log p, log(1 - p))`` of the target class, ``B x classes, B -> B, B``, computed stably."""
    lse = jax.nn.logsumexp(logits, axis=-1)
    onehot = jax.nn.one_hot(targets, logits.shape[-1], dtype=bool)
    log_p = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0] - lse
    log_not = jax.nn.logsumexp(jnp.where(onehot, -jnp.inf, logits), axis=-1) - lse
    return log_p, log_not


def kept_values(size: int, area: float) -> int:
    """How many of ``size`` mask values the area loss pulls to 1 at ``area``.

    ``size - int(size * (1 - area))``: the original's reference profile has ``int(size * (1 - area))``
    zeros followed by ones.
    """
    return size - int(size * (1 - area))


def area_loss(values: jax.Array, kept: jax.Array) -> jax.Array:
    """Mean squared difference between sorted values and a ``0 ... 0 1 ... 1`` profile.

    Args:
      values: ``... x N`` mask values (one profile per leading index).
      kept: int scalar, how many ones the profile ends with (:func:`kept_values`).
    Returns:
      ``...`` losses.
    """
    n = values.shape[-1]
    ref = (jnp.arange(n) >= n - kept).astype(values.dtype)
    return jnp.mean((jnp.sort(values, axis=-1) - ref) ** 2, axis=-1)


@functools.lru_cache(maxsize=4)
def ellipsoid_kernel(shape: tuple[int, int, int] = CORE_SHAPE) -> np.ndarray:
    """float32 ``t x h x w`` indicator of the ellipsoid inscribed in the box (grid ``linspace(-1, 1)``)."""
    axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    k = (np.sqrt(sum(a ** 2 for a in axes)) <= 1).astype(np.float32)
    k.flags.writeable = False
    return k


def core_ones(shape: tuple[int, int, int] = CORE_SHAPE) -> int:
    """The original's nominal ellipsoid volume, ``int(t * h * w * 0.5236)``."""
    return int(shape[0] * shape[1] * shape[2] * CORE_FILL)


def kept_cores(area: float, frames: int, padded_shape: tuple[int, int],
               shape: tuple[int, int, int] = CORE_SHAPE) -> int:
    """How many ellipsoid responses STEP pulls to 1: ``ceil(a T Hp Wp / ones)``."""
    return math.ceil(area * frames * padded_shape[0] * padded_shape[1] / core_ones(shape))


def core_responses(padded: jax.Array, shape: tuple[int, int, int] = CORE_SHAPE) -> jax.Array:
    """Ellipsoid responses of a padded mask volume ``B x T x Hp x Wp -> B x N`` (divided by the kernel sum).

    Stride ``(1, h, w)``, no padding.
    """
    kernel = ellipsoid_kernel(shape)
    # layers.conv: a stride-(1, 11, 11) convolution as space-to-depth + stride 1, whose gradient XLA
    # computes fast on CPU (the plain strided form's input gradient cost ~3 s per iteration at 112 px).
    out = conv(padded[..., None], jnp.asarray(kernel)[..., None, None], (1, shape[1], shape[2]), [(0, 0)] * 3)
    return out.reshape(padded.shape[0], -1) / float(kernel.sum())


def step_loss(padded: jax.Array, kept: jax.Array, key: jax.Array | None,
              shape: tuple[int, int, int] = CORE_SHAPE) -> jax.Array:
    """STEP's smoothness loss ``B x T x Hp x Wp -> B``.

    The responses sorted in descending order: the first ``kept`` (:func:`kept_cores`) are pulled to
    1, the rest to 0,
    each part by its mean squared error (an empty part adds 0; the original would give NaN).
    Ties are broken at random, as the original does by shuffling before the sort: the responses are
    permuted with ``key`` and then sorted stably (``key=None``: ties keep index order). The loss value
    does not depend on it, only which tied response the gradient reaches.
    """
    r = core_responses(padded, shape)
    n = r.shape[-1]
    if key is not None:
        r = r[:, jax.random.permutation(key, n)]
    r = -jnp.sort(-r, axis=-1, stable=True)
    top = jnp.arange(n) < kept
    k = kept.astype(r.dtype)
    high = jnp.sum(jnp.where(top, (r - 1) ** 2, 0), axis=-1) / jnp.maximum(k, 1)
    low = jnp.sum(jnp.where(top, 0, r ** 2), axis=-1) / jnp.maximum(n - k, 1)
    return high + low
