"""The original toolkit's backprop attributions and Grad-CAM in PyTorch, for parity tests.

Layout as the original: inputs ``N x C x T x H x W``. The backward signal is one-hot on the target
logit. Display normalisation is per video (vjx's choice; the original pools the whole batch, which
is the same for one video).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _backward_signal(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    signal = torch.zeros_like(logits)
    signal[torch.arange(len(labels)), labels] = 1.0
    return signal


def gradient(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
             multiply_input: bool = False) -> torch.Tensor:
    """d target logit / d input (times the input if asked): ``N x C x T x H x W``."""
    x = inputs.detach().clone().requires_grad_(True)
    logits = model(x)
    logits.backward(_backward_signal(logits, labels))
    grads = x.grad.detach()
    return grads * inputs.detach() if multiply_input else grads


def integrated_gradients(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                         baseline: Sequence[float], steps: int = 25) -> torch.Tensor:
    """The original's IG: left Riemann sum over alphas ``i/steps``, times ``(input - baseline)``.

    Args:
      baseline: one value per channel in normalised space (the original: always the Kinetics
        normalisation's black, (-1.8952, -1.7822, -1.7349); vjx's tests pass each model's black).
    Returns:
      ``N x C x T x H x W``.
    """
    base = torch.as_tensor(baseline, dtype=inputs.dtype).reshape(1, -1, 1, 1, 1).expand_as(inputs)
    total = torch.zeros_like(inputs)
    for i in range(steps):
        total += gradient(model, base + (float(i) / steps) * (inputs - base), labels) / steps
    return total * (inputs - base)


def grad_cam(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, layer: torch.nn.Module,
             normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's Grad-CAM on ``layer`` (whose output is ``N x C' x T' x H' x W'``).

    Returns:
      ``(maps, raw)``: maps ``N x T x H x W`` (time repeated, normalised per video if asked, then
      bilinearly resized per frame, align_corners=False), raw ``N x T' x H' x W'`` un-normalised.
    """
    saved = {}

    def forward_hook(module, args, output):
        saved["activation"] = output
        output.register_hook(lambda grad: saved.__setitem__("gradient", grad))

    handle = layer.register_forward_hook(forward_hook)
    try:
        logits = model(inputs.detach().clone().requires_grad_(True))
        logits.backward(_backward_signal(logits, labels))
    finally:
        handle.remove()
    activation, grad = saved["activation"].detach(), saved["gradient"].detach()
    weights = grad.mean(dim=(3, 4), keepdim=True)                                  # N C T' 1 1
    raw = F.relu((weights * activation).sum(dim=1))                                 # N T' H' W'
    n, _, t, h, w = inputs.shape
    cam = raw.repeat_interleave(t // raw.shape[1], dim=1)
    if normalize:
        lo = cam.amin(dim=(1, 2, 3), keepdim=True)
        cam = (cam - lo) / (cam.amax(dim=(1, 2, 3), keepdim=True) - lo)
    maps = F.interpolate(cam.reshape(n * t, 1, *cam.shape[2:]), size=(h, w), mode="bilinear",
                         align_corners=False).reshape(n, t, h, w)
    return maps, raw


def display(attribution: torch.Tensor, polarity: str = "both", percentile: float = 99.9) -> np.ndarray:
    """Polarity, channel mean, clip to ``[0, p]`` with p the per-video percentile, scale to [0, 1].

    Args:
      attribution: ``N x C x T x H x W``.
    Returns:
      ``N x T x H x W`` float32 numpy.
    """
    if polarity == "both":
        a = attribution.abs()
    elif polarity == "positive":
        a = attribution.clamp(min=0.0)
    else:
        a = -attribution.clamp(max=0.0)
    gray = a.mean(dim=1).detach().numpy()
    vmax = np.percentile(gray.reshape(len(gray), -1), percentile, axis=1).reshape(-1, 1, 1, 1)
    return (np.clip(gray, 0.0, vmax) / vmax).astype(np.float32)
