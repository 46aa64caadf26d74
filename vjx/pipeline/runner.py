"""One method on one model, ready for compiled batches: compute dtype and batch sharding.

    runner = Runner(model, methods.get("step"), config)
    probs = runner.predict(x)                                 # float32 B x T x S x S x 3 -> B x K
    with progress_bar("step") as update:
        explanations = runner.explain(x, targets, progress=update)   # one Explanation per video
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from vjx.model import Model
from vjx.pipeline.methods import Explanation, Method


class ModelCall:
    """``apply_fn`` in a compute dtype, with the batch sharded (hashable, so jit caches it).

    With a ``sharding`` (a NamedSharding over the batch axis) every model input inside the compiled
    attribution is constrained to it, so XLA splits the model's work over the devices by video.
    Logits come back as float32 whatever the compute dtype.
    """

    def __init__(self, apply_fn: Callable[..., Any], dtype: Any, sharding: jax.sharding.Sharding | None = None):
        self.apply_fn, self.dtype, self.sharding = apply_fn, jnp.dtype(dtype), sharding

    def __call__(self, variables, video, **kwargs):
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

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities: float32 ``B x T x S x S x 3`` -> float32 ``B x K``."""
        return np.asarray(self._predict(self.variables, jnp.asarray(x)))

    def explain(self, x: np.ndarray, targets: np.ndarray,
                progress: Callable[[int, int], None] | None = None) -> list[Explanation]:
        """Runs the method on a batch.

        Args:
          x: float32 ``B x T x S x S x 3`` model inputs.
          targets: int ``B`` classes to explain.
          progress: ``progress(done, total)``, called by the method as its work advances.
        Returns:
          one :class:`vjx.pipeline.methods.Explanation` per video.
        """
        result = self.method.function(self.call, x, targets, self.config, variables=self.variables,
                                      key=jax.random.key(self.seed), progress=progress)
        return self.method.explain(jax.block_until_ready(result), self.config)
