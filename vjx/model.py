"""A loaded model: Flax module + variables + spec, callable on a batch of preprocessed clips."""
from __future__ import annotations

import importlib
import os
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from vjx.errors import VjxError
from vjx.models.registry import PRETRAINED, ModelSpec, get_family, get_spec


class Model:
    """A Flax video classifier with its weights.

    ``model(video)`` maps float32 ``B x T x H x W x 3`` (see ``model.spec.preprocess``) to logits
    ``B x num_classes``. ``model.apply_fn(variables, video, **flax_apply_kwargs)`` is the pure form the
    attribution methods take; ``model.variables`` are its weights.
    """

    def __init__(self, module: nn.Module, variables: Mapping[str, Any], spec: ModelSpec):
        self.module = module
        self.variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
        self.spec = spec
        self._forward = jax.jit(module.apply)

    def apply_fn(self, variables: Mapping[str, Any], video: jax.Array, **kwargs) -> Any:
        """``module.apply(variables, video, **kwargs)``: logits ``B x num_classes`` by default."""
        return self.module.apply(variables, video, **kwargs)

    def __call__(self, video: jax.Array) -> jax.Array:
        if video.ndim != 5 or video.shape[-1] != 3:
            raise VjxError(f"{self.spec.name} expects float32 clips B x T x H x W x 3, got shape {tuple(video.shape)}")
        return self._forward(self.variables, video)

    def __repr__(self) -> str:
        return f"Model({self.spec.name}, {self.spec.num_classes} classes of {self.spec.label_set})"


def load_model(name: str, *, pretrained: str | None = None, checkpoint: str | os.PathLike | None = None,
               label_set: str | None = None, head: str | None = None, seed: int = 0) -> Model:
    """Builds a registry model with pretrained, converted or random weights.

    Args:
      name: registry name or the original CLI's short name (``i3d``, ``r2plus1d``, ``tsm``, ...).
      pretrained: a bundled weight set; ``"kinetics400"`` for ``i3d`` (DeepMind's RGB I3D).
      checkpoint: a torch ``.pth``/``.pt``/``.safetensors`` file (converted on the fly), a directory
        written by ``python -m weight_conversion.convert``, or a Hugging Face checkpoint directory
        (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``) of a VideoMAE or
        TimeSformer, whose config sets the spec (sizes, frames, image size, ``id2label`` classes). The model's spec then follows the
        checkpoint's network definition (an I3D in the original toolkit's kinetics_i3d_pytorch layout
        gets that definition's BatchNorm epsilon, 1e-5; its family declares each layout's settings).
      label_set: the classes of the head (default: the spec's); ``"epic-kitchens-noun"`` or
        ``"epic-kitchens-verb"`` for EPIC-Kitchens TSM checkpoints.
      head: which head of a several-headed checkpoint to use (EPIC TSM: ``"noun"``/``"verb"``);
        by default derived from ``label_set``.
      seed: initialisation seed when neither ``pretrained`` nor ``checkpoint`` is given.
    Returns:
      a :class:`Model`.
    """
    spec = get_spec(name)
    if label_set is not None and label_set != spec.label_set:
        spec = spec.with_label_set(label_set)
    if pretrained is not None and checkpoint is not None:
        raise VjxError("pass either pretrained= or checkpoint=, not both")
    if pretrained is not None:
        if pretrained not in PRETRAINED.get(spec.name, ()):
            offered = ", ".join(f"{m}: {'/'.join(p)}" for m, p in PRETRAINED.items())
            raise VjxError(f"no pretrained weights {pretrained!r} for {spec.name}; bundled: {offered}; "
                           "pass checkpoint= for other weights")
        module_name, function = get_family(spec.name).pretrained[spec.name][pretrained].split(":")
        variables = getattr(importlib.import_module(module_name), function)()
    elif checkpoint is not None:
        spec, variables = _load_checkpoint(spec, os.fspath(checkpoint), head, label_set)
    else:
        module = spec.make_module()
        video = jnp.zeros((1, spec.num_frames, spec.crop, spec.crop, 3), jnp.float32)
        variables = jax.jit(module.init)(jax.random.key(seed), video)
    return Model(spec.make_module(), variables, spec)


def _load_checkpoint(spec: ModelSpec, path: str, head: str | None,
                     label_set: str | None) -> tuple[ModelSpec, Mapping[str, Any]]:
    """The spec of the checkpoint's network (its layout's settings; for VGG16-LSTM its head's size and
    label set; for a Hugging Face directory its config's) and its variables. ``label_set``: the one
    asked for, if any."""
    import weight_conversion as wc
    from weight_conversion import huggingface

    if os.path.isdir(path) and huggingface.is_checkpoint_dir(path):
        spec, state = huggingface.load_checkpoint_dir(path, spec)
        return spec, wc.convert_state_dict(state, spec, what=f"checkpoint {path!r}")
    head_from_checkpoint = any(layout.head_size for layout in wc.LAYOUTS if spec.name in layout.models)
    if os.path.isdir(path):
        saved_spec, variables = wc.restore_checkpoint(path)
        # a checkpoint that names its own classes (a converted Hugging Face one) brings its head
        label_free = (head_from_checkpoint and label_set is None) or bool(saved_spec.class_names)
        if saved_spec.name != spec.name or (saved_spec.label_set != spec.label_set and not label_free):
            raise VjxError(f"checkpoint {path!r} holds {saved_spec.name} ({saved_spec.label_set}), "
                           f"not {spec.name} ({spec.label_set}); pick the matching model")
        return saved_spec, variables
    if head is None and spec.label_set.startswith("epic-kitchens-"):
        head = spec.label_set.rsplit("-", 1)[1]
    state = wc.load_state_dict(path)
    spec = wc.checkpoint_spec(state, spec)
    if head_from_checkpoint and label_set is not None and spec.label_set != label_set:
        raise VjxError(f"checkpoint {path!r} has a {spec.num_classes}-class head ({spec.label_set}), not "
                       f"{label_set}; ask for {spec.label_set}")
    return spec, wc.convert_state_dict(state, spec, head=head, what=f"checkpoint {path!r}")
