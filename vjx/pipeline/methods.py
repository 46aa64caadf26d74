"""The attribution methods a run can use: one :class:`Method` per entry of :mod:`vjx.attribution.registry`.

The registry entry declares what the method is (canonical name and aliases, function, config, output
kind); a :class:`Method` adds how its result becomes one :class:`Explanation` per video (maps, row
labels and the numbers the summaries report). Callers look a method up here instead of testing its
name.

    from vjx.pipeline import methods
    method = methods.get("step")
    config = method.make_config(request, model.spec)   # request: its areas, num_iter, polarity
    result = method.function(model, x, targets, config, key=jax.random.key(0))
    explanations = method.explain(result, config)      # one per video: maps A x T x H x W, ...

The canonical names are those of the ``vjx.attribution`` functions; the original toolkit's
``--vis_method`` values are their aliases (``methods.get("3d_ep").name == "ep3d"``).
``prototype_activation`` (HIPE's map) needs a trained ``vjx.prototypes.PrototypeModel``; the
attention methods (``attention_rollout``, ``attention_relevance``) need a video transformer;
excitation backprop and its contrastive variant need a CNN (not the recurrent model), and EB-R
(``excitation_backprop_rnn``) the recurrent VGG16-LSTM.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from vjx.attribution import registry
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
      frame_probabilities: extremal methods whose config asks for it: float ``R x T``, the target
        probability when only frame ``t`` keeps its soft mask and every other frame gets the
        strongest blur (the per-frame importance curve of the figure); else None.
    """

    maps: np.ndarray
    row_names: tuple[str, ...]
    areas: tuple[dict[str, float], ...] = ()
    numbers: Mapping[str, float] = dataclasses.field(default_factory=dict)
    frame_probabilities: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """One attribution method as a run uses it: its :class:`vjx.attribution.registry.Entry`, plus how
    its result becomes explanations.

    Attributes:
      entry: the method's registry entry (name, function, config, output kind).
      value: the value of the entry's ``setting`` given as an ``@value`` suffix, or None.
    """

    entry: registry.Entry
    value: float | None = None

    @property
    def name(self) -> str:
        """The canonical name, e.g. ``"ep3d"`` (``"3d_ep"`` is an alias), with ``@value`` if one was given
        (``"ep3d_temporal_smoothing@2"``): the name rows and summaries carry."""
        return self.entry.name if self.value is None else f"{self.entry.name}@{self.value:g}"

    @property
    def function(self) -> Callable[..., Any]:
        """``fn(model, videos, targets, config, *, variables=None, key=None, progress=None)``."""
        return self.entry.function

    def make_config(self, request, spec: ModelSpec) -> Any:
        """The function's config for a request (``areas``, ``schedule``, ``num_iter``, ``polarity``,
        ``path_batch``, ...)."""
        config = self.entry.make_config(request, spec)
        return config if self.value is None else dataclasses.replace(config, **{self.entry.setting: self.value})

    @property
    def title(self) -> str:
        """The method as the paper and its readers name it (figure titles, console)."""
        return self.entry.title

    @property
    def needs_prototype_model(self) -> bool:
        """True if the method only explains a ``vjx.prototypes.PrototypeModel``."""
        return self.entry.needs_prototype_model

    @property
    def needs_attention(self) -> bool:
        """True if the method reads a transformer's attention maps (the model's spec has ``attention``)."""
        return self.entry.needs_attention

    def applies_to(self, spec: ModelSpec) -> bool:
        """Whether the method can explain the model of ``spec`` (the attention methods: transformers
        only; excitation backprop: CNNs; EB-R: the recurrent model)."""
        return self.refusal(spec) is None

    def refusal(self, spec: ModelSpec) -> str | None:
        """Why the method cannot explain the model of ``spec`` (the rest of a sentence that starts
        with the method's name), or None if it can."""
        if self.needs_attention and not spec.attention:
            return f"reads attention maps, which {spec.name} does not have; use it with videomae or timesformer"
        if self.entry.needs_recurrent and not spec.recurrent:
            return (f"explains only the recurrent vgg16lstm, not {spec.name}; use excitation_backprop or "
                    "contrastive_excitation_backprop")
        if self.entry.needs_cnn and spec.attention:
            return f"needs a convolutional network and {spec.name} is a video transformer"
        if self.entry.needs_cnn and spec.recurrent:
            return f"applies to the 3-D CNNs; explain the recurrent {spec.name} with excitation_backprop_rnn (EB-R)"
        return None

    @property
    def extremal(self) -> bool:
        """True for the methods with one mask per area (an ``ExtremalResult``)."""
        return self.entry.output == registry.MASKS

    def scoring_config(self, config: Any) -> Any:
        """``config`` with maps that keep their ranking (no display clipping), for scoring."""
        return dataclasses.replace(config, normalize=False) if self.entry.scores_unclipped else config

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
        frames = (None if result.frame_probabilities is None
                  else np.asarray(result.frame_probabilities, np.float64))            # B x A x T
        return [Explanation(
            maps=masks[i], row_names=self.row_names(config),
            areas=tuple({"area": float(a), **{name: float(values[i, j]) for name, values in columns.items()}}
                        for j, a in enumerate(config.areas)),
            numbers={"extremal_area": float(extremal_area[i]), "extremal_bound": float(bound[i])},
            frame_probabilities=None if frames is None else frames[i])
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


METHODS: dict[str, Method] = {entry.name: Method(entry) for entry in registry.ENTRIES}


def get(name: str) -> Method:
    """The method called ``name`` (canonical or alias, with an ``@value`` suffix where the entry has a
    ``setting``); an unknown name is an ArgumentError of ``method``."""
    entry, value = registry.parse(name)
    return METHODS[entry.name] if value is None else Method(entry, value)


def any_model_names() -> tuple[str, ...]:
    """The methods every model can be explained with (not those needing a prototype model, a
    transformer's attention, a CNN's layers or a recurrent model: excitation backprop and EB-R
    are named when wanted)."""
    return tuple(name for name, method in METHODS.items()
                 if not (method.needs_prototype_model or method.needs_attention or method.entry.needs_cnn
                         or method.entry.needs_recurrent))


def extremal_names() -> tuple[str, ...]:
    """The canonical names of the extremal methods."""
    return registry.names(registry.MASKS)
