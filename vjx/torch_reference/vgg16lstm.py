"""A torch twin of :mod:`vjx.models.vgg16lstm`, with the state-dict names of the authors' definition
(``conv1_1`` .. ``conv5_3``, ``fc6``, ``fc7``, ``lstm1.fc_x``, ``lstm1.fc_h``, ``fc8_final``), so
that its state dict is what their checkpoints hold. Written from the description in the Flax module;
eval mode only (no dropout)."""
from __future__ import annotations

import torch
from torch import nn

from vjx.models.vgg16lstm import VGG16_STAGES


def torch_model(name: str, num_classes: int, layout: str | None = None) -> "VGG16LSTM":
    """The registry's twin (one layout: ``layout`` is unused): full VGG16-LSTM at 224 x 224."""
    del name, layout
    return VGG16LSTM(num_classes)


class ReluLSTMCell(nn.Module):
    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.fc_x = nn.Linear(inputs, 4 * hidden)
        self.fc_h = nn.Linear(hidden, 4 * hidden, bias=False)

    def forward(self, x, h, c):
        i, f, o, g = torch.split(self.fc_x(x) + self.fc_h(h), self.hidden, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.relu(g)
        return torch.sigmoid(o) * torch.relu(c), c


class VGG16LSTM(nn.Module):
    """``N x 3 x T x H x W`` -> ``N x classes`` log mean probabilities; ``features`` holds the last
    ``conv5_3`` activation (``N x C x T x h x w``) after a forward pass."""

    def __init__(self, num_classes: int = 24, stages=VGG16_STAGES, fc_width: int = 4096, hidden: int = 256,
                 size: int = 224, detach: bool = True):
        super().__init__()
        self.detach, self.hidden, self.names = detach, hidden, []
        channels = 3
        for s, widths in enumerate(stages):
            for j, width in enumerate(widths):
                name = f"conv{s + 1}_{j + 1}"
                setattr(self, name, nn.Conv2d(channels, width, 3, padding=1))
                self.names.append(name)
                channels = width
            self.names.append("pool")
        side = size // 2 ** len(stages)
        self.fc6 = nn.Linear(channels * side * side, fc_width)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.lstm1 = ReluLSTMCell(fc_width, hidden)
        self.fc8_final = nn.Linear(hidden, num_classes)
        self.features = None

    def forward(self, video):
        n, _, t = video.shape[:3]
        h = c = video.new_zeros(n, self.hidden)
        probabilities, features = [], []
        for step in range(t):
            y = video[:, :, step]
            for name in self.names:
                if name == "pool":
                    y = nn.functional.max_pool2d(y, 2, 2)
                else:
                    y = last = torch.relu(getattr(self, name)(y))
            features.append(last)                       # conv5_3 after its ReLU
            y = torch.relu(self.fc7(torch.relu(self.fc6(y.reshape(n, -1)))))
            if self.detach:
                h, c = h.detach(), c.detach()
            h, c = self.lstm1(y, h, c)
            probabilities.append(torch.softmax(self.fc8_final(h), dim=1))
        self.features = torch.stack(features, dim=2)
        return torch.log(torch.stack(probabilities, dim=1).mean(dim=1))
