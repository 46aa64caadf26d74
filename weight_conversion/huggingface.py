"""Hugging Face checkpoint directories (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``).

The directory ``save_pretrained`` writes, or a downloaded snapshot of a hub repository. The config's
``model_type`` picks the family (a converter module with ``HF_MODEL_TYPE``), whose
``spec_from_config`` builds the spec (sizes, frames, image size, classes from ``id2label``) and whose
layout converts the tensors. ``preprocessor_config.json``, when present, gives the mean, std and
sizes the checkpoint was trained with. Nothing is downloaded.

The converters are tables ``(torch key, Flax path, transform)``: :func:`table_to_flax` checks every
tensor against the module the config describes and names the first that is missing or misshapen.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from flax import traverse_util

from vjx.errors import VjxError
from vjx.models.registry import FAMILIES
from vjx.models.spec import ModelSpec
from weight_conversion.common import FlatVariables, StateDict, check_all_used, linear_kernel, load_state_dict, take

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
Entry = tuple[str, tuple[str, ...], Callable[[np.ndarray], np.ndarray]]


def is_checkpoint_dir(path: str) -> bool:
    """Whether ``path`` is a directory in Hugging Face's layout (it has a ``config.json``)."""
    return os.path.isfile(os.path.join(path, CONFIG))


def converters() -> dict[str, Any]:
    """``model_type`` -> the converter module of the family that reads it."""
    modules = (importlib.import_module(family.converter) for family in FAMILIES)
    return {module.HF_MODEL_TYPE: module for module in modules if hasattr(module, "HF_MODEL_TYPE")}


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise VjxError(f"{path!r} is not readable JSON ({e}); re-save the checkpoint with save_pretrained") from None
    if not isinstance(value, dict):
        raise VjxError(f"{path!r} holds no JSON object; re-save the checkpoint with save_pretrained")
    return value


def load_checkpoint_dir(path: str, spec: ModelSpec) -> tuple[ModelSpec, StateDict]:
    """The spec a Hugging Face checkpoint directory describes, and its tensors.

    Args:
      path: the directory.
      spec: the registry spec the caller asked for; the checkpoint must be of its family.
    Raises:
      VjxError: an unreadable config, a ``model_type`` vjx has no family for, a config of another
        model, or no weight file.
    """
    config = _read_json(os.path.join(path, CONFIG))
    readers = converters()
    model_type = config.get("model_type")
    if model_type not in readers:
        raise VjxError(f"{os.path.join(path, CONFIG)!r} describes a {model_type!r} model, a family vjx does not "
                       f"have; vjx reads Hugging Face checkpoints of: {', '.join(sorted(readers))}")
    converter = readers[model_type]
    if converter.MODEL != spec.name:
        raise VjxError(f"checkpoint {path!r} holds a {model_type} model, not {spec.name}; "
                       f"load it with the model {converter.MODEL}")
    preprocessor_path = os.path.join(path, PREPROCESSOR)
    preprocessor = _read_json(preprocessor_path) if os.path.isfile(preprocessor_path) else {}
    spec = converter.spec_from_config(config, preprocessor, spec, what=os.path.join(path, CONFIG))
    weights = next((os.path.join(path, name) for name in WEIGHT_FILES if os.path.isfile(os.path.join(path, name))),
                   None)
    if weights is None:
        raise VjxError(f"checkpoint {path!r} has no weights: expected {' or '.join(WEIGHT_FILES)} beside {CONFIG}")
    return spec, load_state_dict(weights)


def config_number(config: Mapping, key: str, kind: type, what: str, default=None):
    """``config[key]`` as ``int`` or ``float`` (``default`` when absent); a VjxError naming the key otherwise."""
    value = config.get(key, default)
    if isinstance(value, (list, tuple)) and len(set(value)) == 1:
        value = value[0]                                   # image_size / patch_size given as [n, n]
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
            or (kind is int and value != int(value))):
        raise VjxError(f"{what}: {key} must be a positive {kind.__name__}, got {value!r}")
    return kind(value)


def class_names(config: Mapping, num_classes: int, what: str) -> tuple[str, ...]:
    """The config's ``id2label`` in logit order (empty when it has none)."""
    id2label = config.get("id2label") or {}
    if not id2label:
        return ()
    try:
        names = tuple(str(id2label[str(i)] if str(i) in id2label else id2label[i]) for i in range(num_classes))
    except KeyError as e:
        raise VjxError(f"{what}: id2label has no label for class {e.args[0]} of {num_classes}") from None
    return names


def preprocessing(preprocessor: Mapping) -> dict[str, Any]:
    """Mean, std, resize and crop from ``preprocessor_config.json`` (the spec's where it says nothing)."""
    out: dict[str, Any] = {}
    if "image_mean" in preprocessor and "image_std" in preprocessor:
        out["mean"] = tuple(float(v) for v in preprocessor["image_mean"])
        out["std"] = tuple(float(v) for v in preprocessor["image_std"])
    size = preprocessor.get("size")
    if isinstance(size, Mapping) and "shortest_edge" in size:
        out["resize"] = int(size["shortest_edge"])
    return out


def configured_spec(spec: ModelSpec, settings: dict, config: Mapping, preprocessor: Mapping, what: str, *,
                    gradcam_layer: str) -> ModelSpec:
    """``spec`` with a transformer config's settings (which include ``num_frames`` and ``image_size``),
    Grad-CAM layer, classes and preprocessing; a head of another width than the label set's names
    its classes by ``id2label`` alone (label set ``"checkpoint"``)."""
    num_classes = len(config["id2label"]) if config.get("id2label") else spec.num_classes
    fields = dict(settings=settings, num_frames=settings["num_frames"], crop=settings["image_size"],
                  resize=settings["image_size"], num_classes=num_classes,
                  class_names=class_names(config, num_classes, what),
                  label_set=spec.label_set if num_classes == spec.num_classes else "checkpoint",
                  gradcam_layer=gradcam_layer)
    return dataclasses.replace(spec, **{**fields, **preprocessing(preprocessor)})


def same(w: np.ndarray) -> np.ndarray:
    """A tensor stored as Flax stores it (LayerNorm scale and bias, embeddings)."""
    return w


def linear(torch_prefix: str, path: tuple[str, ...], bias: bool = True) -> list[Entry]:
    """Table rows of a torch Linear ``torch_prefix`` at Flax ``path`` (kernel transposed)."""
    out = [(f"{torch_prefix}.weight", (*path, "kernel"), linear_kernel)]
    return out + ([(f"{torch_prefix}.bias", (*path, "bias"), same)] if bias else [])


def norm(torch_prefix: str, path: tuple[str, ...]) -> list[Entry]:
    """Table rows of a torch LayerNorm (``weight`` is Flax's ``scale``)."""
    return [(f"{torch_prefix}.weight", (*path, "scale"), same), (f"{torch_prefix}.bias", (*path, "bias"), same)]


def table_to_flax(state: StateDict, spec: ModelSpec, table: Iterable[Entry]) -> FlatVariables:
    """Converts ``state`` by ``table``, checking every tensor against ``spec``'s module.

    Raises:
      VjxError: naming the first missing tensor, the first whose shape does not fit the module the
        config describes, or the keys left over.
    """
    from weight_conversion import abstract_variables

    expected = traverse_util.flatten_dict(dict(abstract_variables(spec)))
    used: set[str] = set()
    out: FlatVariables = {}
    for key, path, transform in table:
        tensor = take(state, used, key)
        value = transform(tensor)
        want = expected[("params", *path)].shape
        if value.shape != want:
            raise VjxError(f"tensor {key!r} has shape {tuple(tensor.shape)}, which does not fit the model its "
                           f"config describes ({'/'.join(path)} needs {tuple(want)} after conversion)")
        out[("params", *path)] = value
    check_all_used(state, used)
    return out
