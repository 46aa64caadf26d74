"""Perturbation operators: a pyramid of blurred (or faded) copies of each frame, picked by a mask.

Built once per video before the optimisation loop; a mask value ``m`` selects level ``m * (L - 1)``
with linear interpolation between the two neighbouring levels (``m = 1`` keeps the frame).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

_SQRT2 = np.float32(math.sqrt(2))
_EPS = np.float32(1.1920929e-07)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """float32 1-D Gaussian of half-width ``ceil(4 sigma)``, normalised to sum 1 (TorchRay's imsmooth)."""
    sigma = np.float32(sigma)
    width = math.ceil(4 * float(sigma))
    z = np.arange(-width, width + 1, dtype=np.float32) / (_SQRT2 * sigma + _EPS)
    k = np.exp(-z * z)
    return (k / k.sum()).astype(np.float32)


@functools.lru_cache(maxsize=32)
def blur_matrix(size: int, sigma: float) -> np.ndarray:
    """float32 ``size x size`` matrix of a 1-D Gaussian blur with zero padding: ``y = B @ x``."""
    k = gaussian_kernel(sigma)
    width = len(k) // 2
    offset = np.arange(size)[None, :] - np.arange(size)[:, None]                      # j - i
    inside = np.abs(offset) <= width
    b = np.where(inside, k[np.clip(offset + width, 0, len(k) - 1)], 0).astype(np.float32)
    b.flags.writeable = False
    return b


def level_scales(num_levels: int) -> np.ndarray:
    """``linspace(0, 1, L)`` in float32: level ``l`` keeps a fraction ``s_l`` of the frame."""
    return np.linspace(0, 1, num_levels, dtype=np.float32)


def blur_sigmas(num_levels: int, max_blur: float) -> list[float]:
    """Blur sigma of each level, ``(1 - s) * max_blur``: ``max_blur`` ... 0."""
    return [float(np.float32(1 - s) * np.float32(max_blur)) for s in level_scales(num_levels)]


def build_pyramid(videos: jax.Array, num_levels: int = 8, max_blur: float = 20.0,
                  kind: str = "blur") -> jax.Array:
    """Perturbed copies of every frame.

    Args:
      videos: float32 ``B x T x H x W x C`` (normalised pixels; the zero padding is in that space).
      num_levels: L.
      max_blur: Gaussian sigma of level 0 (blur only).
      kind: ``"blur"`` (separable Gaussian, zero padding) or ``"fade"`` (frame times ``s_l``).
    Returns:
      float32 ``B x T x L x H x W x C``; level ``L - 1`` is the frame itself.
    """
    if kind == "fade":
        scales = jnp.asarray(level_scales(num_levels))
        return videos[:, :, None] * scales[:, None, None, None]
    h, w = videos.shape[2:4]
    levels = []
    for sigma in blur_sigmas(num_levels, max_blur):
        if sigma == 0:
            levels.append(videos)
            continue
        bh, bw = jnp.asarray(blur_matrix(h, sigma)), jnp.asarray(blur_matrix(w, sigma))
        y = jnp.einsum("ij,btjwc->btiwc", bh, videos, precision="highest")
        levels.append(jnp.einsum("kw,btiwc->btikc", bw, y, precision="highest"))
    return jnp.stack(levels, axis=2)


def _levels(pyramid: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``frac`` (``B x T x H x W x 1``) and the levels ``y0, y1`` (``B x T x H x W x C``) around ``mask * (L - 1)``."""
    num_levels = pyramid.shape[2]
    level = mask * (num_levels - 1)
    k = jnp.floor(level)
    frac = (level - k)[..., None]
    k = k.astype(jnp.int32)[:, :, None, ..., None]
    y0 = jnp.take_along_axis(pyramid, k, axis=2)[:, :, 0]
    y1 = jnp.take_along_axis(pyramid, jnp.minimum(k + 1, num_levels - 1), axis=2)[:, :, 0]
    return frac, y0, y1


@jax.custom_vjp
def apply_mask(pyramid: jax.Array, mask: jax.Array) -> jax.Array:
    """Picks level ``mask * (L - 1)`` per pixel, interpolating linearly between neighbours.

    The gradient reaches the mask only (the pyramid is a constant of the optimisation): ``(L - 1)``
    times the cotangent's product with ``y1 - y0`` summed over channels, written as a sum of
    channel slices (a reduction over the minor channel axis runs element by element on CPU: at 224 px
    this gradient took 40 ms in the whole iteration, 6 ms so).

    Args:
      pyramid: ``B x T x L x H x W x C`` from :func:`build_pyramid`.
      mask: ``B x T x H x W`` in [0, 1].
    Returns:
      ``B x T x H x W x C``.
    """
    return _apply_mask_forward(pyramid, mask)[0]


def _apply_mask_forward(pyramid, mask):
    frac, y0, y1 = _levels(pyramid, mask)
    return (1 - frac) * y0 + frac * y1, (y1 - y0, jnp.float32(pyramid.shape[2] - 1))


def _apply_mask_backward(residuals, g):
    step, scale = residuals
    product = g * step
    return None, scale * sum(product[..., c] for c in range(product.shape[-1]))


apply_mask.defvjp(_apply_mask_forward, _apply_mask_backward)
