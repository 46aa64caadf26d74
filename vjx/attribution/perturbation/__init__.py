"""Extremal-perturbation machinery: mask generator, perturbation pyramid, losses, optimiser, loop.

The public entry points (``ep2d``, ``ep3d``, ``step``, ``ep3d_temporal_smoothing``) live in
:mod:`vjx.attribution.extremal`.
"""
from vjx.attribution.perturbation.loop import Plan, run
from vjx.attribution.perturbation.mask import MaskGeometry
from vjx.attribution.perturbation.optim import TorchSGDState, torch_sgd

__all__ = ["MaskGeometry", "Plan", "TorchSGDState", "run", "torch_sgd"]
