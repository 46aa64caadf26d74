"""Starting seeds for extremal perturbation from a map that costs one forward and backward pass.

The seeds of a run start at 1 on the cells where the map is largest and at 0 elsewhere, so that the
optimisation begins near a mask of the requested area on the evidence the gradient points at,
instead of at an all-ones mask that must first shrink (the original's start).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from vjx.attribution.perturbation import losses
from vjx.attribution.perturbation.mask import MaskGeometry


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def gradient_map(apply_fn, variables, videos: jax.Array, targets: jax.Array) -> jax.Array:
    """``|d log p_target / d video|`` summed over channels: ``B x T x H x W x C -> B x T x H x W``."""
    def log_p(x):
        return losses.log_prob(apply_fn(variables, x), targets)[0].sum()

    return jnp.abs(jax.grad(log_p)(videos)).sum(axis=-1)


def cell_means(saliency: jax.Array, geometry: MaskGeometry) -> jax.Array:
    """The map averaged around each seed point: ``B x T x H x W -> B x T x h x w``.

    Seed ``(i, j)`` sits at pixel ``(step i, step j)`` of the frame; it gets the mean of the
    ``step x step`` pixels centred there (the frame's edge repeated where the cell runs out).
    """
    s = geometry.step
    h, w = geometry.seed_shape
    before = s // 2
    padded = jnp.pad(saliency, [(0, 0), (0, 0), (before, s), (before, s)], mode="edge")[:, :, :h * s, :w * s]
    return padded.reshape(*saliency.shape[:2], h, s, w, s).mean(axis=(3, 5))


def seeds_from_map(saliency: jax.Array, areas: tuple[float, ...], geometry: MaskGeometry,
                   per_frame: bool) -> jax.Array:
    """Seeds ``A x B x T x h x w``: 1 on the top ``a`` of each video's cells (each frame's if ``per_frame``), else 0.

    Args:
      saliency: ``B x T x H x W``, larger where the evidence is.
      areas: ``A`` area ratios.
      per_frame: rank the cells of each frame on their own (2D-EP's per-frame area).
    """
    cells = cell_means(saliency, geometry)
    b, t, h, w = cells.shape
    flat = cells.reshape(b, t, h * w) if per_frame else cells.reshape(b, 1, t * h * w)
    n = flat.shape[-1]
    seeds = [losses.top_values(flat, jnp.int32(max(1, round(a * n)))) for a in areas]
    return jnp.stack(seeds).astype(jnp.float32).reshape(len(areas), b, t, h, w)
