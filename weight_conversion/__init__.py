"""torch checkpoints -> Flax variables for the vjx models, and orbax save/restore of the result.

    from weight_conversion import checkpoint_spec, convert_state_dict, load_state_dict
    state = load_state_dict("r2plus1d_18-91a641e6.pth")
    spec = checkpoint_spec(state, get_spec("r2plus1d_18"))
    model = vjx.Model(spec.make_module(), convert_state_dict(state, spec), spec)

The layout (torchvision, pytorch-i3d, kinetics_i3d_pytorch, TSM, EPIC TSM) is detected from the keys.
A layout fixes the weights' names and also the network definition they belong to: the factory
settings its family declares for it, which :func:`checkpoint_spec` writes into the spec
(kinetics_i3d_pytorch, the original toolkit's I3D, uses BatchNorm epsilon 1e-5 where DeepMind's I3D
uses 1e-3). :data:`LAYOUTS` is derived from the families (``vjx.models.registry.FAMILIES``): each
names its converter module here, whose ``LAYOUTS`` read the layouts the family declares.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vjx.errors import VjxError
from vjx.models.registry import FAMILIES, ModelSpec
from vjx.models.spec import Family
from weight_conversion.checkpoint import restore_checkpoint, save_checkpoint
from weight_conversion.common import Layout, StateDict, load_state_dict, merge_strict


def _family_layouts(family: Family) -> tuple[Layout, ...]:
    """The converter's layouts of ``family``, with the family's models and each layout's settings."""
    readers = {layout.name: layout for layout in importlib.import_module(family.converter).LAYOUTS}
    if readers.keys() != family.layouts.keys():
        raise AssertionError(f"{family.converter} reads {sorted(readers)} but the family declares "
                             f"{sorted(family.layouts)}")
    models = tuple(spec.name for spec in family.specs)
    return tuple(dataclasses.replace(readers[name], models=models, settings=dict(settings))
                 for name, settings in family.layouts.items())


LAYOUTS: tuple[Layout, ...] = tuple(layout for family in FAMILIES for layout in _family_layouts(family))

__all__ = ["LAYOUTS", "abstract_variables", "checkpoint_spec", "convert_state_dict", "detect_layout",
           "load_state_dict", "restore_checkpoint", "save_checkpoint"]


def detect_layout(state_dict: StateDict) -> Layout:
    """The layout whose keys ``state_dict`` has; a VjxError listing the known ones otherwise."""
    for layout in LAYOUTS:
        if layout.detect(state_dict):
            return layout
    sample = ", ".join(sorted(state_dict)[:4])
    raise VjxError(f"unrecognised checkpoint layout (first keys: {sample}); known layouts: "
                   + ", ".join(layout.name for layout in LAYOUTS))


def checkpoint_spec(state_dict: StateDict, spec: ModelSpec) -> ModelSpec:
    """``spec`` as the network of ``state_dict``'s layout defines it: with the layout's settings, and,
    for layouts whose head's size is the checkpoint's (VGG16-LSTM), that head and its label set
    (``vjx.data.labels.head_label_set``).

    Every other layout but kinetics_i3d_pytorch leaves the registry's spec as it is.
    """
    layout = detect_layout(state_dict)
    spec = spec.with_settings(**layout.settings)
    if layout.head_size is None:
        return spec
    from vjx.data.labels import head_label_set

    classes = layout.head_size(state_dict)
    return dataclasses.replace(spec, num_classes=classes, label_set=head_label_set(classes))


def abstract_variables(spec: ModelSpec) -> Mapping:
    """Shapes of the variables of ``spec``'s module (no computation, no memory)."""
    module = spec.make_module()
    video = jax.ShapeDtypeStruct((1, spec.num_frames, spec.crop, spec.crop, 3), jnp.float32)
    return jax.eval_shape(module.init, jax.random.key(0), video)


def convert_state_dict(state_dict: StateDict, spec: ModelSpec, *, head: str | None = None,
                       what: str = "checkpoint") -> dict:
    """Maps a torch state dict onto the Flax variables of ``spec``, strictly.

    Args:
      state_dict: torch names -> float32 numpy arrays (see :func:`load_state_dict`).
      spec: the target model; its ``num_classes`` must match the checkpoint's head and its
        ``settings`` the layout's (take it from :func:`checkpoint_spec`).
      head: for checkpoints with several heads (EPIC TSM), ``"noun"`` or ``"verb"``.
      what: how errors name the source (e.g. the file path).
    Returns:
      ``{"params": ..., "batch_stats": ...}`` of numpy float32 arrays.
    """
    layout = detect_layout(state_dict)
    if spec.name not in layout.models:
        raise VjxError(f"{what} is a {layout.name} checkpoint, which fits {', '.join(layout.models)}, "
                       f"not {spec.name}; convert it for a model it fits")
    for key, value in layout.settings.items():
        if spec.settings.get(key) != value:
            raise VjxError(f"{what} is a {layout.name} checkpoint, whose network uses {key} {value:g}, "
                           f"but the spec has {spec.settings.get(key):g}; convert it for "
                           "checkpoint_spec(state_dict, spec)")
    try:
        flat = layout.to_flax(state_dict, spec, head=head)
    except VjxError as e:
        raise VjxError(f"{what}: {e}") from None
    return merge_strict(abstract_variables(spec), {k: np.asarray(v) for k, v in flat.items()}, what=what)
