"""Explanations read from a video transformer's attention: rollout and gradient-weighted relevance.

Both propagate one relevance row vector ``v`` over the tokens back through the blocks,
``v <- v M_L ... M_1``, where block ``l`` mixes tokens by ``M_l``; the result is read at the patch
tokens and returned as ``B x T x H x W`` maps like every method (nearest in time, bilinear in space,
min-max normalised per video).

* **Attention rollout** (Abnar & Zuidema, ACL 2020): ``M = 0.5 I + 0.5 A``, ``A`` the attention
  averaged over heads.
* **Gradient-weighted attention relevance** (Chefer et al., CVPR 2021): ``M = I + mean_h (dA * A)^+``
  with ``dA`` the gradient of the target logit with respect to the map — the update
  ``R <- R + mean_h (dA * A)^+ R`` of their relevance propagation for self-attention, with the
  attention map standing in for its LRP relevance as in their follow-up (ICCV 2021); no LRP.

Where the class is read decides the start vector: the class token for TimeSformer (``e_cls``),
the mean of all tokens for VideoMAE (uniform). The token structure comes from ``spec.attention``:

* ``"joint"`` (VideoMAE): one map ``B x heads x N x N`` per block over the ``N = T' h w`` tokens in
  (time, row, column) order.
* ``"divided"`` (TimeSformer): per block a time map (each patch over its T frames, class token
  untouched) applied first, then a space map (each frame's patches with a copy of the class token,
  whose T outputs are averaged), so ``M = M_space M_time`` (as row-vector products: space, then time).

The maps come from the ``attention`` collection the models sow; their gradients from zero entries of
``attention_grads`` (see :mod:`vjx.models.vit`). Nothing is built at ``N x N`` beyond the maps.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import traverse_util

from vjx.attribution import _stepping
from vjx.attribution._common import check_inputs, resolve_model
from vjx.attribution._stepping import Progress
from vjx.attribution.backprop import Attribution, target_logits, target_summary
from vjx.attribution.display import min_max_normalize
from vjx.attribution.gradcam import _taps, upsample
from vjx.errors import VjxError
from vjx.models.vit import ATTENTION, ATTENTION_GRADS

STRUCTURES = ("joint", "divided")


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Options of :func:`attention_rollout` and :func:`attention_relevance`.

    Attributes:
      structure: ``"joint"`` or ``"divided"`` (see the module docstring); default the vjx.Model
        spec's ``attention``.
      mean_pooled: whether the head reads the mean of the tokens (``"joint"``; else the first
        token); default the spec's ``use_mean_pooling`` setting.
      normalize: min-max normalise each video's map.
    """

    structure: str | None = None
    mean_pooled: bool | None = None
    normalize: bool = True

    @classmethod
    def for_spec(cls, spec) -> "AttentionConfig":
        """The config of a model spec (its attention structure and pooling)."""
        return cls(structure=spec.attention, mean_pooled=bool(spec.settings.get("use_mean_pooling", False)))


def _resolve(model, config: AttentionConfig) -> AttentionConfig:
    spec = getattr(model, "spec", None)
    if config.structure is None and spec is not None:
        config = dataclasses.replace(AttentionConfig.for_spec(spec), normalize=config.normalize)
    if config.structure not in STRUCTURES:
        name = getattr(spec, "name", "this model")
        raise VjxError(f"attention explanations need a video transformer's attention maps; {name} has none "
                       "(use videomae or timesformer, or another method)")
    return config


def _blocks(tree) -> list[dict[str, jax.Array]]:
    """``{"layer_i": {name: (map,)}}`` -> one ``{name: map}`` per block, in depth order."""
    layers = sorted(tree, key=lambda name: int(name.rsplit("_", 1)[1]))
    return [{name: value[0] for name, value in tree[layer].items()} for layer in layers]


def _propagate(blocks, grid, batch, *, structure: str, alpha: float, beta: float, untouched: float,
               mean_pooled: bool) -> jax.Array:
    """``v M_L ... M_1`` read at the patch tokens, ``B x T' x h x w``; ``blocks[l]`` holds the
    head-fused mixing maps of block ``l`` (``M = alpha I + beta S``); ``untouched`` is how a token a
    map does not reach mixes with itself in ``S`` (rollout: 1, relevance: 0)."""
    t, h, w = grid
    p = h * w
    if structure == "joint":
        n = t * p
        v = jnp.full((batch, n), 1.0 / n) if mean_pooled else jax.nn.one_hot(jnp.zeros(batch, int), n)
        for block in reversed(blocks):
            v = alpha * v + beta * jnp.einsum("bn,bnm->bm", v, block["attention"])
        return v.reshape(batch, t, h, w)
    cls, v = jnp.ones(batch), jnp.zeros((batch, p, t))
    for block in reversed(blocks):
        space = block["spatial"].reshape(batch, t, 1 + p, 1 + p)
        time = block["temporal"].reshape(batch, p, t, t)
        cls_out = (jnp.einsum("bpt,btp->b", v, space[:, :, 1:, 0]) + cls * space[:, :, 0, 0].mean(1))
        v_out = jnp.einsum("bpt,btpq->bqt", v, space[:, :, 1:, 1:]) + cls[:, None, None] * \
            space[:, :, 0, 1:].transpose(0, 2, 1) / t
        cls, v = alpha * cls + beta * cls_out, alpha * v + beta * v_out
        cls = cls * (alpha + beta * untouched)
        v = alpha * v + beta * jnp.einsum("bps,bpst->bpt", v, time)
    return v.reshape(batch, h, w, t).transpose(0, 3, 1, 2)


def _grid(apply_fn, variables, x) -> tuple[int, int, int]:
    """``(T', h, w)`` of the patch tokens (every block's tapped token map has it)."""
    return tuple(next(iter(_taps(apply_fn, variables, x).values())).shape[1:4])


@functools.partial(jax.jit, static_argnames=("apply_fn", "structure", "grid", "mean_pooled", "normalize"))
def _rollout_core(apply_fn, variables, x, targets, *, structure, grid, mean_pooled, normalize):
    logits, state = apply_fn(variables, x, mutable=[ATTENTION])
    blocks = [{name: a.mean(axis=1) for name, a in block.items()} for block in _blocks(state[ATTENTION])]
    raw = _propagate(blocks, grid, x.shape[0], structure=structure, alpha=0.5, beta=0.5, untouched=1.0,
                     mean_pooled=mean_pooled)
    maps = upsample(min_max_normalize(raw) if normalize else raw, x.shape[1:4])
    return maps, raw, *target_summary(logits, targets)


@functools.partial(jax.jit, static_argnames=("apply_fn", "structure", "grid", "mean_pooled", "normalize"))
def _relevance_core(apply_fn, variables, x, targets, *, structure, grid, mean_pooled, normalize):
    def run(grads):
        logits, state = apply_fn({**variables, ATTENTION_GRADS: grads}, x, mutable=[ATTENTION])
        return target_logits(logits, targets).sum(), (logits, state[ATTENTION])

    _, shapes = jax.eval_shape(lambda v: apply_fn(v, x, mutable=[ATTENTION_GRADS]), variables)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes[ATTENTION_GRADS])
    d_maps, (logits, maps_tree) = jax.grad(run, has_aux=True)(zeros)
    flat_grads = traverse_util.flatten_dict(d_maps)
    blocks = []
    for layer, block in zip(sorted(maps_tree, key=lambda n: int(n.rsplit("_", 1)[1])), _blocks(maps_tree)):
        blocks.append({name: jax.nn.relu(flat_grads[(layer, name)] * a).mean(axis=1) for name, a in block.items()})
    raw = _propagate(blocks, grid, x.shape[0], structure=structure, alpha=1.0, beta=1.0, untouched=0.0,
                     mean_pooled=mean_pooled)
    maps = upsample(min_max_normalize(raw) if normalize else raw, x.shape[1:4])
    return maps, raw, *target_summary(logits, targets)


def _attention_method(core, model, videos, targets, config, variables, progress) -> Attribution:
    config = _resolve(model, config)
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    maps, raw, logit, prob = core(apply_fn, variables, x, t, structure=config.structure,
                                  grid=_grid(apply_fn, variables, x), mean_pooled=bool(config.mean_pooled),
                                  normalize=config.normalize)
    _stepping.finished(progress, maps)
    return Attribution(maps, raw, logit, prob)


def attention_rollout(model, videos, targets, config: AttentionConfig = AttentionConfig(), *,
                      variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
                      progress: Progress | None = None) -> Attribution:
    """Attention rollout (Abnar & Zuidema 2020) of a video transformer; class-agnostic.

    Args:
      model: a ``vjx.Model`` whose spec has ``attention`` (VideoMAE, TimeSformer), or its
        ``apply_fn`` with ``variables=`` and a config that names the structure.
      videos: float32 ``B x T x H x W x 3``; targets: int ``B`` (only for the reported logits).
      config: normalisation. variables: weights overriding the model's. key: unused.
      progress: optional ``progress(done, total)``, called once at the end.
    Returns:
      :class:`Attribution`: ``maps`` ``B x T x H x W``; ``raw`` the rollout at the patch tokens, ``B x T' x h x w``.
    """
    return _attention_method(_rollout_core, model, videos, targets, config, variables, progress)


def attention_relevance(model, videos, targets, config: AttentionConfig = AttentionConfig(), *,
                        variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
                        progress: Progress | None = None) -> Attribution:
    """Gradient-weighted attention relevance (Chefer et al. 2021) for each video's target class.

    Arguments and result as :func:`attention_rollout`; ``raw`` is the relevance of the patch tokens.
    """
    return _attention_method(_relevance_core, model, videos, targets, config, variables, progress)
