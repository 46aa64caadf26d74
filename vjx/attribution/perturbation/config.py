"""The settings of an extremal-perturbation run, its named schedules, and their checks (in one place).

An :class:`ExtremalConfig` may leave optimisation fields as ``None``; :func:`resolve` fills them from
the named :data:`SCHEDULES` entry and the method (STEP's reward weight and area-weight growth), checks
everything, and returns the config the loop runs plus the mask geometry. A resolved config has no
``None`` left but ``extremal_bound`` (None: the unperturbed probability).
"""
from __future__ import annotations

import dataclasses

from vjx.attribution import _stepping
from vjx.attribution.perturbation import losses
from vjx.attribution.perturbation.mask import MaskGeometry
from vjx.attribution.perturbation.optim import LR_DECAYS, OPTIMIZERS
from vjx.errors import VjxError

METHODS = ("ep2d", "ep3d", "step", "ep3d_temporal_smoothing")
VARIANTS = ("preserve", "delete", "dual")
PERTURBATIONS = ("blur", "fade")
DEFAULT_AREAS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2)
# "native" since 2026-12-07: on the clips the pretrained I3D recognises at its own 224 px its 60-iteration
# hard masks kept at least 0.9x what the 200-iteration "fast" schedule's kept in 20 of 21 masks (STEP and
# 3D-EP, areas 0.05/0.1/0.2, four clips), usually many times more, in a third of the time (BENCHMARKS.md).
DEFAULT_SCHEDULE = "native"
# Table 4 of the paper compares 3D-EP with seeds smoothed over time by a normalised Gaussian for three
# sigmas; our copy of the paper does not preserve the three values, so the default is 1 frame.
DEFAULT_TEMPORAL_SIGMA = 1.0


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A named way to optimise the masks: the defaults of the config's optimisation fields.

    Attributes:
      num_iter: iterations.
      optimizer, learning_rate, lr_decay: see :func:`vjx.attribution.perturbation.optim.make_optimizer`.
      step_start: first iteration at which STEP's ellipsoid loss counts.
      area_growth: per-iteration factor on the area-loss weight of 2D-EP and 3D-EP.
      step_area_growth: the same for STEP.
      scales_with_length: if True, a run of another length keeps the same weight curves over the
        run (``step_start`` in proportion, the growths to the same final factors); if False they
        stay per iteration, as the original code has them.
      hard_from: fraction of the run after which the model sees the hard mask's perturbation
        while the gradient flows through the soft mask (straight through); 1 = never.
      warm_start: the starting seeds: ``"none"`` (all ones, the original's) or a map whose top
        cells start at 1 and the rest at 0 (see :data:`WARM_STARTS`).
      sharpen_from, sharpness: from this fraction of the run on, the generator's masks pass through
        a normalised sigmoid around 0.5 whose slope grows linearly to ``sharpness`` at the last
        iteration (see :func:`vjx.attribution.perturbation.loop.sharpen`); the losses, the
        perturbation and the returned masks all use the sharpened mask. 0 = never.
      step_reward_weight: STEP's weight on the class reward (2D-EP and 3D-EP always weigh it 100;
        the original gives STEP 1).
    """

    num_iter: int
    optimizer: str
    learning_rate: float
    lr_decay: str
    step_start: int
    area_growth: float
    step_area_growth: float
    scales_with_length: bool
    hard_from: float = 1.0
    warm_start: str = "none"
    sharpen_from: float = 1.0
    sharpness: float = 0.0
    step_reward_weight: float = 1.0

    def weights(self, num_iter: int, method: str) -> tuple[int, float]:
        """``(step_start, area_growth)`` of ``method`` for a run of ``num_iter`` iterations."""
        growth = self.step_area_growth if method == "step" else self.area_growth
        if not self.scales_with_length or num_iter == self.num_iter:
            return self.step_start, growth
        scale = num_iter / self.num_iter
        return max(0, round(self.step_start * scale)), growth ** (1 / scale)


SCHEDULES: dict[str, Schedule] = {
    # The original toolkit's: SGD lr 0.05, momentum and dampening 0.9, 2000 iterations; STEP's loss
    # from iteration 101, its area weight x1.0008668 per iteration (about x2 every 800).
    "original": Schedule(num_iter=2000, optimizer="sgd", learning_rate=0.05, lr_decay="constant", step_start=101,
                         area_growth=1.0, step_area_growth=1.0008668, scales_with_length=False),
    # vjx's: Adam with a cosine-decayed learning rate, and every method's area weight growing x100
    # over the run, so that the soft masks are pushed to the requested area and to 0/1 values within
    # 200 iterations (chosen by measurement on real clips: see BENCHMARKS.md).
    "fast": Schedule(num_iter=200, optimizer="adam", learning_rate=0.1, lr_decay="cosine", step_start=10,
                     area_growth=100 ** (1 / 200), step_area_growth=100 ** (1 / 200), scales_with_length=True),
    # vjx's for the model's own input size in minutes: 60 iterations, the area weight growing x10^4 over
    # the run (x100 left masks at twice the area after 60), and from 30% of the run on the masks pass
    # through a sigmoid around 0.5 whose slope grows to 100, so that by the end the model and the
    # losses see a near-binary mask and its top-a hard mask keeps what the soft one keeps. STEP weighs
    # the reward 100 like the other methods: with the original's 1 its 60-iteration soft masks kept
    # little of the class and their hard masks less (measured on real clips in BENCHMARKS.md, "Native
    # resolution"). In the last 6 iterations the model sees the hard mask's perturbation (straight
    # through): at 5% of the clip the soft mask otherwise hides part of the class in the partial blur
    # along its edge; on real clips this raised the hard mask's probability in most masks measured
    # (BENCHMARKS.md, "The straight-through end").
    "native": Schedule(num_iter=60, optimizer="adam", learning_rate=0.1, lr_decay="cosine", step_start=3,
                       area_growth=1e4 ** (1 / 60), step_area_growth=1e4 ** (1 / 60), scales_with_length=True,
                       hard_from=0.9, sharpen_from=0.3, sharpness=100.0, step_reward_weight=100.0),
}
# The starting seeds a schedule may use: all ones, or the top cells of the input-gradient magnitude.
WARM_STARTS = ("none", "gradient")


@dataclasses.dataclass(frozen=True)
class ExtremalConfig:
    """Settings of an extremal-perturbation run (frozen and hashable).

    Fields left ``None`` take the schedule's value (or the method's, see :func:`resolve`).

    Attributes:
      areas: preserved-area ratios in (0, 1), each optimised on its own.
      schedule: a name of :data:`SCHEDULES`: ``"original"`` (the original toolkit's SGD, 2000
        iterations), ``"fast"`` (Adam, 200) or ``"native"`` (the default: Adam, 60, masks sharpened
        towards 0/1 from 30% of the run, the model seeing the hard mask in the last 10%).
      num_iter: iterations (None: the schedule's).
      variant: ``"preserve"`` (reward ``-log p``), ``"delete"`` (``-log(1 - p)`` with the mask's
        complement kept) or ``"dual"`` (both summed).
      perturbation: ``"blur"`` (the original's choice) or ``"fade"``.
      optimizer: ``"sgd"`` (PyTorch semantics, with ``momentum`` and ``dampening``) or ``"adam"``.
      learning_rate, lr_decay: initial learning rate and its decay (``"constant"`` or ``"cosine"``).
      momentum, dampening: SGD only.
      seed_spacing: pixels between the seed points of the mask generator (the original's ``step``).
      sigma: smooth-max sigma in pixels; None = the Model spec's ``ep_sigma`` when the input has the
        spec's size, else 11 for frames up to 168 px and 23 above (the original: 11 at 112, 23 at 224).
      num_levels, max_blur: blur pyramid levels and the strongest blur sigma.
      reward_weight: None = 100 (2D/3D-EP), or the schedule's ``step_reward_weight`` for STEP (the
        original's 1; 100 on the ``native`` schedule).
      area_weight: initial area-loss weight.
      area_growth: per-iteration factor on the area weight; None = the schedule's for the method.
      step_weight: weight of STEP's ellipsoid loss once active.
      step_start: first iteration where STEP's loss counts (None: the schedule's; the original's 101).
      temporal_sigma: seed smoothing over time in frames (``ep3d_temporal_smoothing`` only).
      hard_from: None = the schedule's (see :class:`Schedule`).
      warm_start: None = the schedule's; one of :data:`WARM_STARTS`.
      sharpen_from, sharpness: None = the schedule's (see :class:`Schedule`).
      extremal_bound: the probability a hard mask must keep to count in Eq. 3; None = the
        unperturbed one.
      area_batch: areas optimised side by side (vmapped); groups of them take turns (a divisor of
        the number of areas). None = one at a time on CPU, all at once elsewhere (see
        :func:`vjx.attribution._stepping.areas_per_group`).
      iterations_per_call: iterations per compiled call. None = 1 on CPU, all of them elsewhere
        (see :mod:`vjx.attribution._stepping`).
      frame_probabilities: also score each frame's mask alone (the per-frame importance curve:
        ``T`` more forward passes per area).
    """

    areas: tuple[float, ...] = DEFAULT_AREAS
    schedule: str = DEFAULT_SCHEDULE
    num_iter: int | None = None
    variant: str = "preserve"
    perturbation: str = "blur"
    optimizer: str | None = None
    learning_rate: float | None = None
    lr_decay: str | None = None
    momentum: float = 0.9
    dampening: float = 0.9
    seed_spacing: int = 7
    sigma: float | None = None
    num_levels: int = 8
    max_blur: float = 20.0
    reward_weight: float | None = None
    area_weight: float = 300.0
    area_growth: float | None = None
    step_weight: float = 300.0
    step_start: int | None = None
    temporal_sigma: float = DEFAULT_TEMPORAL_SIGMA
    hard_from: float | None = None
    warm_start: str | None = None
    sharpen_from: float | None = None
    sharpness: float | None = None
    extremal_bound: float | None = None
    area_batch: int | None = None
    iterations_per_call: int | None = None
    frame_probabilities: bool = False


def default_sigma(size: int) -> float:
    """Smooth-max sigma for frames of ``size`` pixels: 11 up to 168 px (112 inputs), 23 above (224)."""
    return 11.0 if size <= 168 else 23.0


def check_areas(areas) -> tuple[float, ...]:
    """The areas as a tuple of floats strictly inside (0, 1); a VjxError naming ``areas`` otherwise."""
    if not isinstance(areas, (tuple, list)) or not areas:
        raise VjxError(f"areas must be a non-empty tuple of ratios, got {areas!r}")
    try:
        values = tuple(float(a) for a in areas)
    except (TypeError, ValueError):
        raise VjxError(f"areas must be numbers between 0 and 1, got {areas!r}") from None
    bad = [a for a in values if not 0 < a < 1]
    if bad:
        raise VjxError(f"areas must lie strictly between 0 and 1, got {bad[0]!r}")
    return values


def check_num_iter(num_iter) -> int:
    """``num_iter`` as a positive int; a VjxError naming it otherwise."""
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 1:
        raise VjxError(f"num_iter must be a positive integer, got {num_iter!r}")
    return num_iter


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise VjxError(f"config.{name} must be one of {', '.join(allowed)}, got {value!r}")


def resolve(method: str, config: ExtremalConfig, frames: int, height: int, width: int,
            spec_sigma: float | None = None) -> tuple[ExtremalConfig, MaskGeometry]:
    """Checks ``config`` for ``method`` on clips of ``frames x height x width`` and fills its ``None`` fields.

    Args:
      method: one of :data:`METHODS`.
      spec_sigma: the model spec's ``ep_sigma`` if the clip has the spec's size.
    Returns:
      ``(resolved config, mask geometry)``.
    Raises:
      VjxError: an unknown name, a value out of range, or clips too small for the mask geometry.
    """
    if not isinstance(config, ExtremalConfig):
        raise VjxError(f"config must be an ExtremalConfig, got {type(config).__name__}")
    _choice("schedule", config.schedule, tuple(SCHEDULES))
    schedule = SCHEDULES[config.schedule]
    num_iter = check_num_iter(schedule.num_iter if config.num_iter is None else config.num_iter)
    step_start, growth = schedule.weights(num_iter, method)
    is_step = method == "step"
    config = dataclasses.replace(
        config, areas=check_areas(config.areas), num_iter=num_iter,
        optimizer=config.optimizer or schedule.optimizer,
        learning_rate=schedule.learning_rate if config.learning_rate is None else float(config.learning_rate),
        lr_decay=config.lr_decay or schedule.lr_decay,
        reward_weight=float(config.reward_weight if config.reward_weight is not None
                            else (schedule.step_reward_weight if is_step else 100.0)),
        area_growth=float(config.area_growth if config.area_growth is not None else growth),
        step_start=int(step_start if config.step_start is None else config.step_start),
        hard_from=float(schedule.hard_from if config.hard_from is None else config.hard_from),
        warm_start=schedule.warm_start if config.warm_start is None else config.warm_start,
        sharpen_from=float(schedule.sharpen_from if config.sharpen_from is None else config.sharpen_from),
        sharpness=float(schedule.sharpness if config.sharpness is None else config.sharpness))
    _choice("warm_start", config.warm_start, WARM_STARTS)
    if not 0 <= config.hard_from <= 1:
        raise VjxError(f"config.hard_from must be a fraction of the run in [0, 1], got {config.hard_from!r}")
    if not 0 <= config.sharpen_from <= 1:
        raise VjxError(f"config.sharpen_from must be a fraction of the run in [0, 1], got {config.sharpen_from!r}")
    if not config.sharpness >= 0:
        raise VjxError(f"config.sharpness must be >= 0 (0: masks are not sharpened), got {config.sharpness!r}")
    _choice("variant", config.variant, VARIANTS)
    _choice("perturbation", config.perturbation, PERTURBATIONS)
    _choice("optimizer", config.optimizer, OPTIMIZERS)
    _choice("lr_decay", config.lr_decay, LR_DECAYS)
    if not config.learning_rate > 0:
        raise VjxError(f"config.learning_rate must be positive, got {config.learning_rate!r}")
    if not isinstance(config.seed_spacing, int) or config.seed_spacing < 1:
        raise VjxError(f"config.seed_spacing must be a positive integer (pixels), got {config.seed_spacing!r}")
    if config.sigma is not None and not config.sigma > 0:
        raise VjxError(f"config.sigma must be positive (pixels) or None, got {config.sigma!r}")
    if config.num_levels < 2 or not config.max_blur > 0:
        raise VjxError("config.num_levels must be >= 2 and config.max_blur > 0")
    if not config.temporal_sigma > 0:
        raise VjxError(f"config.temporal_sigma must be positive (frames), got {config.temporal_sigma!r}")
    num_areas = len(config.areas)
    area_batch = _stepping.areas_per_group(num_areas, config.area_batch)
    if not isinstance(area_batch, int) or area_batch < 1 or num_areas % area_batch:
        raise VjxError(f"config.area_batch {area_batch} must be a positive divisor of the number of areas ({num_areas})")
    per_call = config.iterations_per_call
    if per_call is not None and (not isinstance(per_call, int) or per_call < 1):
        raise VjxError(f"config.iterations_per_call must be a positive integer or None, got {per_call!r}")

    if min(height, width) < config.seed_spacing:
        raise VjxError(f"videos of {height}x{width} pixels are smaller than the mask step (seed spacing "
                       f"{config.seed_spacing}); use larger frames or a smaller config.seed_spacing")
    sigma = config.sigma if config.sigma is not None else (spec_sigma or default_sigma(min(height, width)))
    geometry = MaskGeometry(height, width, config.seed_spacing, float(sigma))
    hp, wp = geometry.padded_shape
    if min(hp - height, wp - width) < geometry.margin:
        raise VjxError(f"mask sigma {sigma} is too small for seed spacing {config.seed_spacing}: the smooth "
                       f"mask does not cover {height}x{width} frames; use sigma >= spacing / 2 or so")
    if is_step and (frames < losses.CORE_SHAPE[0] or min(hp, wp) < losses.CORE_SHAPE[1]):
        raise VjxError(f"STEP needs at least {losses.CORE_SHAPE[0]} frames and frames of {losses.CORE_SHAPE[1]}+ "
                       f"mask pixels, got {frames} frames; use ep3d")
    return dataclasses.replace(config, sigma=float(sigma), area_batch=area_batch), geometry
