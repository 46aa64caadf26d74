"""Train a hierarchical prototype network (HIPE) on a folder of labelled clips.

    python -m experiments.train_prototypes --videos_dir clips/ --hierarchy hierarchy.csv \\
        --model i3d --pretrained kinetics400 --output_dir runs/hipe

Clips are labelled by name (``swimming-xyz`` is a ``swimming`` clip); every label must be a leaf of the
hierarchy CSV (``class,parent[,grandparent...]``). Writes runs/hipe/{run.json, hierarchy.csv,
checkpoints/, log.json, model/}; rerunning the same command after a kill resumes from the last
finished epoch. See docs/prototypes.md.
"""
from __future__ import annotations

import contextlib

from absl import flags, logging

from experiments import _cli

_VIDEOS_DIR = flags.DEFINE_list("videos_dir", None, "Folders of frame folders and/or video files, comma "
                                "separated (required).")
_HIERARCHY = flags.DEFINE_string("hierarchy", None, "Hierarchy CSV: class,parent[,grandparent...] (required).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "prototypes_run", "Run directory (reused to resume).")
_MODEL = flags.DEFINE_string("model", "r3d_18", "Backbone: i3d, r3d, r2plus1d, mc3, tsm or a registry name.")
_PRETRAINED = flags.DEFINE_string("pretrained", None, "Bundled backbone weights (kinetics400 for i3d).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Backbone weights: torch file or vjx orbax dir.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", None, "Frame side fed to the backbone (default: its own).")
_HELDOUT = flags.DEFINE_list("heldout", [], "Clip names to score but not train on, comma separated.")
_EMBEDDINGS = flags.DEFINE_string("embeddings", None, "Class embeddings .pth ({'objects', 'embeddings'}, "
                                  "read with weights_only); default: learned.")
_DISTANCE = flags.DEFINE_string("distance", "euclidean", "Clip-to-class embedding distance: euclidean or poincare.")
_PER_CLASS = flags.DEFINE_integer("prototypes_per_class", 10, "Prototypes per class of every level.")
_PROTOTYPE_DIM = flags.DEFINE_integer("prototype_dim", 128, "Channels of add-on layers and prototypes.")
_EMBEDDING_DIM = flags.DEFINE_integer("embedding_dim", 64, "Size of learned class embeddings.")
_LAYER = flags.DEFINE_string("layer", None, "Backbone activation the head reads (default: the Grad-CAM layer).")
_WARM = flags.DEFINE_integer("warm_epochs", 5, "Warm-up epochs (head only).")
_JOINT = flags.DEFINE_integer("joint_epochs", 10, "Joint epochs (head, and backbone with --fine_tune).")
_LAST = flags.DEFINE_integer("last_epochs", 5, "Last-layer epochs after the push.")
_PUSH_EVERY = flags.DEFINE_integer("push_every", 0, "Push every this many joint epochs too (0: only at the end).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Clips per step.")
_LR_HEAD = flags.DEFINE_float("lr_head", 3e-3, "Adam learning rate of the head (warm and joint).")
_LR_BACKBONE = flags.DEFINE_float("lr_backbone", 1e-4, "Adam learning rate of the backbone (--fine_tune).")
_LR_LAST = flags.DEFINE_float("lr_last", 1e-2, "Adam learning rate of the last layer (last stage).")
_FINE_TUNE = flags.DEFINE_bool("fine_tune", False, "Train the backbone in the joint stage.")
_SEPARATION_SCALE = flags.DEFINE_float("separation_scale", 1.0, "Multiplies HIPE's separation weights.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")

FLAG_NAMES = {"distance": "--distance", "prototypes_per_class": "--prototypes_per_class", "layer": "--layer"}


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    from vjx import prototypes
    from vjx.errors import VjxError
    from vjx.pipeline.progress import progress_bar

    if not _VIDEOS_DIR.value or not _HIERARCHY.value:
        raise VjxError("--videos_dir and --hierarchy are required")
    weights = prototypes.LossWeights(separation=tuple(_SEPARATION_SCALE.value * w
                                                      for w in prototypes.LossWeights().separation))
    schedule = prototypes.Schedule(
        warm_epochs=_WARM.value, joint_epochs=_JOINT.value, last_epochs=_LAST.value, push_every=_PUSH_EVERY.value,
        batch_size=_BATCH.value, lr_head=_LR_HEAD.value, lr_backbone=_LR_BACKBONE.value, lr_last=_LR_LAST.value,
        fine_tune=_FINE_TUNE.value, weights=weights)
    config = prototypes.PrototypeConfig(prototypes_per_class=_PER_CLASS.value, prototype_dim=_PROTOTYPE_DIM.value,
                                        embedding_dim=_EMBEDDING_DIM.value, distance=_DISTANCE.value, layer=_LAYER.value)
    logging.set_verbosity(logging.WARNING)   # orbax logs every checkpoint step at INFO
    with contextlib.ExitStack() as stack:
        def update(done: int, total: int) -> None:
            """The bar appears with the first step, after every input has been checked."""
            if not hasattr(update, "bar"):
                update.bar = stack.enter_context(progress_bar("training"))
            update.bar(done, total)

        model = prototypes.train_run(
            videos_dirs=_VIDEOS_DIR.value, hierarchy_path=_HIERARCHY.value, output_dir=_OUTPUT_DIR.value,
            backbone=_MODEL.value, pretrained=_PRETRAINED.value, checkpoint=_CHECKPOINT.value,
            input_size=_INPUT_SIZE.value, heldout=_HELDOUT.value, embeddings_path=_EMBEDDINGS.value,
            config=config, schedule=schedule, seed=_SEED.value, progress=update)
    print(f"{len(model.sources)} prototypes trained; model, checkpoints and log.json in {_OUTPUT_DIR.value}")


if __name__ == "__main__":
    _cli.run(main, {**_cli.FLAG_NAMES, **FLAG_NAMES})
