"""The torch twins of VideoMAE and TimeSformer: Hugging Face transformers' own classes.

Not rewritten here: the reference is ``transformers`` itself (a pinned test-only dependency), built
from the config that :func:`hf_config` writes for a spec, with random weights. The twins take
``N x C x T x H x W`` like every twin and return logits; their state dicts, ``config`` and
``save_pretrained`` are the Hugging Face classes' own, so a saved twin is a checkpoint directory
``vjx.load_model`` reads.
"""
from __future__ import annotations

import dataclasses

import torch
import transformers

from vjx.models.registry import get_spec
from vjx.models.spec import ModelSpec


def hf_config(spec: ModelSpec):
    """The transformers config of ``spec`` (its settings, classes and input size)."""
    s = dict(spec.settings)
    common = dict(hidden_size=s["hidden_size"], num_hidden_layers=s["num_layers"], num_attention_heads=s["num_heads"],
                  intermediate_size=s["intermediate_size"], patch_size=s["patch_size"], num_frames=s["num_frames"],
                  image_size=s["image_size"], layer_norm_eps=s["layer_norm_eps"],
                  id2label={i: name for i, name in enumerate(spec.class_names or
                                                             [f"class {i}" for i in range(spec.num_classes)])})
    if spec.module_path.endswith(":videomae"):
        return transformers.VideoMAEConfig(tubelet_size=s["tubelet_size"], qv_bias=s["qkv_bias"],
                                           use_mean_pooling=s["use_mean_pooling"], **common)
    return transformers.TimesformerConfig(qkv_bias=s["qkv_bias"], **common)


class _ChannelsFirst:
    """``forward(x)``: ``N x C x T x H x W`` -> logits, through the Hugging Face model's ``pixel_values``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return super().forward(pixel_values=x.transpose(1, 2)).logits


class VideoMAETwin(_ChannelsFirst, transformers.VideoMAEForVideoClassification):
    """``VideoMAEForVideoClassification`` on ``N x C x T x H x W``."""


class TimesformerTwin(_ChannelsFirst, transformers.TimesformerForVideoClassification):
    """``TimesformerForVideoClassification`` on ``N x C x T x H x W``."""


def torch_model(name: str, num_classes: int, layout: str | None = None, *, spec: ModelSpec | None = None):
    """The transformers model of registry model ``name`` (or of ``spec``, e.g. a small config) with
    random weights, in float32 with eager attention (so its attention maps can be read)."""
    spec = spec or get_spec(name)
    if num_classes != spec.num_classes:
        spec = dataclasses.replace(spec, num_classes=num_classes, class_names=())
    config = hf_config(spec)
    config._attn_implementation = "eager"
    twin = VideoMAETwin if spec.module_path.endswith(":videomae") else TimesformerTwin
    return twin(config).float().eval()
