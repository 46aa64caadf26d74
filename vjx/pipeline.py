"""Explaining videos end to end: read, predict, attribute, draw, and write the results atomically.

This is the library behind ``python -m experiments.explain`` and ``experiments.sweep``; the scripts
only turn flags into a :class:`Request`.

    from vjx import pipeline
    request = pipeline.Request(videos=(pipeline.sample_video(),), model="i3d", method="step",
                               areas=(0.05, 0.1), num_iter=300, output_dir="out")
    summary = pipeline.explain(request)     # out/<video>.png, .gif, .npz and out/summary.json

Per video it writes a PNG figure (the frames, an overlay row per area, a title with the label, the
top-3 predictions and each area's preserved probability), an animated GIF per area (original and
overlay side by side), an ``.npz`` of the raw maps with metadata; per run one ``summary.json``.
Every file is written to a temporary name and renamed into place; if the run fails, every file and
directory it created is removed again.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import platform
import sys
import tempfile
import threading
import time
import warnings
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vjx import attribution, data, visualize
from vjx.attribution import extremal
from vjx.errors import VjxError
from vjx.model import Model, load_model
from vjx.models.registry import get_spec

# The original CLI's --vis_method names -> vjx attribution functions.
METHODS: dict[str, str] = {
    "grad": "gradient", "grad*input": "gradient_x_input", "integrated_grad": "integrated_gradients",
    "smooth_grad": "smooth_grad", "grad_cam": "grad_cam", "2d_ep": "ep2d", "3d_ep": "ep3d", "step": "step",
}
EXTREMAL_METHODS = ("2d_ep", "3d_ep", "step")
# The original CLI's --pretrain_dataset names -> label sets, and which models have such heads.
DATASETS: dict[str, str] = {"kinetics": "kinetics400", "epic-kitchens-noun": "epic-kitchens-noun",
                            "epic-kitchens-verb": "epic-kitchens-verb"}
EPIC_MODELS = ("tsm_resnet50",)
DEFAULT_AREAS = extremal.DEFAULT_AREAS
POLARITIES = ("positive", "negative", "both")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
TOP_K = 3


def sample_video() -> str:
    """The bundled demo clip (Big Buck Bunny, (c) Blender Foundation, CC-BY 3.0)."""
    return data.sample_video_path()


@dataclasses.dataclass(frozen=True)
class Request:
    """One explain run.

    Attributes:
      videos: video files and/or frame folders.
      model: registry name or the original's short name (``i3d``, ``r2plus1d``, ``r3d``, ``mc3``, ``tsm``).
      dataset: ``kinetics``, ``epic-kitchens-noun`` or ``epic-kitchens-verb`` (the head's label set).
      method: an original ``--vis_method`` name (see :data:`METHODS`).
      areas: preserved-area ratios in (0, 1) (extremal methods), all optimised in one compiled call.
      num_iter: optimisation steps (extremal methods).
      polarity: ``positive``, ``negative`` or ``both`` (gradient methods).
      target: ``"label"`` (the folder-name label, else the prediction), ``"pred"`` or a class name.
      checkpoint: torch/orbax weights; None = the pretrained I3D for ``i3d`` on Kinetics, else random.
      output_dir: where the files go (created; removed again on failure if this run created it).
      seed: PRNG seed (random init, SmoothGrad noise, STEP tie-breaking).
      batch_size: videos per compiled call.
      dtype: ``float32`` or ``bfloat16`` compute for the model (masks stay float32).
      flags: the command line's flags, recorded in the summary.
      progress: show tqdm progress bars on stderr.
    """

    videos: tuple[str, ...]
    model: str = "i3d"
    dataset: str = "kinetics"
    method: str = "step"
    areas: tuple[float, ...] = DEFAULT_AREAS
    num_iter: int = 2000
    polarity: str = "positive"
    target: str = "label"
    checkpoint: str | None = None
    output_dir: str = "visual_res"
    seed: int = 0
    batch_size: int = 1
    dtype: str = "float32"
    flags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    progress: bool = True


def check_request(request: Request) -> str:
    """Validates names, combinations and numbers before anything heavy runs; returns the label set.

    Raises:
      VjxError: unknown model/method/dataset, a dataset the model has no head for, an area outside
        (0, 1), a non-positive iteration count or batch size, an unknown polarity or dtype.
    """
    spec = get_spec(request.model)
    if request.method not in METHODS:
        raise VjxError(f"--vis_method {request.method!r} is unknown; choose one of {', '.join(METHODS)}")
    if request.dataset not in DATASETS:
        raise VjxError(f"--pretrain_dataset {request.dataset!r} is unknown; choose one of {', '.join(DATASETS)}")
    label_set = DATASETS[request.dataset]
    if label_set != "kinetics400" and spec.name not in EPIC_MODELS:
        raise VjxError(f"--model {request.model} has no {request.dataset} head (only tsm does); use "
                       "--pretrain_dataset kinetics or --model tsm")
    check_areas(request.areas)
    if request.num_iter < 1:
        raise VjxError(f"--num_iter must be at least 1, got {request.num_iter}")
    if request.batch_size < 1:
        raise VjxError(f"--batch_size must be at least 1, got {request.batch_size}")
    if request.polarity not in POLARITIES:
        raise VjxError(f"--polarity {request.polarity!r} is unknown; choose one of {', '.join(POLARITIES)}")
    if request.dtype not in DTYPES:
        raise VjxError(f"--dtype {request.dtype!r} is unknown; choose one of {', '.join(DTYPES)}")
    if not request.videos:
        raise VjxError("no video given; pass --video or --videos_dir")
    return label_set


def parse_areas(values: Sequence[str] | None) -> tuple[float, ...] | None:
    """``--perturb_area`` strings -> checked floats (None if the flag was not given)."""
    if values is None:
        return None
    try:
        return check_areas([float(v) for v in values])
    except ValueError:
        raise VjxError(f"--perturb_area {','.join(values)!r} is not a comma list of numbers in (0, 1)") from None


def check_areas(areas: Sequence[float]) -> tuple[float, ...]:
    """The areas as floats, each strictly inside (0, 1) (else a VjxError naming --perturb_area)."""
    if not areas:
        raise VjxError("--perturb_area is empty; give ratios such as 0.05,0.1")
    for area in areas:
        if not 0.0 < float(area) < 1.0:
            raise VjxError(f"--perturb_area {area} is outside (0, 1); give preserved-area ratios such as 0.05,0.1")
    return tuple(float(a) for a in areas)


def build_model(request: Request, label_set: str) -> Model:
    """The model of a request: ``--checkpoint``, the bundled I3D, or random weights (with a warning)."""
    spec = get_spec(request.model)
    if request.checkpoint is not None:
        if not os.path.exists(request.checkpoint):
            raise VjxError(f"--checkpoint {request.checkpoint!r} does not exist")
        return load_model(spec.name, checkpoint=request.checkpoint, label_set=label_set)
    if spec.name == "i3d" and label_set == "kinetics400":
        return load_model("i3d", pretrained="kinetics400")
    warnings.warn(f"no weights for {spec.name} on {request.dataset}: using RANDOM weights (seed "
                  f"{request.seed}); pass --checkpoint for meaningful explanations", stacklevel=2)
    return load_model(spec.name, label_set=label_set, seed=request.seed)


_warned_labels: set[str] = set()


def class_names(model: Model) -> tuple[str, ...]:
    """The model's class names; ``"class 123"`` placeholders (warned once) when the label file is missing."""
    try:
        return model.spec.labels
    except VjxError as e:
        if model.spec.label_set not in _warned_labels:
            _warned_labels.add(model.spec.label_set)
            warnings.warn(f"{e} Showing class numbers instead.", stacklevel=2)
        return tuple(f"class {i}" for i in range(model.spec.num_classes))


def read_videos(paths: Sequence[str]) -> list[data.Video]:
    """Reads every video up front, so a bad file fails the run before any compute or output."""
    return [data.read_video(p) for p in paths]


def prepare(model: Model, video: data.Video) -> np.ndarray:
    """uint8 ``N x H x W x 3`` -> float32 ``T x S x S x 3``; short videos are sampled with repetition."""
    spec = model.spec
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = data.sample_frames(video.frames, spec.num_frames, repeat=True)
    for w in caught:
        warnings.warn(f"video {video.path!r}: {w.message}", stacklevel=2)
    return spec.preprocess(frames)


def display_frames(model: Model, x: np.ndarray) -> np.ndarray:
    """The model's input as the viewer should see it: float32 ``T x S x S x 3`` -> uint8."""
    rgb = data.denormalize(x, mean=model.spec.mean, std=model.spec.std)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def choose_target(request_target: str, video: data.Video, probs: np.ndarray,
                  names: Sequence[str]) -> tuple[int, str]:
    """The class to explain for one video and how it was chosen (``label``, ``pred`` or ``given``).

    ``"label"`` uses the folder-name label if it is a class of the label set; otherwise it warns,
    suggests close class names and falls back to the prediction.
    """
    predicted = int(np.argmax(probs))
    if request_target == "pred":
        return predicted, "pred"
    if request_target == "label":
        index = data.resolve_label(video.label, names) if video.label else None
        if index is not None:
            return index, "label"
        if video.label and video.label != video.name and not names[0].startswith("class "):
            close = data.close_labels(video.label, names)
            hint = f" (close: {', '.join(close)})" if close else ""
            warnings.warn(f"video {video.name!r}: label {video.label!r} is not a class of the label "
                          f"set{hint}; explaining the prediction {names[predicted]!r}", stacklevel=2)
        return predicted, "pred"
    index = data.resolve_label(request_target, names)
    if index is None and request_target.isdigit() and int(request_target) < len(names):
        index = int(request_target)
    if index is None:
        close = data.close_labels(request_target, names)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise VjxError(f"--target {request_target!r} is not a class name, 'label' or 'pred'{hint}")
    return index, "given"


class _ModelFn:
    """``apply_fn`` in the request's dtype that reports each forward pass (hashable: jit caches it).

    The attribution loops call the model once per iteration; a ``jax.debug.callback`` without
    arguments runs once per call even under ``vmap`` over areas, which drives the progress bar.
    With a ``sharding`` (a NamedSharding over the batch axis) every model input inside the compiled
    loop is constrained to it, so XLA splits the model's work over the devices by video.
    """

    def __init__(self, apply_fn: Callable[..., Any], dtype: Any, sharding: jax.sharding.Sharding | None = None):
        self.apply_fn, self.dtype, self.sharding = apply_fn, dtype, sharding
        self.listener: Callable[[], None] | None = None

    def _tick(self) -> None:
        if self.listener is not None:
            self.listener()

    def __call__(self, variables, video, **kwargs):
        jax.debug.callback(self._tick)
        if self.sharding is not None:
            video = jax.lax.with_sharding_constraint(video, self.sharding)
        out = self.apply_fn(variables, video.astype(self.dtype), **kwargs)
        if isinstance(out, tuple):
            return (out[0].astype(jnp.float32), *out[1:])
        return out.astype(jnp.float32)

    def __hash__(self) -> int:
        return hash((self.apply_fn, jnp.dtype(self.dtype).name, self.sharding))

    def __eq__(self, other) -> bool:
        return (isinstance(other, _ModelFn) and self.apply_fn == other.apply_fn
                and jnp.dtype(self.dtype) == jnp.dtype(other.dtype) and self.sharding == other.sharding)


@dataclasses.dataclass
class Runner:
    """A model prepared for attribution: its pure function, variables and the method's config.

    ``runner(x, targets)`` maps float32 ``B x T x S x S x 3`` clips and int ``B`` targets to
    ``(maps B x R x T x S x S in [0, 1], extras)``: R is the number of areas for the extremal
    methods (extras: ``preserved`` B x A, ``mask_area`` B x A, ``extremal_area`` B, ``final_reward``
    B x A), 1 for the backprop methods.
    """

    model: Model
    method: str
    config: Any
    dtype: str = "float32"
    seed: int = 0
    sharding: jax.sharding.Sharding | None = None

    def __post_init__(self):
        dtype = DTYPES[self.dtype]
        self.fn = _ModelFn(self.model.apply_fn, dtype, self.sharding)
        self.variables = jax.tree_util.tree_map(
            lambda v: v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v, self.model.variables)
        self.predict = jax.jit(lambda variables, x: jax.nn.softmax(self.fn(variables, x), axis=-1))
        if self.method in EXTREMAL_METHODS:   # per iteration, one model call per group of areas
            areas = len(self.config.areas)
            groups = areas // (self.config.area_batch or areas)
            self.calls_per_batch = self.config.num_iter * groups + areas + 1
        else:
            self.calls_per_batch = 1

    @property
    def rows(self) -> list[str]:
        """One label per map row."""
        if self.method in EXTREMAL_METHODS:
            return [f"area {a:g}" for a in self.config.areas]
        return [self.method]

    def __call__(self, x, targets, listener: Callable[[], None] | None = None):
        fn = getattr(attribution if self.method not in EXTREMAL_METHODS else extremal, METHODS[self.method])
        self.fn.listener = listener
        try:
            result = fn(self.fn, x, targets, self.config, variables=self.variables, key=jax.random.key(self.seed))
            result = jax.block_until_ready(result)
            jax.effects_barrier()
        finally:
            self.fn.listener = None
        if self.method in EXTREMAL_METHODS:
            masks = np.asarray(result.masks, np.float32)
            return masks, {"preserved": np.asarray(result.probabilities, np.float64),
                           "mask_area": masks.mean(axis=(2, 3, 4)).astype(np.float64),
                           "extremal_area": np.asarray(result.extremal_area, np.float64),
                           "final_reward": np.asarray(result.history["reward"][..., -1], np.float64)}
        return np.asarray(result.maps, np.float32)[:, None], {}


def make_config(request: Request, model: Model) -> Any:
    """The attribution config the request asks for (the method's defaults otherwise)."""
    spec = model.spec
    if request.method in EXTREMAL_METHODS:
        # On CPU, vmapping areas buys no speed (two cores are saturated by one area) but multiplies
        # memory (six I3D areas at 224^2 exceeded 24 GB), so areas run one after another there.
        area_batch = 1 if jax.default_backend() == "cpu" else None
        return extremal.ExtremalConfig(areas=check_areas(request.areas), num_iter=int(request.num_iter),
                                       sigma=spec.ep_sigma, area_batch=area_batch)
    if request.method in ("grad", "grad*input"):
        return attribution.GradientConfig(polarity=request.polarity)
    if request.method == "integrated_grad":
        return attribution.IntegratedGradientsConfig(polarity=request.polarity, mean=spec.mean, std=spec.std)
    if request.method == "smooth_grad":
        return attribution.SmoothGradConfig()
    return attribution.GradCamConfig(layer=spec.gradcam_layer)


def make_runner(request: Request, model: Model, sharding: jax.sharding.Sharding | None = None) -> Runner:
    """A :class:`Runner` for ``model`` with the request's method, config, dtype and seed."""
    return Runner(model, request.method, make_config(request, model), request.dtype, request.seed, sharding)


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A thread-safe tqdm bar on stderr; yields ``tick()`` which advances it by one (capped at total)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="it", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
    lock = threading.Lock()

    def tick() -> None:
        with lock:
            if bar.n < total:
                bar.update(1)

    try:
        yield tick
    finally:
        bar.close()


class OutputWriter:
    """Writes files under a directory atomically and removes everything it created if the run fails.

    Use as a context manager; an exception inside the block (KeyboardInterrupt included) removes the
    files written so far and every directory the writer created.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = pathlib.Path(directory)
        self.created_files: list[pathlib.Path] = []
        self.created_dirs: list[pathlib.Path] = []

    def __enter__(self) -> "OutputWriter":
        missing = []
        d = self.directory.absolute()
        while not d.exists():
            missing.append(d)
            d = d.parent
        if not d.is_dir():
            raise VjxError(f"output dir {str(self.directory)!r} cannot be created: {str(d)!r} is not a directory")
        try:
            for d in reversed(missing):
                d.mkdir()
                self.created_dirs.append(d)
        except OSError as e:
            self.rollback()
            raise VjxError(f"cannot create output dir {str(self.directory)!r}: {e.strerror}") from e
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.rollback()

    def subdir(self, name: str) -> pathlib.Path:
        """Creates ``directory/name`` if missing; it is removed on rollback if this writer made it and it is empty."""
        path = self.directory / name
        if not path.is_dir():
            path.mkdir()
            self.created_dirs.append(path.absolute())
        return path

    def write(self, name: str, payload: bytes) -> pathlib.Path:
        """Writes ``payload`` to ``directory/name`` via a temporary file and ``os.replace``."""
        path = self.directory / name
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            existed = path.exists()
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if not existed:
            self.created_files.append(path)
        return path

    def rollback(self) -> None:
        """Removes the files written and the directories created (innermost first)."""
        for path in reversed(self.created_files):
            with contextlib.suppress(OSError):
                path.unlink()
        for d in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()
        self.created_files, self.created_dirs = [], []


def npz_bytes(**arrays: Any) -> bytes:
    """``np.savez_compressed`` into bytes."""
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def json_bytes(obj: Any) -> bytes:
    """Pretty JSON (NaN written as null) as UTF-8 bytes."""
    return (json.dumps(_clean(obj), indent=1, allow_nan=False) + "\n").encode()


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    return obj


def versions() -> dict[str, str]:
    """Versions of vjx and its numeric stack, the Python and the devices, for the summary."""
    import flax

    import vjx
    return {"vjx": vjx.__version__, "jax": jax.__version__, "flax": flax.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "devices": [str(d) for d in jax.devices()]}


def safe_name(name: str) -> str:
    """A video name usable as a file name (path separators and leading dots replaced)."""
    cleaned = "".join(c if c.isalnum() or c in "-_.+=@," else "_" for c in name).lstrip(".")
    return cleaned or "video"


@dataclasses.dataclass
class VideoResult:
    """Everything explained about one video (rows R: one per area, or one for a backprop method)."""

    video: data.Video
    frames: np.ndarray                  # uint8 T x S x S x 3, the model's view
    maps: np.ndarray                    # float32 R x T x S x S in [0, 1]
    rows: list[str]
    target: int
    target_source: str
    top: list[tuple[str, float]]
    extras: dict[str, np.ndarray]       # per-row arrays (R) and extremal_area (scalar)


def figure_title(result: VideoResult, names: Sequence[str], areas: Sequence[float] | None) -> str:
    """Label, target, top-3 predictions and, for extremal runs, the preserved probability per area."""
    label = result.video.label if result.video.label and result.video.label != result.video.name else "-"
    top = ", ".join(f"{n} {p:.2f}" for n, p in result.top)
    lines = [f"{result.video.name}   label: {label}   target: {names[result.target]} ({result.target_source})",
             f"top-{len(result.top)}: {top}"]
    if areas is not None:
        kept = ", ".join(f"{a:g}: {p:.2f}" for a, p in zip(areas, result.extras["preserved"]))
        ext = float(result.extras["extremal_area"])
        lines.append(f"preserved p per area  {kept}   extremal area: {'none' if np.isnan(ext) else f'{ext:g}'}")
    return "\n".join(lines)


def write_video_outputs(writer: OutputWriter, result: VideoResult, names: Sequence[str], runner: Runner,
                        fps: float) -> list[str]:
    """PNG figure, one GIF per row and the ``.npz`` of one video; returns the file names written."""
    base = safe_name(result.video.name)
    areas = runner.config.areas if runner.method in EXTREMAL_METHODS else None
    written = [writer.write(f"{base}.png", visualize.figure_png(
        result.frames, list(zip(result.rows, result.maps)), title=figure_title(result, names, areas))).name]
    for row, maps in zip(result.rows, result.maps):
        suffix = "" if len(result.rows) == 1 else "_" + row.replace(" ", "")
        written.append(writer.write(f"{base}{suffix}.gif", visualize.gif_bytes(result.frames, maps, fps=fps)).name)
    meta = {"video": result.video.name, "path": result.video.path, "method": runner.method,
            "model": runner.model.spec.name, "target": result.target, "target_name": names[result.target],
            "rows": result.rows}
    arrays = {"maps": result.maps.astype(np.float16 if result.maps.size > 4_000_000 else np.float32),
              "frames": result.frames, "meta": np.array(json.dumps(meta))}
    if areas is not None:
        arrays.update(areas=np.asarray(areas, np.float32), preserved=result.extras["preserved"],
                      extremal_area=np.float64(result.extras["extremal_area"]))
    written.append(writer.write(f"{base}.npz", npz_bytes(**arrays)).name)
    return written


def explain_batch(runner: Runner, videos: Sequence[data.Video], target: str, names: Sequence[str],
                  progress: bool = True, desc: str = "") -> tuple[list[VideoResult], dict[str, float]]:
    """Predicts and explains one batch of videos in one compiled attribution call.

    Returns:
      one :class:`VideoResult` per video and the batch's timings in seconds (``predict``, ``attribution``).
    """
    model = runner.model
    start = time.perf_counter()
    x = np.stack([prepare(model, v) for v in videos])
    probs = np.asarray(runner.predict(runner.variables, jnp.asarray(x)))
    predict_s = time.perf_counter() - start
    chosen = [choose_target(target, v, p, names) for v, p in zip(videos, probs)]
    targets = np.array([c[0] for c in chosen], np.int32)
    start = time.perf_counter()
    with progress_bar(runner.calls_per_batch, desc or f"{runner.method} {model.spec.name}", progress) as tick:
        maps, extras = runner(x, targets, listener=tick)
    attribution_s = time.perf_counter() - start
    results = []
    for i, video in enumerate(videos):
        order = np.argsort(-probs[i])[:TOP_K]
        results.append(VideoResult(
            video=video, frames=display_frames(model, x[i]), maps=maps[i], rows=runner.rows,
            target=int(targets[i]), target_source=chosen[i][1],
            top=[(names[j], float(probs[i, j])) for j in order],
            extras={k: v[i] for k, v in extras.items()}))
    return results, {"predict": predict_s, "attribution": attribution_s}


def summary_entry(result: VideoResult, names: Sequence[str], runner: Runner) -> dict[str, Any]:
    """The JSON summary of one video."""
    entry = {"video": result.video.name, "path": result.video.path, "label": result.video.label,
             "target": result.target, "target_name": names[result.target], "target_source": result.target_source,
             "predictions": [{"class": n, "probability": p} for n, p in result.top]}
    if runner.method in EXTREMAL_METHODS:
        entry["areas"] = [{"area": a, "preserved_probability": p, "mask_area": m}
                          for a, p, m in zip(runner.config.areas, result.extras["preserved"],
                                             result.extras["mask_area"])]
        entry["extremal_area"] = result.extras["extremal_area"]
    return entry


def explain(request: Request) -> dict[str, Any]:
    """Runs a whole explain request and writes its outputs (see the module docstring).

    Returns:
      the summary that was written to ``<output_dir>/summary.json``.
    Raises:
      VjxError: any bad input; nothing this run wrote is left behind.
    """
    start = time.perf_counter()
    label_set = check_request(request)
    videos = read_videos(request.videos)
    model = build_model(request, label_set)
    names = class_names(model)
    runner = make_runner(request, model)
    load_s = time.perf_counter() - start
    entries, timings = [], {"load": load_s, "predict": 0.0, "attribution": 0.0, "write": 0.0}
    with OutputWriter(request.output_dir) as writer:
        for first in range(0, len(videos), request.batch_size):
            batch = videos[first:first + request.batch_size]
            desc = f"{request.method} {model.spec.name} [{first + 1}-{first + len(batch)}/{len(videos)}]"
            results, batch_timings = explain_batch(runner, batch, request.target, names, request.progress, desc)
            for k, v in batch_timings.items():
                timings[k] += v
            write_start = time.perf_counter()
            for result in results:
                entry = summary_entry(result, names, runner)
                entry["files"] = write_video_outputs(writer, result, names, runner, fps=4.0)
                entries.append(entry)
            timings["write"] += time.perf_counter() - write_start
        timings["total"] = time.perf_counter() - start
        summary = {"method": request.method, "model": model.spec.name, "label_set": model.spec.label_set,
                   "weights": request.checkpoint or ("pretrained kinetics400" if model.spec.name == "i3d"
                                                     and label_set == "kinetics400" else "random"),
                   "config": _clean(dataclasses.asdict(runner.config)), "dtype": request.dtype,
                   "seed": request.seed, "videos": entries, "timings_s": timings, "versions": versions(),
                   "flags": dict(request.flags)}
        writer.write("summary.json", json_bytes(summary))
    return summary
