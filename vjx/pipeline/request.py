"""What a run is asked to do, checked once: :class:`Request` in, :class:`Resolved` out.

    from vjx.pipeline import request as rq
    resolved = rq.resolve(rq.Request(videos=("clip.mp4",), model="r2plus1d", method="step",
                                     areas=(0.05, 0.1), checkpoint="r2plus1d_18-91a641e6.pth"))
    resolved.spec, resolved.method, resolved.config, resolved.weights   # decided here, read later
    model = rq.load_model(resolved)

:func:`resolve` checks every name, combination and number before anything heavy runs and decides,
once, the model spec (with the head's label set), the method (an entry of :mod:`vjx.pipeline.methods`), its
config and where the weights come from. Bad values raise :class:`~vjx.errors.ArgumentError` naming
the request's field (``areas``, ``method``, ...); the command-line scripts rename them to flags.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

from vjx.attribution.display import POLARITIES
from vjx.attribution.extremal import DEFAULT_AREAS, DEFAULT_SCHEDULE, SCHEDULES, WARM_STARTS, default_sigma
from vjx.errors import ArgumentError
from vjx.model import Model
from vjx.model import load_model as load_registry_model
from vjx.models.registry import PRETRAINED, ModelSpec, get_spec
from vjx.pipeline import methods
from vjx.pipeline.targets import class_names, named_target
from vjx.prototypes.network import PrototypeModel

# The original CLI's --pretrain_dataset names -> label sets.
DATASETS: dict[str, str] = {"kinetics": "kinetics400", "epic-kitchens-noun": "epic-kitchens-noun",
                            "epic-kitchens-verb": "epic-kitchens-verb", "ucf101-24": "ucf101-24", "ucf101": "ucf101"}
# Architectures with heads for other label sets than their spec's (VGG16-LSTM: its checkpoint's).
OTHER_HEADS = {"tsm_resnet50": ("epic-kitchens-noun", "epic-kitchens-verb"), "vgg16lstm": ("ucf101",)}
# The smallest frames every model's strides still reduce to a feature map.
MIN_INPUT_SIZE = 32
# Values of ``target`` that are rules, not class names.
TARGET_RULES = ("label", "pred")
# Model compute dtypes (names jnp.dtype understands).
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Request:
    """One run, as its caller states it.

    Attributes:
      videos: video files and/or frame folders.
      model: registry name or the original's short name (``i3d``, ``r2plus1d``, ``r3d``, ``mc3``, ``tsm``).
      dataset: ``kinetics``, ``epic-kitchens-noun`` or ``epic-kitchens-verb`` (the head's label set).
      method: a method name or alias of :mod:`vjx.attribution.registry` (aliases: the original's
        ``--vis_method`` values).
      areas: preserved-area ratios in (0, 1) (extremal methods), all optimised in one call.
      schedule: how extremal masks are optimised: a name of ``vjx.attribution.extremal.SCHEDULES``
        (``"native"``, the default: 60 iterations; ``"fast"``: 200; ``"original"``: the original
        toolkit's SGD and 2000 iterations).
      num_iter: optimisation steps (extremal methods); None = the schedule's own.
      warm_start: the extremal masks' starting seeds, a name of
        ``vjx.attribution.perturbation.config.WARM_STARTS``; None = the schedule's own.
      input_size: side of the frames fed to the model (None: the spec's crop, 224 for I3D). A
        smaller one (e.g. 112 for I3D) makes extremal methods about 4x cheaper, on coarser masks.
      polarity: ``both``, ``positive`` or ``negative`` (gradient methods): which sign of the
        attribution is shown. ``both`` (``|g|``) is the library's default, the CLI's and the
        original code's (its README says ``positive``).
      target: ``"label"`` (the folder-name label, else the prediction), ``"pred"`` or a class name.
      checkpoint: torch/orbax weights; None = the bundled weights (the pretrained I3D on Kinetics);
        a model without bundled weights then needs ``random_weights``.
      random_weights: explain a randomly initialised network (seeded by ``seed``) instead: only when
        asked for, since its maps say nothing about a trained model (the randomisation check uses it).
      output_dir: where the files go (created; removed again on failure if this run created it).
      seed: PRNG seed (random init, SmoothGrad noise, STEP tie-breaking).
      batch_size: videos per compiled call.
      path_batch: path points (integrated_grad) or noisy copies (smooth_grad) per forward/backward
        pass; 1 bounds memory on long clips (a 16-frame ViT-B), larger is faster where memory allows.
      num_masks: random masks of RISE.
      batch: perturbed clips per model call (Score-CAM, RISE, occlusion): the memory bound.
      dtype: ``float32`` or ``bfloat16`` compute for the model (masks stay float32).
      flags: the command line's flags, recorded in the summary.
      progress: say what the run does on the console (stdout) and show progress bars (stderr).
    """

    videos: tuple[str, ...]
    model: str = "i3d"
    dataset: str = "kinetics"
    method: str = "step"
    areas: tuple[float, ...] = DEFAULT_AREAS
    schedule: str = DEFAULT_SCHEDULE
    num_iter: int | None = None
    warm_start: str | None = None
    input_size: int | None = None
    polarity: str = "both"
    target: str = "label"
    checkpoint: str | None = None
    random_weights: bool = False
    output_dir: str = "visual_res"
    seed: int = 0
    batch_size: int = 1
    path_batch: int = 5
    num_masks: int = 1000
    batch: int = 16
    dtype: str = "float32"
    flags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Weights:
    """Where a run's weights come from.

    Attributes:
      source: ``"checkpoint"`` (a torch file or converted directory), ``"pretrained"`` (a bundled
        set), ``"random"`` (seeded initialisation) or ``"given"`` (a model passed in already loaded).
      checkpoint: the checkpoint path (source ``"checkpoint"``).
      model: the model passed in (source ``"given"``).
    """

    source: str
    checkpoint: str | None = None
    model: Model | None = None

    def describe(self, label_set: str) -> str:
        """How the summary names them: the checkpoint path, ``pretrained <label set>``, ``random``, ``given model``."""
        return {"checkpoint": self.checkpoint, "pretrained": f"pretrained {label_set}",
                "random": "random", "given": "given model"}[self.source]

    def sentence(self, spec: ModelSpec, seed: int) -> str:
        """The console's plain words for them, e.g. ``"its pretrained kinetics400 weights"``."""
        if self.source == "checkpoint":
            return f"weights from {self.checkpoint}"
        if self.source == "pretrained":
            return f"its pretrained {spec.label_set} weights"
        if self.source == "random":
            return (f"RANDOM weights (seed {seed}), as asked: an untrained network, so the maps show what "
                    "an untrained network responds to, not what a trained one looks at")
        return "the weights of the model passed in"


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A checked request and everything decided from it; the rest of a run reads only this.

    Attributes:
      request: the request as given.
      spec: the model's spec, with the head of the request's label set and the request's input size.
      method: the :class:`vjx.pipeline.methods.Method` entry.
      config: the method's config (``method.make_config(request, spec)``).
      weights: where the weights come from.
    """

    request: Request
    spec: ModelSpec
    method: methods.Method
    config: Any
    weights: Weights


def check_areas(areas: Sequence[float]) -> tuple[float, ...]:
    """The areas as floats, each strictly inside (0, 1) (else an ArgumentError of ``areas``)."""
    if not areas:
        raise ArgumentError("areas", "is empty; give preserved-area ratios such as 0.05,0.1")
    for area in areas:
        if not 0.0 < float(area) < 1.0:
            raise ArgumentError("areas", f"{area} is outside (0, 1); give preserved-area ratios such as 0.05,0.1")
    return tuple(float(a) for a in areas)


def _check_choice(argument: str, value: str, choices) -> None:
    if value not in choices:
        raise ArgumentError(argument, f"{value!r} is unknown; choose one of {', '.join(choices)}")


def _check_positive(argument: str, value: int) -> None:
    if value < 1:
        raise ArgumentError(argument, f"must be at least 1, got {value}")


def resolve(request: Request, model: Model | None = None) -> Resolved:
    """Checks ``request`` and decides its spec, method, config and weights (nothing heavy runs).

    Args:
      request: the run.
      model: a model already loaded (a test's tiny model, or one shared by several runs): its spec
        and weights replace the request's ``model``, ``dataset`` and ``checkpoint``.
    Raises:
      ArgumentError: an unknown model, method, dataset, schedule, polarity or dtype; a dataset the
        model has no head for; an area outside (0, 1); a non-positive iteration count or batch size;
        an input size under 32; no videos; a target that is no class name; a checkpoint that does not exist; no weights for the
        model (no checkpoint, none bundled, random weights not asked for).
    """
    method = methods.get(request.method)
    if method.needs_prototype_model and not isinstance(model, PrototypeModel):
        raise ArgumentError("method", f"{method.name} explains only a trained prototype model (vjx.prototypes; "
                            "python -m experiments.train_prototypes), passed as model=")
    _check_choice("dataset", request.dataset, DATASETS)
    label_set = DATASETS[request.dataset]
    if model is not None:
        spec = model.spec
    else:
        spec = get_spec(request.model)
        if label_set != spec.label_set:
            heads = (spec.label_set, *OTHER_HEADS.get(spec.name, ()))
            if label_set not in heads:
                named = [name for name, labels in DATASETS.items() if labels in heads]
                raise ArgumentError("dataset", f"{request.dataset!r} has no head on {spec.name}; use "
                                    f"{' or '.join(named)}")
            spec = spec.with_label_set(label_set)
    refusal = method.refusal(spec)
    if refusal is not None:
        raise ArgumentError("method", f"{method.name!r} {refusal}")
    weights = Weights("given", model=model) if model is not None else _choose_weights(request, spec)
    if request.input_size is not None:
        if request.input_size < MIN_INPUT_SIZE:
            raise ArgumentError("input_size", f"must be at least {MIN_INPUT_SIZE} pixels, got {request.input_size}")
        spec = spec.at_size(request.input_size, default_sigma(request.input_size))
    check_areas(request.areas)
    _check_choice("schedule", request.schedule, SCHEDULES)
    if request.num_iter is not None:
        _check_positive("num_iter", request.num_iter)
    if request.warm_start is not None:
        _check_choice("warm_start", request.warm_start, WARM_STARTS)
    _check_positive("batch_size", request.batch_size)
    _check_positive("path_batch", request.path_batch)
    _check_choice("polarity", request.polarity, POLARITIES)
    _check_choice("dtype", request.dtype, DTYPES)
    if not request.videos:
        raise ArgumentError("videos", "is empty; give at least one video file or frame folder")
    if request.target not in TARGET_RULES:
        named_target(request.target, class_names(spec))
    return Resolved(request=request, spec=spec, method=method, config=method.make_config(request, spec),
                    weights=weights)


def _choose_weights(request: Request, spec: ModelSpec) -> Weights:
    """A checkpoint if given; random weights if asked for; bundled weights if the model has them for
    its label set (the I3D on Kinetics-400); else an ArgumentError of ``checkpoint``."""
    if request.checkpoint is not None:
        if request.random_weights:
            raise ArgumentError("checkpoint", "and {0} exclude each other; give one", ("random_weights",))
        if not os.path.exists(request.checkpoint):
            raise ArgumentError("checkpoint", f"{request.checkpoint!r} does not exist")
        return Weights("checkpoint", request.checkpoint)
    if request.random_weights:
        return Weights("random")
    if spec.label_set in PRETRAINED.get(spec.name, ()):
        return Weights("pretrained")
    bundled = ", ".join(f"{name} on {'/'.join(sets)}" for name, sets in PRETRAINED.items())
    raise ArgumentError("checkpoint", f"is needed: {spec.name} on {spec.label_set} has no weights in vjx (bundled: "
                        f"{bundled}); pass a torch .pth/.safetensors file or a converted folder, or {{0}} to explain "
                        "an untrained network", ("random_weights",))


def load_model(resolved: Resolved) -> Model:
    """The model of a resolved request."""
    spec, weights, request = resolved.spec, resolved.weights, resolved.request
    if weights.source == "given":
        return weights.model
    if weights.source == "checkpoint":
        return load_registry_model(spec.name, checkpoint=weights.checkpoint, label_set=spec.label_set)
    if weights.source == "pretrained":
        return load_registry_model(spec.name, pretrained=spec.label_set)
    return load_registry_model(spec.name, label_set=spec.label_set, seed=request.seed)


def follow_checkpoint(resolved: Resolved, model: Model) -> Resolved:
    """``resolved`` with the spec of the model a checkpoint built (a Hugging Face config sets a
    transformer's frames, size, normalisation and Grad-CAM layer) and the method's config made for it."""
    if resolved.weights.source != "checkpoint" or model.spec == resolved.spec:
        return resolved
    spec = model.spec
    if resolved.request.input_size is not None:
        spec = spec.at_size(resolved.spec.crop, resolved.spec.ep_sigma)
    return dataclasses.replace(resolved, spec=spec, config=resolved.method.make_config(resolved.request, spec))
