"""A prediction explained level by level, and the prototype activation map as a vjx attribution method.

    levels = explain(model, x[None], top_k=3)      # one LevelExplanation per hierarchy level
    levels[1].name, levels[1].similarities, levels[1].maps.shape   # 'Self-grooming', (3,), (3, T, H, W)

At each level the clip's predicted class is the one whose embedding is nearest; its ``top_k``
prototypes, ranked by similarity to the clip, are what the clip resembles, each with the map of where
(its similarity at every patch, upsampled to ``T x H x W``) and the training clip and cell it was pushed
to.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vjx.attribution.backprop import Attribution
from vjx.errors import ArgumentError, VjxError
from vjx.prototypes.head import similarity
from vjx.prototypes.network import PrototypeModel


@dataclasses.dataclass(frozen=True)
class LevelExplanation:
    """One level of one clip's explanation.

    Attributes:
      level: 0 for the leaves.
      predicted: the predicted class's index at this level; ``name`` its name; ``score`` its score
        (negative embedding distance).
      prototypes: int ``k``, indices of its top prototypes; ``similarities``: ``k`` (log similarity of
        each prototype's nearest patch of the clip).
      maps: float32 ``k x T x H x W``: each prototype's similarity at every patch, upsampled.
      sources: int ``k x 4``: training clip index and feature cell ``(t', h', w')`` of each prototype
        (``-1``: never pushed); ``source_names``: those clips' names (``""`` if none).
    """

    level: int
    predicted: int
    name: str
    score: float
    prototypes: np.ndarray
    similarities: np.ndarray
    maps: np.ndarray
    sources: np.ndarray
    source_names: tuple[str, ...]


def explain(model: PrototypeModel, video: np.ndarray, top_k: int = 3) -> list[LevelExplanation]:
    """Level-by-level explanation of one clip ``1 x T x H x W x 3`` (see the module docstring)."""
    net = model.network
    out = jax.jit(net.outputs)(model.variables, jnp.asarray(video))
    sims = np.asarray(similarity(out["min_distances"][0], net.head.epsilon))          # P
    levels = []
    for level, (scores, offset) in enumerate(zip(out["scores"], net.hierarchy.offsets)):
        predicted = int(np.argmax(scores[0]))
        own = np.flatnonzero(net.prototype_class == offset + predicted)
        chosen = own[np.argsort(-sims[own], kind="stable")[:top_k]]
        maps = np.asarray(net.activation_maps(out["distances"], jnp.asarray(chosen)[None], video.shape[1:4]))[0]
        sources = model.sources[chosen]
        levels.append(LevelExplanation(
            level=level, predicted=predicted, name=net.hierarchy.levels[level][predicted],
            score=float(scores[0, predicted]), prototypes=chosen, similarities=sims[chosen], maps=maps,
            sources=sources, source_names=tuple(model.clip_names[s] if s >= 0 else "" for s in sources[:, 0])))
    return levels


@dataclasses.dataclass(frozen=True)
class PrototypeActivationConfig:
    """Options of :func:`prototype_activation`: ``level`` of the hierarchy the targets index (0: leaves)."""

    level: int = 0


def prototype_activation(model, videos, targets, config: PrototypeActivationConfig = PrototypeActivationConfig(), *,
                         variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
                         progress=None) -> Attribution:
    """Where the target class's most similar prototype matches the clip, as an attribution map.

    Args:
      model: a :class:`PrototypeModel` (a plain vjx model has no prototypes: a VjxError).
      videos: float32 ``B x T x H x W x 3``.
      targets: int ``B``, classes of ``config.level``.
      config: the level.
      variables: weights overriding the model's.
      key: unused (deterministic).
      progress: optional ``progress(done, total)``, called once at the end.
    Returns:
      :class:`~vjx.attribution.backprop.Attribution`: ``maps`` ``B x T x H x W`` in [0, 1] (min-max per
      clip), ``raw`` the similarity at feature resolution ``B x T' x H' x W'``, the target's score and
      softmax probability at that level.
    """
    if not isinstance(model, PrototypeModel):
        raise VjxError("prototype_activation needs a prototype model (train one with "
                       "python -m experiments.train_prototypes); this model has no prototypes")
    net = model.network
    if not 0 <= config.level < net.hierarchy.num_levels:
        raise ArgumentError("level", f"{config.level} is not a level of the hierarchy (0..{net.hierarchy.num_levels - 1})")
    variables = model.variables if variables is None else variables
    videos, targets = jnp.asarray(videos), jnp.asarray(targets)
    maps, raw, logits, probabilities = _prototype_activation(net, variables, videos, targets, config.level)
    if progress is not None:
        progress(1, 1)
    return Attribution(maps=maps, raw=raw, target_logits=logits, probabilities=probabilities)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _prototype_activation(net, variables, videos, targets, level: int):
    out = net.outputs(variables, videos)
    classes = jnp.asarray(net.prototype_class)[None] == (targets + net.hierarchy.offsets[level])[:, None]   # B P
    best = jnp.where(classes, out["min_distances"], jnp.inf).argmin(-1)                                    # B
    raw = similarity(jnp.take_along_axis(out["distances"], best[:, None, None, None, None], -1)[..., 0],
                     net.head.epsilon)                                                                    # B T' H' W'
    maps = net.activation_maps(out["distances"], best[:, None], videos.shape[1:4])[:, 0]
    low = maps.min((1, 2, 3), keepdims=True)
    maps = (maps - low) / jnp.maximum(maps.max((1, 2, 3), keepdims=True) - low, 1e-12)
    scores = out["scores"][level]
    logits = jnp.take_along_axis(scores, targets[:, None], -1)[:, 0]
    probabilities = jnp.take_along_axis(jax.nn.softmax(scores), targets[:, None], -1)[:, 0]
    return maps, raw, logits, probabilities
