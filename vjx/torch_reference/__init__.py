"""PyTorch twins of the vjx models and attribution pieces, used only to prove the port exact.

Nothing here is imported by ``import vjx``; importing this package needs torch (``vjx[torch]``).
Every torch model takes float32 ``N x C x T x H x W`` and returns logits ``N x num_classes``.
"""
from __future__ import annotations

import importlib

from vjx.models.registry import get_family, get_spec


def build_torch_model(name: str, num_classes: int | None = None, layout: str | None = None):
    """The torch reference of registry model ``name`` in eval mode (random weights).

    Args:
      name: registry name or short alias.
      num_classes: classifier width (default: the spec's).
      layout: the state-dict layout to build when a family has several (see weight_conversion).

    The twin lives where the model's family says (``Family.twin``).
    """
    spec = get_spec(name)
    module = importlib.import_module(get_family(spec.name).twin)
    return module.torch_model(spec.name, num_classes or spec.num_classes, layout=layout).eval()


def freeze(model):
    """Stops ``model``'s parameters from collecting gradients, so a backward pass computes input
    gradients only (what the original's extremal loop does); returns ``model``."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model
