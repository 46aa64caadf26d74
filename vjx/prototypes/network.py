"""A vjx backbone and a prototype head as one network, and that network as a ``vjx.Model``.

    net = PrototypeNetwork(backbone_spec, hierarchy, PrototypeConfig())
    variables = {"backbone": backbone_model.variables, "head": net.init_head(key, video)}
    out = net.outputs(variables, video)        # scores per level, distances, embedding
    logits = net.apply(variables, video)       # B x C0: the leaves' scores, like any vjx model

The backbone runs in inference mode (BatchNorm with its running statistics) whether or not it is
fine-tuned: with the few clips per batch a CPU allows, batch statistics would be noise. Its feature
map is the activation tapped as ``config.layer`` (default: the spec's Grad-CAM layer, ``layer4`` of
the ResNets, ``mixed_5c`` of I3D).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vjx.errors import ArgumentError
from vjx.model import Model
from vjx.models.registry import ModelSpec
from vjx.prototypes.head import DISTANCES, PrototypeHead, embedding_distances, similarity
from vjx.prototypes.hierarchy import Hierarchy


@dataclasses.dataclass(frozen=True)
class PrototypeConfig:
    """The head's shape.

    Attributes:
      prototypes_per_class: prototypes of every class of every level (HIPE: 10).
      prototype_dim: channels of the add-on layers and prototypes (HIPE: 128).
      embedding_dim: size of learned class embeddings (loaded embeddings bring their own).
      distance: ``"euclidean"`` (squared) or ``"poincare"`` between clip and class embeddings.
      curvature: of the Poincaré ball (HIPE: 0.1).
      layer: the backbone's tapped activation the head reads (None: the spec's Grad-CAM layer).
    """

    prototypes_per_class: int = 10
    prototype_dim: int = 128
    embedding_dim: int = 64
    distance: str = "euclidean"
    curvature: float = 0.1
    layer: str | None = None

    def __post_init__(self):
        if self.distance not in DISTANCES:
            raise ArgumentError("distance", f"{self.distance!r} is unknown; choose one of {', '.join(DISTANCES)}")
        if self.prototypes_per_class < 1 or self.prototype_dim < 1 or self.embedding_dim < 1:
            raise ArgumentError("prototypes_per_class", "and the head's sizes must be positive")


class PrototypeNetwork:
    """Backbone + :class:`~vjx.prototypes.head.PrototypeHead`, with ``init``/``apply`` like a Flax module.

    Variables are ``{"backbone": {"params", "batch_stats"?}, "head": {"params"}}``. Prototype ``j``
    belongs to class ``prototype_class[j]`` of the concatenated levels (``hierarchy.all_names()``).
    """

    def __init__(self, spec: ModelSpec, hierarchy: Hierarchy, config: PrototypeConfig, embedding_dim: int | None = None):
        self.spec, self.hierarchy, self.config = spec, hierarchy, config
        self.layer = config.layer or spec.gradcam_layer
        self.backbone = spec.make_module()
        num_classes = sum(hierarchy.sizes)
        self.prototype_class = np.repeat(np.arange(num_classes), config.prototypes_per_class).astype(np.int32)
        self.prototype_level = np.repeat(np.arange(hierarchy.num_levels), np.array(hierarchy.sizes)
                                         * config.prototypes_per_class).astype(np.int32)
        self.head = PrototypeHead(num_prototypes=len(self.prototype_class), num_classes=num_classes,
                                  embedding_dim=embedding_dim or config.embedding_dim, prototype_dim=config.prototype_dim)

    def features(self, backbone_variables: Mapping[str, Any], video: jax.Array) -> jax.Array:
        """The tapped feature map ``B x T' x H' x W' x C`` of float32 clips ``B x T x H x W x 3``."""
        _, state = self.backbone.apply(backbone_variables, video, mutable=["intermediates"])
        taps = _flatten(state["intermediates"])
        matches = [v for k, v in taps.items() if k == self.layer or k.split("/")[-1] == self.layer]
        if len(matches) != 1:
            raise ArgumentError("layer", f"{self.layer!r} is not one tapped activation of {self.spec.name}; "
                                f"choose one of {', '.join(sorted(taps))}")
        return matches[0]

    def init_head(self, key: jax.Array, video: jax.Array, backbone_variables: Mapping[str, Any]) -> dict:
        """Fresh head variables for clips shaped like ``video``."""
        features = jax.eval_shape(self.features, backbone_variables, video)
        return jax.jit(self.head.init)(key, jnp.zeros(features.shape, features.dtype))

    def init(self, key: jax.Array, video: jax.Array) -> dict:
        """Random variables for everything (the model-randomisation check uses this)."""
        k1, k2 = jax.random.split(key)
        backbone = self.backbone.init(k1, video)
        return {"backbone": backbone, "head": self.init_head(k2, video, backbone)}

    def head_outputs(self, head_variables: Mapping[str, Any], features: jax.Array) -> dict[str, Any]:
        """The head on a feature map; see :meth:`outputs`."""
        embedding, min_distances, distances = self.head.apply(head_variables, features)
        classes = head_variables["params"]["class_embeddings"]
        dist = embedding_distances(embedding, classes, self.config.distance, self.config.curvature)   # B x K
        scores = tuple(-dist[:, o:o + n] for o, n in zip(self.hierarchy.offsets, self.hierarchy.sizes))
        return {"scores": scores, "embedding": embedding, "min_distances": min_distances, "distances": distances}

    def outputs(self, variables: Mapping[str, Any], video: jax.Array) -> dict[str, Any]:
        """Everything for clips ``B x T x H x W x 3``.

        Returns:
          ``scores``: per level, ``B x C_l`` negative distances to the level's class embeddings;
          ``embedding``: ``B x E``; ``min_distances``: ``B x P``; ``distances``: ``B x T' x H' x W' x P``.
        """
        return self.head_outputs(variables["head"], self.features(variables["backbone"], video))

    def apply(self, variables: Mapping[str, Any], video: jax.Array) -> jax.Array:
        """Leaf-level scores ``B x C0`` (the logits a vjx method explains)."""
        return self.outputs(variables, video)["scores"][0]

    def activation_maps(self, distances: jax.Array, prototypes: jax.Array, size: tuple[int, int, int]) -> jax.Array:
        """Similarity of chosen prototypes at every patch, upsampled (trilinear) to the clip.

        Args:
          distances: ``B x T' x H' x W' x P``, from :meth:`outputs`.
          prototypes: int ``B x k``, the prototypes to map.
          size: the clip's ``(T, H, W)``.
        Returns:
          ``B x k x T x H x W``.
        """
        chosen = jnp.take_along_axis(distances, prototypes[:, None, None, None, :], axis=-1)
        maps = jnp.moveaxis(similarity(chosen, self.head.epsilon), -1, 1)              # B k T' H' W'
        return jax.image.resize(maps, maps.shape[:2] + tuple(size), "trilinear")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, jax.Array]:
    """Sown intermediates ``{name: (value,)}`` nested by module -> ``{"a/b": value}``."""
    out = {}
    for name, value in tree.items():
        if isinstance(value, tuple):
            out[prefix + name] = value[0]
        else:
            out.update(_flatten(value, f"{prefix}{name}/"))
    return out


class PrototypeModel(Model):
    """A trained prototype network as a :class:`vjx.Model`: ``model(video)`` -> leaf scores ``B x C0``.

    Attributes (besides Model's):
      network: the :class:`PrototypeNetwork`.
      sources: int ``P x 4``: the training clip (index into ``clip_names``) and feature cell
        ``(t', h', w')`` each prototype was pushed to; ``-1`` rows were never pushed.
      clip_names: names of the training clips.
    """

    def __init__(self, network: PrototypeNetwork, variables: Mapping[str, Any], sources: np.ndarray,
                 clip_names: tuple[str, ...]):
        spec = dataclasses.replace(network.spec, num_classes=network.hierarchy.sizes[0], label_set="prototypes")
        super().__init__(network, variables, spec)
        self.network, self.sources, self.clip_names = network, np.asarray(sources), tuple(clip_names)

    def apply_fn(self, variables: Mapping[str, Any], video: jax.Array, **kwargs) -> jax.Array:
        return self.network.apply(variables, video)
