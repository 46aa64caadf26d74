"""The prototype head (HIPE / ProtoPNet): feature map -> prototype distances -> class-embedding scores.

    head = PrototypeHead(num_prototypes=P, num_classes=K, embedding_dim=E)
    embedding, min_distances, distances = head.apply(variables, features)   # B x T' x H' x W' x C in

Add-on 1x1x1 convolutions (C -> D -> D, leaky ReLU) turn the backbone's feature map into D-d patch
vectors; each of the ``P`` prototypes (a D-vector, one 1x1x1 patch) has its squared L2 distance to every
patch; the smallest per prototype (global min-pool) becomes a similarity ``log((d + 1) / (d + eps))``,
and a bias-free linear layer maps the ``P`` similarities into the ``E``-d space of the class
embeddings (``K x E``, the classes of every level; a parameter, trained or fixed to loaded values).
A clip's score for a class is the negative distance from its embedding to the class's.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

DISTANCES = ("euclidean", "poincare")


def similarity(distances: jax.Array, epsilon: float = 1e-4) -> jax.Array:
    """ProtoPNet's log activation of squared distances (any shape): large where the distance is small."""
    return jnp.log((distances + 1.0) / (distances + epsilon))


def embedding_distances(embedding: jax.Array, classes: jax.Array, kind: str, curvature: float = 0.1) -> jax.Array:
    """Distances ``B x K`` from clip embeddings ``B x E`` to class embeddings ``K x E``.

    ``"euclidean"``: squared L2 (HIPE's ``pair_wise_eud``). ``"poincare"``: geodesic distance in the
    Poincaré ball of curvature ``-curvature`` (HIPE's hyperbolic embeddings, c = 0.1); the clip
    embedding is first pulled inside the ball as HIPE does.
    """
    if kind == "euclidean":
        return ((embedding[:, None, :] - classes[None]) ** 2).sum(-1)
    max_norm = (1.0 - 1e-3) / jnp.sqrt(curvature)
    norm = jnp.linalg.norm(embedding, axis=-1, keepdims=True)
    embedding = jnp.where(norm > max_norm, embedding / jnp.maximum(norm, 1e-9) * max_norm, embedding)
    sq = ((embedding[:, None, :] - classes[None]) ** 2).sum(-1)
    x2 = 1.0 - curvature * (embedding ** 2).sum(-1)[:, None]
    y2 = 1.0 - curvature * (classes ** 2).sum(-1)[None]
    argument = 1.0 + 2.0 * curvature * sq / jnp.maximum(x2 * y2, 1e-9)
    return jnp.arccosh(jnp.maximum(argument, 1.0 + 1e-7)) / jnp.sqrt(curvature)


class PrototypeHead(nn.Module):
    """Prototype layer and class-embedding scorer on a backbone feature map.

    Attributes:
      num_prototypes: ``P`` (HIPE: 10 per class of every level).
      num_classes: ``K``, the classes of all levels together (rows of ``class_embeddings``).
      embedding_dim: ``E``, the class-embedding space.
      prototype_dim: ``D``, channels of the add-on layers and of each prototype (HIPE: 128).
      epsilon: of the log similarity.
    """

    num_prototypes: int
    num_classes: int
    embedding_dim: int
    prototype_dim: int = 128
    epsilon: float = 1e-4

    def setup(self):
        kaiming = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
        self.add_on_0 = nn.Conv(self.prototype_dim, (1, 1, 1), kernel_init=kaiming)
        self.add_on_1 = nn.Conv(self.prototype_dim, (1, 1, 1), kernel_init=kaiming)
        self.prototypes = self.param("prototypes", nn.initializers.uniform(1.0), (self.num_prototypes, self.prototype_dim))
        self.last_layer = nn.Dense(self.embedding_dim, use_bias=False,
                                   kernel_init=nn.initializers.variance_scaling(2.0, "fan_in", "normal"))
        self.class_embeddings = self.param("class_embeddings", nn.initializers.normal(0.1),
                                           (self.num_classes, self.embedding_dim))

    def patches(self, features: jax.Array) -> jax.Array:
        """Add-on layers: ``B x T' x H' x W' x C -> B x T' x H' x W' x D``."""
        return nn.leaky_relu(self.add_on_1(nn.leaky_relu(self.add_on_0(features))))

    def distances(self, patches: jax.Array) -> jax.Array:
        """Squared L2 distance of every patch to every prototype: ``... x D -> ... x P`` (>= 0)."""
        cross = jnp.einsum("...d,pd->...p", patches, self.prototypes)
        d = (patches ** 2).sum(-1, keepdims=True) - 2.0 * cross + (self.prototypes ** 2).sum(-1)
        return nn.relu(d)

    def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns the clip embeddings ``B x E``, each prototype's smallest distance ``B x P`` and all
        distances ``B x T' x H' x W' x P``."""
        distances = self.distances(self.patches(features))
        min_distances = distances.min(axis=(1, 2, 3))
        return self.last_layer(similarity(min_distances, self.epsilon)), min_distances, distances
