"""Flax video classifiers (channels last, ``B x T x H x W x 3``) and their registry."""
from vjx.models.registry import ALIASES, FAMILIES, MODELS, get_family, get_spec, model_names
from vjx.models.spec import Family, ModelSpec

__all__ = ["ALIASES", "FAMILIES", "Family", "MODELS", "ModelSpec", "get_family", "get_spec", "model_names"]
