"""What a model is apart from its weights (:class:`ModelSpec`), and what a model family declares
(:class:`Family`): its specs, its checkpoint layouts, its converter and its torch twin.

Every family module (``vjx/models/i3d.py``, ``resnet3d.py``, ``tsm.py``, ...) ends with a ``FAMILY``;
the registry, ``weight_conversion`` and ``vjx.torch_reference`` read those declarations, so a new
family is one module here, one converter module and one twin.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

import flax.linen as nn
import numpy as np
from flax.core import FrozenDict

KINETICS_MEAN = (0.43216, 0.39467, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.21699)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# DeepMind's I3D was trained on RGB in [-1, 1]. The original toolkit fed it Kinetics mean/std
# (most likely a bug); vjx uses the model's own training normalisation.
SYMMETRIC_MEAN = (0.5, 0.5, 0.5)
SYMMETRIC_STD = (0.5, 0.5, 0.5)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model's input contract and metadata (hashable, so it can be a static jit argument).

    Attributes:
      name: registry name, e.g. ``"r2plus1d_18"``.
      module_path: ``"module:factory"``; ``factory(num_classes=..., **settings)`` returns the Flax module.
      num_frames: frames per clip T.
      resize: short side (pixels) that frames are resized to before the crop, aspect kept.
      crop: side of the center crop; the model input is ``T x crop x crop x 3``.
      mean, std: per-channel normalisation of RGB in [0, 1].
      label_set: ``"kinetics400"``, ``"epic-kitchens-noun"``, ``"epic-kitchens-verb"``, or
        ``"checkpoint"`` for classes named by a checkpoint (``class_names``).
      num_classes: logits per clip.
      gradcam_layer: the tapped activation Grad-CAM uses by default.
      ep_sigma: smooth-max sigma of the EP mask generator (11 at 112 px, 23 at 224 px).
      settings: the family's own factory settings (I3D's BatchNorm epsilon, a transformer's widths
        and depth, ...). Part of the spec because one architecture can have several definitions
        (I3D in the kinetics_i3d_pytorch layout uses BatchNorm epsilon 1e-5, DeepMind's 1e-3) and
        a transformer checkpoint sets its sizes; converting a checkpoint sets them.
      class_names: class names a checkpoint brings (Hugging Face ``id2label``); empty: the label set's.
      attention: how the module's sown attention maps mix its tokens: ``"joint"`` (VideoMAE),
        ``"divided"`` (TimeSformer), or ``""`` for a model without attention (see
        :mod:`vjx.attribution.attention`).
      excitation_layer: the tap where contrastive excitation backprop reads its map, below its
        contrast layer (``gradcam_layer``); empty: ``gradcam_layer`` itself.
      recurrent: the model runs a recurrent network over per-frame features (VGG16-LSTM): excitation
        backprop explains it with EB-R, not with the 3-D CNNs' rules.
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
    settings: Mapping[str, Any] = FrozenDict()
    class_names: tuple[str, ...] = ()
    attention: str = ""
    excitation_layer: str = ""
    recurrent: bool = False

    def __post_init__(self):
        object.__setattr__(self, "settings", FrozenDict(self.settings))

    def make_module(self) -> nn.Module:
        """The Flax module for this spec: ``num_classes`` outputs, built with the family's ``settings``."""
        module_name, factory = self.module_path.split(":")
        return getattr(importlib.import_module(module_name), factory)(num_classes=self.num_classes,
                                                                        **self.settings)

    def with_settings(self, **settings: Any) -> "ModelSpec":
        """The same spec with some factory settings replaced."""
        return dataclasses.replace(self, settings={**self.settings, **settings})

    def with_label_set(self, label_set: str) -> "ModelSpec":
        """The same architecture with the head of another label set."""
        from vjx.data.labels import label_set_size
        return dataclasses.replace(self, label_set=label_set, num_classes=label_set_size(label_set), class_names=())

    def at_size(self, crop: int, ep_sigma: float) -> "ModelSpec":
        """The same model fed ``crop x crop`` frames (the short side resized in the spec's proportion)."""
        return dataclasses.replace(self, resize=round(crop * self.resize / self.crop), crop=crop, ep_sigma=ep_sigma)

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names aligned with the logits."""
        if self.class_names:
            return self.class_names
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


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family as one unit: what the rest of vjx needs to know about it.

    Attributes:
      specs: the registry entries of its variants.
      layouts: checkpoint layout name -> the factory settings that layout's network definition
        fixes (e.g. ``{"kinetics_i3d_pytorch": {"batch_norm_epsilon": 1e-5}}``); the converter
        module has a reader for each.
      converter: module (under ``weight_conversion``) whose ``LAYOUTS`` read these layouts.
      twin: module (under ``vjx.torch_reference``) with ``torch_model(name, num_classes, layout=None)``.
      pretrained: registry name -> {weight set: ``"module:function"`` returning its variables}.
      aliases: the original toolkit's short names of its variants.
    """

    specs: tuple[ModelSpec, ...]
    layouts: Mapping[str, Mapping[str, Any]]
    converter: str
    twin: str
    pretrained: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
