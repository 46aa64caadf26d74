"""What the two scripts do, as library calls: train a prototype network on a folder of clips, and
explain clips with a trained one (figure, ``.npz`` and JSON per clip).

    model = train_run(videos_dirs=["clips/"], hierarchy_path="hierarchy.csv", output_dir="runs/hipe")
    explain_run("runs/hipe", ["clips/swimming-001"], "runs/hipe/explanations")

Everything a run reads (hierarchy, embeddings, clips, held-out names, the output directory's previous
run) is checked before anything is written, so bad input leaves no trace.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Sequence

import jax
import numpy as np

from vjx.data import denormalize, read_video
from vjx.model import load_model
from vjx.models.registry import get_spec
from vjx.prototypes.embeddings import load_class_embeddings
from vjx.prototypes.explain import LevelExplanation, explain
from vjx.prototypes.hierarchy import read_hierarchy
from vjx.prototypes.network import PrototypeConfig, PrototypeModel, PrototypeNetwork
from vjx.prototypes.push import cell_box
from vjx.prototypes.store import describe, load_trained, start_run
from vjx.prototypes.training import Schedule, load_clips, split_clips, train


def train_run(*, videos_dirs: Sequence[str], hierarchy_path: str, output_dir: str, backbone: str = "r3d_18",
              pretrained: str | None = None, checkpoint: str | None = None, input_size: int | None = None,
              heldout: Sequence[str] = (), embeddings_path: str | None = None,
              config: PrototypeConfig = PrototypeConfig(), schedule: Schedule = Schedule(), seed: int = 0,
              progress: Callable[[int, int], None] | None = None) -> PrototypeModel:
    """Trains (or resumes) a run; see :func:`vjx.prototypes.training.train` and docs/prototypes.md.

    Args:
      videos_dirs: folders of frame folders / video files, labelled by name (``label-anything``).
      hierarchy_path: the hierarchy CSV.
      output_dir: the run directory (see :mod:`vjx.prototypes.store`).
      backbone, pretrained, checkpoint: the backbone, as :func:`vjx.load_model` takes them.
      input_size: frame side fed to the backbone (default: the backbone's own).
      heldout: clip names scored but not trained on.
      embeddings_path: class embeddings file (None: learned).
      config, schedule, seed: the head, the schedule, the PRNG seed.
    """
    hierarchy = read_hierarchy(hierarchy_path)
    class_embeddings = None if embeddings_path is None else load_class_embeddings(embeddings_path, hierarchy)
    crop = input_size or get_spec(backbone).crop
    clips = load_clips(videos_dirs, _at_size(get_spec(backbone), crop), hierarchy)
    train_clips, heldout_clips = split_clips(clips, heldout)
    backbone_model = load_model(backbone, pretrained=pretrained, checkpoint=checkpoint)
    spec = _at_size(backbone_model.spec, crop)
    network = PrototypeNetwork(spec, hierarchy, config,
                               None if class_embeddings is None else class_embeddings.shape[1])
    settings = {"pretrained": pretrained, "checkpoint": checkpoint, "embeddings": embeddings_path,
                "heldout": sorted(heldout), "seed": seed,
                "schedule": {k: v for k, v in vars(schedule).items() if k != "weights"},
                "weights": vars(schedule.weights)}
    start_run(output_dir, describe(network, list(train_clips.paths), settings), hierarchy_path)
    return train(network, backbone_model.variables, train_clips, schedule, output_dir, key=jax.random.key(seed),
                 heldout=heldout_clips, class_embeddings=class_embeddings, progress=progress)


def _at_size(spec, crop: int):
    """The spec fed ``crop x crop`` frames (its EP sigma scaled along, as vjx does elsewhere)."""
    return spec if crop == spec.crop else spec.at_size(crop, spec.ep_sigma * crop / spec.crop)


def explain_run(run_dir: str, videos: Sequence[str], output_dir: str, *, top_k: int = 3) -> list[dict]:
    """Explains each clip with the run's model: ``<name>.png`` (per level: the frame | the top prototype's
    activation map | the training clip's patch it was pushed to), ``<name>.npz`` (``maps_level<l>``:
    ``k x T x H x W``) and ``<name>.json``; returns the JSON records."""
    model, clip_paths = load_trained(run_dir)
    spec = model.network.spec
    records = []
    prepared = [read_video(v) for v in videos]
    os.makedirs(output_dir, exist_ok=True)
    for video in prepared:
        x = spec.prepare(video.frames, repeat=True)
        levels = explain(model, x[None], top_k)
        record = {"video": video.name, "label": video.label, "levels": [_level_record(l) for l in levels]}
        np.savez_compressed(os.path.join(output_dir, f"{video.name}.npz"),
                            **{f"maps_level{l.level}": l.maps.astype(np.float32) for l in levels})
        with open(os.path.join(output_dir, f"{video.name}.json"), "w") as f:
            json.dump(record, f, indent=1)
        _figure(os.path.join(output_dir, f"{video.name}.png"), model, x, levels, clip_paths, video.name)
        records.append(record)
    return records


def _level_record(level: LevelExplanation) -> dict:
    return {"level": level.level, "predicted": level.name, "score": level.score, "prototypes": [
        {"prototype": int(p), "similarity": float(s), "source_clip": name, "source_cell": [int(c) for c in src[1:]]}
        for p, s, src, name in zip(level.prototypes, level.similarities, level.sources, level.source_names)]}


def _figure(path: str, model: PrototypeModel, x: np.ndarray, levels: list[LevelExplanation],
            clip_paths: list[str], name: str) -> None:
    """One row per level: the clip's frame where the top prototype is most active | its map over that
    frame | the frame of the training clip it was pushed to, the pushed cell boxed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vjx.visualize import overlay

    spec = model.network.spec
    frames = (denormalize(x, mean=spec.mean, std=spec.std) * 255).astype(np.uint8)
    fig, axes = plt.subplots(len(levels), 3, figsize=(9, 3 * len(levels)), squeeze=False)
    feature_shape = jax.eval_shape(model.network.features, model.variables["backbone"], x[None]).shape[1:4]
    for row, level in zip(axes, levels):
        m = level.maps[0]
        t = int(np.unravel_index(np.argmax(m), m.shape)[0])
        shown = (m - m.min()) / max(float(m.max() - m.min()), 1e-12)
        row[0].imshow(frames[t])
        row[0].set_title(f"level {level.level}: {level.name}\nframe {t}", fontsize=8)
        row[1].imshow(overlay(frames[t:t + 1], shown[t:t + 1])[0])
        row[1].set_title(f"prototype {level.prototypes[0]}, similarity {level.similarities[0]:.2f}", fontsize=8)
        clip, *cell = (int(c) for c in level.sources[0])
        if clip >= 0:
            source = spec.prepare(read_video(clip_paths[clip]).frames, repeat=True)
            (t0, t1), (h0, h1), (w0, w1) = cell_box(tuple(cell), feature_shape, source.shape[:3])
            row[2].imshow(denormalize(source[(t0 + t1 - 1) // 2], mean=spec.mean, std=spec.std))
            row[2].add_patch(plt.Rectangle((w0 - 0.5, h0 - 0.5), w1 - w0, h1 - h0, fill=False, color="yellow", lw=2))
            row[2].set_title(f"pushed to {level.source_names[0]}\nframes {t0}-{t1 - 1}", fontsize=8)
        else:
            row[2].set_title("never pushed (no training clip of this class)", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
