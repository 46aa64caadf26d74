"""SGD with PyTorch's momentum/dampening semantics as an optax transformation, and the [0, 1] clamp."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class TorchSGDState(NamedTuple):
    """Momentum buffer (same tree as the parameters) and the number of steps taken."""

    momentum: optax.Params
    count: jax.Array


def torch_sgd(learning_rate: float, momentum: float = 0.0, dampening: float = 0.0) -> optax.GradientTransformation:
    """``torch.optim.SGD(lr, momentum, dampening)`` (no weight decay, no Nesterov).

    The first step uses the raw gradient as the buffer (``v = g``); later steps
    ``v <- momentum * v + (1 - dampening) * g``. The update is ``-lr * v``. (optax.sgd's trace
    starts from zero and has no dampening, so it differs on every step.)
    """

    def init(params):
        return TorchSGDState(jax.tree_util.tree_map(jnp.zeros_like, params), jnp.zeros([], jnp.int32))

    def update(grads, state, params=None):
        del params
        first = state.count == 0
        if momentum == 0:        # torch keeps no buffer and ignores dampening
            buf = grads
        else:
            buf = jax.tree_util.tree_map(
                lambda v, g: jnp.where(first, g, momentum * v + (1 - dampening) * g), state.momentum, grads)
        updates = jax.tree_util.tree_map(lambda v: -learning_rate * v, buf)
        return updates, TorchSGDState(buf, state.count + 1)

    return optax.GradientTransformation(init, update)


def clamped_step(optimizer: optax.GradientTransformation, params, grads, state):
    """One optimiser step followed by clamping the parameters to [0, 1]; returns ``(params, state)``."""
    updates, state = optimizer.update(grads, state, params)
    params = jax.tree_util.tree_map(lambda p: jnp.clip(p, 0.0, 1.0), optax.apply_updates(params, updates))
    return params, state
