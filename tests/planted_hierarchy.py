"""A planted hierarchical video set whose truth is known, and a tiny backbone to learn it.

Each clip is noise with one moving object: grandparent = its colour (red / green), parent = its shape
(square / cross), leaf = its direction (left / right), so 8 leaves, 4 parents, 2 grandparents. The
object's box in every frame is returned, so a map can be scored by the pointing game; the object stays
in rows 0-11, so the box mirrored top to bottom (:func:`mirrored`, rows 20-31) is a control that never
holds it and lies more than one feature cell (4 px) away.
"""
from __future__ import annotations

import flax.linen as nn
import numpy as np

from vjx.models.layers import Conv, tap
from vjx.models.registry import ModelSpec
from vjx.prototypes.hierarchy import Hierarchy

T, SIZE, OBJECT, NOISE = 6, 32, 8, 0.1
COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 1.0, 0.1)}
SHAPES = ("square", "cross")
DIRECTIONS = {"left": -4, "right": 4}          # pixels per frame; positions stay on the 4-px grid
CSV = "".join(f"{c}_{s}_{d},{c}_{s},{c}\n" for c in COLOURS for s in SHAPES for d in DIRECTIONS)


def write_hierarchy(path) -> str:
    """Writes the planted hierarchy CSV (leaf, parent, grandparent) and returns its path."""
    with open(path, "w") as f:
        f.write(CSV)
    return str(path)


def planted_clips(hierarchy: Hierarchy, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per_class`` clips of every leaf: float32 ``N x T x SIZE x SIZE x 3`` (noise around 0),
    leaf indices ``N`` and the object's box (its square, also for crosses) as ``(x0, y0, x1, y1)``
    ``N x T x 4``, edges included."""
    rng = np.random.default_rng(seed)
    videos, leaves, boxes = [], [], []
    for leaf, name in enumerate(hierarchy.levels[0]):
        colour, shape, direction = name.split("_")
        for _ in range(per_class):
            video = rng.normal(0.0, NOISE, (T, SIZE, SIZE, 3)).astype(np.float32)
            box = np.zeros((T, 4), np.float32)
            step = DIRECTIONS[direction]
            x0 = 4 * rng.integers(0, 2) + (0 if step > 0 else SIZE - OBJECT - 4)
            y0 = 4 * rng.integers(0, 2)            # rows 0-11: the box mirrored top to bottom is 8 px away
            sprite = np.ones((OBJECT, OBJECT), bool)
            if shape == "cross":
                sprite[:] = False
                sprite[OBJECT // 2 - 1:OBJECT // 2 + 1] = sprite[:, OBJECT // 2 - 1:OBJECT // 2 + 1] = True
            for t in range(T):
                x = x0 + step * t
                box[t] = (x, y0, x + OBJECT - 1, y0 + OBJECT - 1)
                video[t, y0:y0 + OBJECT, x:x + OBJECT][sprite] = COLOURS[colour]
            videos.append(video)
            leaves.append(leaf)
            boxes.append(box)
    return np.stack(videos), np.array(leaves), np.stack(boxes)


def mirrored(boxes: np.ndarray) -> np.ndarray:
    """Boxes ``... x 4`` flipped top to bottom."""
    x0, y0, x1, y1 = np.moveaxis(boxes, -1, 0)
    return np.stack([x0, SIZE - 1 - y1, x1, SIZE - 1 - y0], -1)


class TinyBackbone(nn.Module):
    """Two strided 3x3x3 convolutions: ``B x T x 32 x 32 x 3 -> B x T x 8 x 8 x 16``, tapped as ``features``."""

    num_classes: int = 1
    batch_norm_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = nn.relu(Conv(16, (3, 3, 3), (1, 2, 2), 1, name="conv1")(x))
        x = nn.relu(Conv(16, (3, 3, 3), (1, 2, 2), 1, name="conv2")(x))
        x = tap(self, "features", x)
        return nn.Dense(self.num_classes, name="fc")(x.mean((1, 2, 3)))


TINY_SPEC = ModelSpec(name="tiny", module_path="tests.planted_hierarchy:TinyBackbone", num_frames=T, resize=SIZE,
                      crop=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), label_set="planted", num_classes=1,
                      gradcam_layer="features", ep_sigma=5.0, settings={"batch_norm_epsilon": 1e-5})
