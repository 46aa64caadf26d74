"""PyTorch twins of the vjx models and attribution pieces, used only to prove the port exact.

Nothing here is imported by ``import vjx``; importing this package needs torch (``vjx[torch]``).
Every torch model takes float32 ``N x C x T x H x W`` and returns logits ``N x num_classes``.
"""
from __future__ import annotations

import importlib

from vjx.models.registry import get_spec

# registry name -> module under vjx.torch_reference holding `torch_model(name, num_classes, layout=None)`
_FAMILY = {"i3d": "i3d", "r3d_18": "resnet3d", "mc3_18": "resnet3d", "r2plus1d_18": "resnet3d",
           "tsm_resnet50": "tsm", "vgg16lstm": "vgg16lstm"}


def build_torch_model(name: str, num_classes: int | None = None, layout: str | None = None):
    """The torch reference of registry model ``name`` in eval mode (random weights).

    Args:
      name: registry name or short alias.
      num_classes: classifier width (default: the spec's).
      layout: the state-dict layout to build when a family has several (see weight_conversion).
    """
    spec = get_spec(name)
    module = importlib.import_module(f"vjx.torch_reference.{_FAMILY[spec.name]}")
    return module.torch_model(spec.name, num_classes or spec.num_classes, layout=layout).eval()


def freeze(model):
    """Stops ``model``'s parameters from collecting gradients, so a backward pass computes input
    gradients only (what the original's extremal loop does); returns ``model``."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model
