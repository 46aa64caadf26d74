"""Smooth-max mask generator (Fong et al., ICCV 2019): a coarse seed grid -> a smooth full-size mask.

Each output pixel pools the ``(2 radius + 1)^2`` seed values around it, weighted by
``k(d / sigma)`` with ``k(z) = exp(-2 max(z - 0.5, 0)^2)`` (``d``: distance from the pixel to the seed
point, seed points at ``sigma + step * i``), with a soft-max of coldness 20, then clamps to [0, 1].
The result is the "padded" mask (area losses use it); its crop ``[m : m + S]``, ``m = round(sigma)``,
is the mask that perturbs the frame. As in the original, only the crop rounds sigma: at a
non-integer sigma the seed points keep the unrounded one.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

COLDNESS = 20.0


@dataclasses.dataclass(frozen=True)
class MaskGeometry:
    """Sizes of the smooth-max upsampler for frames ``height x width`` (hashable, static under jit).

    Attributes:
      height, width: frame size S.
      step: seed spacing in pixels.
      sigma: kernel radius scale in pixels; seed points sit at ``sigma + step * i`` (unrounded).
    """

    height: int
    width: int
    step: int
    sigma: float

    @property
    def margin(self) -> int:
        """Offset of the visible frame inside the padded mask: ``round(sigma)``, as the original crops.

        Only the crop rounds; the kernel weights place the seed points at the unrounded sigma.
        """
        return round(self.sigma)

    @property
    def padding(self) -> int:
        return 1 + math.ceil(2 * self.sigma / self.step)

    @property
    def radius(self) -> int:
        return 1 + math.ceil(self.sigma / self.step)

    @property
    def seed_shape(self) -> tuple[int, int]:
        """``ceil(S / step)`` per side: the optimised parameters of one frame."""
        return math.ceil(self.height / self.step), math.ceil(self.width / self.step)

    @property
    def mid_shape(self) -> tuple[int, int]:
        return tuple(n + 2 * self.padding - 2 * self.radius for n in self.seed_shape)

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Side of the full mask: ``step * mid - step + 1``."""
        return tuple(self.step * m - self.step + 1 for m in self.mid_shape)

    def crop(self, padded: jax.Array) -> jax.Array:
        """The visible part ``... x H x W`` of padded masks ``... x Hp x Wp``."""
        m = self.margin
        return padded[..., m:m + self.height, m:m + self.width]

    def weights(self) -> np.ndarray:
        """float32 ``K x Hp x Wp`` kernel weights, ``K = (2 radius + 1)^2``, as the original computes them.

        The distance from pixel ``u`` to seed ``i`` is taken as ``(u - step * i) - sigma``: the
        original's ``u - (sigma + step * i)`` up to float32 rounding (identical for integer sigma),
        and the same number in every seed cell, which :meth:`cell_weights` relies on.
        """
        return _weights(self)

    def cell_weights(self) -> np.ndarray:
        """float32 ``step x step x K``: the weights of one seed cell, which every cell repeats exactly."""
        return _cell_weights(self)


@functools.lru_cache(maxsize=16)
def _weights(g: MaskGeometry) -> np.ndarray:
    taps = 2 * g.radius + 1
    coords = []
    for mid, up, out in zip(g.mid_shape, (g.step * m for m in g.mid_shape), g.padded_shape):
        u = np.arange(out, dtype=np.float32)
        cell = np.floor((np.float32(mid) / np.float32(up)) * u)        # nearest-upsampling source index
        if not np.array_equal(cell.astype(np.int64), np.arange(out) // g.step):
            raise AssertionError(f"nearest upsampling of {mid} -> {up} is not a repeat by {g.step}")
        seed = cell[None, :] + np.arange(taps, dtype=np.float32)[:, None] - g.padding
        offset = u[None, :] - np.float32(g.step) * seed                   # exact integers, taps x out
        coords.append((offset - np.float32(g.sigma)) ** 2)
    dy, dx = coords
    delta = np.sqrt(dy[:, None, :, None] + dx[None, :, None, :])       # ky kx Hp Wp
    z = np.maximum(delta / np.float32(g.sigma) - np.float32(0.5), 0)
    w = np.exp(np.float32(-2) * z * z).astype(np.float32)
    w.flags.writeable = False
    return w.reshape(taps * taps, *g.padded_shape)


@functools.lru_cache(maxsize=16)
def _cell_weights(g: MaskGeometry) -> np.ndarray:
    w = _weights(g)
    cell = np.moveaxis(w[:, :g.step, :g.step], 0, -1)
    tiles = np.tile(cell, (g.mid_shape[0], g.mid_shape[1], 1))[:g.padded_shape[0], :g.padded_shape[1]]
    if not np.array_equal(tiles, np.moveaxis(w, 0, -1)):
        raise AssertionError("smooth-max weights are not periodic in the seed step")
    cell = np.ascontiguousarray(cell)
    cell.flags.writeable = False
    return cell


@functools.lru_cache(maxsize=16)
def shifts(taps: int, size: int) -> np.ndarray:
    """float32 ``taps x (size + taps - 1) x size``, ``[k, k + i, i] = 1``: where window offset ``k`` sits
    in the padded axis."""
    m = np.zeros((taps, size + taps - 1, size), np.float32)
    for k in range(taps):
        m[k, k + np.arange(size), np.arange(size)] = 1
    m.flags.writeable = False
    return m


def clamp01(x: jax.Array) -> jax.Array:
    """Clamp to [0, 1] with torch's gradient: it passes wherever ``0 <= x <= 1``, ends included.

    (``jnp.clip`` halves the gradient at the ends, and an all-ones seed sits exactly there.)
    """
    return jnp.where((x >= 0) & (x <= 1), x, jnp.clip(x, 0.0, 1.0))


def generate(seeds: jax.Array, g: MaskGeometry) -> tuple[jax.Array, jax.Array]:
    """Seeds ``... x h x w`` -> (cropped ``... x H x W``, padded ``... x Hp x Wp``) masks in [0, 1].

    Output pixel ``(step * i + r, step * j + c)`` pools the seed window at cell ``(i, j)`` (the
    original's nearest upsampling) with the weights ``w[r, c]``; the weights repeat from cell to cell,
    so the window is never upsampled (see :func:`smooth_max`).
    """
    taps, p, s = 2 * g.radius + 1, g.padding, g.step
    (mh, mw), (hp, wp) = g.mid_shape, g.padded_shape
    lead = seeds.shape[:-2]
    x = jnp.pad(seeds, [(0, 0)] * len(lead) + [(p, p), (p, p)])
    padded = smooth_max(x, g.cell_weights())
    padded = clamp01(padded.reshape(*lead, mh * s, mw * s)[..., :hp, :wp])
    return g.crop(padded), padded


def smooth_max(x: jax.Array, weights: np.ndarray) -> jax.Array:
    """Smooth-max pooling of weighted seed windows: ``... x (mh+n-1) x (mw+n-1) -> ... x mh x s x mw x s``.

    ``out[i, r, j, c] = sum_k a_k softmax_k(COLDNESS * a)`` with ``a_k = x[i + ky, j + kx] * weights[r, c, k]``
    for the ``K = n^2`` taps ``k = n ky + kx`` of the ``n x n`` window at cell ``(i, j)``.
    Values ``a`` lie in [0, 1] (seeds and weights do), so ``exp(COLDNESS * (a - 1))`` needs no
    running maximum.

    Each pass is written as a sum of whole-array terms, so that XLA fuses it into one loop
    vectorised over the cells: the forward adds one term per tap ``k`` to every pixel, the backward
    (a custom VJP) one term per pixel ``(r, c)`` of the cell to every tap's gradient, after
    recomputing the denominator in a pass of its own. Neither stores the ``K x cells x s x s``
    products. (Keeping the forward's denominator for the backward makes it a second output of the
    forward, and XLA then stores every tap's exponentials instead of fusing the pass: at 224 px the
    generator's forward + backward took 391 ms that way and 311 ms with the recomputation. Reductions
    over a minor axis of taps or pixels run element by element: at 224 px the generator then cost
    more than I3D's forward and backward.)

    Args:
      x: padded seeds ``... x (mh + n - 1) x (mw + n - 1)``.
      weights: float32 ``s x s x K`` kernel weights of one cell (:meth:`MaskGeometry.cell_weights`).
    """
    s, _, taps = weights.shape
    n = math.isqrt(taps)
    mh, mw = x.shape[-2] - n + 1, x.shape[-1] - n + 1
    w = jnp.asarray(weights)
    dims = x.ndim                                            # of one window: ... mh mw

    def windows_of(x):                                        # K ... mh mw, tap-major
        return [x[..., ky:ky + mh, kx:kx + mw] for ky in range(n) for kx in range(n)]

    def terms(windows):                                       # per tap: a, e (s s ... mh mw)
        for k, window in enumerate(windows):
            a = w[:, :, k].reshape(s, s, *[1] * dims) * window
            yield a, jnp.exp(COLDNESS * (a - 1))

    def image(out):                                           # s s ... mh mw -> ... mh s mw s
        d = out.ndim
        return jnp.transpose(out, (*range(2, d - 2), d - 2, 0, d - 1, 1))

    def pool(x):                                              # s s ... mh mw
        num = den = 0.0
        for a, e in terms(windows_of(x)):
            num, den = num + a * e, den + e
        return num / den

    def denominator(windows):
        den = 0.0
        for _, e in terms(windows):
            den = den + e
        return den

    @jax.custom_vjp
    def pooled(x):
        return image(pool(x))

    def forward(x):
        out = pool(x)
        return image(out), (x, out)

    def backward(residuals, g):
        x, out = residuals
        # a barrier, so that XLA does not merge the exponentials recomputed here with the forward
        # pass's (it would keep all K x cells x s x s of them in memory between the passes)
        windows = jnp.stack(windows_of(jax.lax.optimization_barrier(x)))                # K ... mh mw
        den = jax.lax.optimization_barrier(denominator(windows))
        # the cotangent from image layout to cell layout (... mh s mw s -> s s ... mh mw) as products
        # with identity matrices: a transpose here is fused into the denominator's pass, whose loop then
        # runs element by element (at 224 px the generator's forward + backward took 400 ms, 240 ms so)
        eye = jnp.asarray(np.eye(s, dtype=np.float32))
        g = jnp.einsum("rR,cC,...iRjC->rc...ij", eye, eye, g, precision="highest") / den
        # d out / d a_k = e_k (1 + COLDNESS (a_k - out)) / den, written as e_k (p + q a_k)
        p, q = g * (1 - COLDNESS * out), COLDNESS * g
        grad = 0.0
        for r in range(s):
            for c in range(s):
                wk = w[r, c].reshape(taps, *[1] * dims)                           # K 1 ... 1
                a = wk * windows
                grad = grad + wk * jnp.exp(COLDNESS * (a - 1)) * (p[r, c] + q[r, c] * a)
        # each tap's gradient back to its window's place, as two products with 0/1 shift matrices:
        # a dot is a kernel of its own, so XLA computes the K x cells gradient above in one fused
        # pass (added up with pads or slices, XLA fuses it into K kernels instead, one per tap, and
        # compiling them took 20 s of a 224-px iteration's 32 s whenever an optimiser such as Adam
        # reads the gradient twice)
        grad = grad.reshape(n, n, *grad.shape[1:])                                 # ky kx ... mh mw
        rows, cols = jnp.asarray(shifts(n, mh)), jnp.asarray(shifts(n, mw))        # n x (m + n - 1) x m
        grad_x = jnp.einsum("bXj,abtij->atiX", cols, grad.reshape(n, n, -1, mh, mw), precision="highest")
        grad_x = jnp.einsum("aYi,atiX->tYX", rows, grad_x, precision="highest")
        return (grad_x.reshape(x.shape),)

    pooled.defvjp(forward, backward)
    return pooled(x)
