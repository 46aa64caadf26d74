"""torch checkpoints -> Flax variables for the vjx models, and orbax save/restore of the result.

    from weight_conversion import load_state_dict, convert_state_dict
    variables = convert_state_dict(load_state_dict("r2plus1d_18-91a641e6.pth"), get_spec("r2plus1d_18"))

The layout (torchvision, pytorch-i3d, kinetics_i3d_pytorch, TSM, EPIC TSM) is detected from the keys.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vjx.errors import VjxError
from vjx.models.registry import ModelSpec
from weight_conversion import i3d, resnet3d, tsm
from weight_conversion.checkpoint import restore_checkpoint, save_checkpoint
from weight_conversion.common import Layout, StateDict, load_state_dict, merge_strict

LAYOUTS: tuple[Layout, ...] = (*resnet3d.LAYOUTS, *i3d.LAYOUTS, *tsm.LAYOUTS)

__all__ = ["LAYOUTS", "abstract_variables", "convert_state_dict", "detect_layout", "load_state_dict",
           "restore_checkpoint", "save_checkpoint"]


def detect_layout(state_dict: StateDict) -> Layout:
    """The layout whose keys ``state_dict`` has; a VjxError listing the known ones otherwise."""
    for layout in LAYOUTS:
        if layout.detect(state_dict):
            return layout
    sample = ", ".join(sorted(state_dict)[:4])
    raise VjxError(f"unrecognised checkpoint layout (first keys: {sample}); known layouts: "
                   + ", ".join(layout.name for layout in LAYOUTS))


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
      spec: the target model; its ``num_classes`` must match the checkpoint's head.
      head: for checkpoints with several heads (EPIC TSM), ``"noun"`` or ``"verb"``.
      what: how errors name the source (e.g. the file path).
    Returns:
      ``{"params": ..., "batch_stats": ...}`` of numpy float32 arrays.
    """
    layout = detect_layout(state_dict)
    if spec.name not in layout.models:
        raise VjxError(f"{what} is a {layout.name} checkpoint, which fits {', '.join(layout.models)}, "
                       f"not {spec.name}; pick a matching --arch/--model")
    try:
        flat = layout.to_flax(state_dict, spec, head=head)
    except VjxError as e:
        raise VjxError(f"{what}: {e}") from None
    return merge_strict(abstract_variables(spec), {k: np.asarray(v) for k, v in flat.items()}, what=what)
