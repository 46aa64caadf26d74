"""Hugging Face ``VideoMAEForVideoClassification`` checkpoints -> Flax variables of :mod:`vjx.models.videomae`.

| Hugging Face (``videomae.`` prefix)                  | Flax                       | transform     |
| ---                                                  | ---                        | ---           |
| ``embeddings.patch_embeddings.projection.weight``    | ``patch_embeddings/kernel``| Conv3d        |
| ``encoder.layer.i.attention.attention.query.weight`` | ``layer_i/query/kernel``   | Linear ``.T`` |
| ``encoder.layer.i.attention.output.dense``           | ``layer_i/attention_output``| Linear       |
| ``encoder.layer.i.intermediate.dense`` / ``output.dense`` | ``layer_i/intermediate`` / ``output`` | Linear |
| ``encoder.layer.i.layernorm_before`` / ``_after``    | same names, ``scale``/``bias`` | LayerNorm |
| ``fc_norm`` (mean pooling) or ``videomae.layernorm`` | ``fc_norm`` / ``layernorm``| LayerNorm     |
| ``classifier``                                       | ``classifier``             | Linear        |

The original checkpoints keep the query and value biases as ``attention.attention.q_bias`` /
``v_bias`` (transformers renames them on load); both spellings are read.
"""
from __future__ import annotations

from vjx.errors import VjxError
from vjx.models.spec import ModelSpec
from weight_conversion import huggingface as hf
from weight_conversion.common import FlatVariables, Layout, StateDict, conv_kernel

HF_MODEL_TYPE = "videomae"
MODEL = "videomae_base"
_RENAMES = {".attention.attention.q_bias": ".attention.attention.query.bias",
            ".attention.attention.v_bias": ".attention.attention.value.bias"}


def table(spec: ModelSpec) -> list[hf.Entry]:
    """``(torch key, Flax path, transform)`` of every tensor of ``spec``'s VideoMAE."""
    s = spec.settings
    out = [("videomae.embeddings.patch_embeddings.projection.weight", ("patch_embeddings", "kernel"), conv_kernel),
           ("videomae.embeddings.patch_embeddings.projection.bias", ("patch_embeddings", "bias"), hf.same)]
    for i in range(s["num_layers"]):
        layer, path = f"videomae.encoder.layer.{i}", (f"layer_{i}",)
        out += hf.linear(f"{layer}.attention.attention.query", (*path, "query"), s["qkv_bias"])
        out += hf.linear(f"{layer}.attention.attention.key", (*path, "key"), bias=False)
        out += hf.linear(f"{layer}.attention.attention.value", (*path, "value"), s["qkv_bias"])
        out += hf.linear(f"{layer}.attention.output.dense", (*path, "attention_output"))
        out += hf.linear(f"{layer}.intermediate.dense", (*path, "intermediate"))
        out += hf.linear(f"{layer}.output.dense", (*path, "output"))
        out += hf.norm(f"{layer}.layernorm_before", (*path, "layernorm_before"))
        out += hf.norm(f"{layer}.layernorm_after", (*path, "layernorm_after"))
    out += hf.norm("fc_norm", ("fc_norm",)) if s["use_mean_pooling"] else hf.norm("videomae.layernorm", ("layernorm",))
    return out + hf.linear("classifier", ("classifier",))


def spec_from_config(config, preprocessor, spec: ModelSpec, *, what: str) -> ModelSpec:
    """The registry's VideoMAE spec with the sizes, frames, image size and classes of a Hugging Face config."""
    number = lambda key, kind, default: hf.config_number(config, key, kind, what, default)  # noqa: E731
    settings = dict(hidden_size=number("hidden_size", int, 768), num_layers=number("num_hidden_layers", int, 12),
                    num_heads=number("num_attention_heads", int, 12),
                    intermediate_size=number("intermediate_size", int, 3072),
                    patch_size=number("patch_size", int, 16), tubelet_size=number("tubelet_size", int, 2),
                    num_frames=number("num_frames", int, 16), image_size=number("image_size", int, 224),
                    layer_norm_eps=number("layer_norm_eps", float, 1e-12),
                    qkv_bias=bool(config.get("qv_bias", config.get("qkv_bias", True))),
                    use_mean_pooling=bool(config.get("use_mean_pooling", True)))
    if config.get("hidden_act", "gelu") != "gelu" or config.get("num_channels", 3) != 3:
        raise VjxError(f"{what}: vjx's VideoMAE has hidden_act 'gelu' and 3 channels, got "
                       f"{config.get('hidden_act')!r} and {config.get('num_channels')!r}")
    if settings["hidden_size"] % settings["num_heads"] or settings["num_frames"] % settings["tubelet_size"]:
        raise VjxError(f"{what}: hidden_size must divide by num_attention_heads and num_frames by tubelet_size")
    return hf.configured_spec(spec, settings, config, preprocessor, what, gradcam_layer=f"layer{settings['num_layers']}")


def _rename(state: StateDict) -> dict:
    out = {}
    for key, value in state.items():
        for old, new in _RENAMES.items():
            key = key.replace(old, new)
        out[key] = value
    return out


def to_flax(state: StateDict, spec: ModelSpec, head: str | None = None) -> FlatVariables:
    """A VideoMAE state dict -> flat Flax variables of ``spec`` (one head: ``head`` is unused)."""
    del head
    return hf.table_to_flax(_rename(state), spec, table(spec))


LAYOUTS = (Layout("hf_videomae", detect=lambda sd: "videomae.embeddings.patch_embeddings.projection.weight" in sd,
                  to_flax=to_flax),)
