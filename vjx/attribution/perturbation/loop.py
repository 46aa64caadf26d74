"""The extremal-perturbation optimisation: one ``lax.scan`` under one ``jit``, vmapped over areas.

Every area is an independent optimisation of its own seed masks (as the original's one-area runs,
done together); videos are a batch axis whose energies are summed, as in the original.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from vjx.attribution.perturbation import losses, mask, pyramid
from vjx.attribution.perturbation.optim import clamped_step, torch_sgd

#: Number of times :func:`run` was traced, per method (tests use it to prove the jit cache works).
TRACES: collections.Counter = collections.Counter()


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything static about one optimisation (hashable: it is a jit static argument).

    Attributes:
      method: ``"2d"`` (per-frame area loss), ``"3d"`` (joint area loss) or ``"step"`` (joint + STEP loss).
      geometry: the mask generator's sizes.
      num_iter: optimisation steps.
      variant: ``"preserve"``, ``"delete"`` or ``"dual"``.
      perturbation: ``"blur"`` or ``"fade"``.
      num_levels, max_blur: the perturbation pyramid.
      learning_rate, momentum, dampening: torch-semantics SGD.
      reward_weight: multiplies the reward.
      area_weight: initial area-loss weight; iteration ``t`` uses ``area_weight * area_growth ** t``.
      area_growth: per-iteration growth of the area weight.
      step_weight, step_start: STEP loss weight from iteration ``step_start`` on (0 before).
      temporal_sigma: if set, seeds are Gaussian-smoothed over time (in frames) before upsampling.
      area_batch: areas vmapped together; groups of them run one after another (``lax.map``) inside
        each iteration, bounding memory. None = all areas at once. Must divide the number of areas.
    """

    method: str
    geometry: mask.MaskGeometry
    num_iter: int
    variant: str = "preserve"
    perturbation: str = "blur"
    num_levels: int = 8
    max_blur: float = 20.0
    learning_rate: float = 0.05
    momentum: float = 0.9
    dampening: float = 0.9
    reward_weight: float = 100.0
    area_weight: float = 300.0
    area_growth: float = 1.0
    step_weight: float = 300.0
    step_start: int = 101
    temporal_sigma: float | None = None
    area_batch: int | None = None


def temporal_kernel(frames: int, sigma: float) -> np.ndarray:
    """float32 ``T x T`` rows of ``exp(-(t - s)^2 / (2 sigma^2))`` over the clip, each normalised to sum 1."""
    d = np.arange(frames)[:, None] - np.arange(frames)[None, :]
    k = np.exp(-(d ** 2) / (2.0 * sigma ** 2))
    return (k / k.sum(axis=1, keepdims=True)).astype(np.float32)


def masks_from_seeds(seeds: jax.Array, plan: Plan) -> tuple[jax.Array, jax.Array]:
    """Seeds ``B x T x h x w`` -> (cropped ``B x T x H x W``, padded ``B x T x Hp x Wp``) masks."""
    if plan.temporal_sigma is not None:
        kernel = jnp.asarray(temporal_kernel(seeds.shape[1], plan.temporal_sigma))
        seeds = jnp.einsum("ts,bshw->bthw", kernel, seeds, precision="highest")
    return mask.generate(seeds, plan.geometry)


def _energy(seeds, zeros, top_k, it, key, *, apply_fn, plan: Plan, variables, pyr, targets):
    """Energy of one area for the batch (summed over videos) and its per-video terms."""
    b, t = seeds.shape[:2]
    masks, padded = masks_from_seeds(seeds, plan)
    if plan.variant == "dual":
        x = jnp.concatenate([pyramid.apply_mask(pyr, masks), pyramid.apply_mask(pyr, 1 - masks)])
        log_p, log_not = losses.log_prob(apply_fn(variables, x), jnp.concatenate([targets, targets]))
        reward, log_p = -log_p[:b] - log_not[b:], log_p[:b]
    else:
        keep = masks if plan.variant == "preserve" else 1 - masks
        log_p, log_not = losses.log_prob(apply_fn(variables, pyramid.apply_mask(pyr, keep)), targets)
        reward = -log_p if plan.variant == "preserve" else -log_not
    reward = plan.reward_weight * reward
    weight = plan.area_weight * jnp.power(jnp.float32(plan.area_growth), it.astype(jnp.float32))
    if plan.method == "2d":
        area = losses.area_loss(padded.reshape(b, t, -1), zeros).mean(axis=1)
    else:
        area = losses.area_loss(padded.reshape(b, -1), zeros)
    terms = {"reward": reward, "area_loss": weight * area, "probability": jnp.exp(log_p)}
    total = reward + weight * area
    if plan.method == "step":
        step_w = jnp.where(it >= plan.step_start, plan.step_weight, 0.0)
        terms["step_loss"] = step_w * losses.step_loss(padded, top_k, jax.random.fold_in(key, it))
        total = total + terms["step_loss"]
    return jnp.sum(total), terms


@functools.partial(jax.jit, static_argnames=("apply_fn", "plan"))
def run(apply_fn: Callable[..., jax.Array], plan: Plan, variables: Any, videos: jax.Array,
        targets: jax.Array, zeros: jax.Array, top_k: jax.Array, key: jax.Array,
        init: jax.Array | None = None):
    """Optimises masks for every area at once.

    Args:
      apply_fn: ``apply_fn(variables, video) -> logits`` (static; must be hashable).
      plan: a :class:`Plan` (static).
      variables: the model's variables.
      videos: float32 ``B x T x H x W x C``.
      targets: int32 ``B``.
      zeros: int32 ``A``: zeros of each area's reference profile.
      top_k: int32 ``A``: STEP's top-k of each area (ignored by the other methods).
      key: PRNG key (STEP's tie-breaking shuffle).
      init: starting seeds ``A x B x T x h x w``; None = ones (the original's start).
    Returns:
      ``(masks A x B x T x H x W, probabilities A x B, history {name: num_iter x A x B}, base_probability B)``.
    """
    TRACES[plan.method] += 1
    num_areas = zeros.shape[0]
    b, t = videos.shape[:2]
    pyr = pyramid.build_pyramid(videos, plan.num_levels, plan.max_blur, plan.perturbation)   # once
    grad_fn = jax.grad(functools.partial(_energy, apply_fn=apply_fn, plan=plan, variables=variables,
                                             pyr=pyr, targets=targets), has_aux=True)
    grad_areas = jax.vmap(grad_fn, in_axes=(0, 0, 0, None, 0))
    area_keys = jax.random.split(key, num_areas)
    optimizer = torch_sgd(plan.learning_rate, plan.momentum, plan.dampening)
    seeds = jnp.ones((num_areas, b, t, *plan.geometry.seed_shape), jnp.float32) if init is None else init

    group = plan.area_batch or num_areas

    def area_grads(seeds, it):
        if group == num_areas:
            return grad_areas(seeds, zeros, top_k, it, area_keys)
        split = lambda a: a.reshape(num_areas // group, group, *a.shape[1:])      # noqa: E731
        out = jax.lax.map(lambda args: grad_areas(*args[:3], it, args[3]),
                          tuple(split(a) for a in (seeds, zeros, top_k, area_keys)))
        return jax.tree_util.tree_map(lambda a: a.reshape(num_areas, *a.shape[2:]), out)

    def body(carry, it):
        seeds, state = carry
        grads, terms = area_grads(seeds, it)
        seeds, state = clamped_step(optimizer, seeds, grads, state)
        return (seeds, state), terms

    (seeds, _), history = jax.lax.scan(body, (seeds, optimizer.init(seeds)), jnp.arange(plan.num_iter))

    def preserved(seeds_a):
        masks_a, _ = masks_from_seeds(seeds_a, plan)
        log_p, _ = losses.log_prob(apply_fn(variables, pyramid.apply_mask(pyr, masks_a)), targets)
        return masks_a, jnp.exp(log_p)

    masks, probs = jax.lax.map(preserved, seeds)
    base, _ = losses.log_prob(apply_fn(variables, videos), targets)
    return masks, probs, history, jnp.exp(base)
