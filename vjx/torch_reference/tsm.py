"""PyTorch twin of TSM (ResNet-50, residual shift, n_div 8) with the public checkpoints' key names.

Two layouts:

* ``"tsm"`` — mit-han-lab/temporal-shift-module checkpoints, saved from ``nn.DataParallel``:
  ``module.base_model.conv1.weight``, ``module.base_model.layer1.0.conv1.net.weight`` (the shifted
  conv wrapped as ``.net``), ``module.new_fc.weight``; ``base_model.fc`` is a Dropout (no keys).
* ``"tsm_epic"`` — EPIC-Kitchens-55 action-models TSM (``epic-kitchens/action-models`` on torch hub):
  the same backbone under ``base_model.`` (no ``module.`` prefix; its ``last_linear`` is a Dropout)
  and two heads, ``fc_verb`` (125 verbs) and ``fc_noun`` (352 nouns).
"""
from __future__ import annotations

import torch
from torch import nn

from vjx.models.tsm import EXPANSION, FOLD_DIV, RESNET50_STAGES

EPIC_HEADS = {"verb": 125, "noun": 352}


class TemporalShift(nn.Module):
    """Shifts ``(N*T) x C x H x W`` along time (as mit-han-lab's, not in place), then runs ``net``."""

    def __init__(self, net: nn.Module, num_segments: int):
        super().__init__()
        self.net = net
        self.num_segments = num_segments

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        x = x.view(nt // self.num_segments, self.num_segments, c, h, w)
        fold = c // FOLD_DIV
        out = torch.zeros_like(x)
        out[:, :-1, :fold] = x[:, 1:, :fold]
        out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
        out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
        return self.net(out.view(nt, c, h, w))


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on conv2) with ``conv1`` wrapped in a TemporalShift."""

    def __init__(self, cin: int, width: int, stride: int, num_segments: int):
        super().__init__()
        self.conv1 = TemporalShift(nn.Conv2d(cin, width, 1, bias=False), num_segments)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * EXPANSION)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != width * EXPANSION:
            self.downsample = nn.Sequential(nn.Conv2d(cin, width * EXPANSION, 1, stride, bias=False),
                                            nn.BatchNorm2d(width * EXPANSION))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """The shifted ResNet-50 backbone: ``(N*T) x 3 x H x W -> (N*T) x 2048`` (pooled, dropout)."""

    def __init__(self, num_segments: int, last_layer_name: str):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for stage, (blocks, width, stride) in enumerate(RESNET50_STAGES, start=1):
            layer = []
            for i in range(blocks):
                layer.append(Bottleneck(cin, width, stride if i == 0 else 1, num_segments))
                cin = width * EXPANSION
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.last_layer_name = last_layer_name
        setattr(self, last_layer_name, nn.Dropout(0.5))

    def forward(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
            if taps is not None:
                taps[f"layer{stage}"] = x
        return getattr(self, self.last_layer_name)(torch.flatten(self.avgpool(x), 1))


class TSN(nn.Module):
    """TSM classifier on ``N x C x T x H x W``: per-segment logits averaged over T.

    ``heads`` maps attribute names to widths (``{"new_fc": 400}`` or EPIC's
    ``{"fc_verb": 125, "fc_noun": 352}``); ``forward`` returns the logits of ``self.head``.
    After ``forward(x, taps={})`` the dict holds ``layer1`` .. ``layer4`` as ``(N*T) x C x h x w``.
    """

    def __init__(self, heads: dict[str, int], head: str, num_segments: int, last_layer_name: str):
        super().__init__()
        self.num_segments = num_segments
        self.base_model = ResNet50(num_segments, last_layer_name)
        for name, width in heads.items():
            setattr(self, name, nn.Linear(2048, width))
        self.head = head

    def forward(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        n, c, t, h, w = x.shape
        if t != self.num_segments:
            raise ValueError(f"this torch TSM was built for {self.num_segments} segments, got T={t}")
        frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        logits = getattr(self, self.head)(self.base_model(frames, taps))
        return logits.view(n, t, -1).mean(dim=1)


class DataParallelKeys(nn.Module):
    """Holds a model as ``.module`` so its state-dict keys get ``nn.DataParallel``'s ``module.`` prefix."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        return self.module(x, taps)


def torch_model(name: str, num_classes: int, layout: str | None = None, *, head: str | None = None,
                num_segments: int = 8) -> nn.Module:
    """A randomly initialised torch TSM whose state dict has a public checkpoint's keys.

    Args:
      name: ``"tsm_resnet50"``.
      num_classes: width of ``new_fc`` for ``"tsm"``; for ``"tsm_epic"`` 125 or 352, which picks the
        head that ``forward`` returns (verb or noun) unless ``head`` is given.
      layout: ``"tsm"`` (default) or ``"tsm_epic"``.
      head: ``"verb"`` or ``"noun"`` (``"tsm_epic"`` only): the head whose logits ``forward`` returns;
        switch later by setting ``model.head = "fc_verb"`` / ``"fc_noun"`` (``model.module.head`` for
        ``"tsm"``). Both heads are always in the state dict.
      num_segments: T the shift is built for; ``forward`` takes ``N x C x T x H x W`` with this T.
    Returns:
      the module; ``forward(x)`` gives logits ``N x width``.
    """
    if name != "tsm_resnet50":
        raise ValueError(f"unknown TSM variant {name!r}")
    layout = layout or "tsm"
    if layout == "tsm":
        return DataParallelKeys(TSN({"new_fc": num_classes}, "new_fc", num_segments, "fc"))
    if layout == "tsm_epic":
        if head is None:
            head = {width: h for h, width in EPIC_HEADS.items()}.get(num_classes)
        if head not in EPIC_HEADS or EPIC_HEADS[head] != num_classes:
            raise ValueError(f"EPIC TSM heads are verb (125) and noun (352); got head={head!r}, "
                             f"num_classes={num_classes}")
        return TSN({f"fc_{h}": w for h, w in EPIC_HEADS.items()}, f"fc_{head}", num_segments, "last_linear")
    raise ValueError(f"unknown TSM layout {layout!r}; use 'tsm' or 'tsm_epic'")
