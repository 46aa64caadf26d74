"""Torch-vs-Flax twins and comparisons, shared by the parity tests and the experiment scripts."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class ModelParity:
    """How far a Flax model is from its torch reference on a batch of clips.

    Attributes:
      max_abs_diff: max |logit_torch - logit_flax| over the batch.
      logit_scale: max(1, max |logit_torch|), the scale tolerances are relative to.
      topk_agree: fraction of clips whose top-k class sets agree (k = ``topk``).
      grad_cosine: min over clips of the cosine between the two input gradients of the top torch logit.
      torch_logits, flax_logits: ``B x num_classes``.
    """

    max_abs_diff: float
    logit_scale: float
    topk_agree: float
    grad_cosine: float
    torch_logits: np.ndarray
    flax_logits: np.ndarray


def randomize_torch_model(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Gives every parameter and every BatchNorm running statistic random values, in place.

    Conv/linear weights get He-scaled normals so activations stay O(1) through deep nets; BatchNorm
    gets scale ~ U(0.5, 1.5), bias ~ N(0, 0.1), running mean ~ N(0, 0.1), running var ~ U(0.5, 1.5),
    so a converter that swaps or ignores any of them fails the parity check. LayerNorms get the
    BatchNorm's scale and bias; parameters held by no such layer (a transformer's class token and
    position embeddings) ~ N(0, 0.5).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                if module.weight is not None:
                    module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
            elif isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            else:
                for param in module.parameters(recurse=False):
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return model.eval()


def state_dict_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """``model.state_dict()`` as float32 numpy arrays (what the converters take)."""
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def twin_models(name: str, *, layout: str | None = None, seed: int = 0):
    """A torch reference with random weights and BatchNorm statistics, and the same weights in vjx.

    Args:
      name: registry name or short alias.
      layout: the torch state-dict layout (default: the family's).
      seed: seed of the random weights (see :func:`randomize_torch_model`).
    Returns:
      ``(torch_model in eval mode, vjx.Model)``: the Flax weights are the torch ones through the converter.
    """
    from vjx.model import Model
    from vjx.models.registry import get_spec
    from vjx.torch_reference import build_torch_model
    from weight_conversion import checkpoint_spec, convert_state_dict

    torch_model = randomize_torch_model(build_torch_model(get_spec(name).name, layout=layout), seed=seed)
    state = state_dict_numpy(torch_model)
    spec = checkpoint_spec(state, get_spec(name))             # the layout's network (I3D: its BatchNorm epsilon)
    return torch_model, Model(spec.make_module(), convert_state_dict(state, spec), spec)


@functools.partial(jax.jit, static_argnums=0)
@functools.partial(jax.value_and_grad, argnums=2, has_aux=True)
def _flax_logits_and_grad(apply_fn, variables, videos, targets):
    """(sum of the target logits, logits B x K) and the input gradient; weights stay arguments."""
    logits = apply_fn(variables, videos)
    return jnp.take_along_axis(logits, targets[:, None], axis=1).sum(), logits


def compare_models(torch_model: torch.nn.Module, apply_fn, variables, videos: np.ndarray, *,
                   topk: int = 5) -> ModelParity:
    """Runs both models on ``videos`` (float32 ``B x T x H x W x 3``) and measures the gaps."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    x_torch = torch.from_numpy(np.ascontiguousarray(videos.transpose(0, 4, 1, 2, 3))).requires_grad_(True)
    t_logits = torch_model(x_torch)
    target = t_logits.argmax(dim=1)
    t_logits.gather(1, target[:, None]).sum().backward()
    t_grad = x_torch.grad.numpy().transpose(0, 2, 3, 4, 1)
    t_logits = t_logits.detach().numpy()

    (_, f_logits), f_grad = _flax_logits_and_grad(apply_fn, variables, jnp.asarray(videos),
                                                  jnp.asarray(target.numpy()))
    f_logits, f_grad = np.asarray(f_logits), np.asarray(f_grad)

    t_top = np.argsort(-t_logits, axis=1)[:, :topk]
    f_top = np.argsort(-f_logits, axis=1)[:, :topk]
    agree = np.mean([set(a) == set(b) for a, b in zip(t_top, f_top)])
    flat_t, flat_f = t_grad.reshape(len(videos), -1), f_grad.reshape(len(videos), -1)
    cos = (flat_t * flat_f).sum(1) / (np.linalg.norm(flat_t, axis=1) * np.linalg.norm(flat_f, axis=1) + 1e-30)
    return ModelParity(max_abs_diff=float(np.abs(t_logits - f_logits).max()),
                       logit_scale=float(max(1.0, np.abs(t_logits).max())), topk_agree=float(agree),
                       grad_cosine=float(cos.min()), torch_logits=t_logits, flax_logits=f_logits)
