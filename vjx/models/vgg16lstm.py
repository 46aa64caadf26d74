"""VGG16-LSTM, the CNN-RNN of Li et al.'s paper (after Bargal et al., CVPR 2018), in Flax.

The network as the authors' follow-up code defines it: VGG16's conv1_1 .. conv5_3 (3x3, ReLU, a 2x2
max pool after each stage) and fc6/fc7 (4096, ReLU) on every frame; a ReLU LSTM cell (``lstm1``,
256 units: gates ``fc_x(x) + fc_h(h)`` split as input, forget, output, candidate; candidate and
cell output through ReLU instead of tanh) over time; ``fc8_final`` per frame; a softmax per frame,
averaged over frames. With ``detach`` (the original's default) the hidden and cell states are cut
from the gradient at every step, so no gradient crosses time.

The module returns ``log(mean_t softmax(fc8_t))``: "logits" whose softmax is the original's output,
so every method's probabilities are the original network's. Dropout (p 0.5 in training) is left
out: vjx only explains. Submodules carry the torch names (``conv1_1`` .. ``conv5_3``, ``fc6``,
``fc7``, ``lstm1/fc_x``, ``lstm1/fc_h``, ``fc8_final``); fc6 reads pool5 flattened in torch's
C x H x W order, so it converts as a plain Linear. Tap: ``conv5`` (conv5_3 after its ReLU, before
pool5), ``B x T x H/16 x W/16 x 512``, Grad-CAM's layer: per-frame maps.

Example:
    >>> module = vgg16lstm(num_classes=24)
    >>> variables = module.init(jax.random.key(0), jnp.zeros((1, 8, 224, 224, 3)))
    >>> logits = module.apply(variables, video)  # B x 8 x 224 x 224 x 3: RGB*255 minus the mean
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vjx.models.layers import Conv, max_pool, tap
from vjx.models.spec import Family, ModelSpec

# The authors' mean of RGB in [0, 1]; their frames are RGB*255 minus it (std 1/255 here).
VGG16LSTM_MEAN = (0.50463, 0.45796, 0.4076)

# VGG16's convolution widths per stage (torch names conv<stage>_<index>)
VGG16_STAGES: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512),
                                             (512, 512, 512))


class ReluLSTMCell(nn.Module):
    """One step: ``(x B x D, h B x H, c B x H) -> (h', c')`` with ReLU where an LSTM has tanh."""

    hidden: int

    @nn.compact
    def __call__(self, x, h, c):
        gates = nn.Dense(4 * self.hidden, name="fc_x")(x) + nn.Dense(4 * self.hidden, use_bias=False, name="fc_h")(h)
        i, f, o, g = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jax.nn.relu(g)
        return jax.nn.sigmoid(o) * jax.nn.relu(c), c


class VGG16LSTM(nn.Module):
    """``B x T x H x W x 3`` -> ``B x num_classes`` log mean probabilities.

    Attributes:
      num_classes: classes of ``fc8_final``.
      stages: convolution widths per stage (VGG16's; tests use narrow ones).
      fc_width: width of fc6 and fc7 (4096).
      hidden: LSTM units (256).
      detach: cut the recurrent state from the gradient at every step (the original's behaviour).
    """

    num_classes: int = 24
    stages: tuple[tuple[int, ...], ...] = VGG16_STAGES
    fc_width: int = 4096
    hidden: int = 256
    detach: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        b, t = x.shape[:2]
        y = x.reshape(b * t, *x.shape[2:])
        for s, widths in enumerate(self.stages):
            for j, width in enumerate(widths):
                y = nn.relu(Conv(width, (3, 3), padding=1, use_bias=True, name=f"conv{s + 1}_{j + 1}")(y))
            if s == len(self.stages) - 1:
                y = tap(self, f"conv{s + 1}", y.reshape(b, t, *y.shape[1:])).reshape(y.shape)
            y = max_pool(y, (2, 2), (2, 2), ((0, 0), (0, 0)))
        y = y.transpose(0, 3, 1, 2).reshape(b, t, -1)                      # torch's C x H x W flattening
        y = nn.relu(nn.Dense(self.fc_width, name="fc6")(y))
        y = nn.relu(nn.Dense(self.fc_width, name="fc7")(y))
        cell = ReluLSTMCell(self.hidden, name="lstm1")
        head = nn.Dense(self.num_classes, name="fc8_final")
        h = c = jnp.zeros((b, self.hidden), y.dtype)
        probabilities = []
        for step in range(t):
            if self.detach:
                h, c = jax.lax.stop_gradient(h), jax.lax.stop_gradient(c)
            h, c = cell(y[:, step], h, c)
            probabilities.append(jax.nn.softmax(head(h)))
        return jnp.log(jnp.stack(probabilities, axis=1).mean(axis=1))


def vgg16lstm(num_classes: int = 24, **settings) -> VGG16LSTM:
    """The registry's factory (no settings: VGG16-LSTM has no BatchNorm)."""
    return VGG16LSTM(num_classes=num_classes, **settings)


# The authors' preprocessing: frames resized to 240 x 320, a 224 centre crop, RGB in [0, 1] minus
# their mean, times 255. The head's size is the checkpoint's.
FAMILY = Family(
    specs=(ModelSpec(name="vgg16lstm", module_path="vjx.models.vgg16lstm:vgg16lstm", num_frames=8, resize=240,
                     crop=224, mean=VGG16LSTM_MEAN, std=(1 / 255,) * 3, label_set="ucf101-24", num_classes=24,
                     gradcam_layer="conv5", ep_sigma=23.0, recurrent=True),),
    layouts={"vgg16lstm": {}},
    converter="weight_conversion.vgg16lstm",
    twin="vjx.torch_reference.vgg16lstm",
)
