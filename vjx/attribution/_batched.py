"""Model calls over many perturbed clips, a bounded number per compiled call (Score-CAM, RISE, occlusion).

    values = batched(score, items, batch=16, progress=progress)

``score(chunk)`` is a jitted function of ``batch`` items (a pytree whose leaves have a leading axis
of ``batch``) returning ``batch`` values per leaf; :func:`batched` pads the last chunk by repeating
its first item, calls ``score`` once per chunk (so at most ``batch`` clips are in memory at a time),
reports ``progress(done, total)`` after each, and returns the values of the ``N`` real items.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from vjx.attribution._stepping import Progress
from vjx.errors import ArgumentError


def check_batch(batch: int) -> None:
    """An ArgumentError of ``batch`` unless it is a whole number >= 1."""
    if not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ArgumentError("batch", f"must be a whole number of clips per model call >= 1, got {batch!r}")


def batched(score: Callable[[Any], Any], items: Any, *, batch: int, progress: Progress | None = None) -> Any:
    """``score`` over ``items`` (leading axis N) in chunks of ``batch``; values stacked over N."""
    total = jax.tree_util.tree_leaves(items)[0].shape[0]
    outputs = []
    for start in range(0, total, batch):
        chunk = jax.tree_util.tree_map(lambda a: a[start:start + batch], items)
        size = jax.tree_util.tree_leaves(chunk)[0].shape[0]
        if size < batch:
            chunk = jax.tree_util.tree_map(
                lambda a: jnp.concatenate([a, jnp.repeat(a[:1], batch - size, axis=0)]), chunk)
        values = score(chunk)
        outputs.append(jax.tree_util.tree_map(lambda v: v[:size], values))
        if progress is not None:
            jax.block_until_ready(values)
            progress(min(start + batch, total), total)
    return jax.tree_util.tree_map(lambda *vs: jnp.concatenate(vs), *outputs)
