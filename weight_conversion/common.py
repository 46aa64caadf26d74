"""Numpy-only pieces every checkpoint layout uses: reading files, transposes, the strict merge.

A layout's converter turns a torch state dict (``dict[str, np.ndarray]``) into a flat table
``{("params", "stem", "conv", "kernel"): array, ("batch_stats", ..., "mean"): array, ...}``;
:func:`merge_strict` then checks that table against the Flax module's abstract variables, so every
missing, unexpected or mis-shaped entry is an error that names it.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping

import numpy as np
from flax import traverse_util
from flax.core import unfreeze

from vjx.errors import VjxError

FlatVariables = dict[tuple[str, ...], np.ndarray]
StateDict = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Layout:
    """One public checkpoint format, as a converter module declares it (its ``LAYOUTS``).

    Attributes:
      name: e.g. ``"torchvision_video_resnet"``; the family declares the same name with the factory
        settings its network definition fixes (``vjx.models.spec.Family.layouts``).
      detect: ``detect(state_dict) -> bool``, true when the keys are in this format.
      to_flax: ``to_flax(state_dict, spec, head=None) -> FlatVariables``; ``head`` picks one of several
        classifier heads where a format has them (EPIC-Kitchens TSM: ``"noun"`` or ``"verb"``). Must
        raise a VjxError for keys it does not consume (see :func:`check_all_used`).
      models: registry names whose Flax module this layout can fill (filled in from the family).
      settings: the factory settings of the layout's network definition (filled in from the family).
      head_size: ``head_size(state_dict) -> classes`` for formats whose head's size is the
        checkpoint's (VGG16-LSTM); None: the spec's label set decides it.
    """

    name: str
    detect: Callable[[StateDict], bool]
    to_flax: Callable[..., FlatVariables]
    models: tuple[str, ...] = ()
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    head_size: Callable[[StateDict], int] | None = None


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a torch ``.pth``/``.pt``/``.tar`` or ``.safetensors`` file into float32 numpy arrays.

    torch files load with ``weights_only=True`` and never without it; a ``{"state_dict": ...}`` or
    ``{"model": ...}`` wrapper (TSM's and many training scripts' checkpoints) is unwrapped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VjxError(f"checkpoint {path!r} does not exist or is not a file; pass a .pth/.pt/.safetensors file")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file
        try:
            return {k: np.asarray(v, np.float32) for k, v in load_file(path).items()}
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file for the user
            raise VjxError(f"checkpoint {path!r} is not a readable safetensors file: {e}") from None
    try:
        import torch
    except ImportError:
        raise VjxError(f"reading the torch checkpoint {path!r} needs torch: pip install 'vjx[torch]'") from None
    if tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 6):
        raise VjxError(f"reading {path!r} needs torch >= 2.6 (older torch.load is unsafe, CVE-2025-32434); "
                       f"found {torch.__version__}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VjxError(f"checkpoint {path!r} could not be read as a torch state dict: {first}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(hasattr(v, "shape") for v in obj.values()):
        raise VjxError(f"checkpoint {path!r} holds no state dict of tensors; save model.state_dict()")
    return {k: v.detach().float().numpy() for k, v in obj.items()}


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """torch Conv (O, I, *k) -> Flax (*k, I, O)."""
    nd = w.ndim - 2
    return np.transpose(w, tuple(range(2, 2 + nd)) + (1, 0))


def linear_kernel(w: np.ndarray) -> np.ndarray:
    """torch Linear (O, I) -> Flax (I, O)."""
    return w.T


def batch_norm(state: Mapping[str, np.ndarray], prefix: str, path: tuple[str, ...], *,
               scale: bool = True) -> FlatVariables:
    """torch BatchNorm ``prefix.{weight,bias,running_mean,running_var}`` -> Flax params/batch_stats."""
    out: FlatVariables = {
        ("params", *path, "bias"): state[f"{prefix}.bias"],
        ("batch_stats", *path, "mean"): state[f"{prefix}.running_mean"],
        ("batch_stats", *path, "var"): state[f"{prefix}.running_var"],
    }
    if scale:
        out[("params", *path, "scale")] = state[f"{prefix}.weight"]
    return out


def take(state: Mapping[str, np.ndarray], used: set[str], key: str) -> np.ndarray:
    """``state[key]``, recording the key as used; a missing key is a VjxError naming it."""
    if key not in state:
        raise VjxError(f"checkpoint is missing {key!r}")
    used.add(key)
    return state[key]


def merge_strict(abstract: Any, flat: FlatVariables, *, what: str = "checkpoint") -> dict:
    """Builds the variables dict from ``flat``, which must match ``abstract`` exactly.

    Args:
      abstract: ``jax.eval_shape(module.init, ...)`` output (or any tree of shaped leaves).
      flat: converted arrays keyed by variable path.
      what: how to name the source in errors (e.g. the file name).
    Raises:
      VjxError naming every missing, unexpected and mis-shaped variable.
    """
    expected = traverse_util.flatten_dict(unfreeze(abstract))
    missing = sorted("/".join(k) for k in expected.keys() - flat.keys())
    unexpected = sorted("/".join(k) for k in flat.keys() - expected.keys())
    mismatched = sorted(f"{'/'.join(k)} {tuple(flat[k].shape)} != {tuple(expected[k].shape)}"
                        for k in expected.keys() & flat.keys() if tuple(flat[k].shape) != tuple(expected[k].shape))
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if names:
            shown = ", ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise VjxError(f"{what} does not fit the model: " + "; ".join(problems))
    return traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in flat.items()})


def check_all_used(state: Mapping[str, np.ndarray], used: set[str], *, what: str = "checkpoint",
                   ignore_suffixes: tuple[str, ...] = ("num_batches_tracked",)) -> None:
    """Raises a VjxError naming every state-dict key the converter did not consume."""
    left = sorted(k for k in state if k not in used and not k.endswith(ignore_suffixes))
    if left:
        shown = ", ".join(left[:6]) + (f" (+{len(left) - 6} more)" if len(left) > 6 else "")
        raise VjxError(f"{what} has unexpected keys for this architecture: {shown}")
