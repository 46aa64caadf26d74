"""Flax video classifiers (channels last, ``B x T x H x W x 3``) and their registry."""
from vjx.models.registry import ALIASES, MODELS, ModelSpec, get_spec, model_names

__all__ = ["ALIASES", "MODELS", "ModelSpec", "get_spec", "model_names"]
