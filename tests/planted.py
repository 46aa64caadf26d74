"""A tiny model with planted evidence: its target logit depends only on one known block.

The video is mid-gray with a red box inside ``BLOCK`` (frames t0:t1, rows h0:h1, cols w0:w1). The
model computes per-pixel redness ``relu(r - (g + b) / 2)`` (a 1x1x1 convolution, tapped as
``"features"`` for Grad-CAM), averages it over the block only, and maps that to class 1's logit.
So pixels outside the block have exactly zero influence on any logit, and any faithful attribution
must put its mass inside the block. :func:`planted_model` wraps it as a ``vjx.Model`` with a tiny spec,
so the pipeline and the sweep run on it in process, in seconds.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vjx.model import Model
from vjx.models.layers import Conv, tap
from vjx.models.registry import ModelSpec

T, SIZE = 8, 32
BLOCK = ((2, 6), (10, 22), (8, 20))  # (t0, t1), (h0, h1), (w0, w1)
TARGET = 1
NUM_CLASSES = 3


def block_indicator(shape=(T, SIZE, SIZE), block=BLOCK) -> np.ndarray:
    """float32 ``T x H x W``, 1 inside the block."""
    m = np.zeros(shape, np.float32)
    (t0, t1), (h0, h1), (w0, w1) = block
    m[t0:t1, h0:h1, w0:w1] = 1
    return m


class PlantedEvidence(nn.Module):
    """``B x T x H x W x 3 -> B x 3`` logits; class 1 = gain * mean redness inside ``block``.

    Any clip shape works (default: ``T x SIZE x SIZE`` with ``BLOCK``); the block must fit in it.
    """

    block: tuple = BLOCK

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        features = nn.relu(Conv(1, (1, 1, 1), use_bias=False, name="redness")(x))   # B T H W 1
        features = tap(self, "features", features)
        inside = jnp.asarray(block_indicator(x.shape[1:4], self.block))[None, ..., None]
        evidence = (features * inside).sum((1, 2, 3)) / inside.sum()                  # B 1
        return nn.Dense(NUM_CLASSES, name="head")(evidence)


def planted_variables(gain: float = 20.0) -> dict:
    """Hand-set weights: redness = r - (g + b)/2; logits = (0, gain * evidence, 0) - gain/4."""
    kernel = np.array([1.0, -0.5, -0.5], np.float32).reshape(1, 1, 1, 3, 1)
    head = np.array([[0.0, gain, 0.0]], np.float32)
    return {"params": {"redness": {"kernel": kernel},
                       "head": {"kernel": head, "bias": np.array([0.0, -gain / 4, 0.0], np.float32)}}}


def planted_video(batch: int = 1, shape=(T, SIZE, SIZE), block=BLOCK) -> np.ndarray:
    """float32 ``B x T x H x W x 3`` (default ``T x SIZE x SIZE``): gray (0.5) with a pure red box in the block."""
    video = np.full((batch, *shape, 3), 0.5, np.float32)
    (t0, t1), (h0, h1), (w0, w1) = block
    video[:, t0:t1, h0:h1, w0:w1] = (1.0, 0.0, 0.0)
    return video


def planted_apply(variables, video, **kwargs):
    """``apply_fn(variables, video) -> logits`` of the planted model (flax kwargs pass through)."""
    return PlantedEvidence().apply(variables, video, **kwargs)


# The planted model as a loaded vjx.Model: frames of SIZE x SIZE pixels in [0, 255] become its input
# in [0, 1] unchanged (no resize, no crop, mean 0, std 1). Its label set has no label file, so runs
# name its classes "class 0", "class 1", "class 2".
PLANTED_SPEC = ModelSpec(name="planted", module_path="tests.planted:planted_module", num_frames=T, resize=SIZE,
                         crop=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), label_set="planted",
                         num_classes=NUM_CLASSES, gradcam_layer="features", ep_sigma=5.0)


def planted_module(num_classes: int = NUM_CLASSES) -> PlantedEvidence:
    """The spec's factory: the planted module (NUM_CLASSES logits; no settings)."""
    assert num_classes == NUM_CLASSES
    return PlantedEvidence()


def planted_model(gain: float = 20.0) -> Model:
    """The planted module with :func:`planted_variables` and :data:`PLANTED_SPEC`."""
    return Model(PlantedEvidence(), planted_variables(gain), PLANTED_SPEC)


def write_planted_frames(folder, num_frames: int = T) -> str:
    """Writes the planted video (its first ``num_frames`` frames) as a frame folder; returns its path."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i, frame in enumerate(planted_video(1)[0][:num_frames]):
        Image.fromarray((frame * 255 + 0.5).astype(np.uint8)).save(folder / f"{i:05d}.png")
    return str(folder)
