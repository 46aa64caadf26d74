"""TSM checkpoints -> Flax variables of :mod:`vjx.models.tsm`.

Layouts (see :mod:`vjx.torch_reference.tsm` for the torch modules that produce them):

* ``tsm`` — mit-han-lab/temporal-shift-module (``module.base_model.layer1.0.conv1.net.weight``,
  ``module.new_fc.weight``); the ``module.`` prefix is optional.
* ``tsm_epic`` — EPIC-Kitchens-55 action-models TSM (``base_model.…``, ``fc_verb.*`` 125 verbs and
  ``fc_noun.*`` 352 nouns; an optional ``module.`` prefix). One head is converted, chosen by
  ``head="noun"`` or ``"verb"``; the other head's keys are read past on purpose.
"""
from __future__ import annotations

from vjx.errors import VjxError
from vjx.models.registry import ModelSpec
from vjx.models.tsm import RESNET50_STAGES
from weight_conversion.common import (FlatVariables, Layout, StateDict, batch_norm, check_all_used,
                                      conv_kernel, linear_kernel, take)

EPIC_HEADS = ("noun", "verb")


def _prefix(state: StateDict) -> str:
    return "module." if "module.base_model.conv1.weight" in state else ""


def _is_tsm(state: StateDict) -> bool:
    return f"{_prefix(state)}base_model.layer1.0.conv1.net.weight" in state


def _detect_tsm(state: StateDict) -> bool:
    return _is_tsm(state) and f"{_prefix(state)}new_fc.weight" in state


def _detect_epic(state: StateDict) -> bool:
    p = _prefix(state)
    return _is_tsm(state) and f"{p}fc_verb.weight" in state and f"{p}fc_noun.weight" in state


def _backbone(state: StateDict, used: set[str], prefix: str) -> FlatVariables:
    """The shifted ResNet-50 under ``prefix`` (e.g. ``"module.base_model."``)."""

    def bn(key: str, path: tuple[str, ...]) -> FlatVariables:
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            take(state, used, f"{key}.{suffix}")
        return batch_norm(state, key, path)

    out: FlatVariables = {("params", "conv1", "kernel"): conv_kernel(take(state, used, f"{prefix}conv1.weight"))}
    out.update(bn(f"{prefix}bn1", ("bn1",)))
    for stage, (blocks, _, _) in enumerate(RESNET50_STAGES, start=1):
        for i in range(blocks):
            torch_block, block = f"{prefix}layer{stage}.{i}", f"layer{stage}_{i}"
            convs = {"conv1": "conv1.net", "conv2": "conv2", "conv3": "conv3"}
            if i == 0:
                convs["downsample_0"] = "downsample.0"
            for flax_name, torch_name in convs.items():
                out[("params", block, flax_name, "kernel")] = conv_kernel(
                    take(state, used, f"{torch_block}.{torch_name}.weight"))
            for j in (1, 2, 3):
                out.update(bn(f"{torch_block}.bn{j}", (block, f"bn{j}")))
            if i == 0:
                out.update(bn(f"{torch_block}.downsample.1", (block, "downsample_1")))
    return out


def _head(state: StateDict, used: set[str], key: str, spec: ModelSpec) -> FlatVariables:
    weight, bias = take(state, used, f"{key}.weight"), take(state, used, f"{key}.bias")
    if weight.shape[0] != spec.num_classes:
        raise VjxError(f"the checkpoint's {key} has {weight.shape[0]} classes but the model expects "
                       f"{spec.num_classes} ({spec.label_set}); pick the label set that matches the checkpoint")
    return {("params", "new_fc", "kernel"): linear_kernel(weight), ("params", "new_fc", "bias"): bias}


def _tsm_to_flax(state: StateDict, spec: ModelSpec, head: str | None = None) -> FlatVariables:
    if head is not None:
        raise VjxError(f"head={head!r} applies to EPIC-Kitchens checkpoints only; this TSM checkpoint has "
                       "one head (new_fc): drop the head argument")
    p, used = _prefix(state), set()
    out = _backbone(state, used, f"{p}base_model.")
    out.update(_head(state, used, f"{p}new_fc", spec))
    check_all_used(state, used)
    return out


def _epic_to_flax(state: StateDict, spec: ModelSpec, head: str | None = None) -> FlatVariables:
    if head not in EPIC_HEADS:
        raise VjxError(f"EPIC-Kitchens TSM checkpoints have two heads: pass head='noun' or head='verb' "
                       f"(or label_set='epic-kitchens-noun'/'epic-kitchens-verb'), got head={head!r}")
    p, used = _prefix(state), set()
    out = _backbone(state, used, f"{p}base_model.")
    out.update(_head(state, used, f"{p}fc_{head}", spec))
    other = next(h for h in EPIC_HEADS if h != head)
    used.update({f"{p}fc_{other}.weight", f"{p}fc_{other}.bias"} & state.keys())
    check_all_used(state, used)
    return out


LAYOUTS = (
    Layout(name="tsm", detect=_detect_tsm,
           to_flax=_tsm_to_flax),
    Layout(name="tsm_epic", detect=_detect_epic,
           to_flax=_epic_to_flax),
)
