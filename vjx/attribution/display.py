"""Turning raw attributions into display maps: polarity, gray conversion, robust [0, 1] scaling.

The original toolkit normalises over the whole batch it was given; vjx normalises each video on its
own, so a map does not depend on which other videos share the batch (for one video they agree).
The lower clip point is 0; the original's IG and SmoothGrad displays use the map's minimum, which
is 0 or within rounding of it for these non-negative maps (docs/original.md, "Gradient methods").
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vjx.errors import VjxError

POLARITIES = ("both", "positive", "negative")


def check_polarity(polarity: str) -> None:
    """Raises a VjxError unless ``polarity`` is one of :data:`POLARITIES`."""
    if polarity not in POLARITIES:
        raise VjxError(f"polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")


def apply_polarity(x: jax.Array, polarity: str) -> jax.Array:
    """``both``: ``|x|``; ``positive``: ``max(x, 0)``; ``negative``: ``max(-x, 0)``."""
    check_polarity(polarity)
    if polarity == "both":
        return jnp.abs(x)
    if polarity == "positive":
        return jnp.maximum(x, 0.0)
    return jnp.maximum(-x, 0.0)


def percentile_normalize(maps: jax.Array, percentile: float = 99.9) -> jax.Array:
    """Clips each video's map to ``[0, q]`` (q = its ``percentile``-th percentile) and divides by q.

    Args:
      maps: ``B x ...`` non-negative maps.
      percentile: upper clip point in percent (the original: 99.9, linear interpolation as numpy).
    Returns:
      ``B x ...`` in ``[0, 1]``; all zeros for a video whose percentile is 0.
    """
    axes = tuple(range(1, maps.ndim))
    vmax = jnp.percentile(maps, percentile, axis=axes, keepdims=True)
    safe = jnp.where(vmax > 0, vmax, 1.0)
    return jnp.where(vmax > 0, jnp.clip(maps, 0.0, vmax) / safe, 0.0)


def min_max_normalize(maps: jax.Array) -> jax.Array:
    """Scales each video's map to ``[0, 1]`` by its own min and max (zeros where max == min)."""
    axes = tuple(range(1, maps.ndim))
    lo = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - lo
    return jnp.where(span > 0, (maps - lo) / jnp.where(span > 0, span, 1.0), 0.0)


def gray_display(attribution: jax.Array, polarity: str, normalize: bool = True) -> jax.Array:
    """The original's display of a gradient-like attribution.

    Args:
      attribution: ``B x T x H x W x C`` signed attribution.
      polarity: which sign to show (see :func:`apply_polarity`).
      normalize: apply :func:`percentile_normalize` (otherwise the gray map is returned as is).
    Returns:
      ``B x T x H x W``: polarity applied, channels averaged, optionally scaled to ``[0, 1]``.
    """
    gray = apply_polarity(attribution, polarity).mean(-1)
    return percentile_normalize(gray) if normalize else gray
