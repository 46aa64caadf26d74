"""Converted variables on disk: an orbax checkpoint plus a small JSON naming the model.

Layout of a checkpoint directory::

    DIR/vjx_model.json   {"model": "r2plus1d_18", "label_set": "kinetics400", "num_classes": 400,
                          "settings": {"batch_norm_epsilon": 1e-05}, ...}
    DIR/variables/       orbax PyTree checkpoint of {"params": ..., "batch_stats": ...}

The JSON keeps what of the spec a checkpoint decides (:data:`SAVED_FIELDS`): the head's label set and
class names, the family's factory settings (an I3D converted from the kinetics_i3d_pytorch layout
keeps its BatchNorm epsilon 1e-5; a transformer its sizes) and the input a converted Hugging Face
checkpoint was trained on.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Mapping

import jax
import numpy as np

from vjx.errors import VjxError
from vjx.models.registry import ModelSpec, get_spec

METADATA = "vjx_model.json"
SAVED_FIELDS = ("label_set", "num_classes", "settings", "class_names", "num_frames", "resize", "crop", "mean", "std",
                "gradcam_layer")


def save_checkpoint(directory: str | os.PathLike, variables, spec: ModelSpec) -> None:
    """Writes ``variables`` for ``spec`` to ``directory``, which must not exist yet.

    orbax commits by renaming a temporary directory, so an interrupted save never looks finished.
    """
    import orbax.checkpoint as ocp

    directory = os.path.abspath(os.fspath(directory))
    if os.path.exists(directory):
        raise VjxError(f"output {directory!r} already exists; choose a new directory (nothing is overwritten)")
    try:
        with ocp.PyTreeCheckpointer() as checkpointer:
            checkpointer.save(os.path.join(directory, "variables"), jax.tree_util.tree_map(np.asarray, variables))
        with open(os.path.join(directory, METADATA), "w") as f:
            json.dump({"model": spec.name, **{field: _jsonable(getattr(spec, field)) for field in SAVED_FIELDS}}, f)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)  # never leave a half-written checkpoint behind
        raise


def _jsonable(value):
    return dict(value) if isinstance(value, Mapping) else value


def _from_json(value):
    return tuple(value) if isinstance(value, list) else value


def restore_checkpoint(directory: str | os.PathLike) -> tuple[ModelSpec, dict]:
    """Reads a directory written by :func:`save_checkpoint`; returns its spec and variables."""
    import orbax.checkpoint as ocp

    from weight_conversion import abstract_variables

    directory = os.path.abspath(os.fspath(directory))
    meta_path = os.path.join(directory, METADATA)
    if not os.path.isfile(meta_path):
        raise VjxError(f"{directory!r} is not a vjx checkpoint directory (no {METADATA}) nor a Hugging Face "
                       "one (no config.json); write one with python -m weight_conversion.convert")
    with open(meta_path) as f:
        meta = json.load(f)
    spec = get_spec(meta["model"])
    # Written before the settings were recorded: the BatchNorm epsilon alone, or nothing (the registry's).
    if "batch_norm_epsilon" in meta:
        spec = spec.with_settings(batch_norm_epsilon=float(meta["batch_norm_epsilon"]))
    spec = dataclasses.replace(spec, **{field: _from_json(meta[field]) for field in SAVED_FIELDS if field in meta})
    abstract = abstract_variables(spec)
    target = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), abstract)
    try:
        with ocp.PyTreeCheckpointer() as checkpointer:
            variables = checkpointer.restore(os.path.join(directory, "variables"), item=target)
    except Exception as e:  # noqa: BLE001 - any orbax failure is an unusable checkpoint for the user
        raise VjxError(f"checkpoint {directory!r} could not be restored: {str(e).splitlines()[0]}") from None
    return spec, variables
