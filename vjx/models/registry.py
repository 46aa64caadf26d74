"""What each model needs around it: frames, preprocessing, labels, Grad-CAM layer, EP sigma.

A :class:`ModelSpec` is everything about a model except its weights. ``get_spec`` accepts the
registry names (``i3d``, ``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``tsm_resnet50``) and the original
toolkit's short CLI names (``i3d``, ``r3d``, ``mc3``, ``r2plus1d``, ``tsm``).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib

import flax.linen as nn
import numpy as np

from vjx.errors import VjxError
from vjx.models.i3d import DEEPMIND_BN_EPSILON
from vjx.models.layers import TORCH_BN_EPSILON

KINETICS_MEAN = (0.43216, 0.39467, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.21699)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# DeepMind's I3D was trained on RGB in [-1, 1]. The original toolkit fed it Kinetics mean/std
# (most likely a bug); vjx uses the model's own training normalisation.
SYMMETRIC_MEAN = (0.5, 0.5, 0.5)
SYMMETRIC_STD = (0.5, 0.5, 0.5)
VGG16LSTM_MEAN = (0.50463, 0.45796, 0.4076)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model's input contract and metadata (hashable, so it can be a static jit argument).

    Attributes:
      name: registry name, e.g. ``"r2plus1d_18"``.
      module_path: ``"module:factory"``; ``factory(num_classes=...)`` returns the Flax module.
      num_frames: frames per clip T.
      resize: short side (pixels) that frames are resized to before the crop, aspect kept.
      crop: side of the center crop; the model input is ``T x crop x crop x 3``.
      mean, std: per-channel normalisation of RGB in [0, 1].
      label_set: ``"kinetics400"``, ``"epic-kitchens-noun"`` or ``"epic-kitchens-verb"``.
      num_classes: logits per clip.
      gradcam_layer: the tapped activation Grad-CAM uses by default.
      ep_sigma: smooth-max sigma of the EP mask generator (11 at 112 px, 23 at 224 px).
      batch_norm_epsilon: the epsilon of every BatchNorm of the network definition. Part of the spec
        because one architecture can have several definitions: I3D checkpoints in the
        kinetics_i3d_pytorch layout (the original toolkit's) use torch's 1e-5, DeepMind's and
        pytorch-i3d's use 1e-3. The registry holds the bundled weights' value; converting a
        checkpoint sets its layout's (``weight_conversion.checkpoint_spec``). 0.0: the network has
        no BatchNorm (VGG16-LSTM).
    """

    name: str
    module_path: str
    num_frames: int
    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    label_set: str
    num_classes: int
    gradcam_layer: str
    ep_sigma: float
    batch_norm_epsilon: float

    def make_module(self) -> nn.Module:
        """The Flax module for this spec: ``num_classes`` outputs, BatchNorms with ``batch_norm_epsilon``."""
        module_name, factory = self.module_path.split(":")
        return getattr(importlib.import_module(module_name), factory)(
            num_classes=self.num_classes, batch_norm_epsilon=self.batch_norm_epsilon)

    def with_label_set(self, label_set: str) -> "ModelSpec":
        """The same architecture with the head of another label set."""
        from vjx.data.labels import label_set_size
        return dataclasses.replace(self, label_set=label_set, num_classes=label_set_size(label_set))

    def at_size(self, crop: int, ep_sigma: float) -> "ModelSpec":
        """The same model fed ``crop x crop`` frames (the short side resized in the spec's proportion)."""
        return dataclasses.replace(self, resize=round(crop * self.resize / self.crop), crop=crop, ep_sigma=ep_sigma)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names aligned with the logits."""
        from vjx.data.labels import load_labels
        return load_labels(self.label_set)

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``T x H x W x 3`` -> float32 ``T x crop x crop x 3``: resized, cropped, normalised."""
        from vjx.data.preprocess import preprocess_frames
        return preprocess_frames(frames, resize=self.resize, crop=self.crop, mean=self.mean, std=self.std)

    def sample(self, frames: np.ndarray, *, repeat: bool = False) -> np.ndarray:
        """The original's "long range, first" sampling of ``num_frames`` from ``N x H x W x 3``
        (``repeat``: a shorter video is sampled with repeated frames and a warning, not refused)."""
        from vjx.data.sampling import sample_frames
        return sample_frames(frames, self.num_frames, repeat=repeat)

    def prepare(self, frames: np.ndarray, *, repeat: bool = False) -> np.ndarray:
        """Samples then preprocesses: uint8 ``N x H x W x 3`` -> float32 ``T x crop x crop x 3``."""
        return self.preprocess(self.sample(frames, repeat=repeat))


_VIDEO_RESNET = dict(num_frames=16, resize=128, crop=112, mean=KINETICS_MEAN, std=KINETICS_STD,
                     label_set="kinetics400", num_classes=400, gradcam_layer="layer4", ep_sigma=11.0,
                     batch_norm_epsilon=TORCH_BN_EPSILON)

MODELS: dict[str, ModelSpec] = {
    spec.name: spec for spec in (
        ModelSpec(name="i3d", module_path="vjx.models.i3d:i3d", num_frames=16, resize=256, crop=224,
                  mean=SYMMETRIC_MEAN, std=SYMMETRIC_STD, label_set="kinetics400", num_classes=400,
                  gradcam_layer="mixed_5c", ep_sigma=23.0, batch_norm_epsilon=DEEPMIND_BN_EPSILON),
        ModelSpec(name="r3d_18", module_path="vjx.models.resnet3d:r3d_18", **_VIDEO_RESNET),
        ModelSpec(name="mc3_18", module_path="vjx.models.resnet3d:mc3_18", **_VIDEO_RESNET),
        ModelSpec(name="r2plus1d_18", module_path="vjx.models.resnet3d:r2plus1d_18", **_VIDEO_RESNET),
        # The authors' preprocessing: frames resized to 240 x 320, a 224 centre crop, RGB in [0, 1]
        # minus their mean, times 255 (std 1/255 here). The head's size is the checkpoint's.
        ModelSpec(name="vgg16lstm", module_path="vjx.models.vgg16lstm:vgg16lstm", num_frames=8, resize=240,
                  crop=224, mean=VGG16LSTM_MEAN, std=(1 / 255,) * 3, label_set="ucf101-24", num_classes=24,
                  gradcam_layer="conv5", ep_sigma=23.0, batch_norm_epsilon=0.0),
        ModelSpec(name="tsm_resnet50", module_path="vjx.models.tsm:tsm_resnet50", num_frames=8,
                  resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  label_set="kinetics400", num_classes=400, gradcam_layer="layer4", ep_sigma=23.0,
                  batch_norm_epsilon=TORCH_BN_EPSILON),
    )
}

# The original toolkit's --model names.
ALIASES = {"r3d": "r3d_18", "mc3": "mc3_18", "r2plus1d": "r2plus1d_18", "tsm": "tsm_resnet50"}


def model_names() -> list[str]:
    """Registry names followed by the original CLI's short names."""
    return sorted(MODELS) + sorted(ALIASES)


@functools.lru_cache(maxsize=None)
def get_spec(name: str) -> ModelSpec:
    """The spec of a registry name or short alias; an unknown name is a VjxError with suggestions."""
    key = ALIASES.get(name, name)
    if key not in MODELS:
        close = difflib.get_close_matches(name, model_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise VjxError(f"unknown model architecture {name!r}; choose one of {', '.join(model_names())}.{hint}")
    return MODELS[key]

