"""PyTorch twins of torchvision's video ResNets (r3d_18, mc3_18, r2plus1d_18).

Written for vjx (torchvision has no CPU build here); state-dict keys and shapes are torchvision's
(``stem.0.weight``, ``layer1.0.conv1.0.0.weight``, ``layer2.0.downsample.0.weight``, ``fc.weight``),
so torchvision's published checkpoints load into them. Input ``N x 3 x T x H x W``.
"""
from __future__ import annotations

import torch
from torch import nn

# Written from torchvision's definitions independently of vjx.models.resnet3d, so a mistake in
# one is not silently shared by the other. variant -> (stem, conv builder of each stage)
_VARIANTS = {
    "r3d_18": ("basic", ("3d", "3d", "3d", "3d")),
    "mc3_18": ("basic", ("3d", "no_temporal", "no_temporal", "no_temporal")),
    "r2plus1d_18": ("r2plus1d", ("2plus1d", "2plus1d", "2plus1d", "2plus1d")),
}


def _conv_unit(kind: str, in_planes: int, out_planes: int, mid: int, stride: int) -> nn.Module:
    """Conv3DSimple / Conv3DNoTemporal / Conv2Plus1D."""
    if kind == "3d":
        return nn.Conv3d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
    if kind == "no_temporal":
        return nn.Conv3d(in_planes, out_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                         bias=False)
    return nn.Sequential(
        nn.Conv3d(in_planes, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(mid), nn.ReLU(),
        nn.Conv3d(mid, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False))


class BasicBlock(nn.Module):
    """relu(conv2(conv1(x)) + downsample(x)); no in-place ops (safe for gradient checks)."""

    def __init__(self, kind: str, in_planes: int, planes: int, stride: int):
        super().__init__()
        mid = (in_planes * planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * planes)
        self.conv1 = nn.Sequential(_conv_unit(kind, in_planes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU())
        self.conv2 = nn.Sequential(_conv_unit(kind, planes, planes, mid, 1), nn.BatchNorm3d(planes))
        self.downsample = None
        if stride != 1 or in_planes != planes:
            ds_stride = (1 if kind == "no_temporal" else stride, stride, stride)
            self.downsample = nn.Sequential(nn.Conv3d(in_planes, planes, 1, stride=ds_stride, bias=False),
                                            nn.BatchNorm3d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.conv2(self.conv1(x)) + shortcut)


class VideoResNet(nn.Module):
    """torchvision's VideoResNet with BasicBlocks [2, 2, 2, 2]; ``forward_features`` gives the taps."""

    def __init__(self, variant: str, num_classes: int):
        super().__init__()
        stem, kinds = _VARIANTS[variant]
        if stem == "basic":
            self.stem = nn.Sequential(nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
                                      nn.BatchNorm3d(64), nn.ReLU())
        else:
            self.stem = nn.Sequential(nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
                                      nn.BatchNorm3d(45), nn.ReLU(),
                                      nn.Conv3d(45, 64, (3, 1, 1), padding=(1, 0, 0), bias=False),
                                      nn.BatchNorm3d(64), nn.ReLU())
        in_planes = 64
        for i, (kind, planes) in enumerate(zip(kinds, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            first = BasicBlock(kind, in_planes, planes, stride)
            setattr(self, f"layer{i + 1}", nn.Sequential(first, BasicBlock(kind, planes, planes, 1)))
            in_planes = planes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tapped activations ``stem``, ``layer1`` .. ``layer4`` (``N x C x T' x H' x W'``)."""
        out = {"stem": self.stem(x)}
        for i in range(1, 5):
            out[f"layer{i}"] = getattr(self, f"layer{i}")(out["stem" if i == 1 else f"layer{i - 1}"])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.forward_features(x)["layer4"]).flatten(1))


def torch_model(name: str, num_classes: int, layout: str | None = None) -> nn.Module:
    """The torch VideoResNet ``name`` (r3d_18, mc3_18, r2plus1d_18) in torchvision's layout."""
    if layout not in (None, "torchvision_video_resnet"):
        raise ValueError(f"VideoResNets come in layout 'torchvision_video_resnet' only, not {layout!r}")
    return VideoResNet(name, num_classes)
