"""Measuring explanations: the metrics that compare attribution methods, one module per family.

- :mod:`~vjx.metrics.preservation`: hard masks, the probability a masked video keeps, the minimum
  preservation ratio (the paper's Eq. 3) and the average drop / increase in confidence.
- :mod:`~vjx.metrics.curves`: deletion and insertion curves.
- :mod:`~vjx.metrics.pointing`: the spatial and temporal pointing games, the energy pointing game and
  pointing by a clip's maximum into a region.
- :mod:`~vjx.metrics.randomisation`: the model-randomisation sanity check.
- :mod:`~vjx.metrics.reliability`: bootstrap intervals, paired differences and Krippendorff's alpha
  of per-case values (numpy; is an ordering of methods more than noise).

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
from vjx.metrics.pointing import (PointingResult, energy_pointing_game, maximum_in_region, spatial_pointing_game,
                                  temporal_pointing_game)
from vjx.metrics.preservation import (PERTURBATIONS, confidence_change, hard_masks, minimum_preservation_ratio,
                                      preserved_probability)
from vjx.metrics.randomisation import Randomisation, model_randomisation, rank_correlation
from vjx.metrics.reliability import (Difference, bootstrap_interval, case_ranks, krippendorff_alpha,
                                     paired_difference)

__all__ = ["BASELINES", "PERTURBATIONS", "Curve", "Difference", "PointingResult", "Randomisation", "bootstrap_interval",
           "case_ranks", "confidence_change", "deletion_curve", "energy_pointing_game", "hard_masks",
           "insertion_curve", "krippendorff_alpha", "maximum_in_region", "minimum_preservation_ratio",
           "model_randomisation",
           "paired_difference", "preserved_probability", "rank_correlation", "spatial_pointing_game",
           "temporal_pointing_game"]
