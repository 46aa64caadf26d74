"""Explain what a video classifier looks at: the original toolkit's main.py, in vjx.

    python -m experiments.explain                 # pretrained I3D at 224 px, bundled clip, STEP (CPU: one area)
    python -m experiments.explain --videos_dir ../shared/data/kinetics/sampled_frames \\
        --model r2plus1d --checkpoint r2plus1d_18-91a641e6.pth --vis_method step \\
        --perturb_area 0.05,0.1 --schedule original
    python -m experiments.explain --video clip.mp4 --model i3d --vis_method integrated_grad

Outputs go to --output_dir (default visual_res/<vis_method>/<model>/<save_label>): per video a PNG
figure, one GIF and one MP4 per area (original | overlay) and an .npz of the maps; per run summary.json.
The console says what runs before, during and after the work (README, "What explain prints").

CPU demo: when JAX runs on CPU and neither --perturb_area nor --num_iter is given, an extremal method
explains one area (CPU_DEMO_AREAS) at the model's own input size and says so (a few minutes on a
2-core CPU with the default native schedule); give --perturb_area for more areas.
"""
from __future__ import annotations

import os

from absl import flags

from experiments import _cli
from vjx.attribution import registry
from vjx.errors import VjxError

# The CPU demo's area (the paper's figures show masks of about this size; 60 iterations of it at the
# model's own size take about 2 minutes on two cores).
CPU_DEMO_AREAS = (0.1,)

_VIDEOS_DIR = flags.DEFINE_string("videos_dir", None, "Folder of frame folders and/or video files "
                                  "(the label is each name up to its first '-').")
_VIDEO = flags.DEFINE_string("video", None, "One video file or frame folder (default: the bundled "
                             "Big Buck Bunny clip, (c) Blender Foundation, CC-BY 3.0).")
_MODEL = flags.DEFINE_string("model", "i3d", "i3d, r2plus1d, r3d, mc3, tsm, vgg16lstm, videomae or timesformer "
                             "(or a registry name); the transformers need --checkpoint (a Hugging Face directory).")
_DATASET = flags.DEFINE_string("pretrain_dataset", "kinetics",
                               "Label set of the head: kinetics, epic-kitchens-noun, epic-kitchens-verb (tsm), "
                               "ucf101-24 or ucf101 (vgg16lstm).")
_METHOD = flags.DEFINE_string("vis_method", "step", f"Method, one of: {registry.describe()} (the attention "
                              "methods on videomae/timesformer only).")
_SAVE_LABEL = flags.DEFINE_string("save_label", "", "Extra folder level of the default output dir.")
_NO_GPU = flags.DEFINE_bool("no_gpu", False, "Run on CPU even if an accelerator is present.")
_SCHEDULE = flags.DEFINE_string("schedule", None, "How extremal masks are optimised: native (the "
                                 "default: Adam, 60 iterations, masks sharpened towards 0/1 from 30% of the run, the "
                                 "model seeing the hard mask in the last 10%), "
                                 "fast (Adam, 200) or original (the original toolkit's SGD, 2000).")
_WARM_START = flags.DEFINE_string("warm_start", None, "Starting seeds of extremal masks: none (all ones, the "
                                  "original's) or gradient (the top cells of the input gradient); default: the "
                                  "schedule's.")
_NUM_ITER = flags.DEFINE_integer("num_iter", None, "Perturbation iterations (default: the schedule's own).")
_AREAS = flags.DEFINE_list("perturb_area", None, "Preserved-area ratio(s) in (0, 1), comma separated "
                           "(default 0.01,0.02,0.05,0.1,0.15,0.2; the CPU demo: 0.1).")
_INPUT_SIZE = flags.DEFINE_integer("input_size", None, "Side of the frames fed to the model (default: the "
                                   "model's, 224 for I3D). Pretrained models do not recognise clips much "
                                   "smaller than their own size.")
_POLARITY = flags.DEFINE_string("polarity", "both", "Gradient sign shown: both (|g|, the original code's "
                                "default), positive or negative.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Torch .pth/.pt/.safetensors or a converted "
                                  "orbax dir (default: the bundled weights, the pretrained I3D).")
_RANDOM = flags.DEFINE_bool("random_weights", False, "Explain a randomly initialised (untrained) network.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write (default visual_res/<method>/<model>/<save_label>).")
_TARGET = flags.DEFINE_string("target", "label", "Class to explain: label (folder-name label, else the "
                              "prediction), pred, or a class name.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Videos per compiled call.")
_PATH_BATCH = flags.DEFINE_integer("path_batch", 5, "integrated_grad path points / smooth_grad samples per "
                                   "forward+backward pass; 1 bounds memory on long clips (ViT-B, 16 frames).")
_NUM_MASKS = flags.DEFINE_integer("num_masks", 1000, "Random masks of rise.")
_CLIPS = flags.DEFINE_integer("batch", 16, "Perturbed clips per model call (score_cam, rise, occlusion): "
                              "lower it if memory runs out.")
_DTYPE = flags.DEFINE_string("dtype", "float32", "Model compute dtype: float32 or bfloat16.")
_ALL_FLAGS = (_VIDEOS_DIR, _VIDEO, _MODEL, _DATASET, _METHOD, _SAVE_LABEL, _NO_GPU, _SCHEDULE, _WARM_START,
              _NUM_ITER, _AREAS,
              _INPUT_SIZE, _POLARITY,
              _CHECKPOINT, _RANDOM, _OUTPUT_DIR, _TARGET, _SEED, _BATCH, _PATH_BATCH, _NUM_MASKS, _CLIPS, _DTYPE)


def video_paths() -> tuple[str, ...]:
    """The videos of --video / --videos_dir (the bundled clip if neither is given)."""
    from vjx import data

    if _VIDEO.value and _VIDEOS_DIR.value:
        raise VjxError("pass --video or --videos_dir, not both")
    if _VIDEOS_DIR.value:
        return tuple(data.list_videos(_VIDEOS_DIR.value))
    return (_VIDEO.value or data.sample_video_path(),)


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    if _NO_GPU.value:
        import jax
        jax.config.update("jax_platforms", "cpu")
    import jax

    from vjx import pipeline
    from vjx.models.registry import get_spec, model_names
    from vjx.pipeline import methods

    areas, input_size = _cli.parse_areas(_AREAS.value), _INPUT_SIZE.value
    if (methods.get(_METHOD.value).extremal and jax.default_backend() == "cpu"
            and areas is None and _NUM_ITER.value is None):
        areas = CPU_DEMO_AREAS
        print(f"Running on CPU: {_METHOD.value} explains area {', '.join(map(str, areas))} only, to finish in "
              "minutes; give --perturb_area (e.g. 0.01,0.02,0.05,0.1,0.15,0.2) for more.", flush=True)
    if (input_size is not None and not _RANDOM.value and _MODEL.value in model_names()
            and input_size < get_spec(_MODEL.value).crop):
        print(f"Warning: --input_size {input_size} is below {_MODEL.value}'s own "
              f"{get_spec(_MODEL.value).crop} px; pretrained models do not recognise clips at that size, so the "
              "explanations may explain nothing.", flush=True)
    flag_values = {holder.name: holder.value for holder in _ALL_FLAGS}
    output_dir = _OUTPUT_DIR.value or os.path.join("visual_res", _METHOD.value, _MODEL.value, _SAVE_LABEL.value)
    given = {name: value for name, value in (("areas", areas), ("input_size", input_size),
                                             ("schedule", _SCHEDULE.value), ("num_iter", _NUM_ITER.value),
                                             ("warm_start", _WARM_START.value))
             if value is not None}
    request = pipeline.Request(
        videos=video_paths(), model=_MODEL.value, dataset=_DATASET.value, method=_METHOD.value,
        polarity=_POLARITY.value, target=_TARGET.value, checkpoint=_CHECKPOINT.value,
        random_weights=_RANDOM.value, output_dir=output_dir, seed=_SEED.value, batch_size=_BATCH.value,
        path_batch=_PATH_BATCH.value, num_masks=_NUM_MASKS.value, batch=_CLIPS.value, dtype=_DTYPE.value,
        flags=flag_values, **given)
    summary = pipeline.explain(request)
    print(f"Wrote {len(summary['videos'])} explanation(s) to {os.path.abspath(output_dir)} "
          f"(figures .png, animations .gif and .mp4, maps .npz, summary.json) in {summary['timings_s']['total']:.1f} s")


if __name__ == "__main__":
    _cli.run(main)
