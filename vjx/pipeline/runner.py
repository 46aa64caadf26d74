"""One method on one model, ready for compiled batches: compute dtype, progress ticks, sharding.

    runner = Runner(model, methods.get("step"), config)
    probs = runner.predict(x)                                 # float32 B x T x S x S x 3 -> B x K
    with progress_bar(runner.model_calls, "step") as tick:
        explanations = runner.explain(x, targets, listener=tick)   # one vjx.pipeline.methods.Explanation per video
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from vjx.model import Model
from vjx.pipeline.methods import Explanation, Method


class ModelCall:
    """``apply_fn`` in a compute dtype that reports each call (hashable, so jit caches it).

    The attribution loops call the model once per iteration; a ``jax.debug.callback`` without
    arguments runs once per call even under ``vmap`` over areas, which drives the progress bar.
    With a ``sharding`` (a NamedSharding over the batch axis) every model input inside the compiled
    loop is constrained to it, so XLA splits the model's work over the devices by video. Logits come
    back as float32 whatever the compute dtype.
    """

    def __init__(self, apply_fn: Callable[..., Any], dtype: Any, sharding: jax.sharding.Sharding | None = None):
        self.apply_fn, self.dtype, self.sharding = apply_fn, jnp.dtype(dtype), sharding
        self.listener: Callable[[], None] | None = None

    def _tick(self) -> None:
        if self.listener is not None:
            self.listener()

    def __call__(self, variables, video, **kwargs):
        jax.debug.callback(self._tick)
        if self.sharding is not None:
            video = jax.lax.with_sharding_constraint(video, self.sharding)
        out = self.apply_fn(variables, video.astype(self.dtype), **kwargs)
        if isinstance(out, tuple):
            return (out[0].astype(jnp.float32), *out[1:])
        return out.astype(jnp.float32)

    def __hash__(self) -> int:
        return hash((self.apply_fn, self.dtype.name, self.sharding))

    def __eq__(self, other) -> bool:
        return (isinstance(other, ModelCall) and self.apply_fn == other.apply_fn and self.dtype == other.dtype
                and self.sharding == other.sharding)


class Runner:
    """A model prepared for one method: its weights in the compute dtype and a :class:`ModelCall`.

    Args:
      model: the loaded model.
      method: an entry of :data:`vjx.pipeline.methods.METHODS`.
      config: the method's config.
      dtype: compute dtype name of the model (``"float32"``, ``"bfloat16"``); maps stay float32.
      seed: the PRNG seed of every batch (SmoothGrad noise, STEP tie-breaking).
      sharding: a NamedSharding of the batch axis, or None (one device).
    """

    def __init__(self, model: Model, method: Method, config: Any, dtype: str = "float32", seed: int = 0,
                 sharding: jax.sharding.Sharding | None = None):
        self.model, self.method, self.config, self.seed = model, method, config, seed
        self.call = ModelCall(model.apply_fn, dtype, sharding)
        cast = self.call.dtype
        self.variables = jax.tree_util.tree_map(
            lambda v: v.astype(cast) if jnp.issubdtype(v.dtype, jnp.floating) else v, model.variables)
        self._predict = jax.jit(lambda variables, x: jax.nn.softmax(self.call(variables, x), axis=-1))

    @property
    def model_calls(self) -> int:
        """Model calls (progress ticks) of one :meth:`explain`."""
        return self.method.model_calls(self.config)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities: float32 ``B x T x S x S x 3`` -> float32 ``B x K``."""
        return np.asarray(self._predict(self.variables, jnp.asarray(x)))

    def explain(self, x: np.ndarray, targets: np.ndarray,
                listener: Callable[[], None] | None = None) -> list[Explanation]:
        """Runs the method on a batch in one compiled call.

        Args:
          x: float32 ``B x T x S x S x 3`` model inputs.
          targets: int ``B`` classes to explain.
          listener: called once per model call (from the runtime's thread).
        Returns:
          one :class:`vjx.pipeline.methods.Explanation` per video.
        """
        self.call.listener = listener
        try:
            result = self.method.function(self.call, x, targets, self.config, variables=self.variables,
                                          key=jax.random.key(self.seed))
            result = jax.block_until_ready(result)
            jax.effects_barrier()
        finally:
            self.call.listener = None
        return self.method.explain(result, self.config)
