"""Is a table's ordering of methods more than noise: bootstrap intervals and Krippendorff's alpha.

    low, high = bootstrap_interval(values)                  # 95% interval of the mean of n per-case values
    diff = paired_difference(a, b)                          # mean(a - b) over the same cases, its interval
    alpha = krippendorff_alpha(case_ranks(scores))         # scores: cases x methods -> agreement of rankings

Plain numpy on per-case values (the evaluation's rows), seeded, so a table is reproducible. The
bootstrap resamples cases with replacement (percentile intervals). Krippendorff's alpha treats each
case as a coder that ranks the methods (the units): 1 means every case orders the methods alike, 0
no more agreement than chance; the reliability study of saliency metrics by Tomsett et al. (2020)
and the follow-up study of STEP's authors score metrics this way.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vjx.errors import VjxError

LEVELS = ("nominal", "ordinal", "interval", "ratio")


def _values(name: str, values, ndim: int) -> np.ndarray:
    array = np.asarray(values, np.float64)
    if array.ndim != ndim:
        raise VjxError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    return array


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of ``resamples`` resamples (with replacement) of the ``n`` values: ``resamples``."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    return values[picks].mean(axis=1)


def _check(values: np.ndarray, confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise VjxError(f"confidence must lie in (0, 1), got {confidence!r}")
    if not isinstance(resamples, int) or resamples < 1:
        raise VjxError(f"resamples must be a positive integer, got {resamples!r}")
    if not np.isfinite(values).all():
        raise VjxError("values must be finite (drop the cases where a metric is undefined first)")


def bootstrap_interval(values, *, confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``n`` per-case values.

    Args:
      values: float ``n`` (n >= 1; one value gives the value twice).
      confidence: the interval's coverage.
      resamples: bootstrap resamples; seed: their numpy seed.
    Returns:
      ``(low, high)``.
    """
    values = _values("values", values, 1)
    _check(values, confidence, resamples)
    if not values.size:
        raise VjxError("values is empty: a bootstrap needs at least one case")
    means = _resampled_means(values, resamples, seed)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


@dataclasses.dataclass(frozen=True)
class Difference:
    """Paired comparison of two methods over the same cases.

    Attributes:
      mean: mean of ``a - b``.
      low, high: its percentile bootstrap interval.
      flipped: fraction of resamples whose mean difference has the other sign than ``mean`` (or is
        0): small when the order of the two is not an accident of the cases drawn.
      n: the number of cases.
    """

    mean: float
    low: float
    high: float
    flipped: float
    n: int


def paired_difference(a, b, *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Difference:
    """Paired bootstrap of ``mean(a - b)``: the cases are resampled together for both methods.

    Args:
      a, b: float ``n``: two methods' values of the same ``n`` cases (n >= 1).
    Returns:
      a :class:`Difference`.
    """
    a, b = _values("a", a, 1), _values("b", b, 1)
    if a.shape != b.shape or not a.size:
        raise VjxError(f"a and b must hold the same n >= 1 cases, got shapes {a.shape} and {b.shape}")
    diff = a - b
    _check(diff, confidence, resamples)
    means = _resampled_means(diff, resamples, seed)
    tail = (1 - confidence) / 2
    mean = float(diff.mean())
    flipped = float(np.mean(means * np.sign(mean) <= 0)) if mean else 1.0
    return Difference(mean=mean, low=float(np.quantile(means, tail)), high=float(np.quantile(means, 1 - tail)),
                      flipped=flipped, n=int(diff.size))


def case_ranks(scores, *, higher_is_better: bool = True) -> np.ndarray:
    """Each case's ranking of the methods: 1 = best; ties share their mean rank; NaN stays NaN.

    Args:
      scores: float ``cases x methods`` (NaN: the method has no value on that case).
    Returns:
      float ``cases x methods`` ranks.
    """
    scores = _values("scores", scores, 2)
    keyed = -scores if higher_is_better else scores
    ranks = np.full(scores.shape, np.nan)
    for i, row in enumerate(keyed):
        present = np.flatnonzero(~np.isnan(row))
        values = row[present]
        below = (values[None, :] < values[:, None]).sum(1)
        equal = (values[None, :] == values[:, None]).sum(1)
        ranks[i, present] = below + (equal + 1) / 2
    return ranks


def _distances(values: np.ndarray, counts: np.ndarray, level: str) -> np.ndarray:
    """delta^2 between the ``V`` distinct values (sorted), given their counts ``n_v``: ``V x V``."""
    c, k = values[:, None], values[None, :]
    if level == "nominal":
        return (c != k).astype(np.float64)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        total = c + k
        return np.where(total == 0, 0.0, (c - k) / np.where(total == 0, 1, total)) ** 2
    cumulative = np.cumsum(counts)                                  # ordinal: ranks of the values' positions
    i, j = np.minimum.outer(np.arange(len(values)), np.arange(len(values))), \
        np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
    between = cumulative[j] - np.where(i > 0, cumulative[np.maximum(i - 1, 0)], 0)
    return (between - (counts[i] + counts[j]) / 2) ** 2


def krippendorff_alpha(ratings, *, level: str = "ordinal") -> float:
    """Krippendorff's alpha: agreement of coders (rows) on units (columns), chance-corrected.

    ``alpha = 1 - D_o / D_e`` from the coincidence matrix of the values paired within each unit
    (Krippendorff, "Computing Krippendorff's alpha-reliability", 2011). Units with fewer than two
    values are not pairable and are left out.

    Args:
      ratings: float ``coders x units``; NaN where a coder gave no value.
      level: the values' metric: ``"nominal"``, ``"ordinal"``, ``"interval"`` or ``"ratio"``.
    Returns:
      alpha in (-inf, 1]; NaN when fewer than two values are pairable or every value is the same.
    """
    ratings = _values("ratings", ratings, 2)
    if level not in LEVELS:
        raise VjxError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    pairable = (~np.isnan(ratings)).sum(0) >= 2
    ratings = ratings[:, pairable]
    present = ~np.isnan(ratings)
    values = np.unique(ratings[present])
    if len(values) < 2:
        return float("nan")
    index = np.searchsorted(values, np.where(present, ratings, values[0]))
    onehot = (index[..., None] == np.arange(len(values))) & present[..., None]          # coders x units x V
    per_unit = onehot.sum(0).astype(np.float64)                                         # units x V
    m_u = per_unit.sum(1)                                                               # values per unit
    pairs = np.einsum("uc,uk->uck", per_unit, per_unit) - np.einsum("uc,ck->uck", per_unit, np.eye(len(values)))
    coincidence = (pairs / (m_u - 1)[:, None, None]).sum(0)                             # V x V
    counts = coincidence.sum(1)
    n = counts.sum()
    delta = _distances(values, counts, level)
    observed = (coincidence * delta).sum()
    expected = (np.outer(counts, counts) * delta).sum() / (n - 1)
    return float(1 - observed / expected) if expected > 0 else float("nan")
