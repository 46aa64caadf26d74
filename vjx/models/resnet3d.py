"""torchvision's video ResNets (Tran et al. 2018): R3D-18, MC3-18 and R(2+1)D-18, in Flax.

Same computation as ``torchvision.models.video.resnet``: a stem, four stages of two BasicBlocks
(64, 128, 256, 512 channels; stages 2-4 halve time, height and width in their first block),
a global average pool and ``fc``. The variants differ only in their convolutions:

- ``r3d_18``: 3x3x3 convolutions everywhere; stem 3x7x7, stride (1, 2, 2).
- ``mc3_18``: 3x3x3 in stage 1, 1x3x3 ("no temporal") in stages 2-4, whose downsampling keeps time.
- ``r2plus1d_18``: every 3x3x3 split into a 1x3x3 spatial conv (``mid`` channels), BatchNorm, ReLU
  and a 3x1x1 temporal conv, with ``mid = (in*out*27) // (in*9 + 3*out)`` from the block's input and
  output widths (also for its second conv); stem 1x7x7 (45 channels) then 3x1x1.

Submodules are named after their place in torchvision's state dict, the first two parts joined by
``_`` (the bare names ``stem`` and ``layerN`` are the taps): ``layer2.0.conv1.0.3.weight`` lives at
``params["layer2_0"]["conv1"]["0"]["3"]["kernel"]``, ``stem.1.running_var`` at
``batch_stats["stem_1"]["var"]``. Taps (see ``layers.tap``): ``stem``, ``layer1`` .. ``layer4``, each
``B x T' x H' x W' x C``.

Example:
    >>> module = r2plus1d_18(num_classes=400)
    >>> variables = module.init(jax.random.key(0), jnp.zeros((1, 16, 112, 112, 3)))
    >>> logits = module.apply(variables, video)  # video: B x 16 x 112 x 112 x 3, Kinetics-normalised
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax

from vjx.models.layers import TORCH_BN_EPSILON, Add, AvgPool, Conv, tap
from vjx.models.spec import KINETICS_MEAN, KINETICS_STD, Family, ModelSpec

# variant -> (stem, convolution kind of each of the four stages)
VARIANTS: dict[str, tuple[str, tuple[str, str, str, str]]] = {
    "r3d_18": ("basic", ("3d",) * 4),
    "mc3_18": ("basic", ("3d", "no_temporal", "no_temporal", "no_temporal")),
    "r2plus1d_18": ("r2plus1d", ("2plus1d",) * 4),
}
STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


def mid_planes(in_planes: int, out_planes: int) -> int:
    """R(2+1)D's middle width: the (2+1)D pair has as many weights as one 3x3x3 conv."""
    return (in_planes * out_planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * out_planes)


def _batch_norm(train: bool, epsilon: float, name: str) -> nn.BatchNorm:
    # torch BatchNorm3d: running stats updated with momentum 0.1 (Flax: 0.9 kept).
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon, name=name)


class Conv2Plus1D(nn.Module):
    """A 1x3x3 spatial conv, BatchNorm, ReLU, then a 3x1x1 temporal conv (torch indices 0, 1, 3).

    ``B x T x H x W x Cin -> B x T/s x H/s x W/s x features``.
    """

    features: int
    mid: int
    stride: int = 1
    batch_norm_epsilon: float = TORCH_BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        s = self.stride
        x = Conv(self.mid, (1, 3, 3), (1, s, s), ((0, 0), (1, 1), (1, 1)), name="0")(x)
        x = nn.relu(_batch_norm(train, self.batch_norm_epsilon, "1")(x))
        return Conv(self.features, (3, 1, 1), (s, 1, 1), ((1, 1), (0, 0), (0, 0)), name="3")(x)


def _conv_unit(kind: str, features: int, mid: int, stride: int, epsilon: float, name: str) -> nn.Module:
    """torchvision's conv builders: Conv3DSimple, Conv3DNoTemporal, Conv2Plus1D."""
    if kind == "3d":
        return Conv(features, (3, 3, 3), (stride,) * 3, 1, name=name)
    if kind == "no_temporal":
        return Conv(features, (1, 3, 3), (1, stride, stride), ((0, 0), (1, 1), (1, 1)), name=name)
    return Conv2Plus1D(features, mid, stride, epsilon, name=name)


class ConvBN(nn.Module):
    """``conv1``/``conv2`` of a block: conv unit (torch index 0), BatchNorm (1), optional ReLU."""

    kind: str
    features: int
    mid: int
    stride: int = 1
    relu: bool = True
    batch_norm_epsilon: float = TORCH_BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        unit = _conv_unit(self.kind, self.features, self.mid, self.stride, self.batch_norm_epsilon, "0")
        x = unit(x, train) if self.kind == "2plus1d" else unit(x)
        x = _batch_norm(train, self.batch_norm_epsilon, "1")(x)
        return nn.relu(x) if self.relu else x


class Downsample(nn.Module):
    """The shortcut of a stage's first block: strided 1x1x1 conv (torch index 0) and BatchNorm (1).

    A 1x1x1 conv with stride s reads every s-th position, so it is a slice then a pointwise conv
    (exact, and its gradient is a cheap scatter).
    """

    features: int
    strides: tuple[int, int, int]
    batch_norm_epsilon: float = TORCH_BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        st, sh, sw = self.strides
        x = Conv(self.features, (1, 1, 1), name="0")(x[:, ::st, ::sh, ::sw])
        return _batch_norm(train, self.batch_norm_epsilon, "1")(x)


class BasicBlock(nn.Module):
    """relu(conv2(conv1(x)) + shortcut(x)); ``B x T x H x W x Cin -> B x T' x H' x W' x features``."""

    kind: str
    features: int
    stride: int = 1
    batch_norm_epsilon: float = TORCH_BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        in_planes = x.shape[-1]
        mid = mid_planes(in_planes, self.features)
        eps = self.batch_norm_epsilon
        y = ConvBN(self.kind, self.features, mid, self.stride, batch_norm_epsilon=eps, name="conv1")(x, train)
        y = ConvBN(self.kind, self.features, mid, 1, relu=False, batch_norm_epsilon=eps, name="conv2")(y, train)
        if self.stride != 1 or in_planes != self.features:
            t_stride = 1 if self.kind == "no_temporal" else self.stride
            x = Downsample(self.features, (t_stride, self.stride, self.stride), eps, name="downsample")(x, train)
        return nn.relu(Add(name="add")(y, x))


class VideoResNet(nn.Module):
    """One of torchvision's 18-layer video ResNets.

    Attributes:
      variant: ``"r3d_18"``, ``"mc3_18"`` or ``"r2plus1d_18"``.
      num_classes: width of ``fc``.
      batch_norm_epsilon: every BatchNorm's epsilon (torchvision: torch's default 1e-5).
    """

    variant: str
    num_classes: int = 400
    batch_norm_epsilon: float = TORCH_BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``B x num_classes`` of float32 clips ``B x T x H x W x 3`` (T and H, W >= 8 or so).

        ``train=True`` normalises with batch statistics and updates ``batch_stats`` (pass
        ``mutable=["batch_stats"]``), as torch's train mode does.
        """
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown VideoResNet variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        stem, kinds = VARIANTS[self.variant]
        eps = self.batch_norm_epsilon
        if stem == "basic":
            x = Conv(64, (3, 7, 7), (1, 2, 2), ((1, 1), (3, 3), (3, 3)), name="stem_0")(x)
            x = nn.relu(_batch_norm(train, eps, "stem_1")(x))
        else:
            x = Conv(45, (1, 7, 7), (1, 2, 2), ((0, 0), (3, 3), (3, 3)), name="stem_0")(x)
            x = nn.relu(_batch_norm(train, eps, "stem_1")(x))
            x = Conv(64, (3, 1, 1), (1, 1, 1), ((1, 1), (0, 0), (0, 0)), name="stem_3")(x)
            x = nn.relu(_batch_norm(train, eps, "stem_4")(x))
        x = tap(self, "stem", x)
        for i, (kind, width) in enumerate(zip(kinds, STAGE_WIDTHS)):
            for b in range(BLOCKS_PER_STAGE):
                stride = 2 if i > 0 and b == 0 else 1
                x = BasicBlock(kind, width, stride, eps, name=f"layer{i + 1}_{b}")(x, train)
            x = tap(self, f"layer{i + 1}", x)
        x = AvgPool(axes=(1, 2, 3), name="avgpool")(x)
        return nn.Dense(self.num_classes, name="fc")(x)


r3d_18 = functools.partial(VideoResNet, "r3d_18")
mc3_18 = functools.partial(VideoResNet, "mc3_18")
r2plus1d_18 = functools.partial(VideoResNet, "r2plus1d_18")


FAMILY = Family(
    specs=tuple(ModelSpec(name=name, module_path=f"vjx.models.resnet3d:{name}", num_frames=16, resize=128, crop=112,
                          mean=KINETICS_MEAN, std=KINETICS_STD, label_set="kinetics400", num_classes=400,
                          gradcam_layer="layer4", ep_sigma=11.0, excitation_layer="layer3",
                          settings={"batch_norm_epsilon": TORCH_BN_EPSILON})
                for name in VARIANTS),
    layouts={"torchvision_video_resnet": {}},
    converter="weight_conversion.resnet3d",
    twin="vjx.torch_reference.resnet3d",
    aliases={"r3d": "r3d_18", "mc3": "mc3_18", "r2plus1d": "r2plus1d_18"},
)
