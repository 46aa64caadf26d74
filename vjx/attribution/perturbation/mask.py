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
    rows = jnp.stack([x[..., ky:ky + mh, :] for ky in range(taps)], axis=-1)            # ... mh W' ky
    win = jnp.stack([rows[..., kx:kx + mw, :] for kx in range(taps)], axis=-1)          # ... mh mw ky kx
    # A barrier: fused into the pooling below, each of the cells x s x s x K products would
    # re-gather its seed value through the stacks above.
    win = jax.lax.optimization_barrier(win.reshape(*lead, mh, mw, taps * taps))
    padded = smooth_max(win, g.cell_weights())
    padded = clamp01(padded.reshape(*lead, mh * s, mw * s)[..., :hp, :wp])
    return g.crop(padded), padded


def smooth_max(windows: jax.Array, weights: np.ndarray) -> jax.Array:
    """Smooth-max pooling of weighted seed windows: ``... x mh x mw x K -> ... x mh x s x mw x s``.

    ``out[i, r, j, c] = sum_k a_k softmax_k(COLDNESS * a)`` with ``a_k = windows[i, j, k] * weights[r, c, k]``.
    Values ``a`` lie in [0, 1] (seeds and weights do), so ``exp(COLDNESS * (a - 1))`` needs no
    running maximum. The gradient is written out (a custom VJP) so that neither pass stores the
    ``cells x s x s x K`` products: each is one fused pass over them (the automatic one kept several
    such arrays alive and made the mask generator cost as much as a video model's forward and
    backward on CPU).

    Args:
      windows: ``... x mh x mw x K`` seed values around each cell.
      weights: float32 ``s x s x K`` kernel weights of one cell (:meth:`MaskGeometry.cell_weights`).
    """
    w = jnp.asarray(weights)[:, None]                                                # s 1 s K

    def pool(windows):
        a = windows[..., :, None, :, None, :] * w                                     # ... mh s mw s K
        e = jnp.exp(COLDNESS * (a - 1))
        den = e.sum(-1)
        return (a * e).sum(-1) / den, den

    @jax.custom_vjp
    def pooled(windows):
        return pool(windows)[0]

    def forward(windows):
        out, den = pool(windows)
        return out, (windows, out, den)

    def backward(residuals, g):
        windows, out, den = residuals
        # cell-major layout ... mh mw K s s: the sum over the cell's pixels runs over the minor axes
        def cells(x):                                                                # ... mh s mw s -> ... mh mw s s
            return jnp.moveaxis(x, -3, -2)
        wt = jnp.moveaxis(w[:, 0], -1, 0)                                             # K s s
        a = windows[..., None, None] * wt                                             # ... mh mw K s s
        e = jnp.exp(COLDNESS * (a - 1))
        d_a = cells(g / den)[..., None, :, :] * e * (1 + COLDNESS * (a - cells(out)[..., None, :, :]))
        return ((d_a * wt).sum(axis=(-2, -1)),)

    pooled.defvjp(forward, backward)
    return pooled(windows)
