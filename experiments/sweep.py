"""Sweep a dataset x areas with one extremal method, sharded over all local devices, resumable.

    python -m experiments.sweep --videos_dir ../shared/data/kinetics/sampled_frames   # pretrained I3D, six areas
    python -m experiments.sweep --videos_dir ../shared/data/kinetics/sampled_frames --model r2plus1d \\
        --checkpoint r2plus1d_18-91a641e6.pth --vis_method step --perturb_area 0.01,0.02,0.05,0.1 \\
        --schedule original --output_dir sweep_out

Writes sweep_out/results.csv and results.json (one row per video x area: preserved probability,
mask area reached, extremal area) and sweep_out/videos/<video>.{json,npz} as each batch finishes; a
rerun with the same flags skips finished videos; --merge_only only rebuilds the results from them.
Test sharding on CPU with XLA_FLAGS=--xla_force_host_platform_device_count=4. Across hosts, give
every process --coordinator_address, --num_processes and --process_id (or --distributed on a
SLURM / Open MPI / Cloud TPU cluster): each sweeps its share of the videos and process 0 writes
the results (README, "Runs across hosts").
"""
from __future__ import annotations

from absl import flags

from experiments import _cli, _processes
from vjx.attribution import registry

_VIDEOS_DIR = flags.DEFINE_string("videos_dir", None, "Folder of frame folders and/or video files (required).")
_MODEL = flags.DEFINE_string("model", "i3d", "i3d, r2plus1d, r3d, mc3 or tsm (or a registry name); all but the "
                             "pretrained i3d need --checkpoint (or --random_weights).")
_DATASET = flags.DEFINE_string("pretrain_dataset", "kinetics", "kinetics, epic-kitchens-noun, "
                               "epic-kitchens-verb (tsm), ucf101-24 or ucf101 (vgg16lstm).")
_METHOD = flags.DEFINE_string("vis_method", "step", f"Extremal method, one of: {registry.describe(registry.MASKS)}.")
_SCHEDULE = flags.DEFINE_string("schedule", None, "How masks are optimised: native (the library's default, "
                                "60 iterations), fast (200) or original (the original toolkit's SGD, 2000).")
_NUM_ITER = flags.DEFINE_integer("num_iter", None, "Perturbation iterations (default: the schedule's own).")
_AREAS = flags.DEFINE_list("perturb_area", ["0.01", "0.02", "0.05", "0.1", "0.15", "0.2"],
                           "Preserved-area ratios in (0, 1), comma separated.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Torch or orbax weights (default: the bundled weights, "
                                  "the pretrained I3D).")
_RANDOM = flags.DEFINE_bool("random_weights", False, "Sweep a randomly initialised (untrained) network.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", None, "Square input crops of this many pixels instead of the "
                                   "model's (e.g. 112 for I3D, about 4x cheaper); the short side is resized in proportion.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "sweep_res", "Where results go (reused to resume).")
_TARGET = flags.DEFINE_string("target", "label", "label, pred or a class name.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Videos per compiled call (rounded up to a multiple of "
                              "the device count; 0 = one per device).")
_DTYPE = flags.DEFINE_string("dtype", "float32", "Model compute dtype: float32 or bfloat16.")
_NO_GPU = flags.DEFINE_bool("no_gpu", False, "Run on CPU even if an accelerator is present.")
_MERGE_ONLY = flags.DEFINE_bool("merge_only", False, "Compute nothing: rebuild results.csv/json from the "
                                "videos finished so far.")
_ALL_FLAGS = (_VIDEOS_DIR, _MODEL, _DATASET, _METHOD, _SCHEDULE, _NUM_ITER, _AREAS, _CHECKPOINT, _RANDOM,
              _INPUT_SIZE, _OUTPUT_DIR,
              _TARGET, _SEED, _BATCH, _DTYPE, _NO_GPU, _MERGE_ONLY, *_processes.ALL_FLAGS)


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    import jax
    if _NO_GPU.value:
        jax.config.update("jax_platforms", "cpu")
    _processes.start()

    from vjx import data, pipeline
    from vjx.errors import VjxError
    from vjx.pipeline import processes, sweep

    if not _VIDEOS_DIR.value:
        raise VjxError("--videos_dir is required: a folder of frame folders and/or video files")
    request = pipeline.Request(
        videos=tuple(data.list_videos(_VIDEOS_DIR.value)), model=_MODEL.value, dataset=_DATASET.value,
        method=_METHOD.value, areas=_cli.parse_areas(_AREAS.value), num_iter=_NUM_ITER.value,
        **({"schedule": _SCHEDULE.value} if _SCHEDULE.value else {}),
        checkpoint=_CHECKPOINT.value, random_weights=_RANDOM.value, input_size=_INPUT_SIZE.value,
        output_dir=_OUTPUT_DIR.value, target=_TARGET.value, seed=_SEED.value,
        batch_size=_BATCH.value or len(jax.local_devices()), dtype=_DTYPE.value,
        flags={holder.name: holder.value for holder in _ALL_FLAGS})
    rows = sweep.run(request, merge_only=_MERGE_ONLY.value)
    if processes.is_coordinator():
        print(f"{len(rows)} rows ({len(request.videos)} videos x {len(request.areas)} areas) in "
              f"{_OUTPUT_DIR.value}/results.csv and results.json")


if __name__ == "__main__":
    _cli.run(main, {**_cli.FLAG_NAMES, **_processes.FLAG_NAMES})
