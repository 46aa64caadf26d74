"""TimeSformer (Bertasius et al., ICML 2021) with divided space-time attention, as Hugging Face's
``TimesformerForVideoClassification`` computes it.

Every frame is cut into ``(S/patch)^2`` patches by a 2-d convolution; a class token is prepended,
learned position embeddings are added per frame, then learned time embeddings per patch. The
sequence is the class token followed by the patch tokens in (patch, frame) order. Each block:

1. time: every patch attends over its ``T`` frames (class token excluded); the result passes
   ``temporal_dense`` and is added to the patch tokens;
2. space: every frame's patches attend among themselves with a copy of the class token; the class
   token's ``T`` outputs are averaged; the result is added to the tokens;
3. a GELU MLP (pre-norm, residual).

A final ``layernorm``; the class token goes to ``classifier``. Submodules are named after the
Hugging Face state dict (``layer_3/temporal_qkv`` is ``timesformer.encoder.layer.3.temporal_attention.
attention.qkv``), so ``weight_conversion.timesformer`` is a table. Taps: ``layer0`` (the embedded
patches) .. ``layerL``, the patch tokens after each block as ``B x T x S/patch x S/patch x D`` (class
token dropped). Grad-CAM's default is ``layer{L-1}``, the last block's input: the last block's patch
outputs never reach the class token, so their gradient is zero. Sown
attention maps ``layer_i/temporal`` (``B*P x heads x T x T``) and ``layer_i/spatial``
(``B*T x heads x (1+P) x (1+P)``, class token first), see :mod:`vjx.models.vit`.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vjx.models import vit
from vjx.models.layers import Conv, tap
from vjx.models.spec import Family, ModelSpec

VIT_B = dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, patch_size=16, num_frames=8,
             image_size=224, layer_norm_eps=1e-6, qkv_bias=True)
# facebook/timesformer-base-finetuned-k400's preprocessing.
MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)


def _fused_attention(module: nn.Module, name: str, x: jax.Array, num_heads: int, qkv_bias: bool,
                     qkv_name: str, out_name: str) -> jax.Array:
    """Hugging Face's TimesformerAttention: a fused ``qkv`` Linear, attention, an output Linear."""
    d = x.shape[-1]
    q, k, v = jnp.split(nn.Dense(3 * d, use_bias=qkv_bias, name=qkv_name)(x), 3, axis=-1)
    return nn.Dense(d, name=out_name)(vit.attention(module, name, q, k, v, num_heads))


class Block(nn.Module):
    """One divided space-time block on ``B x (1 + P*T) x D`` (class token, then (patch, frame) order)."""

    num_frames: int
    num_heads: int
    intermediate_size: int
    layer_norm_eps: float
    qkv_bias: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, _, d = x.shape
        t = self.num_frames
        cls, patches = x[:, :1], x[:, 1:]
        p = patches.shape[1] // t
        norm = lambda name: nn.LayerNorm(self.layer_norm_eps, name=name)  # noqa: E731
        # time: each patch over its frames
        h = norm("temporal_layernorm")(patches.reshape(b * p, t, d))
        h = _fused_attention(self, "temporal", h, self.num_heads, self.qkv_bias, "temporal_qkv", "temporal_output")
        patches = patches + nn.Dense(d, name="temporal_dense")(h.reshape(b, p * t, d))
        # space: each frame's patches with a copy of the class token
        frames = patches.reshape(b, p, t, d).transpose(0, 2, 1, 3).reshape(b * t, p, d)
        h = jnp.concatenate([jnp.repeat(cls, t, axis=0).reshape(b * t, 1, d), frames], axis=1)
        h = _fused_attention(self, "spatial", norm("layernorm_before")(h), self.num_heads, self.qkv_bias,
                             "qkv", "attention_output")
        cls_out = h[:, 0].reshape(b, t, d).mean(axis=1, keepdims=True)
        patch_out = h[:, 1:].reshape(b, t, p, d).transpose(0, 2, 1, 3).reshape(b, p * t, d)
        x = jnp.concatenate([cls, patches], axis=1) + jnp.concatenate([cls_out, patch_out], axis=1)
        h = vit.gelu(nn.Dense(self.intermediate_size, name="intermediate")(norm("layernorm_after")(x)))
        return x + nn.Dense(d, name="output")(h)


class TimeSformer(nn.Module):
    """TimeSformer video classifier; attributes are the Hugging Face config's (``num_layers`` is
    ``num_hidden_layers``, ``num_heads`` is ``num_attention_heads``); ``attention_type`` is
    ``"divided_space_time"``."""

    num_classes: int = 400
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    patch_size: int = 16
    num_frames: int = 8
    image_size: int = 224
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``B x num_classes`` of normalised clips ``B x num_frames x image_size x image_size x 3``."""
        vit.check_clip(x, self.num_frames, self.image_size, "TimeSformer")
        b, t, d = x.shape[0], self.num_frames, self.hidden_size
        x = Conv(d, (self.patch_size,) * 2, (self.patch_size,) * 2, use_bias=True,
                 name="patch_embeddings")(x.reshape(b * t, *x.shape[2:]))
        grid = x.shape[1:3]
        p = grid[0] * grid[1]
        cls_token = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, d))
        position = self.param("position_embeddings", nn.initializers.normal(0.02), (1, p + 1, d))
        time = self.param("time_embeddings", nn.initializers.normal(0.02), (1, t, d))
        cls = cls_token[0, 0] + position[0, 0]
        patches = x.reshape(b, t, p, d) + position[:, None, 1:]                    # B T P D
        patches = patches.transpose(0, 2, 1, 3) + time[:, None]                    # B P T D
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), patches.reshape(b, p * t, d)], axis=1)
        for i in range(self.num_layers + 1):
            if i:
                x = Block(t, self.num_heads, self.intermediate_size, self.layer_norm_eps, self.qkv_bias,
                          name=f"layer_{i - 1}")(x)
            tokens = x[:, 1:].reshape(b, *grid, t, d).transpose(0, 3, 1, 2, 4)      # B T h w D
            tokens = tap(self, f"layer{i}", tokens).transpose(0, 2, 3, 1, 4).reshape(b, p * t, d)
            x = jnp.concatenate([x[:, :1], tokens], axis=1)
        x = nn.LayerNorm(self.layer_norm_eps, name="layernorm")(x)
        return nn.Dense(self.num_classes, name="classifier")(x[:, 0])


def timesformer(num_classes: int = 400, **settings) -> TimeSformer:
    """The registry's factory: TimeSformer with a ``num_classes``-way head and the config's sizes."""
    return TimeSformer(num_classes=num_classes, **settings)


FAMILY = Family(
    specs=(ModelSpec(name="timesformer_base", module_path="vjx.models.timesformer:timesformer", num_frames=8,
                     resize=224, crop=224, mean=MEAN, std=STD, label_set="kinetics400", num_classes=400,
                     gradcam_layer="layer11", ep_sigma=23.0, settings=VIT_B, attention="divided"),),
    layouts={"hf_timesformer": {}},
    converter="weight_conversion.timesformer",
    twin="vjx.torch_reference.video_transformers",
    aliases={"timesformer": "timesformer_base"},
)
