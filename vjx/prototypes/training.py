"""Training a prototype network: clips with labels in, a checkpointed, pushed :class:`PrototypeModel` out.

    clips = load_clips(["videos/"], spec, hierarchy)
    model = train(network, backbone_variables, clips, Schedule(), "runs/hipe", key=jax.random.key(0))

The schedule is HIPE's, in epochs: *warm-up* (add-on layers, prototypes, last layer and learned class
embeddings), *joint* (the same, plus the backbone when ``fine_tune``), a *push* after every
``push_every`` joint epochs and after the last one, then *last layer* only (with learned class
embeddings: they train too, since they do not move the pushed prototypes). Every epoch ends with an
orbax checkpoint (committed by rename, so a killed run never leaves a half checkpoint that looks
finished); a rerun with the same output directory restores the last one and continues, and since each
epoch's shuffle is drawn from ``fold_in(key, epoch)`` the result is the one an uninterrupted run gives.
``log.json`` gets one row per epoch: loss, accuracy per level on the training clips and the held-out ones.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vjx.data import read_video
from vjx.data.video import list_videos
from vjx.errors import VjxError
from vjx.models.registry import ModelSpec
from vjx.prototypes.head import PrototypeHead
from vjx.prototypes.hierarchy import Hierarchy
from vjx.prototypes.losses import LossWeights, accuracy, prototype_loss
from vjx.prototypes.network import PrototypeModel, PrototypeNetwork
from vjx.prototypes.push import push_prototypes
from vjx.prototypes.store import save_model

STAGES = ("warm", "joint", "last")


@dataclasses.dataclass(frozen=True)
class Clips:
    """Preprocessed clips and their labels.

    Attributes:
      videos: float32 ``N x T x H x W x 3`` (the backbone's preprocessing).
      names: ``N`` clip names.
      labels: int ``N x L``: each clip's class at every level.
      paths: ``N`` files or folders they were read from (``""`` for clips made in memory).
    """

    videos: np.ndarray
    names: tuple[str, ...]
    labels: np.ndarray
    paths: tuple[str, ...] = ()


def load_clips(directories: Sequence[str], spec: ModelSpec, hierarchy: Hierarchy) -> Clips:
    """Every frame folder and video file of ``directories``, labelled by the name rule
    (``"ironing-3sEk_w2T8Fw_15_10"`` is an ``ironing`` clip); a label outside the hierarchy is a VjxError
    naming the clip."""
    paths = [p for d in directories for p in list_videos(d)]
    leaves, videos, names = [], [], []
    for path in paths:
        video = read_video(path)
        leaves.append(hierarchy.leaf_index(video.label, f"clip {path!r}"))
        videos.append(spec.prepare(video.frames, repeat=True))
        names.append(video.name)
    return Clips(np.stack(videos), tuple(names), hierarchy.level_labels(np.array(leaves)), tuple(paths))


def split_clips(clips: Clips, heldout: Sequence[str]) -> tuple[Clips, Clips | None]:
    """(training clips, held-out clips named in ``heldout``); an unknown name is a VjxError."""
    unknown = sorted(set(heldout) - set(clips.names))
    if unknown:
        raise VjxError(f"heldout clip {unknown[0]!r} is not among the clips read ({', '.join(clips.names)})")
    keep = np.array([n not in heldout for n in clips.names])
    if not keep.any():
        raise VjxError("heldout names every clip; leave some to train on")
    paths = np.array(clips.paths or ("",) * len(clips.names))

    def take(mask):
        return Clips(clips.videos[mask], tuple(np.array(clips.names)[mask]), clips.labels[mask], tuple(paths[mask]))
    return take(keep), (take(~keep) if (~keep).any() else None)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Epochs per stage, push frequency, optimiser settings (Adam), batch size.

    Attributes:
      warm_epochs, joint_epochs, last_epochs: epochs of each stage.
      push_every: push after every this many joint epochs (and always after the last joint epoch;
        after the warm-up if there is no joint stage). 0: only then.
      batch_size: clips per step.
      lr_head: learning rate of the head in the warm and joint stages (HIPE's warm-up: 3e-3).
      lr_backbone: the backbone's when fine-tuned (joint stage).
      lr_last: the last layer's in the last stage.
      fine_tune: train the backbone in the joint stage; otherwise its features are computed once.
      weights: the loss's weights.
    """

    warm_epochs: int = 5
    joint_epochs: int = 10
    last_epochs: int = 5
    push_every: int = 0
    batch_size: int = 8
    lr_head: float = 3e-3
    lr_backbone: float = 1e-4
    lr_last: float = 1e-2
    fine_tune: bool = False
    weights: LossWeights = LossWeights()

    @property
    def num_epochs(self) -> int:
        return self.warm_epochs + self.joint_epochs + self.last_epochs

    def stage(self, epoch: int) -> str:
        """The stage of epoch ``epoch`` (0-based)."""
        if epoch < self.warm_epochs:
            return "warm"
        return "joint" if epoch < self.warm_epochs + self.joint_epochs else "last"

    def pushes_after(self, epoch: int) -> bool:
        """Whether a push follows epoch ``epoch``."""
        pre_last = self.warm_epochs + self.joint_epochs - 1
        if epoch == pre_last:
            return True
        joint_done = epoch - self.warm_epochs + 1
        return self.stage(epoch) == "joint" and self.push_every > 0 and joint_done % self.push_every == 0


def _labels(params: dict, stage: str, fine_tune: bool, learned_embeddings: bool) -> dict:
    """optax.multi_transform labels: which optimiser each parameter gets in ``stage``."""
    def label(path, _):
        keys = [getattr(k, "key", str(k)) for k in path]
        if keys[0] == "backbone":
            return "backbone" if stage == "joint" and fine_tune else "frozen"
        if keys[1] == "class_embeddings":
            return "head" if learned_embeddings else "frozen"
        if stage == "last":
            return "head" if keys[1] == "last_layer" else "frozen"
        return "head"
    return jax.tree_util.tree_map_with_path(label, params)


def _optimizer(params: dict, stage: str, schedule: Schedule, learned_embeddings: bool) -> optax.GradientTransformation:
    lr = schedule.lr_last if stage == "last" else schedule.lr_head
    return optax.multi_transform({"head": optax.adam(lr), "backbone": optax.adam(schedule.lr_backbone),
                                  "frozen": optax.set_to_zero()},
                                 _labels(params, stage, schedule.fine_tune, learned_embeddings))


def train(network: PrototypeNetwork, backbone_variables: dict, clips: Clips, schedule: Schedule, output_dir: str,
          *, key: jax.Array, heldout: Clips | None = None, class_embeddings: np.ndarray | None = None,
          progress: Callable[[int, int], None] | None = None) -> PrototypeModel:
    """Trains (or resumes training) and returns the pushed model; see the module docstring.

    Args:
      network: the backbone + head.
      backbone_variables: the backbone's (pretrained) variables.
      clips: training clips; ``heldout``: clips only scored.
      schedule: stages, push, optimiser.
      output_dir: ``checkpoints/`` (orbax), ``log.json`` and at the end ``model/`` go here (see
        :mod:`vjx.prototypes.store`); a previous run's checkpoints are resumed.
      key: initialisation and shuffling.
      class_embeddings: ``K x E`` fixed class embeddings (None: learned).
      progress: ``progress(done, total)`` over all training steps.
    """
    import orbax.checkpoint as ocp

    init_key, shuffle_key = jax.random.split(key)
    head = network.init_head(init_key, jnp.asarray(clips.videos[:1]), backbone_variables)
    if class_embeddings is not None:
        head = {"params": {**head["params"], "class_embeddings": jnp.asarray(class_embeddings)}}
    params = {"backbone": backbone_variables["params"], "head": head["params"]}
    backbone_state = {k: v for k, v in backbone_variables.items() if k != "params"}
    learned = class_embeddings is None
    args = (network.prototype_class, network.prototype_level, network.hierarchy.offsets)

    def variables_of(p):
        return {"backbone": {"params": p["backbone"], **backbone_state}, "head": {"params": p["head"]}}

    def clip_features(p, videos):
        return np.concatenate([np.asarray(_features(network, {"params": p["backbone"], **backbone_state},
                                                    jnp.asarray(videos[i:i + schedule.batch_size])))
                               for i in range(0, len(videos), schedule.batch_size)])

    frozen_features = None if schedule.fine_tune else clip_features(params, clips.videos)
    heldout_features = None if schedule.fine_tune or heldout is None else clip_features(params, heldout.videos)
    optimizers = {stage: _optimizer(params, stage, schedule, learned) for stage in STAGES}

    def evaluate(p, videos, feats, labels):
        feats = clip_features(p, videos) if feats is None else feats
        return [float(a) for a in _accuracy(network, p["head"], jnp.asarray(feats), jnp.asarray(labels))]

    os.makedirs(output_dir, exist_ok=True)
    manager = ocp.CheckpointManager(os.path.abspath(os.path.join(output_dir, "checkpoints")),
                                    options=ocp.CheckpointManagerOptions(max_to_keep=2))
    sources = np.full((len(network.prototype_class), 4), -1, np.int64)
    log: list[dict[str, Any]] = []
    start = 0
    def saved(p):
        """What a checkpoint holds: a frozen backbone is the one passed in, so only the head is saved."""
        return p if schedule.fine_tune else {"head": p["head"]}

    opt_state = None
    latest = manager.latest_step()
    if latest is not None:
        template = {"params": saved(params), "opt_state": optimizers[schedule.stage(latest - 1)].init(params),
                    "sources": sources}
        try:
            restored = manager.restore(latest, args=ocp.args.StandardRestore(jax.eval_shape(lambda: template)))
        except Exception as e:  # noqa: BLE001 - any orbax failure means the directory is not this run's
            raise VjxError(f"output dir {output_dir!r} holds checkpoints that do not fit this run "
                           f"({str(e).splitlines()[0]}); use a new output dir") from None
        params = {**params, **restored["params"]}
        opt_state, sources, start = restored["opt_state"], np.asarray(restored["sources"]), latest
        log = _read_log(output_dir)[:latest]
    per_epoch = -(-len(clips.videos) // schedule.batch_size)
    total = schedule.num_epochs * per_epoch
    for epoch in range(start, schedule.num_epochs):
        stage = schedule.stage(epoch)
        if opt_state is None or schedule.stage(epoch - 1) != stage:
            opt_state = optimizers[stage].init(params)
        began = time.time()
        order = np.asarray(_permutation(jax.random.fold_in(shuffle_key, epoch), len(clips.videos)))
        losses = []
        for b in range(per_epoch):
            idx = order[b * schedule.batch_size:(b + 1) * schedule.batch_size]
            inputs = clips.videos[idx] if schedule.fine_tune else frozen_features[idx]
            params, opt_state, loss = _step(network, schedule, stage, learned, params, opt_state, backbone_state,
                                            jnp.asarray(inputs), jnp.asarray(clips.labels[idx]))
            losses.append(float(loss))
            if progress is not None:
                progress(epoch * per_epoch + b + 1, total)
        pushed = schedule.pushes_after(epoch)
        if pushed:
            feats = clip_features(params, clips.videos) if schedule.fine_tune else frozen_features
            patches = np.asarray(_patches(network, params["head"], jnp.asarray(feats)))
            new, sources, _ = push_prototypes(np.asarray(params["head"]["prototypes"]), patches, clips.labels, *args)
            params = {**params, "head": {**params["head"], "prototypes": jnp.asarray(new)}}
        row = {"epoch": epoch + 1, "stage": stage, "loss": float(np.mean(losses)), "pushed": pushed,
               "train_accuracy": evaluate(params, clips.videos, frozen_features, clips.labels),
               "seconds": round(time.time() - began, 3)}
        if heldout is not None:
            row["heldout_accuracy"] = evaluate(params, heldout.videos, heldout_features, heldout.labels)
        log.append(row)
        manager.save(epoch + 1, args=ocp.args.StandardSave({"params": saved(params), "opt_state": opt_state,
                                                            "sources": sources}))
        manager.wait_until_finished()
        _write_log(output_dir, log)
    manager.close()
    model = PrototypeModel(network, variables_of(params), sources, clips.names)
    save_model(output_dir, model)
    return model


# Module-level jitted functions with the network and the schedule static: a rerun in the same process
# (a resumed run, a test) reuses their compilations.
@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _step(network: PrototypeNetwork, schedule: Schedule, stage: str, learned: bool, params, opt_state,
          backbone_state, inputs, labels):
    """One optimiser step of ``stage``: inputs are clips (fine-tuning) or cached feature maps."""
    def loss_fn(p):
        backbone = {"params": p["backbone"], **backbone_state}
        feats = network.features(backbone, inputs) if schedule.fine_tune else inputs
        out = network.head_outputs({"params": p["head"]}, feats)
        return prototype_loss(out, labels, network.prototype_class, network.prototype_level, network.hierarchy.offsets,
                              p["head"]["last_layer"]["kernel"], schedule.weights,
                              max_distance=float(network.config.prototype_dim))[0]

    loss, grads = jax.value_and_grad(loss_fn)(params)
    optimizer = _optimizer(params, stage, schedule, learned)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnums=0)
def _features(network: PrototypeNetwork, backbone_variables, videos):
    return network.features(backbone_variables, videos)


@functools.partial(jax.jit, static_argnums=0)
def _accuracy(network: PrototypeNetwork, head_params, features, labels):
    return accuracy(network.head_outputs({"params": head_params}, features)["scores"], labels)


@functools.partial(jax.jit, static_argnums=1)
def _permutation(key, n: int):
    return jax.random.permutation(key, n)


@functools.partial(jax.jit, static_argnums=0)
def _patches(network: PrototypeNetwork, head_params, features):
    return network.head.apply({"params": head_params}, features, method=PrototypeHead.patches)


def _read_log(output_dir: str) -> list[dict]:
    path = os.path.join(output_dir, "log.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return json.load(f)["epochs"]


def _write_log(output_dir: str, log: list[dict]) -> None:
    """``log.json`` replaced atomically (written beside it, then renamed)."""
    path = os.path.join(output_dir, "log.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"epochs": log}, f, indent=1)
    os.replace(path + ".tmp", path)
