"""Measuring explanations: the metrics that compare attribution methods, one module per family.

- :mod:`~vjx.metrics.preservation`: hard masks and the probability a masked video keeps.
- :mod:`~vjx.metrics.curves`: deletion and insertion curves.
- :mod:`~vjx.metrics.pointing`: the spatial and temporal pointing games.
- :mod:`~vjx.metrics.randomisation`: the model-randomisation sanity check.

Every public name is re-exported here (``vjx.metrics.hard_masks``).

Every metric is a pure function whose compiled core is cached per shape and static option (a second
call with the same shapes does not recompile); the public functions check their arguments first and
raise a :class:`vjx.VjxError` naming the argument at fault.

Maps are ``B x T x H x W`` at the model's input resolution (``Attribution.maps``), or
``B x A x T x H x W`` for an area sweep (``ExtremalResult.masks``); videos are the model's inputs,
float32 ``B x T x H x W x C``.

    import vjx
    from vjx import attribution, metrics
    result = attribution.step(model, x, targets)                       # masks B x A x T x H x W
    hard = metrics.hard_masks(result.masks, result.areas)              # exactly round(a T H W) ones
    metrics.preserved_probability(model, x, targets, hard)             # B x A = result.hard_probabilities
"""
from vjx.metrics.curves import BASELINES, Curve, deletion_curve, insertion_curve
from vjx.metrics.pointing import PointingResult, spatial_pointing_game, temporal_pointing_game
from vjx.metrics.preservation import PERTURBATIONS, hard_masks, preserved_probability
from vjx.metrics.randomisation import Randomisation, model_randomisation, rank_correlation

__all__ = ["BASELINES", "PERTURBATIONS", "Curve", "PointingResult", "Randomisation", "deletion_curve", "hard_masks",
           "insertion_curve", "model_randomisation", "preserved_probability", "rank_correlation",
           "spatial_pointing_game", "temporal_pointing_game"]
