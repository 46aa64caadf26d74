"""Building blocks shared by every model family: convolutions whose gradients are fast on CPU,
TensorFlow "SAME" padding, and named taps for Grad-CAM.

Layout everywhere: channels last, ``B x [T x] H x W x C``; kernels ``[kT x] kH x kW x Cin x Cout``.

Why a custom strided convolution: XLA on CPU lowers the input-gradient of a strided convolution to
an lhs-dilated convolution that is pathologically slow (I3D's 7x7x7 stride-2 stem on 16x224^2:
140 s against 0.39 s in PyTorch, measured under jax 0.10 on 2 CPU cores). A strided convolution
equals a space-to-depth rearrangement of the input followed by a stride-1 convolution with a
rearranged kernel; that form is exact and its gradient is fast on every backend.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Padding = Sequence[tuple[int, int]]
TORCH_BN_EPSILON = 1e-5  # torch.nn.BatchNorm's default epsilon, which torchvision's models keep

_DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"),
                      3: ("NDHWC", "DHWIO", "NDHWC")}


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding for one axis: out = ceil(size / stride), extra padding at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int], padding: Padding) -> jax.Array:
    """N-d convolution (cross-correlation, as in PyTorch and TF) with explicit zero padding.

    Args:
      x: ``B x *spatial x Cin``.
      kernel: ``*k x Cin x Cout``.
      strides: one stride per spatial axis.
      padding: one ``(low, high)`` pair per spatial axis.
    Returns:
      ``B x *out x Cout`` with ``out = (n + low + high - k) // s + 1`` per axis.
    """
    nd = len(strides)
    padding = [tuple(p) for p in padding]
    if any(s != 1 for s in strides):
        x = jnp.pad(x, [(0, 0)] + padding + [(0, 0)])
        x, kernel = _space_to_depth(x, kernel, tuple(strides))
        padding = [(0, 0)] * nd
    if nd == 3 and jax.default_backend() == "cpu":
        return _conv3d_as_2d(x, kernel, padding)
    return lax.conv_general_dilated(x, kernel, (1,) * nd, padding, dimension_numbers=_DIMENSION_NUMBERS[nd])


def _conv3d_as_2d(x, kernel, padding):
    """A stride-1 3-d convolution computed by 2-d convolutions (same values, CPU-fast).

    XLA:CPU hands 2-d convolutions to a tuned library (YNNPACK) but runs 3-d ones, and their
    gradients, in a generic loop 2-3x slower. A ``kT x 1 x 1`` kernel is a 2-d ``kT x 1``
    convolution of the clip viewed as ``B x T x (H W) x C``; any other kernel convolves every
    frame in 2-d after the ``kT`` time-shifted copies of the clip are stacked on the channels
    (kernel ``kH x kW x (kT Cin) x Cout``).
    """
    kt, kh, kw, cin, cout = kernel.shape
    (t_pad, h_pad, w_pad) = padding
    b, t, h, w, c = x.shape
    dims = _DIMENSION_NUMBERS[2]
    if kh == kw == 1 and h_pad == w_pad == (0, 0):
        y = lax.conv_general_dilated(x.reshape(b, t, h * w, c), kernel.reshape(kt, 1, cin, cout), (1, 1),
                                     [t_pad, (0, 0)], dimension_numbers=dims)
        return y.reshape(b, y.shape[1], h, w, cout)
    x = jnp.pad(x, [(0, 0), t_pad, (0, 0), (0, 0), (0, 0)])
    out_t = x.shape[1] - kt + 1
    if kt > 1:
        x = jnp.concatenate([x[:, i:i + out_t] for i in range(kt)], axis=-1)
    kernel = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kt * cin, cout)
    y = lax.conv_general_dilated(x.reshape(b * out_t, h, w, kt * c), kernel, (1, 1), [h_pad, w_pad],
                                 dimension_numbers=dims)
    return y.reshape(b, out_t, *y.shape[1:])


def _space_to_depth(x, kernel, strides):
    """Rewrites a VALID strided convolution as a VALID stride-1 one on phase-stacked channels.

    Output position o reads input o*s + j = (o + j//s)*s + j%s: block o + j//s, phase j%s. So the
    input is cut into blocks of s, the phases go to channels, and the kernel (zero-padded to a
    multiple of s) is cut the same way.
    """
    nd = len(strides)
    ksize = kernel.shape[:nd]
    blocks = [-(-k // s) for k, s in zip(ksize, strides)]
    out = [(n - k) // s + 1 for n, k, s in zip(x.shape[1:1 + nd], ksize, strides)]
    need = [(o - 1 + q) * s for o, q, s in zip(out, blocks, strides)]
    # Crop what no output reads, zero-pad up to whole blocks (those taps meet zero kernel weights).
    x = x[(slice(None),) + tuple(slice(0, min(n, m)) for n, m in zip(x.shape[1:1 + nd], need))]
    x = jnp.pad(x, [(0, 0)] + [(0, max(m - n, 0)) for n, m in zip(x.shape[1:1 + nd], need)] + [(0, 0)])
    kernel = jnp.pad(kernel, [(0, q * s - k) for k, q, s in zip(ksize, blocks, strides)] + [(0, 0)] * 2)

    b, c = x.shape[0], x.shape[-1]
    split = [b]
    for m, s in zip(need, strides):
        split += [m // s, s]
    x = x.reshape(split + [c])
    # (B, n1, s1, n2, s2, ..., C) -> (B, n1, n2, ..., s1, s2, ..., C)
    perm = [0] + [1 + 2 * i for i in range(nd)] + [2 + 2 * i for i in range(nd)] + [1 + 2 * nd]
    x = x.transpose(perm).reshape([b] + [m // s for m, s in zip(need, strides)] + [math.prod(strides) * c])

    cin, cout = kernel.shape[-2:]
    ksplit = []
    for q, s in zip(blocks, strides):
        ksplit += [q, s]
    kernel = kernel.reshape(ksplit + [cin, cout])
    kperm = [2 * i for i in range(nd)] + [2 * i + 1 for i in range(nd)] + [2 * nd, 2 * nd + 1]
    kernel = kernel.transpose(kperm).reshape(blocks + [math.prod(strides) * cin, cout])
    return x, kernel


class Conv(nn.Module):
    """Convolution with PyTorch-style explicit padding (or TF "SAME") and a CPU-fast gradient.

    Params: ``kernel`` (``*kernel_size x Cin x Cout``) and, with ``use_bias``, ``bias`` (``Cout``).

    Attributes:
      features: output channels.
      kernel_size: one size per spatial axis (its length sets 1-, 2- or 3-d).
      strides: one stride per spatial axis (default 1).
      padding: ``"SAME"`` for TensorFlow semantics (extra padding at the end), or one int or one
        ``(low, high)`` pair per axis.
    """

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] | None = None
    padding: str | Sequence[int | tuple[int, int]] = 0
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        nd = len(self.kernel_size)
        strides = tuple(self.strides or (1,) * nd)
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
        y = conv(x, kernel.astype(x.dtype), strides, _explicit_padding(
            self.padding, x.shape[1:1 + nd], self.kernel_size, strides))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(y.dtype)
        return y


def _explicit_padding(padding, sizes, kernel_size, strides) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        if padding != "SAME":
            raise ValueError(f"padding must be 'SAME' or explicit, got {padding!r}")
        return [tf_same_padding(n, k, s) for n, k, s in zip(sizes, kernel_size, strides)]
    if isinstance(padding, int):
        return [(padding, padding)] * len(sizes)
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def max_pool(x: jax.Array, window: Sequence[int], strides: Sequence[int], padding: Padding) -> jax.Array:
    """Max pooling over the spatial axes of ``B x *spatial x C`` with explicit ``-inf`` padding.

    Computed one axis at a time, innermost first, as a running ``where(next > best, next, best)``
    over strided slices: the same values as ``lax.reduce_window``, and the gradient goes to the
    first maximum of each window in raster order, as in PyTorch (``jnp.maximum`` would split ties).
    Why not ``reduce_window``: its gradient (select-and-scatter) is 2-5x slower than PyTorch's on
    XLA CPU; slices and selects are as fast as PyTorch.
    """
    nd = len(window)
    for axis in reversed(range(1, 1 + nd)):
        k, s, (low, high) = window[axis - 1], strides[axis - 1], padding[axis - 1]
        if k == 1 and s == 1 and low == high == 0:
            continue
        pad = [(0, 0, 0)] * x.ndim
        pad[axis] = (low, high, 0)
        x = lax.pad(x, jnp.array(-jnp.inf, x.dtype), pad)
        out = (x.shape[axis] - k) // s + 1
        best = None
        for j in range(k):
            nxt = lax.slice_in_dim(x, j, j + (out - 1) * s + 1, s, axis)
            best = nxt if best is None else jnp.where(nxt > best, nxt, best)
        x = best
    return x


def tap(module: nn.Module, name: str, x: jax.Array) -> jax.Array:
    """Marks a named activation so Grad-CAM can read it and its gradient without hooks.

    The value is sown into the ``intermediates`` collection (read it with
    ``apply(..., mutable=["intermediates"])``) and passed through ``module.perturb`` (its gradient is
    the gradient with respect to a zero ``perturbations`` entry of the same name; get the zeros from
    ``apply(..., mutable=["perturbations"])``). Both are no-ops unless those collections are asked
    for; ``init`` creates neither, so a model's variables are only ``params`` (+ ``batch_stats``).
    Activations are always ``B x T' x H' x W' x C``.
    """
    if not module.is_initializing():
        x = module.perturb(name, x)
    module.sow("intermediates", name, x)
    return x


class Add(nn.Module):
    """``sum(inputs)``: a residual sum as a module (no parameters), so that attribution rules that
    treat a sum specially (:mod:`vjx.attribution.excitation`) can find it with
    ``flax.linen.intercept_methods``; otherwise exactly ``+``."""

    @nn.compact
    def __call__(self, *inputs: jax.Array) -> jax.Array:
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        return total


class AvgPool(nn.Module):
    """Average pooling as a module (no parameters), for the same reason as :class:`Add`.

    Attributes:
      axes: with ``window`` None, the mean over these axes (a global pool; torch's adaptive average
        pool to size 1), which are dropped.
      window: a VALID, stride-1 window over the spatial axes of ``B x *spatial x C`` (``nn.avg_pool``).
    """

    axes: tuple[int, ...] = ()
    window: tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.window is None:
            return jnp.mean(x, axis=self.axes)
        return nn.avg_pool(x, self.window, strides=(1,) * len(self.window), padding="VALID")
