"""Extremal-perturbation machinery: config and schedules, mask generator, perturbation pyramid,
losses, optimisers and the optimisation loop.

The public entry points (``ep2d``, ``ep3d``, ``step``, ``ep3d_temporal_smoothing``) live in
:mod:`vjx.attribution.extremal`.
"""
from vjx.attribution.perturbation.config import SCHEDULES, ExtremalConfig, Schedule
from vjx.attribution.perturbation.mask import MaskGeometry
from vjx.attribution.perturbation.optim import TorchSGDState, make_optimizer, torch_sgd

__all__ = ["SCHEDULES", "ExtremalConfig", "MaskGeometry", "Schedule", "TorchSGDState", "make_optimizer",
           "torch_sgd"]
