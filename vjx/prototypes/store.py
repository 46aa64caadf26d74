"""A training run's directory: what the run is (``run.json``, ``hierarchy.csv``) and its final model.

    OUT/run.json          backbone, input size, head config, embedding size, training clips' paths
    OUT/hierarchy.csv     the hierarchy it was trained on (a copy)
    OUT/checkpoints/      orbax checkpoints, one per epoch (the last two kept); resumable
    OUT/model/            orbax PyTree of the finished model: variables and push sources
    OUT/log.json          one row per epoch

A rerun into a directory whose ``run.json`` describes another run is refused.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from vjx.data import video_name
from vjx.errors import VjxError
from vjx.models.registry import get_spec
from vjx.prototypes.hierarchy import read_hierarchy
from vjx.prototypes.network import PrototypeConfig, PrototypeModel, PrototypeNetwork


def describe(network: PrototypeNetwork, clip_paths: list[str], settings: dict) -> dict:
    """The JSON description of a run (``settings``: the schedule, embeddings file and the like)."""
    return {"backbone": network.spec.name, "crop": network.spec.crop,
            "model_settings": dict(network.spec.settings), "embedding_dim": network.head.embedding_dim,
            "config": dataclasses.asdict(network.config), "clip_paths": list(clip_paths), "settings": settings}


def start_run(output_dir: str, description: dict, hierarchy_path: str) -> None:
    """Creates ``output_dir`` with ``run.json`` and ``hierarchy.csv``, or checks that a previous run
    there is this one (then training resumes)."""
    path = os.path.join(output_dir, "run.json")
    if os.path.isfile(path):
        with open(path) as f:
            previous = json.load(f)
        if previous != json.loads(json.dumps(description)):
            changed = sorted(k for k in description if previous.get(k) != json.loads(json.dumps(description[k])))
            raise VjxError(f"output dir {output_dir!r} holds another run (different {', '.join(changed) or 'keys'}); "
                           "use a new output dir, or the same settings to resume")
        return
    os.makedirs(output_dir, exist_ok=True)
    shutil.copyfile(hierarchy_path, os.path.join(output_dir, "hierarchy.csv"))
    with open(path + ".tmp", "w") as f:
        json.dump(description, f, indent=1)
    os.replace(path + ".tmp", path)


def save_model(output_dir: str, model: PrototypeModel) -> None:
    """Writes ``OUT/model`` (orbax commits it by rename; an existing one is replaced only after)."""
    import orbax.checkpoint as ocp

    target = os.path.abspath(os.path.join(output_dir, "model"))
    staging = target + ".new"
    shutil.rmtree(staging, ignore_errors=True)
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(staging, {"variables": jax.tree_util.tree_map(np.asarray, model.variables),
                                    "sources": model.sources})
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def load_trained(output_dir: str) -> tuple[PrototypeModel, list[str]]:
    """The finished model of a run directory and its training clips' paths."""
    import orbax.checkpoint as ocp

    path = os.path.join(output_dir, "run.json")
    if not os.path.isfile(path) or not os.path.isdir(os.path.join(output_dir, "model")):
        raise VjxError(f"{output_dir!r} holds no finished prototype model (no run.json or model/); "
                       "train one with python -m experiments.train_prototypes, or rerun it to finish")
    with open(path) as f:
        run = json.load(f)
    spec = get_spec(run["backbone"])
    if run["crop"] != spec.crop:
        spec = spec.at_size(run["crop"], spec.ep_sigma * run["crop"] / spec.crop)
    spec = spec.with_settings(**run["model_settings"])   # a checkpoint's own definition
    network = PrototypeNetwork(spec, read_hierarchy(os.path.join(output_dir, "hierarchy.csv")),
                               PrototypeConfig(**run["config"]), run["embedding_dim"])
    clip = jnp.zeros((1, spec.num_frames, spec.crop, spec.crop, 3), jnp.float32)
    abstract = jax.eval_shape(network.init, jax.random.key(0), clip)
    template = {"variables": jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), abstract),
                "sources": np.zeros((len(network.prototype_class), 4), np.int64)}
    try:
        with ocp.PyTreeCheckpointer() as checkpointer:
            saved = checkpointer.restore(os.path.abspath(os.path.join(output_dir, "model")), item=template)
    except Exception as e:  # noqa: BLE001 - any orbax failure is an unusable model for the user
        raise VjxError(f"prototype model in {output_dir!r} could not be restored: {str(e).splitlines()[0]}") from None
    names = tuple(video_name(p) for p in run["clip_paths"])
    return PrototypeModel(network, saved["variables"], saved["sources"], names), run["clip_paths"]
