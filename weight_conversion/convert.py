"""Converts a torch checkpoint into a vjx (orbax) checkpoint directory.

    python -m weight_conversion.convert --arch r2plus1d_18 --checkpoint r2plus1d_18-91a641e6.pth --output ckpt/
    python -m weight_conversion.convert --arch tsm --label_set epic-kitchens-noun --checkpoint TSM_epic.pth.tar --output ckpt/
    python -m weight_conversion.convert --arch i3d --checkpoint pretrained:kinetics400 --output ckpt/

The layout (torchvision, pytorch-i3d, kinetics_i3d_pytorch, TSM, EPIC TSM) is detected from the keys.
Load the result with ``vjx.load_model(arch, checkpoint="ckpt/")``.
"""
from __future__ import annotations

from absl import flags

import vjx
from experiments import _cli
from weight_conversion import save_checkpoint

_ARCH = flags.DEFINE_string("arch", None, "Model: a registry name or short alias (i3d, r2plus1d, r3d, mc3, tsm).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "torch .pth/.pt/.safetensors file, or pretrained:<name>.")
_OUTPUT = flags.DEFINE_string("output", None, "New directory to write the converted checkpoint to.")
_LABEL_SET = flags.DEFINE_string("label_set", None, "Classes of the head (default: the model's; epic-kitchens-noun/verb for EPIC TSM).")
_HEAD = flags.DEFINE_enum("head", None, ["noun", "verb"], "Head of a two-headed EPIC checkpoint (default: from --label_set).")


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    for flag in (_ARCH, _CHECKPOINT, _OUTPUT):
        if not flag.value:
            raise vjx.VjxError(f"--{flag.name} is required (see --help)")
    source = _CHECKPOINT.value
    if source.startswith("pretrained:"):
        model = vjx.load_model(_ARCH.value, pretrained=source.split(":", 1)[1])
    else:
        model = vjx.load_model(_ARCH.value, checkpoint=source, label_set=_LABEL_SET.value, head=_HEAD.value)
    save_checkpoint(_OUTPUT.value, model.variables, model.spec)
    print(f"wrote {model.spec.name} ({model.spec.label_set}) to {_OUTPUT.value}")


if __name__ == "__main__":
    _cli.run(main, {"model": "--arch", "checkpoint": "--checkpoint", "label_set": "--label_set", "head": "--head"})
