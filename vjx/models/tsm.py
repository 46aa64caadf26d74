"""TSM: a ResNet-50 applied per frame with a residual temporal shift in every bottleneck.

As mit-han-lab/temporal-shift-module builds it (``is_shift=True, shift_place="blockres",
shift_div=8``): torchvision's ResNet-50 v1.5 (stride on the bottleneck's 3x3 conv, BatchNorm eps
1e-5) runs on every segment (segments folded into the batch); inside each bottleneck the input of the
residual branch is shifted along time before ``conv1`` (the shortcut is not); dropout, then the new
classifier ``new_fc`` on every segment, and the segment logits are averaged.

Submodules are named after the torch state dict (``layer1_0/conv1`` is ``layer1.0.conv1.net``,
``layer1_0/downsample_0`` is ``layer1.0.downsample.0``), so ``weight_conversion.tsm`` is a table.
Named activations for Grad-CAM: ``layer1`` .. ``layer4``, each ``B x T x h x w x C`` (see
:func:`vjx.models.layers.tap`).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vjx.models.layers import TORCH_BN_EPSILON, Add, AvgPool, Conv, max_pool, tap
from vjx.models.spec import IMAGENET_MEAN, IMAGENET_STD, Family, ModelSpec

FOLD_DIV = 8
# (blocks, bottleneck width, stride of the first block) of ResNet-50's four stages.
RESNET50_STAGES = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))
EXPANSION = 4


def temporal_shift(x: jax.Array, fold_div: int = FOLD_DIV) -> jax.Array:
    """mit-han-lab's shift of ``B x T x ... x C``: channels ``[0, C/d)`` take frame t+1,
    ``[C/d, 2C/d)`` take frame t-1, the rest stay; zeros enter at the clip ends."""
    fold = x.shape[-1] // fold_div
    after = [(0, 0), (0, 1)] + [(0, 0)] * (x.ndim - 2)
    before = [(0, 0), (1, 0)] + [(0, 0)] * (x.ndim - 2)
    from_next = jnp.pad(x[:, 1:, ..., :fold], after)
    from_prev = jnp.pad(x[:, :-1, ..., fold:2 * fold], before)
    return jnp.concatenate([from_next, from_prev, x[..., 2 * fold:]], axis=-1)


def _batch_norm(name: str, train: bool, epsilon: float) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon, name=name)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5) with the temporal shift on the residual branch's input.

    Attributes:
      width: channels of the 1x1 and 3x3 convs; the block outputs ``4 * width``.
      stride: spatial stride of the 3x3 conv (and of the shortcut's 1x1 conv).
      downsample: whether the shortcut is a 1x1 conv + BatchNorm.
      batch_norm_epsilon: epsilon of its BatchNorms.
    """

    width: int
    stride: int = 1
    downsample: bool = False
    batch_norm_epsilon: float = TORCH_BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, num_segments: int, train: bool) -> jax.Array:
        """``(B*T) x H x W x C -> (B*T) x H/stride x W/stride x 4*width``."""
        n, h, w, c = x.shape
        shifted = temporal_shift(x.reshape(n // num_segments, num_segments, h, w, c)).reshape(x.shape)
        eps = self.batch_norm_epsilon
        y = Conv(self.width, (1, 1), name="conv1")(shifted)
        y = nn.relu(_batch_norm("bn1", train, eps)(y))
        y = Conv(self.width, (3, 3), strides=(self.stride, self.stride), padding=1, name="conv2")(y)
        y = nn.relu(_batch_norm("bn2", train, eps)(y))
        y = _batch_norm("bn3", train, eps)(Conv(self.width * EXPANSION, (1, 1), name="conv3")(y))
        if self.downsample:
            # A 1x1 conv with stride s reads every s-th pixel: subsample, then convolve.
            shortcut = x[:, ::self.stride, ::self.stride]
            x = _batch_norm("downsample_1", train, eps)(
                Conv(self.width * EXPANSION, (1, 1), name="downsample_0")(shortcut))
        return nn.relu(Add(name="add")(y, x))


class TSM(nn.Module):
    """Temporal Shift Module network on a ResNet-50 backbone.

    Attributes:
      num_classes: logits per clip.
      dropout_rate: dropout before ``new_fc`` (training only; TSM's Kinetics models used 0.5).
      batch_norm_epsilon: every BatchNorm's epsilon (torchvision's ResNet-50: torch's default 1e-5).
    """

    num_classes: int = 400
    dropout_rate: float = 0.5
    batch_norm_epsilon: float = TORCH_BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Classifies clips.

        Args:
          x: float32 ``B x T x H x W x 3`` (ImageNet-normalised RGB; TSM's checkpoints use T = 8,
            the shift works on any T).
          train: batch statistics and dropout (needs a ``dropout`` rng) when true.
        Returns:
          logits ``B x num_classes``, the mean of the per-segment logits.
        """
        b, t = x.shape[:2]
        y = x.reshape((b * t,) + x.shape[2:])
        y = Conv(64, (7, 7), strides=(2, 2), padding=3, name="conv1")(y)
        y = nn.relu(_batch_norm("bn1", train, self.batch_norm_epsilon)(y))
        y = max_pool(y, (3, 3), (2, 2), [(1, 1), (1, 1)])
        for stage, (blocks, width, stride) in enumerate(RESNET50_STAGES, start=1):
            for i in range(blocks):
                y = Bottleneck(width, stride if i == 0 else 1, downsample=i == 0,
                               batch_norm_epsilon=self.batch_norm_epsilon, name=f"layer{stage}_{i}")(y, t, train)
            y = tap(self, f"layer{stage}", y.reshape((b, t) + y.shape[1:])).reshape(y.shape)
        y = AvgPool(axes=(1, 2), name="avgpool")(y)
        y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        logits = nn.Dense(self.num_classes, name="new_fc")(y)
        return logits.reshape(b, t, -1).mean(axis=1)


tsm_resnet50 = TSM      # the only variant: ResNet-50 with temporal shifts


FAMILY = Family(
    specs=(ModelSpec(name="tsm_resnet50", module_path="vjx.models.tsm:tsm_resnet50", num_frames=8, resize=256,
                     crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, label_set="kinetics400", num_classes=400,
                     gradcam_layer="layer4", ep_sigma=23.0, excitation_layer="layer3",
                     settings={"batch_norm_epsilon": TORCH_BN_EPSILON}),),
    layouts={"tsm": {}, "tsm_epic": {}},
    converter="weight_conversion.tsm",
    twin="vjx.torch_reference.tsm",
    aliases={"tsm": "tsm_resnet50"},
)
