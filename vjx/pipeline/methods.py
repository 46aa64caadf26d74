"""The table of attribution methods a run can use: one :class:`Method` per ``method`` name.

Each entry declares what its method is: the ``vjx.attribution`` function, how a request's settings
become the function's config, whether it is *extremal* (one mask per preserved-area ratio, all
optimised in one call), and how its result becomes one :class:`Explanation` per video (maps, row
labels and the numbers the summaries report). Callers look a method up here instead of testing its
name.

    from vjx.pipeline import methods
    method = methods.get("step")
    config = method.make_config(request, model.spec)   # request: its areas, num_iter, polarity
    result = method.function(model, x, targets, config, key=jax.random.key(0))
    explanations = method.explain(result, config)      # one per video: maps A x T x H x W, ...

The names are the original toolkit's ``--vis_method`` values, plus ``3d_ep_smooth`` (the paper's
Table 4 baseline, which the original's command line does not offer) and ``prototype_activation``
(HIPE's map; it needs a trained ``vjx.prototypes.PrototypeModel``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from vjx import attribution, prototypes
from vjx.errors import ArgumentError
from vjx.models.registry import ModelSpec


@dataclasses.dataclass(frozen=True)
class Explanation:
    """One video's attribution, as the pipeline draws, stores and summarises it.

    Attributes:
      maps: float32 ``R x T x H x W`` in [0, 1]: one row per area (extremal methods), else one row.
      row_names: ``R`` labels of the rows (``"area 0.05"``, or the method's name).
      areas: extremal methods: one dict per area: ``area``,
        ``preserved_probability`` (target probability with the soft mask preserving the video),
        ``hard_preserved_probability`` (with the hard mask: the top ``a`` of the mask kept, the rest
        blurred), ``mask_area`` (the soft mask's area, on the padded mask the area loss counts),
        ``undecided`` (fraction of mask values between 0.1 and 0.9) and ``converged`` (1 if the
        mask area is within 0.02 of ``a`` and at most 10% of it is undecided, else 0); empty for
        the other methods. These dicts are the per-area rows of ``summary.json`` and the sweep.
      numbers: per-video numbers (extremal methods: ``extremal_area``, Eq. 3 on converged hard
        masks, NaN where none reaches the bound, and ``extremal_bound``, the probability a hard mask
        must keep: the clip's unless the config gives one); empty for the other methods.
    """

    maps: np.ndarray
    row_names: tuple[str, ...]
    areas: tuple[dict[str, float], ...] = ()
    numbers: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Method:
    """One attribution method as a run uses it.

    Attributes:
      name: the ``method`` name (the original's ``--vis_method`` value), e.g. ``"step"``.
      function: ``fn(model, videos, targets, config, *, variables=None, key=None, progress=None)`` of
        vjx.attribution.
      make_config: ``(request, spec) -> config``: the function's config for a request (any object
        with ``areas``, ``schedule``, ``num_iter`` and ``polarity``) and a model spec.
      title: the method as the paper and its readers name it (figure titles, console).
      extremal: True for the extremal-perturbation methods (an ``ExtremalResult``, a mask per area).
      needs_prototype_model: True if the method only explains a ``vjx.prototypes.PrototypeModel``.
    """

    name: str
    function: Callable[..., Any]
    make_config: Callable[[Any, ModelSpec], Any]
    title: str
    extremal: bool = False
    needs_prototype_model: bool = False

    def row_names(self, config: Any) -> tuple[str, ...]:
        """The labels of an explanation's map rows."""
        if self.extremal:
            return tuple(f"area {a:g}" for a in config.areas)
        return (self.name,)

    def explain(self, result: Any, config: Any) -> list[Explanation]:
        """The function's result for a batch -> one :class:`Explanation` per video."""
        if not self.extremal:
            maps = np.asarray(result.maps, np.float32)                        # B x T x H x W
            return [Explanation(maps=m[None], row_names=self.row_names(config)) for m in maps]
        masks = np.asarray(result.masks, np.float32)                          # B x A x T x H x W
        columns = {"preserved_probability": result.probabilities, "hard_preserved_probability":
                   result.hard_probabilities, "mask_area": result.mask_area, "undecided": result.undecided,
                   "converged": result.converged}
        columns = {name: np.asarray(values, np.float64) for name, values in columns.items()}      # B x A
        extremal_area = np.asarray(result.extremal_area, np.float64)          # B
        bound = (np.asarray(result.base_probability, np.float64) if config.extremal_bound is None
                 else np.full(len(masks), config.extremal_bound, np.float64))  # B
        return [Explanation(
            maps=masks[i], row_names=self.row_names(config),
            areas=tuple({"area": float(a), **{name: float(values[i, j]) for name, values in columns.items()}}
                        for j, a in enumerate(config.areas)),
            numbers={"extremal_area": float(extremal_area[i]), "extremal_bound": float(bound[i])})
            for i in range(len(masks))]

    def caption(self, explanation: Explanation, clip_probability: float) -> str:
        """Lines for the figure and the console: per area what its hard mask keeps, and Eq. 3's verdict."""
        if not self.extremal:
            return ""
        lines = [area_sentence(row, clip_probability) for row in explanation.areas]
        return "\n".join([*lines, extremal_sentence(explanation)])


# A hard mask that keeps less than this fraction of the clip's target probability "loses the class".
LOST_FRACTION = 0.1


def area_sentence(row: Mapping[str, float], clip_probability: float) -> str:
    """One area in words: ``"top 5%: p = 0.32 of the clip's 0.64 (soft mask 0.25); converged"``."""
    hard = row["hard_preserved_probability"]
    lost = " - loses the class" if hard < LOST_FRACTION * clip_probability else ""
    state = ("converged" if row["converged"] else
             f"NOT converged (mask area {row['mask_area']:.3f}, {row['undecided']:.0%} of values undecided)")
    return (f"kept by the top {row['area']:.0%}: p = {hard:.2f} of the clip's {clip_probability:.2f}{lost} "
            f"(soft mask {row['preserved_probability']:.2f}); {state}")


def extremal_sentence(explanation: Explanation) -> str:
    """Eq. 3 in words: the extremal area, the bound it compares with, and why it is none if so."""
    extremal, bound = explanation.numbers["extremal_area"], explanation.numbers["extremal_bound"]
    head = f"extremal area (smallest area whose converged top-a mask keeps p >= {bound:.2f}): "
    if not np.isnan(extremal):
        return head + f"{extremal:.0%}"
    converged = [row for row in explanation.areas if row["converged"]]
    if not converged:
        return head + "none - no mask converged (more iterations may help)"
    best = max(converged, key=lambda row: row["hard_preserved_probability"])
    kept = best["hard_preserved_probability"]
    digits = next((d for d in (2, 4, 6) if f"{kept:.{d}f}" != f"{bound:.{d}f}"), 8)
    return head + (f"none - the converged masks keep at most p = {kept:.{digits}f} < {bound:.{digits}f} "
                   f"(top {best['area']:.0%}); larger areas may reach it")


def _gradient_config(request, spec: ModelSpec) -> attribution.GradientConfig:
    return attribution.GradientConfig(polarity=request.polarity)


def _integrated_gradients_config(request, spec: ModelSpec) -> attribution.IntegratedGradientsConfig:
    return attribution.IntegratedGradientsConfig(polarity=request.polarity, mean=spec.mean, std=spec.std)


def _smooth_grad_config(request, spec: ModelSpec) -> attribution.SmoothGradConfig:
    return attribution.SmoothGradConfig()


def _grad_cam_config(request, spec: ModelSpec) -> attribution.GradCamConfig:
    return attribution.GradCamConfig(layer=spec.gradcam_layer)


def _extremal_config(request, spec: ModelSpec) -> attribution.ExtremalConfig:
    """The request's areas and schedule; the iterations written out (the schedule's if not given), so
    that summaries say them."""
    num_iter = request.num_iter or attribution.extremal.SCHEDULES[request.schedule].num_iter
    return attribution.ExtremalConfig(areas=tuple(float(a) for a in request.areas), schedule=request.schedule,
                                      num_iter=num_iter, sigma=spec.ep_sigma, warm_start=request.warm_start)


METHODS: dict[str, Method] = {method.name: method for method in (
    Method("grad", attribution.gradient, _gradient_config, "Gradient"),
    Method("grad*input", attribution.gradient_x_input, _gradient_config, "Gradient x input"),
    Method("integrated_grad", attribution.integrated_gradients, _integrated_gradients_config,
           "Integrated gradients"),
    Method("smooth_grad", attribution.smooth_grad, _smooth_grad_config, "SmoothGrad"),
    Method("grad_cam", attribution.grad_cam, _grad_cam_config, "Grad-CAM"),
    Method("2d_ep", attribution.ep2d, _extremal_config, "2D-EP (each frame held to the area)", extremal=True),
    Method("3d_ep", attribution.ep3d, _extremal_config, "3D-EP", extremal=True),
    Method("step", attribution.step, _extremal_config, "STEP (spatio-temporal extremal perturbation)",
           extremal=True),
    # Table 4's baseline: 3D-EP whose seed masks are smoothed over time.
    Method("3d_ep_smooth", attribution.ep3d_temporal_smoothing, _extremal_config,
           "3D-EP with temporally smoothed masks", extremal=True),
    # HIPE: where the target leaf class's most similar prototype matches (vjx.prototypes).
    Method("prototype_activation", prototypes.prototype_activation,
           lambda request, spec: prototypes.PrototypeActivationConfig(), "Prototype activation (HIPE)",
           needs_prototype_model=True),
)}


def get(name: str) -> Method:
    """The method called ``name``; an unknown name is an ArgumentError of ``method``."""
    if name not in METHODS:
        raise ArgumentError("method", f"{name!r} is unknown; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def any_model_names() -> tuple[str, ...]:
    """The methods every model can be explained with (not those needing a prototype model)."""
    return tuple(name for name, method in METHODS.items() if not method.needs_prototype_model)


def extremal_names() -> tuple[str, ...]:
    """The names of the extremal methods."""
    return tuple(name for name, method in METHODS.items() if method.extremal)
