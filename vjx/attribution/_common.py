"""Argument handling every attribution method shares: the model, the videos, the targets."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vjx.errors import VjxError

ApplyFn = Callable[..., jax.Array]


def resolve_model(model, variables: Mapping[str, Any] | None) -> tuple[ApplyFn, Mapping[str, Any]]:
    """Accepts a loaded ``vjx.Model`` (variables optional) or ``apply_fn(variables, video)`` + variables."""
    from vjx.model import Model

    if isinstance(model, Model):
        return model.apply_fn, model.variables if variables is None else variables
    if not callable(model):
        raise VjxError(f"model must be a vjx.Model or apply_fn(variables, video) -> logits, got {type(model).__name__}")
    if variables is None:
        raise VjxError("an apply_fn needs its variables: pass variables=...")
    return model, variables


def check_inputs(apply_fn: ApplyFn, variables, videos, targets) -> tuple[jax.Array, jax.Array]:
    """Validates a batch before any compiled work and returns it as JAX arrays.

    Args:
      videos: float ``B x T x H x W x C``; must be finite.
      targets: int ``B`` class indices, each in ``[0, num_classes)``.
    Returns:
      ``(videos float32, targets int32)``.
    """
    videos = np.asarray(videos)
    if videos.ndim != 5:
        raise VjxError(f"videos must be B x T x H x W x C, got shape {videos.shape}")
    if not np.isfinite(videos).all():
        raise VjxError("videos contain NaN or infinite values; check the preprocessing of the input")
    targets = np.asarray(targets)
    if targets.shape != (videos.shape[0],) or not np.issubdtype(targets.dtype, np.integer):
        raise VjxError(f"targets must be {videos.shape[0]} integer class indices (one per video), got "
                       f"{targets.dtype} of shape {targets.shape}")
    logits = jax.eval_shape(apply_fn, variables, jax.ShapeDtypeStruct(videos.shape, jnp.float32))
    num_classes = logits.shape[-1]
    bad = targets[(targets < 0) | (targets >= num_classes)]
    if bad.size:
        raise VjxError(f"target class {int(bad[0])} is out of range for a model with {num_classes} classes")
    return jnp.asarray(videos, jnp.float32), jnp.asarray(targets, jnp.int32)
