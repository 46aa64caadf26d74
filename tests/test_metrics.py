"""vjx.metrics against numpy references, hand-computed cases and the planted model's known evidence."""
import numpy as np
import pytest

from tests.planted import BLOCK, block_indicator, planted_apply, planted_variables, planted_video
from vjx import metrics
from vjx.attribution import extremal
from vjx.errors import VjxError

INSIDE = block_indicator()                                   # T x H x W, the planted evidence
BLOCK_AREA = INSIDE.mean()                                   # 576 / 8192 of the clip


def _hard_reference(masks: np.ndarray, area: float) -> np.ndarray:
    """Top round(a N) of ``... x N`` rows set to 1; ties to the lower index (numpy lexsort)."""
    out = np.zeros_like(masks)
    count = round(area * masks.shape[-1])
    for idx in np.ndindex(masks.shape[:-1]):
        row = masks[idx]
        order = np.lexsort((np.arange(row.size), -row))      # by value descending, then index
        out[idx][order[:count]] = 1
    return out


def test_hard_masks_match_numpy_with_ties():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 4, size=(2, 3, 3, 4, 5)).astype(np.float32) / 3     # many ties
    areas = (0.1, 0.5, 0.93)
    hard = np.asarray(metrics.hard_masks(masks, areas))
    for a, area in enumerate(areas):
        expected = _hard_reference(masks[:, a].reshape(2, -1), area).reshape(masks[:, a].shape)
        np.testing.assert_array_equal(hard[:, a], expected)
        assert (hard[:, a].reshape(2, -1).sum(-1) == round(area * 60)).all()
    per_frame = np.asarray(metrics.hard_masks(masks, areas, per_frame=True))
    for a, area in enumerate(areas):
        expected = _hard_reference(masks[:, a].reshape(2, 3, -1), area).reshape(masks[:, a].shape)
        np.testing.assert_array_equal(per_frame[:, a], expected)


def test_hard_masks_hand_case_and_scalar_area():
    masks = np.array([[[[0.2, 0.7, 0.7], [0.7, 0.1, 0.9]]]], np.float32)          # 1 x 1 x 2 x 3
    # round(0.5 * 6) = 3 ones: 0.9, then the two first 0.7s in row-major order; the third 0.7 drops
    expected = np.array([[[[0, 1, 1], [0, 0, 1]]]], np.float32)
    np.testing.assert_array_equal(metrics.hard_masks(masks, 0.5), expected)
    assert metrics.hard_masks(masks, 0.0).sum() == 0 and metrics.hard_masks(masks, 1.0).sum() == 6


@pytest.mark.parametrize("masks, areas, match", [
    (np.zeros((1, 2, 2, 2, 2)), (0.1,), "one ratio per mask"),
    (np.zeros((1, 2, 2, 2)), (0.1, 0.2), "one scalar ratio"),
    (np.zeros((1, 2, 2, 2)), 1.5, r"in \[0, 1\]"),
    (np.zeros((2, 2, 2)), 0.1, "B x T x H x W"),
    (np.full((1, 2, 2, 2), np.nan), 0.1, "NaN"),
])
def test_hard_masks_errors_name_the_argument(masks, areas, match):
    with pytest.raises(VjxError, match=match):
        metrics.hard_masks(masks, areas)


def _preserved(masks, **kwargs):
    video = planted_video(masks.shape[0])
    return np.asarray(metrics.preserved_probability(planted_apply, video, np.ones(len(video), int), masks,
                                                    variables=planted_variables(), **kwargs))


def test_preservation_keeps_the_planted_block_and_loses_it_elsewhere():
    """Hard masks of area |block|: kept on the block the class survives, kept elsewhere it is destroyed."""
    outside = np.roll(INSIDE, 16, axis=2)                                        # same size, no overlap
    assert (outside * INSIDE).sum() == 0
    soft = np.stack([INSIDE * 0.8 + 0.1, outside * 0.8 + 0.1])[None]              # 1 x 2 x T x H x W
    hard = np.asarray(metrics.hard_masks(soft, (BLOCK_AREA, BLOCK_AREA)))
    np.testing.assert_array_equal(hard[0], np.stack([INSIDE, outside]))
    probs = _preserved(hard)
    full = _preserved(np.ones((1, *INSIDE.shape), np.float32))[0]
    assert full > 0.999                                                           # logit 15 vs 0, 0
    np.testing.assert_allclose(probs[0, 0], full, rtol=1e-6)                      # nothing that counts moved
    assert probs[0, 1] < 0.05, probs


def test_preservation_is_the_extremal_methods_own_score():
    """The optimised soft masks give back ExtremalResult.probabilities (same pyramid, same mask rule)."""
    config = extremal.ExtremalConfig(areas=(0.05, 0.2), num_iter=3, step=6, sigma=4.0)
    video, targets = planted_video(2), np.array([1, 0])
    result = extremal.ep3d(planted_apply, video, targets, config, variables=planted_variables(8.0))
    probs = metrics.preserved_probability(planted_apply, video, targets, result.masks,
                                          variables=planted_variables(8.0))
    assert probs.shape == (2, 2)
    np.testing.assert_allclose(probs, result.probabilities, rtol=1e-5, atol=1e-7)


def test_preservation_batches_areas_and_compiles_once():
    rng = np.random.default_rng(1)
    masks = rng.uniform(size=(2, 3, *INSIDE.shape)).astype(np.float32)
    together = _preserved(masks, perturbation="fade")
    size = metrics._preserved_probability._cache_size()
    for a in range(3):
        np.testing.assert_allclose(_preserved(masks[:, a], perturbation="fade"), together[:, a], rtol=1e-6)
    _preserved(masks[::-1].copy(), perturbation="fade")
    assert metrics._preserved_probability._cache_size() == size + 1               # the 4-D shape only


@pytest.mark.parametrize("masks, kwargs, match", [
    (np.ones((1, 8, 32, 16)), {}, "do not fit the videos"),
    (np.full((1, 8, 32, 32), 2.0), {}, r"in \[0, 1\]"),
    (np.ones((1, 8, 32, 32)), {"perturbation": "noise"}, "perturbation must be"),
    (np.ones((1, 8, 32, 32)), {"num_levels": 1}, "num_levels"),
])
def test_preservation_errors_name_the_argument(masks, kwargs, match):
    with pytest.raises(VjxError, match=match):
        _preserved(masks.astype(np.float32), **kwargs)
