"""Checks and shapes shared by the metric families: finite values, the optional area axis, ranks."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vjx.errors import VjxError


def check_finite(name: str, values: jax.Array) -> None:
    if not bool(jnp.isfinite(values).all()):
        raise VjxError(f"{name} contain NaN or infinite values")


def with_area_axis(name: str, maps, frames_shape: tuple[int, ...] | None = None) -> tuple[jax.Array, bool]:
    """``B x T x H x W`` or ``B x A x T x H x W`` -> (``B x A x T x H x W`` float32, whether A was given).

    ``frames_shape``, if given, is the ``(B, T, H, W)`` the maps must match.
    """
    maps = jnp.asarray(maps)
    shape = tuple(maps.shape)
    if maps.ndim not in (4, 5):
        raise VjxError(f"{name} must be B x T x H x W or B x A x T x H x W, got shape {shape}")
    has_areas = maps.ndim == 5
    maps = maps.astype(jnp.float32)
    if not has_areas:
        maps = maps[:, None]
    if frames_shape is not None and (maps.shape[0],) + maps.shape[2:] != tuple(frames_shape):
        raise VjxError(f"{name} of shape {shape} do not fit the videos: expected B x T x H x W = "
                       f"{' x '.join(map(str, frames_shape))}, with an optional area axis after B")
    check_finite(name, maps)
    return maps, has_areas


def descending_ranks(values: jax.Array) -> jax.Array:
    """Rank of each value along the last axis, 0 = largest; equal values rank by index (lower first)."""
    order = jnp.argsort(-values, axis=-1, stable=True)
    iota = jnp.broadcast_to(jnp.arange(values.shape[-1], dtype=jnp.int32), values.shape)
    return jnp.put_along_axis(jnp.zeros(values.shape, jnp.int32), order, iota, axis=-1, inplace=False)
