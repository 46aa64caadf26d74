"""HIPE's training objective: cross-entropy per level, cluster and separation per level, L1.

    total, terms = prototype_loss(outputs, labels, network, last_layer_kernel, weights)

``labels`` are int ``B x L``: each clip's class at every level (``hierarchy.level_labels``).
Cluster (level l): each clip's smallest distance to a prototype of its own level-l class (pulls
prototypes onto the clip's patches). Separation (level l): its smallest distance to a prototype of
another class of the same level (pushed away by a negative weight). Both are capped at ``max_distance``
(HIPE and ProtoPNet: the prototype's size, ``D x 1 x 1 x 1``), so the separation cannot be won by
blowing the feature scale up. HIPE counts every other prototype
as "wrong", those of other levels too; vjx compares within the level, where "another class" is defined.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

# HIPE's weights for UCF-101's three levels (leaves first); deeper hierarchies repeat the last value.
HIPE_CLUSTER = (0.8, 0.5, 0.3)
HIPE_SEPARATION = (-0.08, -0.11, -0.13)


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the terms; ``cluster``/``separation`` per level, leaves first (shorter tuples repeat
    their last value). Defaults are HIPE's."""

    cross_entropy: float = 1.0
    cluster: tuple[float, ...] = HIPE_CLUSTER
    separation: tuple[float, ...] = HIPE_SEPARATION
    l1: float = 1e-4

    def per_level(self, values: tuple[float, ...], num_levels: int) -> tuple[float, ...]:
        return tuple(values[min(level, len(values) - 1)] for level in range(num_levels))


def _capped_min(values: jax.Array, mask: jax.Array, cap: float) -> jax.Array:
    """Row-wise ``min(cap, min of values over mask)`` for ``values``, ``mask`` ``B x P``: ProtoPNet's
    ``max_dist - max((max_dist - d) * mask)``, which is what keeps the separation term bounded."""
    return jnp.minimum(jnp.where(mask, values, jnp.inf).min(-1), cap)


def prototype_loss(outputs: dict, labels: jax.Array, prototype_class: np.ndarray, prototype_level: np.ndarray,
                   offsets: tuple[int, ...], last_layer_kernel: jax.Array, weights: LossWeights,
                   max_distance: float) -> tuple[jax.Array, dict]:
    """The weighted sum and its terms (each averaged over the batch).

    Args:
      outputs: :meth:`PrototypeNetwork.head_outputs` of a batch (``scores`` per level, ``min_distances``).
      labels: int ``B x L``, the clips' classes at every level.
      prototype_class, prototype_level: int ``P``: each prototype's class (over all levels) and level.
      offsets: first class index of each level among all levels' classes.
      last_layer_kernel: ``P x E``.
      weights: the terms' weights.
      max_distance: the cap of the cluster and separation distances.
    """
    num_levels = len(offsets)
    cluster_w = weights.per_level(weights.cluster, num_levels)
    separation_w = weights.per_level(weights.separation, num_levels)
    min_d = outputs["min_distances"]                                                   # B P
    terms = {}
    total = weights.l1 * jnp.abs(last_layer_kernel).sum()
    terms["l1"] = jnp.abs(last_layer_kernel).sum()
    for level in range(num_levels):
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs["scores"][level], labels[:, level]).mean()
        own = jnp.asarray(prototype_class)[None] == (labels[:, level] + offsets[level])[:, None]       # B P
        same_level = jnp.asarray(prototype_level == level)[None]
        cluster = _capped_min(min_d, own, max_distance).mean()
        separation = _capped_min(min_d, same_level & ~own, max_distance).mean()
        terms |= {f"cross_entropy_{level}": ce, f"cluster_{level}": cluster, f"separation_{level}": separation}
        total = total + weights.cross_entropy * ce + cluster_w[level] * cluster + separation_w[level] * separation
    return total, terms


def accuracy(scores: tuple[jax.Array, ...], labels: jax.Array) -> jax.Array:
    """Fraction of clips whose top class is right, per level: ``L``."""
    return jnp.stack([(s.argmax(-1) == labels[:, level]).mean() for level, s in enumerate(scores)])
