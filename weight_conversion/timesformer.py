"""Hugging Face ``TimesformerForVideoClassification`` checkpoints -> Flax variables of :mod:`vjx.models.timesformer`.

| Hugging Face (``timesformer.`` prefix)                     | Flax                          | transform |
| ---                                                        | ---                           | ---       |
| ``embeddings.cls_token`` / ``position_embeddings`` / ``time_embeddings`` | same names    | as is     |
| ``embeddings.patch_embeddings.projection``                 | ``patch_embeddings``          | Conv2d    |
| ``encoder.layer.i.temporal_layernorm``                     | ``layer_i/temporal_layernorm``| LayerNorm |
| ``encoder.layer.i.temporal_attention.attention.qkv``       | ``layer_i/temporal_qkv``      | Linear    |
| ``encoder.layer.i.temporal_attention.output.dense``        | ``layer_i/temporal_output``   | Linear    |
| ``encoder.layer.i.temporal_dense``                         | ``layer_i/temporal_dense``    | Linear    |
| ``encoder.layer.i.layernorm_before`` / ``layernorm_after`` | same names                    | LayerNorm |
| ``encoder.layer.i.attention.attention.qkv`` / ``attention.output.dense`` | ``layer_i/qkv`` / ``attention_output`` | Linear |
| ``encoder.layer.i.intermediate.dense`` / ``output.dense``  | ``layer_i/intermediate`` / ``output`` | Linear |
| ``layernorm``; ``classifier`` (no prefix)                  | ``layernorm``; ``classifier`` | LayerNorm; Linear |
"""
from __future__ import annotations

from vjx.errors import VjxError
from vjx.models.spec import ModelSpec
from weight_conversion import huggingface as hf
from weight_conversion.common import FlatVariables, Layout, StateDict, conv_kernel

HF_MODEL_TYPE = "timesformer"
MODEL = "timesformer_base"


def table(spec: ModelSpec) -> list[hf.Entry]:
    """``(torch key, Flax path, transform)`` of every tensor of ``spec``'s TimeSformer."""
    s, e = spec.settings, "timesformer.embeddings"
    out = [(f"{e}.{name}", (name,), hf.same) for name in ("cls_token", "position_embeddings", "time_embeddings")]
    out += [(f"{e}.patch_embeddings.projection.weight", ("patch_embeddings", "kernel"), conv_kernel),
            (f"{e}.patch_embeddings.projection.bias", ("patch_embeddings", "bias"), hf.same)]
    for i in range(s["num_layers"]):
        layer, path = f"timesformer.encoder.layer.{i}", (f"layer_{i}",)
        out += hf.norm(f"{layer}.temporal_layernorm", (*path, "temporal_layernorm"))
        out += hf.linear(f"{layer}.temporal_attention.attention.qkv", (*path, "temporal_qkv"), s["qkv_bias"])
        out += hf.linear(f"{layer}.temporal_attention.output.dense", (*path, "temporal_output"))
        out += hf.linear(f"{layer}.temporal_dense", (*path, "temporal_dense"))
        out += hf.norm(f"{layer}.layernorm_before", (*path, "layernorm_before"))
        out += hf.linear(f"{layer}.attention.attention.qkv", (*path, "qkv"), s["qkv_bias"])
        out += hf.linear(f"{layer}.attention.output.dense", (*path, "attention_output"))
        out += hf.norm(f"{layer}.layernorm_after", (*path, "layernorm_after"))
        out += hf.linear(f"{layer}.intermediate.dense", (*path, "intermediate"))
        out += hf.linear(f"{layer}.output.dense", (*path, "output"))
    return out + hf.norm("timesformer.layernorm", ("layernorm",)) + hf.linear("classifier", ("classifier",))


def spec_from_config(config, preprocessor, spec: ModelSpec, *, what: str) -> ModelSpec:
    """The registry's TimeSformer spec with the sizes, frames, image size and classes of a Hugging Face config."""
    number = lambda key, kind, default: hf.config_number(config, key, kind, what, default)  # noqa: E731
    settings = dict(hidden_size=number("hidden_size", int, 768), num_layers=number("num_hidden_layers", int, 12),
                    num_heads=number("num_attention_heads", int, 12),
                    intermediate_size=number("intermediate_size", int, 3072),
                    patch_size=number("patch_size", int, 16), num_frames=number("num_frames", int, 8),
                    image_size=number("image_size", int, 224), layer_norm_eps=number("layer_norm_eps", float, 1e-6),
                    qkv_bias=bool(config.get("qkv_bias", True)))
    attention_type = config.get("attention_type", "divided_space_time")
    if attention_type != "divided_space_time" or config.get("hidden_act", "gelu") != "gelu":
        raise VjxError(f"{what}: vjx's TimeSformer has divided space-time attention and hidden_act 'gelu', got "
                       f"attention_type {attention_type!r}, hidden_act {config.get('hidden_act')!r}")
    if settings["hidden_size"] % settings["num_heads"]:
        raise VjxError(f"{what}: hidden_size must divide by num_attention_heads")
    # the last block's patch outputs never reach the class token: Grad-CAM reads that block's input
    return hf.configured_spec(spec, settings, config, preprocessor, what,
                              gradcam_layer=f"layer{settings['num_layers'] - 1}")


def to_flax(state: StateDict, spec: ModelSpec, head: str | None = None) -> FlatVariables:
    """A TimeSformer state dict -> flat Flax variables of ``spec`` (one head: ``head`` is unused)."""
    del head
    return hf.table_to_flax(state, spec, table(spec))


LAYOUTS = (Layout("hf_timesformer", detect=lambda sd: "timesformer.embeddings.cls_token" in sd, to_flax=to_flax),)
