"""Measure attribution methods on videos: methods x cases x areas -> a table of every metric.

    python -m experiments.evaluate --videos_dir clips/ --annotations truth.csv --model r2plus1d \\
        --checkpoint r2plus1d_18-91a641e6.pth --methods grad,grad_cam,step --perturb_area 0.1
    python -m experiments.evaluate --temporal_pairs clips/ --spatial_pairs clips/ --videos_dir clips/ \\
        --videos vjx/assets/bigbuckbunny_excerpt.mp4 --perturb_area 0.05,0.1,0.2

Cases: the real clips of --videos_dir and --videos (deletion/insertion AUC, hard-mask preservation,
minimum preservation ratio, average drop / increase in confidence, and the pointing games where
--annotations gives boxes or a segment); with --temporal_pairs every ordered pair of that folder's
clips with different labels, joined in time (the temporal pointing game; each joined clip is
explained for both halves' classes); with --spatial_pairs every such pair side by side, each at the
model's own size (a T x S x 2S input; pointing and energy share per half, each side's class
explained). Every case also reports its class's rank and probability on the unperturbed input, and
the table repeats itself over the cases whose class is in the model's top 5. The annotation format
is in the README ("Measuring explanations") and vjx/pipeline/annotations.py. --schedule picks the
extremal methods' optimisation schedule by name (vjx.attribution.extremal.SCHEDULES).

Writes to --output_dir: rows/<method>/<case>.json as each batch finishes (a rerun with the same
flags skips them), rows.csv/json (every method x case x area), and table.csv, table.json and
table.md (each metric's mean, standard deviation and 95% bootstrap interval over the cases, and the
ordering of the methods: Krippendorff's alpha of the cases' rankings, the best method's paired
bootstrap difference to the runner-up). Across hosts give every
process --coordinator_address, --num_processes and --process_id (or --distributed on a cluster):
each evaluates its share of the cases and process 0 writes the table; --merge_only rebuilds the
table from the finished rows. Bad input (a missing video, a malformed annotation row, a box outside
its frame, a frame index out of range, a pair folder with fewer than two labels or a clip too short
for its part of a pair) gives one line on stderr naming the file and line or clip, exit code 2, and
nothing written.
"""
from __future__ import annotations

from absl import flags

from experiments import _cli, _processes
from vjx.attribution import registry


_VIDEOS_DIR = flags.DEFINE_string("videos_dir", None, "Folder of real clips (frame folders and/or video files).")
_VIDEOS = flags.DEFINE_list("videos", [], "More real clips (video files or frame folders), comma separated.")
_PAIRS = flags.DEFINE_string("temporal_pairs", None, "Folder of labelled clips (label = name up to its first "
                             "'-'): every ordered pair with different labels, joined in time, is a temporal test.")
_SPATIAL = flags.DEFINE_string("spatial_pairs", None, "Folder of labelled clips: every ordered pair with different "
                               "labels, side by side at the model's size, is a spatial test (one per half).")
_GAP = flags.DEFINE_integer("spatial_gap", 0, "Pixels of the model's mean colour between a spatial pair's clips "
                            "(a layout to try when the composite confuses the model).")
_ANNOTATIONS = flags.DEFINE_string("annotations", None, "CSV of boxes per frame and segments per video of the "
                                   "real clips (header video,kind,start,stop,x0,y0,x1,y1).")
_METHODS = flags.DEFINE_list("methods", None, "Methods to compare, comma separated (default: all of "
                             f"{registry.describe()}, but those that need a prototype model, a video "
                             "transformer's attention or one kind of network: the excitation backprop family).")
_MODEL = flags.DEFINE_string("model", "i3d", "i3d, r2plus1d, r3d, mc3 or tsm (or a registry name).")
_DATASET = flags.DEFINE_string("pretrain_dataset", "kinetics", "kinetics, epic-kitchens-noun, "
                               "epic-kitchens-verb (tsm), ucf101-24 or ucf101 (vgg16lstm).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Torch or orbax weights (default: the bundled weights, "
                                  "the pretrained I3D).")
_RANDOM = flags.DEFINE_bool("random_weights", False, "Evaluate a randomly initialised (untrained) network.")
_AREAS = flags.DEFINE_list("perturb_area", ["0.1"], "Areas in (0, 1): extremal methods optimise each, every "
                           "map is scored at each (hard-mask preservation).")
_SCHEDULE = flags.DEFINE_string("schedule", None, "Optimisation schedule of the extremal methods, a name of "
                                "vjx.attribution.extremal.SCHEDULES (default: the library's DEFAULT_SCHEDULE).")
_NUM_ITER = flags.DEFINE_integer("num_iter", None, "Extremal iterations (default: the schedule's).")
_POLARITY = flags.DEFINE_string("polarity", "both", "Gradient sign scored: both (|g|), positive or negative.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", None, "Square input crops of this many pixels instead of the "
                                   "model's (e.g. 112 for I3D, to save time); the short side is resized in proportion.")
_CURVE_STEPS = flags.DEFINE_integer("curve_steps", 20, "Steps of the deletion/insertion curves (0: skip them).")
_TOLERANCE = flags.DEFINE_float("tolerance", 7.0, "Spatial pointing game radius in input pixels.")
_TARGET = flags.DEFINE_string("target", "label", "Class explained on real clips: label, pred or a class name "
                              "(a joined pair always explains its half's label).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "eval_res", "Where results go (reused to resume).")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Cases per compiled call.")
_NUM_MASKS = flags.DEFINE_integer("num_masks", 1000, "Random masks of rise.")
_CLIPS = flags.DEFINE_integer("batch", 16, "Perturbed clips per model call (score_cam, rise, occlusion): "
                              "lower it if memory runs out.")
_DTYPE = flags.DEFINE_string("dtype", "float32", "Model compute dtype: float32 or bfloat16.")
_NO_GPU = flags.DEFINE_bool("no_gpu", False, "Run on CPU even if an accelerator is present.")
_MERGE_ONLY = flags.DEFINE_bool("merge_only", False, "Compute nothing: rebuild the rows and the table from the "
                                "finished rows.")
_ALL_FLAGS = (_VIDEOS_DIR, _VIDEOS, _PAIRS, _SPATIAL, _GAP, _ANNOTATIONS, _METHODS, _MODEL, _DATASET, _CHECKPOINT,
              _RANDOM, _AREAS, _SCHEDULE, _NUM_ITER, _POLARITY, _INPUT_SIZE, _CURVE_STEPS, _TOLERANCE, _TARGET,
              _OUTPUT_DIR, _SEED, _BATCH, _NUM_MASKS, _CLIPS, _DTYPE, _NO_GPU, _MERGE_ONLY, *_processes.ALL_FLAGS)
FLAG_NAMES = {**_cli.FLAG_NAMES, **_processes.FLAG_NAMES, "videos": "--videos_dir/--videos", "method": "--methods",
              "methods": "--methods", "pairs": "--temporal_pairs", "spatial_pairs": "--spatial_pairs",
              "spatial_gap": "--spatial_gap", "annotations": "--annotations",
              "curve_steps": "--curve_steps", "tolerance": "--tolerance"}


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    import jax
    if _NO_GPU.value:
        jax.config.update("jax_platforms", "cpu")
    _processes.start()

    from vjx import data, pipeline
    from vjx.pipeline import evaluate, methods, processes

    clips = tuple(data.list_videos(_VIDEOS_DIR.value)) if _VIDEOS_DIR.value else ()
    pairs = tuple(data.list_videos(_PAIRS.value)) if _PAIRS.value else ()
    spatial = tuple(data.list_videos(_SPATIAL.value)) if _SPATIAL.value else ()
    request = pipeline.Request(
        videos=clips + tuple(_VIDEOS.value), model=_MODEL.value, dataset=_DATASET.value,
        areas=_cli.parse_areas(_AREAS.value), **({"schedule": _SCHEDULE.value} if _SCHEDULE.value else {}),
        num_iter=_NUM_ITER.value, input_size=_INPUT_SIZE.value, polarity=_POLARITY.value,
        target=_TARGET.value, checkpoint=_CHECKPOINT.value, random_weights=_RANDOM.value,
        output_dir=_OUTPUT_DIR.value, seed=_SEED.value, batch_size=_BATCH.value, num_masks=_NUM_MASKS.value,
        batch=_CLIPS.value, dtype=_DTYPE.value, flags={holder.name: holder.value for holder in _ALL_FLAGS})
    evaluation = evaluate.Evaluation(
        request=request, methods=tuple(_METHODS.value or methods.any_model_names()), pairs=pairs,
        spatial_pairs=spatial, spatial_gap=_GAP.value, annotations=_ANNOTATIONS.value, curve_steps=_CURVE_STEPS.value,
        tolerance=_TOLERANCE.value)
    result = evaluate.run(evaluation, merge_only=_MERGE_ONLY.value)
    if processes.is_coordinator():
        from vjx.pipeline import table
        print(table.report_markdown(result.rows), end="")
        print(f"{len(result.rows)} rows in {_OUTPUT_DIR.value}/rows.csv; the table in table.md, table.csv and "
              "table.json" + (f"; {len(result.missing)} method x case runs unfinished" if result.missing else ""))


if __name__ == "__main__":
    _cli.run(main, FLAG_NAMES)
