"""The method contract: every attribution method is one :class:`Entry` of :data:`ENTRIES`.

An entry says what a method is; the pipeline (:mod:`vjx.pipeline.methods`), the scripts' flags and
help, the benchmarks and the tests read it here instead of keeping their own name lists.

    from vjx.attribution import registry
    entry = registry.get("3d_ep")                 # an alias: the original's --vis_method value
    entry.name                                    # "ep3d", the canonical name
    config = entry.make_config(settings, spec)    # settings: areas, schedule, num_iter, polarity
    result = entry.function(model, videos, targets, config, key=key)

Adding a method is one module (its function and frozen config dataclass) plus one line in
:data:`ENTRIES`; ``docs/architecture.md`` ("The method contract") describes the fields.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from vjx import prototypes
from vjx.attribution import attention, backprop, excitation, extremal, gradcam, removal, scorecam
from vjx.errors import ArgumentError

MAP = "map"        # one per-voxel map per video: an Attribution, maps B x T x H x W
MASKS = "masks"    # one mask per preserved-area ratio per video: an ExtremalResult, masks B x A x T x H x W
OUTPUTS = (MAP, MASKS)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One attribution method.

    Attributes:
      name: canonical name: the name of ``function`` in ``vjx.attribution``.
      function: ``fn(model, videos, targets, config, *, variables=None, key=None, progress=None)``.
      config_type: the frozen dataclass ``function`` takes as ``config``.
      output: :data:`MAP` or :data:`MASKS` (see above).
      make_config: ``(settings, spec) -> config_type``; ``settings`` has ``areas``, ``schedule``,
        ``num_iter``, ``polarity``, ``path_batch``, ... (a ``vjx.pipeline.Request``), ``spec`` is the model's
        ``vjx.models.registry.ModelSpec`` (normalisation, Grad-CAM layer, EP sigma).
      aliases: other names that select it: the original toolkit's ``--vis_method`` values.
      scores_unclipped: True if ``config_type`` has a ``normalize`` field whose False gives maps
        that keep their ranking (no display clipping), which is what scoring needs; the MASKS
        methods are scored on their own masks.
      needs_prototype_model: True if the method only explains a ``vjx.prototypes.PrototypeModel``.
      needs_attention: True if the method reads a video transformer's attention maps (the model's
        spec has ``attention``); it does not apply to the CNNs.
      needs_cnn: True if the method's rules are those of a convolutional network's layers (excitation
        backprop): it applies to the 3-D CNNs, not to a transformer nor to the recurrent model.
      needs_recurrent: True if the method explains only a recurrent model (the spec's ``recurrent``:
        VGG16-LSTM), as EB-R does.
      title: the method as the paper and its readers name it (figure titles, console); None: ``name``.
      setting: a numeric ``config_type`` field that a name's ``@value`` suffix sets, so that the
        method at several values is several methods (separate rows in sweeps and evaluations):
        ``3d_ep_smooth@2`` is Table 4's 3D-EP with seeds smoothed over 2 frames. None: no suffix.
    """

    name: str
    function: Callable[..., Any]
    config_type: type
    output: str
    make_config: Callable[[Any, Any], Any]
    aliases: tuple[str, ...] = ()
    scores_unclipped: bool = False
    setting: str | None = None
    needs_prototype_model: bool = False
    needs_attention: bool = False
    needs_cnn: bool = False
    needs_recurrent: bool = False
    title: str | None = None

    def __post_init__(self):
        if self.title is None:
            object.__setattr__(self, "title", self.name)

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name, then the aliases."""
        return (self.name, *self.aliases)


def _defaults(config_type: type) -> Callable[[Any, Any], Any]:
    """``make_config`` of a method whose request settings do not matter: its config's defaults."""
    return lambda settings, spec: config_type()


def _polarity(config_type: type) -> Callable[[Any, Any], Any]:
    return lambda settings, spec: config_type(polarity=settings.polarity)


def _integrated_gradients_config(settings, spec) -> backprop.IntegratedGradientsConfig:
    return backprop.IntegratedGradientsConfig(polarity=settings.polarity, mean=spec.mean, std=spec.std,
                                              batch_size=settings.path_batch)


def _smooth_grad_config(settings, spec) -> backprop.SmoothGradConfig:
    return backprop.SmoothGradConfig(batch_size=settings.path_batch)


def _attention_config(settings, spec) -> attention.AttentionConfig:
    return attention.AttentionConfig.for_spec(spec)


def _attention(function, title: str) -> Entry:
    return Entry(function.__name__, function, attention.AttentionConfig, MAP, _attention_config,
                 scores_unclipped=True, needs_attention=True, title=title)


def _grad_cam_config(settings, spec) -> gradcam.GradCamConfig:
    return gradcam.GradCamConfig(layer=spec.gradcam_layer)


def _score_cam_config(settings, spec) -> scorecam.ScoreCamConfig:
    return scorecam.ScoreCamConfig(layer=spec.gradcam_layer, batch=settings.batch)


def _rise_config(settings, spec) -> removal.RiseConfig:
    return removal.RiseConfig(num_masks=settings.num_masks, batch=settings.batch)


def _occlusion_config(settings, spec) -> removal.OcclusionConfig:
    """Windows of a quarter of the clip's frames and of its side, half overlapping in space."""
    frames, side = spec.num_frames, spec.crop
    return removal.OcclusionConfig(window=(max(1, frames // 4), max(1, side // 4), max(1, side // 4)),
                                   stride=(max(1, frames // 4), max(1, side // 8), max(1, side // 8)),
                                   batch=settings.batch)


def _cam(function, title: str) -> Entry:
    return Entry(function.__name__, function, gradcam.GradCamConfig, MAP, _grad_cam_config, scores_unclipped=True,
                 title=title)


def _excitation_config(settings, spec) -> excitation.ExcitationConfig:
    return excitation.ExcitationConfig(layer=spec.gradcam_layer)


def _contrastive_excitation_config(settings, spec) -> excitation.ContrastiveExcitationConfig:
    return excitation.ContrastiveExcitationConfig(layer=spec.excitation_layer or spec.gradcam_layer,
                                                  contrast_layer=spec.gradcam_layer)


def _excitation_rnn_config(settings, spec) -> excitation.ExcitationRnnConfig:
    return excitation.ExcitationRnnConfig(layer=spec.gradcam_layer)


def _extremal_config(settings, spec) -> extremal.ExtremalConfig:
    """The areas and schedule; the iterations written out (the schedule's if not given), so that
    summaries say them."""
    num_iter = settings.num_iter or extremal.SCHEDULES[settings.schedule].num_iter
    return extremal.ExtremalConfig(areas=tuple(float(a) for a in settings.areas), schedule=settings.schedule,
                                   num_iter=num_iter, sigma=spec.ep_sigma, warm_start=settings.warm_start)


def _extremal(function, title: str, *aliases: str, setting: str | None = None) -> Entry:
    return Entry(function.__name__, function, extremal.ExtremalConfig, MASKS, _extremal_config, aliases,
                 setting=setting, title=title)


ENTRIES: tuple[Entry, ...] = (
    Entry("gradient", backprop.gradient, backprop.GradientConfig, MAP, _polarity(backprop.GradientConfig),
          ("grad",), scores_unclipped=True, title="Gradient"),
    Entry("gradient_x_input", backprop.gradient_x_input, backprop.GradientConfig, MAP,
          _polarity(backprop.GradientConfig), ("grad*input",), scores_unclipped=True, title="Gradient x input"),
    Entry("integrated_gradients", backprop.integrated_gradients, backprop.IntegratedGradientsConfig, MAP,
          _integrated_gradients_config, ("integrated_grad",), scores_unclipped=True, title="Integrated gradients"),
    Entry("smooth_grad", backprop.smooth_grad, backprop.SmoothGradConfig, MAP, _smooth_grad_config,
          scores_unclipped=True, title="SmoothGrad"),
    _cam(gradcam.grad_cam, "Grad-CAM"),
    _cam(gradcam.grad_cam_plus_plus, "Grad-CAM++"),
    _cam(gradcam.xgrad_cam, "XGrad-CAM"),
    _cam(gradcam.layer_cam, "LayerCAM"),
    _cam(gradcam.saliency_tubes, "Saliency Tubes"),
    Entry("score_cam", scorecam.score_cam, scorecam.ScoreCamConfig, MAP, _score_cam_config, scores_unclipped=True,
          title="Score-CAM"),
    Entry("rise", removal.rise, removal.RiseConfig, MAP, _rise_config, scores_unclipped=True, title="RISE"),
    Entry("occlusion", removal.occlusion, removal.OcclusionConfig, MAP, _occlusion_config, scores_unclipped=True,
          title="Occlusion"),
    # Excitation backprop (Zhang et al. 2016): "eb" is the follow-up code's --vis_method; EB-R
    # (Bargal et al. 2018) for the recurrent VGG16-LSTM.
    Entry("excitation_backprop", excitation.excitation_backprop, excitation.ExcitationConfig, MAP,
          _excitation_config, ("eb",), scores_unclipped=True, needs_cnn=True, title="Excitation backprop"),
    Entry("contrastive_excitation_backprop", excitation.contrastive_excitation_backprop,
          excitation.ContrastiveExcitationConfig, MAP, _contrastive_excitation_config, scores_unclipped=True,
          needs_cnn=True, title="Contrastive excitation backprop"),
    Entry("excitation_backprop_rnn", excitation.excitation_backprop_rnn, excitation.ExcitationRnnConfig, MAP,
          _excitation_rnn_config, scores_unclipped=True, needs_recurrent=True, title="EB-R"),
    _extremal(extremal.ep2d, "2D-EP (each frame held to the area)", "2d_ep"),
    _extremal(extremal.ep3d, "3D-EP", "3d_ep"),
    _extremal(extremal.step, "STEP (spatio-temporal extremal perturbation)"),
    # Table 4's baseline: 3D-EP whose seed masks are smoothed over time (not in the original's CLI).
    _extremal(extremal.ep3d_temporal_smoothing, "3D-EP with temporally smoothed masks", "3d_ep_smooth",
              setting="temporal_sigma"),
    # HIPE: where the target leaf class's most similar prototype matches (vjx.prototypes).
    Entry("prototype_activation", prototypes.prototype_activation, prototypes.PrototypeActivationConfig, MAP,
          _defaults(prototypes.PrototypeActivationConfig), needs_prototype_model=True,
          title="Prototype activation (HIPE)"),
    # Video transformers only (VideoMAE, TimeSformer): the model's attention maps.
    _attention(attention.attention_rollout, "Attention rollout"),
    _attention(attention.attention_relevance, "Attention relevance"),
)

_BY_NAME: dict[str, Entry] = {name: entry for entry in ENTRIES for name in entry.names}
if len(_BY_NAME) != sum(len(entry.names) for entry in ENTRIES):
    raise RuntimeError("vjx.attribution.registry: two entries share a name or alias")


def get(name: str) -> Entry:
    """The entry called ``name`` (canonical or alias, an ``@value`` suffix allowed); otherwise an
    ArgumentError of ``method``."""
    return parse(name)[0]


def parse(name: str) -> tuple[Entry, float | None]:
    """``"3d_ep_smooth@2"`` -> (its entry, 2.0); a name without ``@`` -> (its entry, None).

    Raises:
      ArgumentError of ``method``: an unknown name, a suffix on a method without a ``setting``, or a
      suffix that is not a number.
    """
    base, at, value = name.partition("@")
    if base not in _BY_NAME:
        raise ArgumentError("method", f"{name!r} is unknown; choose one of {describe()}")
    entry = _BY_NAME[base]
    if not at:
        return entry, None
    if entry.setting is None:
        variable = [e.name for e in ENTRIES if e.setting]
        raise ArgumentError("method", f"{name!r}: {entry.name} takes no @value (only {', '.join(variable)} do)")
    try:
        return entry, float(value)
    except ValueError:
        raise ArgumentError("method", f"{name!r}: the value after @ sets {entry.setting} and must be a number, "
                            f"e.g. {base}@2") from None


def names(output: str | None = None) -> tuple[str, ...]:
    """Canonical names, in table order; only those of one ``output`` kind if given."""
    return tuple(entry.name for entry in ENTRIES if output is None or entry.output == output)


def describe(output: str | None = None) -> str:
    """``"gradient (grad), ..., ep3d_temporal_smoothing (3d_ep_smooth) [@temporal_sigma]"``: canonical
    names with their aliases and settings, for flag help and errors."""
    return ", ".join(entry.name + (f" ({', '.join(entry.aliases)})" if entry.aliases else "")
                     + (f" [@{entry.setting}]" if entry.setting else "")
                     for entry in ENTRIES if output is None or entry.output == output)
