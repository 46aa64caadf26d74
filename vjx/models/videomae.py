"""VideoMAE (Tong et al., NeurIPS 2022) as Hugging Face's ``VideoMAEForVideoClassification`` computes it.

A ViT over 3-d "tubelets": a ``tubelet x patch x patch`` convolution with the same stride embeds the
clip into ``T/tubelet * (S/patch)^2`` tokens (time-major), fixed sinusoidal position embeddings are
added, and pre-norm blocks attend jointly over space and time (query and value with bias, key
without). The head mean-pools the tokens and applies ``fc_norm`` (LayerNorm, eps 1e-5) and
``classifier`` (``use_mean_pooling``), or applies a final ``layernorm`` and classifies the first token.

Submodules are named after the Hugging Face state dict (``layer_3/query`` is
``videomae.encoder.layer.3.attention.attention.query``), so ``weight_conversion.videomae`` is a table.
Taps: ``layer0`` (the embedded tubelets) .. ``layerL``, each block's output as a token map
``B x T/tubelet x S/patch x S/patch x D`` (Grad-CAM's default: ``layerL``, which the mean pooling reads);
every block's attention ``B x heads x N x N`` is sown as ``layer_i/attention`` (see :mod:`vjx.models.vit`).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vjx.models import vit
from vjx.models.layers import Conv, tap
from vjx.models.spec import IMAGENET_MEAN, IMAGENET_STD, Family, ModelSpec

VIT_B = dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, patch_size=16, tubelet_size=2,
             num_frames=16, image_size=224, layer_norm_eps=1e-12, qkv_bias=True, use_mean_pooling=True)


def sinusoid_table(n: int, d: int) -> np.ndarray:
    """VideoMAE's fixed position embeddings ``n x d``: sin on even, cos on odd channels."""
    angle = np.arange(n)[:, None] / np.power(10000, 2 * (np.arange(d) // 2) / d)[None]
    table = np.where(np.arange(d) % 2 == 0, np.sin(angle), np.cos(angle))
    return table.astype(np.float32)


class Block(nn.Module):
    """Pre-norm transformer block: joint space-time attention, then a GELU MLP. ``B x N x D -> B x N x D``."""

    num_heads: int
    intermediate_size: int
    layer_norm_eps: float
    qkv_bias: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        h = nn.LayerNorm(self.layer_norm_eps, name="layernorm_before")(x)
        q = nn.Dense(d, use_bias=self.qkv_bias, name="query")(h)
        k = nn.Dense(d, use_bias=False, name="key")(h)
        v = nn.Dense(d, use_bias=self.qkv_bias, name="value")(h)
        x = x + nn.Dense(d, name="attention_output")(vit.attention(self, "attention", q, k, v, self.num_heads))
        h = nn.LayerNorm(self.layer_norm_eps, name="layernorm_after")(x)
        return x + nn.Dense(d, name="output")(vit.gelu(nn.Dense(self.intermediate_size, name="intermediate")(h)))


class VideoMAE(nn.Module):
    """VideoMAE video classifier; attributes are the Hugging Face config's (``num_layers`` is
    ``num_hidden_layers``, ``num_heads`` is ``num_attention_heads``, ``qkv_bias`` is ``qv_bias``)."""

    num_classes: int = 400
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    patch_size: int = 16
    tubelet_size: int = 2
    num_frames: int = 16
    image_size: int = 224
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True
    use_mean_pooling: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``B x num_classes`` of normalised clips ``B x num_frames x image_size x image_size x 3``."""
        vit.check_clip(x, self.num_frames, self.image_size, "VideoMAE")
        p, t = self.patch_size, self.tubelet_size
        x = Conv(self.hidden_size, (t, p, p), (t, p, p), use_bias=True, name="patch_embeddings")(x)
        b, grid = x.shape[0], x.shape[1:4]                                    # T/t, S/p, S/p
        x = x.reshape(b, -1, self.hidden_size)
        x = x + jnp.asarray(sinusoid_table(x.shape[1], self.hidden_size))[None]
        for i in range(self.num_layers + 1):
            if i:
                x = Block(self.num_heads, self.intermediate_size, self.layer_norm_eps, self.qkv_bias,
                          name=f"layer_{i - 1}")(x)
            x = tap(self, f"layer{i}", x.reshape(b, *grid, -1)).reshape(x.shape)
        if self.use_mean_pooling:
            x = nn.LayerNorm(1e-5, name="fc_norm")(x.mean(axis=1))
        else:
            x = nn.LayerNorm(self.layer_norm_eps, name="layernorm")(x)[:, 0]
        return nn.Dense(self.num_classes, name="classifier")(x)


def videomae(num_classes: int = 400, **settings) -> VideoMAE:
    """The registry's factory: VideoMAE with a ``num_classes``-way head and the config's sizes."""
    return VideoMAE(num_classes=num_classes, **settings)


FAMILY = Family(
    specs=(ModelSpec(name="videomae_base", module_path="vjx.models.videomae:videomae", num_frames=16, resize=224,
                     crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, label_set="kinetics400", num_classes=400,
                     gradcam_layer="layer12", ep_sigma=23.0, settings=VIT_B, attention="joint"),),
    layouts={"hf_videomae": {}},
    converter="weight_conversion.videomae",
    twin="vjx.torch_reference.video_transformers",
    aliases={"videomae": "videomae_base"},
)
