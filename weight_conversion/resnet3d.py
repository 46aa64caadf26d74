"""torchvision's video ResNets (``r3d_18-b3b3357e.pth``, ``mc3_18-a90a0ba3.pth``,
``r2plus1d_18-91a641e6.pth`` and fine-tuned copies) -> Flax variables of ``vjx.models.resnet3d``.

The Flax modules are named after the torch modules (first two parts joined by ``_``), so the table
is: torch ``a.b.c.weight`` of a Conv3d -> ``params/a_b/c/kernel`` transposed (O,I,T,H,W)->(T,H,W,I,O); of a BatchNorm3d -> ``scale``
(with ``bias``, and ``running_mean``/``running_var`` -> ``batch_stats/a/b/c/mean``/``var``); ``fc`` is
a Linear (transposed). :func:`entries` lists every (kind, torch prefix) of a variant.
"""
from __future__ import annotations

from vjx.errors import VjxError
from vjx.models.registry import ModelSpec
from vjx.models.resnet3d import BLOCKS_PER_STAGE, VARIANTS
from weight_conversion import common


def entries(variant: str) -> list[tuple[str, str]]:
    """``(kind, torch prefix)`` for every parameterised module of ``variant``; kind is conv/bn/linear."""
    stem, kinds = VARIANTS[variant]
    out = [("conv", "stem.0"), ("bn", "stem.1")]
    if stem == "r2plus1d":
        out += [("conv", "stem.3"), ("bn", "stem.4")]
    for i, kind in enumerate(kinds):
        for b in range(BLOCKS_PER_STAGE):
            block = f"layer{i + 1}.{b}"
            for conv in ("conv1", "conv2"):
                if kind == "2plus1d":  # Sequential(spatial conv, BN, ReLU, temporal conv)
                    out += [("conv", f"{block}.{conv}.0.0"), ("bn", f"{block}.{conv}.0.1"),
                            ("conv", f"{block}.{conv}.0.3")]
                else:
                    out.append(("conv", f"{block}.{conv}.0"))
                out.append(("bn", f"{block}.{conv}.1"))
            if i > 0 and b == 0:
                out += [("conv", f"{block}.downsample.0"), ("bn", f"{block}.downsample.1")]
    out.append(("linear", "fc"))
    return out


def checkpoint_variant(state: common.StateDict) -> str:
    """Which of r3d_18 / mc3_18 / r2plus1d_18 a torchvision video-ResNet state dict holds."""
    if "stem.3.weight" in state or "layer1.0.conv1.0.0.weight" in state:
        return "r2plus1d_18"
    w = state.get("layer2.0.conv1.0.weight")
    return "mc3_18" if w is not None and w.ndim == 5 and w.shape[2] == 1 else "r3d_18"


def _detect(state: common.StateDict) -> bool:
    return "stem.0.weight" in state and "fc.weight" in state and "layer4.1.conv2.1.running_var" in state


def to_flax(state: common.StateDict, spec: ModelSpec, head: str | None = None) -> common.FlatVariables:
    """Converts a torchvision video-ResNet state dict for ``spec`` (one head: ``head`` is unused).

    Raises:
      VjxError: the weights are another variant's, a key is missing, or a key is left over.
    """
    del head  # one classifier head in this layout
    found = checkpoint_variant(state)
    if found != spec.name:
        raise VjxError(f"holds {found} weights, not {spec.name}; load it with the model {found}")
    used: set[str] = set()
    out: common.FlatVariables = {}
    for kind, prefix in entries(spec.name):
        parts = prefix.split(".")
        path = ("_".join(parts[:2]), *parts[2:])  # "layer1.0.conv1.0" -> layer1_0/conv1/0
        if kind == "conv":
            out[("params", *path, "kernel")] = common.conv_kernel(common.take(state, used, f"{prefix}.weight"))
        elif kind == "linear":
            out[("params", *path, "kernel")] = common.linear_kernel(common.take(state, used, f"{prefix}.weight"))
            out[("params", *path, "bias")] = common.take(state, used, f"{prefix}.bias")
        else:
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                common.take(state, used, f"{prefix}.{leaf}")
            out.update(common.batch_norm(state, prefix, path))
    common.check_all_used(state, used)
    return out


LAYOUTS = (common.Layout("torchvision_video_resnet", detect=_detect, to_flax=to_flax),)
