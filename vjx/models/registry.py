"""The registry: every family's specs by name, its short aliases, and its bundled weights.

Built from the ``FAMILY`` each family module declares (see :mod:`vjx.models.spec`). ``get_spec``
accepts the registry names (``i3d``, ``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``tsm_resnet50``,
``videomae_base``, ``timesformer_base``) and short names (the original toolkit's ``i3d``, ``r3d``,
``mc3``, ``r2plus1d``, ``tsm``; ``videomae``, ``timesformer``).
"""
from __future__ import annotations

import difflib
import functools

from vjx.errors import VjxError
from vjx.models import i3d, resnet3d, timesformer, tsm, vgg16lstm, videomae
from vjx.models.spec import Family, ModelSpec

FAMILIES: tuple[Family, ...] = (i3d.FAMILY, resnet3d.FAMILY, vgg16lstm.FAMILY, tsm.FAMILY, videomae.FAMILY,
                                timesformer.FAMILY)

MODELS: dict[str, ModelSpec] = {spec.name: spec for family in FAMILIES for spec in family.specs}
# The original toolkit's --model names.
ALIASES: dict[str, str] = {alias: name for family in FAMILIES for alias, name in family.aliases.items()}
# registry name -> the bundled weight sets it can load (pretrained=...).
PRETRAINED: dict[str, tuple[str, ...]] = {name: tuple(sets) for family in FAMILIES
                                          for name, sets in family.pretrained.items()}


def model_names() -> list[str]:
    """Registry names followed by the original CLI's short names."""
    return sorted(MODELS) + sorted(ALIASES)


@functools.lru_cache(maxsize=None)
def get_spec(name: str) -> ModelSpec:
    """The spec of a registry name or short alias; an unknown name is a VjxError with suggestions."""
    key = ALIASES.get(name, name)
    if key not in MODELS:
        close = difflib.get_close_matches(name, model_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise VjxError(f"unknown model architecture {name!r}; choose one of {', '.join(model_names())}.{hint}")
    return MODELS[key]


def get_family(name: str) -> Family:
    """The family of a registry name or short alias."""
    key = get_spec(name).name
    return next(family for family in FAMILIES if any(spec.name == key for spec in family.specs))
