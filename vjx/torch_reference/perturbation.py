"""PyTorch twins of the extremal-perturbation pieces and a full 3D-EP/2D-EP/STEP loop.

Written from the original's semantics (TorchRay's MaskGenerator/Perturbation/imsmooth and the video
toolkit's loop and STEP loss), in the original's layout: masks ``N x 1 x H x W`` per frame, videos
``N x C x T x H x W``. Used by the parity tests and the benchmark; areas run one after another, as
the original does.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from vjx.attribution.perturbation import losses as jax_losses
from vjx.torch_reference import freeze

COLDNESS = 20.0


class MaskGenerator:
    """Smooth-max upsampling of seed masks ``N x 1 x h x w`` to (cropped, padded) masks."""

    def __init__(self, shape: tuple[int, int], step: int, sigma: float):
        self.shape, self.step, self.sigma = tuple(shape), step, sigma
        self.margin = sigma
        self.padding = 1 + math.ceil((self.margin + sigma) / step)
        self.radius = 1 + math.ceil(sigma / step)
        self.shape_in = [math.ceil(z / step) for z in self.shape]
        self.shape_mid = [z + 2 * self.padding - 2 * self.radius for z in self.shape_in]
        self.shape_up = [step * z for z in self.shape_mid]
        self.shape_out = [z - step + 1 for z in self.shape_up]
        taps = 2 * self.radius + 1
        scale = [torch.tensor(m, dtype=torch.float32) / torch.tensor(u, dtype=torch.float32)
                 for m, u in zip(self.shape_mid, self.shape_up)]
        uy, ux = torch.meshgrid(torch.arange(self.shape_out[0], dtype=torch.float32),
                                torch.arange(self.shape_out[1], dtype=torch.float32), indexing="ij")
        self.weight = torch.zeros(1, taps * taps, *self.shape_out)
        for ky in range(taps):
            for kx in range(taps):
                iy = torch.floor(scale[0] * uy) + ky - self.padding
                ix = torch.floor(scale[1] * ux) + kx - self.padding
                d = torch.sqrt((uy - (self.margin + step * iy)) ** 2 + (ux - (self.margin + step * ix)) ** 2)
                self.weight[0, ky * taps + kx] = torch.exp(-2 * ((d / sigma - 0.5).clamp(min=0) ** 2))

    def generate(self, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        taps = 2 * self.radius + 1
        x = F.unfold(seeds, (taps, taps), padding=(self.padding, self.padding))
        x = x.reshape(seeds.shape[0], -1, *self.shape_mid)
        x = F.interpolate(x, size=self.shape_up, mode="nearest")
        x = F.pad(x, (0, -self.step + 1, 0, -self.step + 1))
        v = self.weight * x
        mask = (v * F.softmax(COLDNESS * v, dim=1)).sum(dim=1, keepdim=True).clamp(0, 1)
        m = round(self.margin)
        return mask[:, :, m:m + self.shape[0], m:m + self.shape[1]], mask


def imsmooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``N x C x H x W`` with zero padding, half-width ``ceil(4 sigma)``."""
    width = math.ceil(4 * sigma)
    f = torch.arange(-width, width + 1, dtype=torch.float32) / (
        torch.tensor(math.sqrt(2), dtype=torch.float32) * sigma + torch.tensor(1.1920929e-07, dtype=torch.float32))
    f = torch.exp(-f * f)
    f = f / f.sum()
    c = x.shape[1]
    x = F.conv2d(x, f.reshape(1, 1, -1, 1).expand(c, -1, -1, -1), padding=(width, 0), groups=c)
    return F.conv2d(x, f.reshape(1, 1, 1, -1).expand(c, -1, -1, -1), padding=(0, width), groups=c)


class Perturbation:
    """Pyramid ``N x L x C x H x W`` of blurred/faded copies of frames ``N x C x H x W``."""

    def __init__(self, frames: torch.Tensor, num_levels: int = 8, max_blur: float = 20.0, kind: str = "blur"):
        self.num_levels = num_levels
        with torch.no_grad():
            levels = []
            for s in torch.linspace(0, 1, num_levels):
                levels.append(imsmooth(frames, float((1 - s) * max_blur)) if kind == "blur" else frames * s)
            self.pyramid = torch.stack(levels, dim=1)

    def apply(self, mask: torch.Tensor) -> torch.Tensor:
        """Masks ``N x 1 x H x W`` -> perturbed frames ``N x C x H x W``."""
        w = mask.unsqueeze(1) * (self.num_levels - 1)
        k = w.floor()
        w = w - k
        k = k.long().expand(-1, 1, *self.pyramid.shape[2:])
        y0 = torch.gather(self.pyramid, 1, k)
        y1 = torch.gather(self.pyramid, 1, torch.clamp(k + 1, max=self.num_levels - 1))
        return ((1 - w) * y0 + w * y1)[:, 0]


def area_loss(values: torch.Tensor, area: float) -> torch.Tensor:
    """Sorted ``N x V`` values vs a zeros-then-ones profile with ones-fraction ``area``: ``N`` MSEs.

    The original sorts with torch's default, unstable sort, so which of several equal values gets the
    gradient of a 0 or a 1 is unspecified; at the start (seeds all ones, every frame alike) nearly all
    values tie. The reference sorts stably, as ``jnp.sort`` does, so the two can be compared exactly.
    """
    ref = torch.ones_like(values)
    ref[:, :int(values.shape[1] * (1 - area))] = 0
    return ((values.sort(dim=1, stable=True)[0] - ref) ** 2).mean(dim=1)


def step_loss(padded: torch.Tensor, area: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """STEP's ellipsoid loss of padded masks ``N x T x Hp x Wp``: ``N`` losses (shuffle, then sort)."""
    kernel = torch.from_numpy(np.array(jax_losses.ellipsoid_kernel()))[None, None]
    n, t, hp, wp = padded.shape
    top_k = math.ceil(area * t * hp * wp / jax_losses.core_ones())
    r = F.conv3d(padded[:, None], kernel, stride=(1, kernel.shape[3], kernel.shape[4])).reshape(n, -1)
    perm = torch.randperm(r.shape[1], generator=generator)
    r = r[:, perm].sort(dim=1, descending=True, stable=True)[0] / kernel.sum()
    return ((r[:, :top_k] - 1) ** 2).mean(dim=1) + (r[:, top_k:] ** 2).mean(dim=1)


def sgd(params: list[torch.Tensor], lr: float = 0.05, momentum: float = 0.9, dampening: float = 0.9):
    """The original's optimiser."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, dampening=dampening)


def extremal_loop(model, video: torch.Tensor, target: int, areas, *, method: str = "ep3d", num_iter: int = 2000,
                  step: int = 7, sigma: float = 11.0, reward_weight: float | None = None,
                  area_weight: float = 300.0, step_start: int = 101, step_weight: float = 300.0,
                  init: np.ndarray | None = None):
    """The original's preserve-variant loop for one video, one area after another.

    Args:
      model: ``N x C x T x H x W -> logits``.
      video: ``1 x C x T x H x W``.
      method: ``"ep3d"``, ``"ep2d"`` or ``"step"`` (the registry's canonical names).
      init: starting seeds ``A x T x h x w``; None = ones (the original's start).
    Returns:
      ``(masks A x T x H x W, history {"reward", "area_loss"[, "step_loss"]: A x num_iter})``.
    """
    if isinstance(model, torch.nn.Module):         # as the original: gradients for the masks only
        freeze(model)
    _, c, t, h, w = video.shape
    frames = video.transpose(1, 2).reshape(t, c, h, w)
    pert = Perturbation(frames)
    gen = MaskGenerator((h, w), step, sigma)
    if reward_weight is None:
        reward_weight = 1.0 if method == "step" else 100.0
    torch_gen = torch.Generator().manual_seed(0)
    all_masks, hist = [], {"reward": [], "area_loss": [], "step_loss": []}
    for a, area in enumerate(areas):
        start = torch.ones(t, 1, *gen.shape_in) if init is None else torch.tensor(init[a][:, None])
        seeds = start.clone().requires_grad_(True)
        opt = sgd([seeds])
        weight, step_w = area_weight, 0.0
        rows = {k: [] for k in hist}
        for it in range(num_iter):
            masks, padded = gen.generate(seeds)
            x = pert.apply(masks).reshape(1, t, c, h, w).transpose(1, 2)
            prob = F.softmax(model(x), dim=1)[0, target]
            reward = -torch.log(prob) * reward_weight
            pad = padded.reshape(1, t, *padded.shape[2:])
            if method == "ep2d":
                reg = area_loss(pad.reshape(t, -1), area).mean() * weight
            else:
                reg = area_loss(pad.reshape(1, -1), area)[0] * weight
            core = step_loss(pad, area, torch_gen)[0] * step_w if method == "step" else torch.zeros(())
            energy = reward + reg + core
            opt.zero_grad()
            energy.backward()
            opt.step()
            seeds.data = seeds.data.clamp(0, 1)
            if method == "step":
                weight *= 1.0008668
                if it + 1 == step_start:
                    step_w = step_weight
            for k, val in (("reward", reward), ("area_loss", reg), ("step_loss", core)):
                rows[k].append(float(val.detach()))
        with torch.no_grad():
            all_masks.append(gen.generate(seeds)[0].reshape(t, h, w))
        for k in hist:
            hist[k].append(rows[k])
    history = {k: np.array(v, np.float32) for k, v in hist.items() if method == "step" or k != "step_loss"}
    return torch.stack(all_masks), history
