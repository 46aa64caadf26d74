"""The authors' VGG16-LSTM state dict (``model_def/vgg16lstm.py`` of their follow-up code: keys
``conv1_1.weight`` .. ``conv5_3.bias``, ``fc6``, ``fc7``, ``lstm1.fc_x.{weight,bias}``,
``lstm1.fc_h.weight``, ``fc8_final``; a ``module.`` prefix from DataParallel is accepted) -> Flax
variables of ``vjx.models.vgg16lstm``. Conv2d kernels (O,I,H,W) -> (H,W,I,O); Linears transposed.
The head's size is the checkpoint's (``fc8_final.weight`` rows): 24 for UCF101-24, 101 for UCF-101.
"""
from __future__ import annotations

from vjx.models.registry import ModelSpec
from vjx.models.vgg16lstm import VGG16_STAGES
from weight_conversion import common

LINEARS = ("fc6", "fc7", "lstm1.fc_x", "fc8_final")


def _strip(state: common.StateDict) -> common.StateDict:
    return {k.removeprefix("module."): v for k, v in state.items()}


def _detect(state: common.StateDict) -> bool:
    keys = _strip(state)
    return "conv1_1.weight" in keys and "lstm1.fc_h.weight" in keys and "fc8_final.weight" in keys


def head_size(state: common.StateDict) -> int:
    """Classes of the checkpoint's ``fc8_final``."""
    return int(_strip(state)["fc8_final.weight"].shape[0])


def to_flax(state: common.StateDict, spec: ModelSpec, head: str | None = None) -> common.FlatVariables:
    """Converts the state dict (one head: ``head`` is unused); every key must be consumed."""
    del head
    state, used, out = _strip(state), set(), {}
    for s, widths in enumerate(VGG16_STAGES):
        for j in range(len(widths)):
            name = f"conv{s + 1}_{j + 1}"
            out[("params", name, "kernel")] = common.conv_kernel(common.take(state, used, f"{name}.weight"))
            out[("params", name, "bias")] = common.take(state, used, f"{name}.bias")
    for prefix in LINEARS:
        path = tuple(prefix.split("."))
        out[("params", *path, "kernel")] = common.linear_kernel(common.take(state, used, f"{prefix}.weight"))
        out[("params", *path, "bias")] = common.take(state, used, f"{prefix}.bias")
    out[("params", "lstm1", "fc_h", "kernel")] = common.linear_kernel(common.take(state, used, "lstm1.fc_h.weight"))
    common.check_all_used(state, used)
    return out


LAYOUTS = (common.Layout("vgg16lstm", detect=_detect, to_flax=to_flax, head_size=head_size),)
