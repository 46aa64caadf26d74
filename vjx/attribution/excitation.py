"""Excitation backprop (Zhang et al., ECCV 2016), its contrastive variant, and EB-R for the recurrent
model (Bargal et al., CVPR 2018), on video networks.

    attr = excitation_backprop(model, videos, targets)                       # the 3-D CNNs
    attr = contrastive_excitation_backprop(model, videos, targets)
    attr = excitation_backprop_rnn(vgg16lstm_model, videos, targets)         # EB-R
    attr.maps       # B x T x H x W in [0, 1]; attr.raw: the map at the layer, B x T' x H' x W'

**What is propagated.** The marginal winning probability (MWP) P of every unit, top-down: the
target's unit holds 1 and every layer hands its units' P to their inputs in proportion to their
excitatory contributions. For a linear map (convolution, fully connected layer) with input ``a >= 0``
and positive part of its weights ``W+ = max(W, 0)``, bias ignored::

    P_in = a * (W+^T (P_out / (W+ a + eps)))          eps = 1e-20 (TorchRay's)

which conserves mass: ``sum P_in = sum P_out`` wherever ``W+ a > 0``. The map is ``sum_c P`` at the
chosen layer (a tap of :func:`vjx.models.layers.tap`), upsampled like Grad-CAM's (repeated in time,
bilinear in space) and min-max normalised per video (``normalize=False``: the raw map).

**The rules, and TorchRay's** (``torchray/attribution/excitation_backprop.py``, the reference
implementation of the image form, read for this module; none of its code is used):

- Convolutions and fully connected layers (``layers.Conv``, ``flax.linen.Dense``): the rule above,
  as TorchRay's patched ``conv1d/2d/3d`` and ``linear``. Same.
- Average pools (``layers.AvgPool``: I3D's head window, the ResNets' and TSM's global pool): a linear
  layer with positive weights, so the same rule, as TorchRay's patched ``avg_pool`` and
  ``adaptive_avg_pool``. Same.
- Max pools: the ordinary gradient, all of P to the window's winner (TorchRay does not patch them).
  Same.
- ReLU: the ordinary gradient (TorchRay does not patch it); P is already 0 wherever a ReLU output
  is 0, because the layer above multiplies by its input. Same.
- BatchNorm: P passes through unchanged (TorchRay's patched ``batch_norm`` returns the output
  gradient as is). Same.
- Residual sums (``layers.Add``: the ResNets' and TSM's skip connections): each addend gets
  ``P * addend / sum``, TorchRay's ``EltwiseSum`` rule, which it applies to torchvision's 2-D
  ResNets after ``update_resnet``; this conserves mass. Chosen differently from the follow-up code
  of Li et al. (shinkyo0513/Spatio-Temporal-Perturbations-for-Video-Attribution), whose R(2+1)D run
  could not use ``update_resnet`` (a VideoResNet is no torchvision ``ResNet``) and so gave both
  addends all of P.
- Everything else (concatenation, reshapes, TSM's temporal shift, slicing, I3D's and TSM's mean of
  logits over positions and segments): the ordinary gradient, as in TorchRay.
- The top: one-hot on the target logit (TorchRay's ``get_backward_gradient``).

**How it runs in JAX.** The models are unchanged: while a method traces the model, a
``flax.linen.intercept_methods`` interceptor wraps the output of every ``Conv``, ``Dense``,
``AvgPool``, ``Add`` and ``BatchNorm`` call in a ``jax.custom_vjp`` whose forward is the ordinary
output and whose backward is the rule above (computed from the module's input and kernel). The
gradient of the target logit with respect to a zero perturbation at a tap (the Grad-CAM mechanism,
:mod:`vjx.attribution.gradcam`) is then P at that tap. Layers below the tap are never
differentiated, so the first convolution's signed input does not matter. Residual sums and average
pools are ``layers.Add``/``layers.AvgPool`` modules (exactly ``+`` and the mean otherwise) only so
that the interceptor can find them.

**Contrastive EB** (TorchRay's ``contrastive_excitation_backprop``): P at the contrast layer
(default the spec's ``gradcam_layer``, the last block) is computed twice, with the classifier's
weights as they are and negated (the dual unit: the classifier, the last ``Conv``/``Dense`` the
model calls, gets ``max(-W, 0)`` in the rule, the forward pass is untouched, as in TorchRay, which
negates the weights between forward and backward); their difference is propagated down to the
saliency layer (default the spec's ``excitation_layer``, one stage below) with the ordinary rules,
and the map is ``max(sum_c P, 0)``.

**EB-R** (:func:`excitation_backprop_rnn`, VGG16-LSTM): MWP through the recurrent part over time,
then through each frame's CNN. The network's output is the mean over frames of the per-frame
softmax; that mean is an average pool of non-negative probabilities, so frame t's target unit gets
``P_t = p_t / sum_s p_s`` (p_t: its target probability). Then, backwards in time, with
``h_t = o_t * relu(c_t)`` and ``c_t = f_t * c_{t-1} + i_t * relu(g_t)`` (ReLU LSTM, gates i f o):

- fc8 (the rule above) gives ``h_t`` its share of ``P_t``; ``h_t`` also receives from step t+1;
- ``c_t`` gets all of ``P(h_t)`` plus what step t+1 passed back along the cell; the gates act as
  fixed weights and get no probability (as in LRP for LSTMs);
- the cell's sum splits ``P(c_t)`` between ``f_t c_{t-1}`` (to ``c_{t-1}``) and ``i_t relu(g_t)``
  (to the candidate) in proportion to their values (the residual-sum rule);
- the candidate's pre-activation ``W_x g_x_t + W_h h_{t-1}`` is one linear layer of the inputs
  ``[x_t, h_{t-1}]``, so the rule above splits its P between the frame's fc7 features ``x_t`` and
  ``h_{t-1}`` (which carries it to step t-1).

The mass is conserved: ``sum_t sum x_t P(x_t) = 1``. ``through_time=False`` cuts the state as the
network's own ``detach`` cuts its gradient: no P goes to ``h_{t-1}`` or ``c_{t-1}``, the candidate's
rule sees ``x_t`` only. The follow-up code of Li et al. (``excitation_bp_rnn``) ran TorchRay's
context on their ResNet50-LSTM with detached states instead: gradients through the gates and the
softmax, EB on the linear layers, then fc7's P rescaled to sum to T; vjx follows the definition
above instead, where every step is a MWP rule. Each frame's fc7 P then goes down its CNN (fc7, fc6,
pool5) with the 3-D CNNs' rules to the tap (``conv5``: conv5_3 after its ReLU).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from vjx.attribution import _stepping, gradcam
from vjx.attribution._common import check_inputs, resolve_model
from vjx.attribution._stepping import Progress
from vjx.attribution.backprop import Attribution, target_logits, target_summary
from vjx.attribution.display import min_max_normalize
from vjx.errors import ArgumentError
from vjx.models import layers

EPS = 1e-20          # TorchRay's guard in every normalisation by W+ a
_LINEAR = (layers.Conv, nn.Dense)


@dataclasses.dataclass(frozen=True)
class ExcitationConfig:
    """Options of :func:`excitation_backprop`.

    Attributes:
      layer: tap whose P is the map (default: the spec's ``gradcam_layer``; the follow-up code's
        choice for R(2+1)D, ``layer4``).
      normalize: min-max normalise each video's map.
    """

    layer: str | None = None
    normalize: bool = True


@dataclasses.dataclass(frozen=True)
class ContrastiveExcitationConfig:
    """Options of :func:`contrastive_excitation_backprop`.

    Attributes:
      layer: the saliency layer, the tap whose P is the map (default: the spec's ``excitation_layer``).
      contrast_layer: the tap where the dual unit's P is subtracted (default: the spec's
        ``gradcam_layer``); at or above ``layer``.
      normalize: min-max normalise each video's map.
    """

    layer: str | None = None
    contrast_layer: str | None = None
    normalize: bool = True


@dataclasses.dataclass(frozen=True)
class ExcitationRnnConfig:
    """Options of :func:`excitation_backprop_rnn`.

    Attributes:
      layer: tap of the per-frame CNN whose P is the map (default: the spec's ``gradcam_layer``,
        VGG16-LSTM's ``conv5``).
      through_time: propagate through the recurrent state (Bargal et al.); False cuts it at every
        step as the network's ``detach`` cuts its gradient.
      normalize: min-max normalise each video's map.
    """

    layer: str | None = None
    through_time: bool = True
    normalize: bool = True


# --- the rules as custom VJPs ---------------------------------------------------------------------

def _linear_rule(linear):
    """``rule(x, weights, y) = y``, whose backward maps P_out to
    ``x * vjp(linear(., weights))(P_out / (linear(x, weights) + eps))``.

    ``linear(x, weights)`` must be linear in ``x`` with non-negative weights (they are made so by
    the caller); ``y`` is the layer's ordinary output, which the forward pass returns unchanged.
    """
    @jax.custom_vjp
    def rule(x, weights, y):
        return y

    def forward(x, weights, y):
        return y, (x, weights)

    def backward(residuals, p):
        x, weights = residuals
        z, vjp = jax.vjp(lambda a: linear(a, weights), x)
        (g,) = vjp(p / (z + EPS))
        return x * g, jax.tree_util.tree_map(jnp.zeros_like, weights), jnp.zeros_like(p)

    rule.defvjp(forward, backward)
    return rule


@jax.custom_vjp
def _pass_through(x, y):
    """``y``, whose backward hands P to ``x`` unchanged (BatchNorm)."""
    return y


_pass_through.defvjp(lambda x, y: (y, None), lambda _, p: (p, jnp.zeros_like(p)))


@jax.custom_vjp
def _sum_rule(inputs, y):
    """``y = sum(inputs)``, whose backward gives each input ``P * input / y`` (0 where y = 0)."""
    return y


def _sum_forward(inputs, y):
    return y, (inputs, y)


def _sum_backward(residuals, p):
    inputs, y = residuals
    safe = jnp.where(y != 0, y, 1.0)
    return tuple(jnp.where(y != 0, x / safe, 0.0) * p for x in inputs), jnp.zeros_like(p)


_sum_rule.defvjp(_sum_forward, _sum_backward)


def _conv_linear(module: layers.Conv, x: jax.Array):
    nd = len(module.kernel_size)
    strides = tuple(module.strides or (1,) * nd)
    padding = layers._explicit_padding(module.padding, x.shape[1:1 + nd], module.kernel_size, strides)
    return lambda a, kernel: layers.conv(a, kernel, strides, padding)


def _dense_linear(a, kernel):
    return jnp.einsum("...i,io->...o", a, kernel)


def _rules(negate: tuple[str, ...] | None = None, capture: dict | None = None):
    """The interceptor that applies excitation backprop's rules (see the module docstring).

    Args:
      negate: path of the module whose weights are negated in the rule (the classifier, for the
        contrastive pass).
      capture: a dict of module path -> None; each listed module's output (after its rule) is
        stored there while tracing.
    """
    def intercept(next_fun, args, kwargs, context):
        y = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name != "__call__":
            return y
        # The ordinary output is a constant to the backward pass: only the rule sends P down (without
        # stop_gradient, XLA would also transpose every layer on zeros, and constant-fold some).
        y_value = jax.lax.stop_gradient(y)
        if isinstance(module, _LINEAR):
            x = args[0]
            kernel = jax.lax.stop_gradient(module.get_variable("params", "kernel").astype(x.dtype))
            if negate is not None and module.path == negate:
                kernel = -kernel
            linear = _conv_linear(module, x) if isinstance(module, layers.Conv) else _dense_linear
            y = _linear_rule(linear)(x, jnp.maximum(kernel, 0.0), y_value)
        elif isinstance(module, layers.AvgPool):
            y = _linear_rule(lambda a, _: _pool(module, a))(args[0], (), y_value)
        elif isinstance(module, layers.Add):
            y = _sum_rule(tuple(args), y_value)
        elif isinstance(module, nn.BatchNorm):
            y = _pass_through(args[0], y_value)
        if capture is not None and module.path in capture:
            capture[module.path] = y
        return y

    return intercept


def _pool(module: layers.AvgPool, x: jax.Array) -> jax.Array:
    """``module``'s average pool as a plain function (its rule re-evaluates it in the backward pass).

    A window is summed as shifted slices, one axis at a time: the same values as ``nn.avg_pool``,
    and a gradient that XLA:CPU compiles at once (reduce_window's transpose took it 25 s of
    constant folding on I3D's head).
    """
    if module.window is None:
        return jnp.mean(x, axis=module.axes)
    for axis, k in enumerate(module.window, start=1):
        out = x.shape[axis] - k + 1
        x = sum(jax.lax.slice_in_dim(x, j, j + out, axis=axis) for j in range(k)) / k
    return x


def _linear_paths(apply_fn, variables, x) -> list[tuple[str, ...]]:
    """Paths of the ``Conv``/``Dense`` modules in the order the model calls them (shapes only)."""
    seen: list[tuple[str, ...]] = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, _LINEAR):
            seen.append(context.module.path)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, video: apply_fn(v, video), variables, x)
    return seen


# --- which models, which layers ------------------------------------------------------------------

def _spec(model):
    return getattr(model, "spec", None)


def _check_cnn(model, name: str) -> None:
    spec = _spec(model)
    if spec is None:
        return
    if spec.attention:
        raise ArgumentError("method", f"{name} needs a convolutional network and {spec.name} is a video transformer; "
                            "use it with i3d, r3d, mc3, r2plus1d or tsm")
    if spec.recurrent:
        raise ArgumentError("method", f"{name} applies to the 3-D CNNs; explain the recurrent {spec.name} with "
                            "excitation_backprop_rnn (EB-R)")


def _layer(model, taps, layer: str | None, default: str | None) -> tuple[str, ...]:
    spec = _spec(model)
    layer = layer or (getattr(spec, default) if spec is not None and default else None) \
        or getattr(spec, "gradcam_layer", None)
    if layer is None:
        if len(taps) == 1:
            return next(iter(taps))
        layer = "<unset>"
    return gradcam._select(taps, layer)


def _zeros(taps) -> dict[tuple[str, ...], jax.Array]:
    return {p: jnp.zeros(s.shape, s.dtype) for p, s in taps.items()}


def _finish(raw, x, normalize):
    cam = min_max_normalize(raw) if normalize else raw
    return gradcam.upsample(cam, x.shape[1:4], "nearest")


# --- excitation backprop -------------------------------------------------------------------------

def _top_down(apply_fn, variables, x, targets, zeros, path, negate=None):
    """P at tap ``path`` of each video's target logit: ``(P, logits)``."""
    def top(perturbation):
        perturbations = traverse_util.unflatten_dict({**zeros, path: perturbation})
        with nn.intercept_methods(_rules(negate)):
            logits = apply_fn({**variables, "perturbations": perturbations}, x)
        return target_logits(logits, targets).sum(), logits

    return jax.grad(top, has_aux=True)(zeros[path])


@functools.partial(jax.jit, static_argnames=("apply_fn", "path", "normalize"))
def _excitation_core(apply_fn, variables, x, targets, *, path, normalize):
    zeros = _zeros(gradcam._taps(apply_fn, variables, x))
    p, logits = _top_down(apply_fn, variables, x, targets, zeros, path)
    raw = p.sum(-1)                                                            # B T' H' W'
    return _finish(raw, x, normalize), raw, p, *target_summary(logits, targets)


def excitation_backprop(model, videos, targets, config: ExcitationConfig = ExcitationConfig(), *,
                        variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
                        progress: Progress | None = None) -> Attribution:
    """Excitation backprop: the target's marginal winning probability at a layer, summed over channels.

    Args:
      model, videos, targets, variables: as :func:`vjx.attribution.grad_cam` (a 3-D CNN: I3D,
        R3D, MC3, R(2+1)D, TSM).
      config: the layer and normalisation.
      key: unused (deterministic method).
      progress: optional ``progress(done, total)``, called once at the end.
    Returns:
      :class:`Attribution`: ``maps`` ``B x T x H x W``; ``raw`` ``sum_c P`` at the layer,
      ``B x T' x H' x W'``; diagnostics ``layer``, ``layer_shape`` and ``mass`` (``B``: the sum of P
      at the layer, 1 where every rule below the target conserves it).
    Raises:
      ArgumentError of ``method``: a video transformer or the recurrent model.
    """
    _check_cnn(model, "excitation_backprop")
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    taps = gradcam._taps(apply_fn, variables, x)
    path = _layer(model, taps, config.layer, None)
    maps, raw, p, logit, prob = _excitation_core(apply_fn, variables, x, t, path=path, normalize=config.normalize)
    _stepping.finished(progress, maps)
    return Attribution(maps, raw, logit, prob, {"layer": "/".join(path), "layer_shape": tuple(taps[path].shape),
                                                "mass": raw.sum(axis=(1, 2, 3))})


@functools.partial(jax.jit, static_argnames=("apply_fn", "path", "contrast", "classifier", "normalize"))
def _contrastive_core(apply_fn, variables, x, targets, *, path, contrast, classifier, normalize):
    zeros = _zeros(gradcam._taps(apply_fn, variables, x))
    positive, logits = _top_down(apply_fn, variables, x, targets, zeros, contrast)
    negative, _ = _top_down(apply_fn, variables, x, targets, zeros, contrast, negate=classifier)
    difference = positive - negative
    if path == contrast:
        p = difference
    else:
        def down(perturbation):
            perturbations = traverse_util.unflatten_dict({**zeros, path: perturbation})
            with nn.intercept_methods(_rules()):
                _, state = apply_fn({**variables, "perturbations": perturbations}, x, mutable=["intermediates"])
            (activation,) = traverse_util.flatten_dict(dict(state["intermediates"]))[contrast]
            return (jax.lax.stop_gradient(difference) * activation).sum()

        p = jax.grad(down)(zeros[path])
    raw = jax.nn.relu(p.sum(-1))
    return _finish(raw, x, normalize), raw, *target_summary(logits, targets)


def contrastive_excitation_backprop(model, videos, targets,
                                    config: ContrastiveExcitationConfig = ContrastiveExcitationConfig(), *,
                                    variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
                                    progress: Progress | None = None) -> Attribution:
    """Contrastive excitation backprop: the target's P minus its dual unit's (negated classifier)
    at the contrast layer, propagated to the saliency layer, summed over channels, ReLU.

    Args and raises as :func:`excitation_backprop`; ``config`` names both layers.
    Returns:
      :class:`Attribution`: ``maps`` ``B x T x H x W``; ``raw`` ``max(sum_c P, 0)`` at the saliency
      layer; diagnostics ``layer``, ``contrast_layer``, ``classifier`` (the negated module's path)
      and ``layer_shape``.
    """
    _check_cnn(model, "contrastive_excitation_backprop")
    apply_fn, variables = resolve_model(model, variables)
    x, t = check_inputs(apply_fn, variables, videos, targets)
    taps = gradcam._taps(apply_fn, variables, x)
    path = _layer(model, taps, config.layer, "excitation_layer")
    contrast = _layer(model, taps, config.contrast_layer, None)
    classifier = _linear_paths(apply_fn, variables, x)[-1]
    maps, raw, logit, prob = _contrastive_core(apply_fn, variables, x, t, path=path, contrast=contrast,
                                               classifier=classifier, normalize=config.normalize)
    _stepping.finished(progress, maps)
    return Attribution(maps, raw, logit, prob, {"layer": "/".join(path), "contrast_layer": "/".join(contrast),
                                                "classifier": "/".join(classifier),
                                                "layer_shape": tuple(taps[path].shape)})


# --- EB-R ----------------------------------------------------------------------------------------

RNN_PARAMS = ("fc7", "lstm1", "fc8_final")    # VGG16-LSTM's modules that EB-R reads


def _lstm_top_down(params, features, targets, through_time: bool) -> jax.Array:
    """P of each frame's fc7 features ``B x T x D`` (non-negative), from the target (module docstring)."""
    wx, bx = params["lstm1"]["fc_x"]["kernel"], params["lstm1"]["fc_x"]["bias"]
    wh = params["lstm1"]["fc_h"]["kernel"]
    w8, b8 = params["fc8_final"]["kernel"], params["fc8_final"]["bias"]
    b, steps, _ = features.shape
    hidden = wh.shape[0]
    h = c = jnp.zeros((b, hidden), features.dtype)
    states = []                                         # (h_prev, c_prev, i, f, g, c, h) per step
    probabilities = []
    for step in range(steps):
        if not through_time:
            h, c = jnp.zeros_like(h), jnp.zeros_like(c)
        gates = features[:, step] @ wx + bx + h @ wh
        i, f, o, g = jnp.split(gates, 4, axis=-1)
        i, f, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jax.nn.sigmoid(o)
        c_new = f * c + i * jax.nn.relu(g)
        h_new = o * jax.nn.relu(c_new)
        states.append((h, c, i, f, g, c_new, h_new))
        probabilities.append(target_logits(jax.nn.softmax(h_new @ w8 + b8), targets))
        h, c = h_new, c_new
    prob = jnp.stack(probabilities, axis=1)                                     # B T
    top = prob / prob.sum(axis=1, keepdims=True)                                # the frame mean's rule
    w8_target = jnp.maximum(w8.T[targets], 0.0)                                 # B x H
    wgx, wgh = jnp.maximum(wx[:, 3 * hidden:], 0.0), jnp.maximum(wh[:, 3 * hidden:], 0.0)
    p_h_next = p_c_next = jnp.zeros((b, hidden), features.dtype)
    p_x = [None] * steps
    for step in reversed(range(steps)):
        h_prev, c_prev, i, f, g, c_new, h_new = states[step]
        x = features[:, step]
        excitation = h_new * w8_target
        p_h = excitation * (top[:, step] / (excitation.sum(-1) + EPS))[:, None] + p_h_next
        p_c = p_h + p_c_next                           # h = o relu(c): the gate is a weight
        safe = jnp.where(c_new != 0, c_new, 1.0)
        p_g = jnp.where(c_new != 0, i * jax.nn.relu(g) / safe, 0.0) * p_c
        p_c_next = jnp.where(c_new != 0, f * c_prev / safe, 0.0) * p_c
        z = x @ wgx + h_prev @ wgh                     # h_prev is 0 without through_time
        q = p_g / (z + EPS)
        p_x[step] = x * (q @ wgx.T)
        p_h_next = h_prev * (q @ wgh.T)
    return jnp.stack(p_x, axis=1)


@functools.partial(jax.jit, static_argnames=("apply_fn", "path", "through_time", "normalize"))
def _rnn_core(apply_fn, variables, x, targets, *, path, through_time, normalize):
    zeros = _zeros(gradcam._taps(apply_fn, variables, x))

    def features(perturbation):
        perturbations = traverse_util.unflatten_dict({**zeros, path: perturbation})
        store = {("fc7",): None}
        with nn.intercept_methods(_rules(capture=store)):
            logits = apply_fn({**variables, "perturbations": perturbations}, x)
        return store[("fc7",)], logits

    fc7, down, logits = jax.vjp(features, zeros[path], has_aux=True)
    # fc7's output before its ReLU; P is 0 wherever the ReLU is (the LSTM's rule multiplies by it)
    p_fc7 = _lstm_top_down(variables["params"], jax.nn.relu(fc7), targets, through_time)
    (p,) = down(p_fc7)
    raw = p.sum(-1)
    return _finish(raw, x, normalize), raw, p_fc7.sum(axis=(1, 2)), *target_summary(logits, targets)


def excitation_backprop_rnn(model, videos, targets, config: ExcitationRnnConfig = ExcitationRnnConfig(), *,
                            variables: Mapping[str, Any] | None = None, key: jax.Array | None = None,
                            progress: Progress | None = None) -> Attribution:
    """EB-R: excitation backprop through VGG16-LSTM's recurrence, then down each frame's CNN.

    Args:
      model, videos, targets, variables: as :func:`vjx.attribution.grad_cam`; the model is
        VGG16-LSTM (:mod:`vjx.models.vgg16lstm`, or an ``apply_fn`` whose parameters have its
        ``fc7``, ``lstm1`` and ``fc8_final``).
      config: the layer, whether P crosses time, normalisation.
      key: unused (deterministic method).
      progress: optional ``progress(done, total)``, called once at the end.
    Returns:
      :class:`Attribution`: ``maps`` ``B x T x H x W``; ``raw`` ``sum_c P`` at the layer, one map
      per frame ``B x T x H' x W'``; diagnostics ``layer``, ``layer_shape``, ``mass`` (``B``, the
      sum of P at the layer) and ``feature_mass`` (``B``, at the fc7 features: 1 with
      ``through_time``).
    Raises:
      ArgumentError of ``method``: a model that is not the recurrent one.
    """
    spec = _spec(model)
    apply_fn, variables = resolve_model(model, variables)
    params = variables.get("params", {})
    if (spec is not None and not spec.recurrent) or not all(name in params for name in RNN_PARAMS):
        name = spec.name if spec is not None else "this model"
        raise ArgumentError("method", f"excitation_backprop_rnn (EB-R) explains the recurrent VGG16-LSTM "
                            f"(vgg16lstm), not {name}; use excitation_backprop or contrastive_excitation_backprop")
    x, t = check_inputs(apply_fn, variables, videos, targets)
    taps = gradcam._taps(apply_fn, variables, x)
    path = _layer(model, taps, config.layer, None)
    maps, raw, feature_mass, logit, prob = _rnn_core(apply_fn, variables, x, t, path=path,
                                                     through_time=config.through_time,
                                                     normalize=config.normalize)
    _stepping.finished(progress, maps)
    return Attribution(maps, raw, logit, prob, {"layer": "/".join(path), "layer_shape": tuple(taps[path].shape),
                                                "mass": raw.sum(axis=(1, 2, 3)), "feature_mass": feature_mass})
