"""The model-randomisation sanity check (Adebayo et al. 2018) and the rank correlation it uses."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vjx.attribution import _common
from vjx.errors import VjxError
from vjx.metrics._arrays import check_finite


def _average_ranks(values: jax.Array) -> jax.Array:
    """Ranks along the last axis (0-based), equal values sharing the mean of their ranks (as scipy)."""
    ordered = jnp.sort(values, axis=-1)
    search = jax.vmap(jnp.searchsorted, in_axes=(0, 0, None))
    low = search(ordered, values, "left")
    high = search(ordered, values, "right")
    return (low + high - 1).astype(jnp.float32) / 2


@jax.jit
def _rank_correlation(a: jax.Array, b: jax.Array) -> jax.Array:
    size = a.shape[-1]
    ra = _average_ranks(a) / size - 0.5
    rb = _average_ranks(b) / size - 0.5
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    return (ra * rb).sum(-1) / jnp.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))


def rank_correlation(a, b) -> jax.Array:
    """Spearman rank correlation between two maps of each video, over all their values.

    Ties share their mean rank (as ``scipy.stats.spearmanr``); a constant map gives NaN.

    Args:
      a, b: float ``B x ...`` of the same shape (e.g. ``B x T x H x W``).
    Returns:
      float32 ``B`` in [-1, 1].
    """
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    if a.shape != b.shape or a.ndim < 2:
        raise VjxError(f"rank_correlation needs two B x ... maps of one shape, got {tuple(a.shape)} and "
                       f"{tuple(b.shape)}")
    check_finite("maps", a)
    check_finite("maps", b)
    return _rank_correlation(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1))


@dataclasses.dataclass(frozen=True)
class Randomisation:
    """The model-randomisation sanity check's outcome.

    Attributes:
      correlations: float32 ``B x L``: Spearman correlation between each video's map under the
        trained model and under the model whose layer groups ``0 ... l`` were re-initialised.
      layers: the ``L`` groups, top (output) first; each a tuple of ``/``-joined parameter paths.
    """

    correlations: jax.Array
    layers: tuple[tuple[str, ...], ...]


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _default_init(model):
    """``init_fn(key) -> variables`` of a ``vjx.Model``: its module initialised on a zero clip of its spec."""
    spec = model.spec
    clip = jnp.zeros((1, spec.num_frames, spec.crop, spec.crop, 3), jnp.float32)
    return lambda key: model.module.init(key, clip)


def _definition_order(init_fn, key) -> list[str]:
    """Top-level parameter names in the order ``init_fn`` builds them (Flax: definition order).

    Read while tracing (``jax.eval_shape``): outputs of traced functions come back with sorted keys.
    """
    order = []

    def record(k):
        variables = init_fn(k)
        order.extend(variables["params"])
        return variables

    jax.eval_shape(record, key)
    return order


def _group_leaves(group: tuple[str, ...], trained: dict, fresh: dict) -> list[tuple[str, ...]]:
    """The parameter leaves under a layer group's paths; each path must exist and the group must change."""
    names = []
    for path in group:
        prefix = tuple(path.split("/"))
        found = [name for name in trained if name[:len(prefix)] == prefix]
        if not found:
            raise VjxError(f"layers: {path!r} is not a parameter path of the model; top-level entries: "
                           f"{', '.join(sorted({name[0] for name in trained}))}")
        names += found
    if all(np.array_equal(trained[name], fresh[name]) for name in names):
        raise VjxError(f"init_fn(key) reproduces the trained weights of layers {', '.join(group)}: nothing would be "
                       "randomised; pass another key (a model built with random weights may have used it)")
    return names


def model_randomisation(model, attribute, *, variables: Mapping[str, Any] | None = None, layers=None,
                        init_fn=None, key: jax.Array | None = None) -> Randomisation:
    """Cascading model randomisation (Adebayo et al. 2018): do the maps depend on the learned weights?

    Layer groups are re-initialised cumulatively from the output down; after each group the maps are
    recomputed and compared with the trained model's by rank correlation. Maps that stay highly
    correlated while the weights are destroyed do not explain the model. Only ``params`` are
    re-initialised; other collections (BatchNorm statistics) keep their trained values.

    Args:
      model: a ``vjx.Model`` or ``apply_fn(variables, video) -> logits`` (then pass ``variables``);
        passed through to ``attribute``.
      attribute: ``attribute(model, variables) -> maps B x ...``, e.g.
        ``lambda m, v: vjx.attribution.gradient(m, x, t, variables=v).maps``.
      variables: the trained weights (default the ``vjx.Model``'s).
      layers: the groups to re-initialise, top first; each a ``/``-joined path into ``params``
        (``"fc"``, ``"layer4_1/conv2"``) or a sequence of paths re-initialised together. Default:
        every top-level entry of ``params`` in reverse definition order (as ``init_fn`` builds them).
      init_fn: ``init_fn(key) -> variables`` of a freshly initialised model of the same structure;
        default for a ``vjx.Model`` its module's ``init`` on a zero clip of its spec's shape; needed
        with an ``apply_fn``.
      key: PRNG key of the re-initialisation (default ``jax.random.key(0)``).
    Returns:
      a :class:`Randomisation`.
    """
    from vjx.model import Model

    _, variables = _common.resolve_model(model, variables)
    variables = dict(variables)                    # every call below passes the same kind of mapping
    if init_fn is None:
        if not isinstance(model, Model):
            raise VjxError("model_randomisation of an apply_fn needs init_fn=key -> freshly initialised variables")
        init_fn = _default_init(model)
    if "params" not in variables:
        raise VjxError("variables have no 'params' collection to re-initialise")
    key = jax.random.key(0) if key is None else key
    trained = {_path_names(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])}
    fresh = {_path_names(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(jax.jit(init_fn)(key)["params"])}
    mismatched = sorted(set(trained) ^ set(fresh)) or [p for p in trained if trained[p].shape != fresh[p].shape]
    if mismatched:
        raise VjxError(f"init_fn's params do not match the model's at {'/'.join(mismatched[0])}; init_fn must "
                       "build the same model")
    if layers is None:
        layers = list(reversed(_definition_order(init_fn, key)))
    groups = tuple((g,) if isinstance(g, str) else tuple(g) for g in layers)
    if not groups:
        raise VjxError("layers must name at least one layer group")
    members = [_group_leaves(group, trained, fresh) for group in groups]

    reference = attribute(model, variables)
    randomised: set[tuple[str, ...]] = set()
    correlations = []
    for names in members:
        randomised.update(names)
        params = jax.tree_util.tree_map_with_path(
            lambda path, leaf: fresh[_path_names(path)] if _path_names(path) in randomised else leaf,
            variables["params"])
        correlations.append(rank_correlation(reference, attribute(model, {**variables, "params": params})))
    return Randomisation(correlations=jnp.stack(correlations, axis=1), layers=groups)
