"""Optimisers of the seed masks: PyTorch-semantics SGD (the original's) and Adam, with the [0, 1] clamp."""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adam")
LR_DECAYS = ("constant", "cosine")
# A cosine decay ends at this fraction of the initial learning rate.
FINAL_LR_FRACTION = 0.05


class TorchSGDState(NamedTuple):
    """Momentum buffer (same tree as the parameters) and the number of steps taken."""

    momentum: optax.Params
    count: jax.Array


def torch_sgd(learning_rate: float | Callable[[jax.Array], jax.Array], momentum: float = 0.0,
              dampening: float = 0.0) -> optax.GradientTransformation:
    """``torch.optim.SGD(lr, momentum, dampening)`` (no weight decay, no Nesterov).

    The first step uses the raw gradient as the buffer (``v = g``); later steps
    ``v <- momentum * v + (1 - dampening) * g``. The update is ``-lr * v``, with ``lr`` a number or
    a function of the step count. (optax.sgd's trace starts from zero and has no dampening, so it
    differs on every step.)
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
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        updates = jax.tree_util.tree_map(lambda v: -lr * v, buf)
        return updates, TorchSGDState(buf, state.count + 1)

    return optax.GradientTransformation(init, update)


def make_optimizer(name: str, learning_rate: float, *, momentum: float, dampening: float, lr_decay: str,
                   num_iter: int) -> optax.GradientTransformation:
    """The optimiser of an extremal run.

    Args:
      name: ``"sgd"`` (:func:`torch_sgd` with ``momentum`` and ``dampening``) or ``"adam"`` (optax's,
        default betas).
      learning_rate: the initial learning rate.
      lr_decay: ``"constant"`` or ``"cosine"`` (down to ``FINAL_LR_FRACTION`` of it at ``num_iter``).
      num_iter: the run's length.
    """
    lr = (learning_rate if lr_decay == "constant"
          else optax.cosine_decay_schedule(learning_rate, num_iter, alpha=FINAL_LR_FRACTION))
    if name == "sgd":
        return torch_sgd(lr, momentum, dampening)
    return optax.adam(lr)


def clamped_step(optimizer: optax.GradientTransformation, params, grads, state):
    """One optimiser step followed by clamping the parameters to [0, 1]; returns ``(params, state)``."""
    updates, state = optimizer.update(grads, state, params)
    params = jax.tree_util.tree_map(lambda p: jnp.clip(p, 0.0, 1.0), optax.apply_updates(params, updates))
    return params, state
