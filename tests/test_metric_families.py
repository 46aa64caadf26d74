"""The benchmark's metrics against numpy references and hand-computed cases: the energy pointing game,
the minimum preservation ratio, average drop / increase in confidence, bootstrap intervals, paired
differences and Krippendorff's alpha."""
import numpy as np
import pytest

from vjx import metrics
from vjx.errors import VjxError

NAN = np.nan
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the example with missing values:
# 4 observers x 12 units, and the alphas the paper publishes for it.
KRIPPENDORFF = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
                         [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
                         [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
                         [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN]])


def _energy_reference(maps, boxes, annotated):
    """Loops over frames and pixels: positive mass inside any annotated box / on annotated frames."""
    b, t, h, w = maps.shape
    shares = np.zeros(b)
    for i in range(b):
        inside = total = 0.0
        for f in range(t):
            if not annotated[i, f].any():
                continue
            for r in range(h):
                for c in range(w):
                    mass = max(maps[i, f, r, c], 0.0)
                    total += mass
                    if any(x0 <= c <= x1 and y0 <= r <= y1 for (x0, y0, x1, y1), a in zip(boxes[i, f], annotated[i, f])
                           if a):
                        inside += mass
        shares[i] = inside / total
    return shares


def test_energy_pointing_is_the_mass_inside_the_boxes():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 4, 6, 7)).astype(np.float32)
    boxes = np.tile(np.array([[1, 0, 3, 2], [4, 3, 6, 5]], np.float32), (3, 4, 1, 1))
    annotated = rng.random((3, 4, 2)) > 0.4
    annotated[:, 0, 0] = True
    np.testing.assert_allclose(metrics.energy_pointing_game(maps, boxes, annotated),
                               _energy_reference(maps, boxes, annotated), rtol=1e-5)
    areas = metrics.energy_pointing_game(np.stack([maps, 2 * maps], 1), boxes, annotated)   # B x A
    np.testing.assert_allclose(areas[:, 0], areas[:, 1], rtol=1e-6)                       # a share: scale-free
    half = np.zeros((1, 2, 4, 8), np.float32)
    half[..., :4] = 1.0
    box = np.tile(np.array([0, 0, 3, 3], np.float32), (1, 2, 1))
    assert float(metrics.energy_pointing_game(half, box)[0]) == 1.0
    assert float(metrics.energy_pointing_game(np.ones_like(half), box)[0]) == 0.5
    with pytest.raises(VjxError, match="boxes must be"):
        metrics.energy_pointing_game(half, box[:, :1])


def test_minimum_preservation_ratio_is_the_smallest_area_that_keeps_the_class():
    kept = np.array([[0.1, 0.5, 0.7], [0.0, 0.0, 0.1], [0.6, 0.4, 0.9]])
    ratio = metrics.minimum_preservation_ratio(kept, [0.05, 0.1, 0.2], [0.4, 0.3, 0.5])
    np.testing.assert_allclose(ratio, [0.1, NAN, 0.05])
    converged = np.array([[True, False, True], [True] * 3, [False, True, True]])
    np.testing.assert_allclose(metrics.minimum_preservation_ratio(kept, [0.05, 0.1, 0.2], [0.4, 0.3, 0.5],
                                                                  converged), [0.2, NAN, 0.2])
    with pytest.raises(VjxError, match="B x A"):
        metrics.minimum_preservation_ratio(kept, [0.05, 0.1], [0.4, 0.3, 0.5])


def test_average_drop_and_increase_in_confidence():
    drop, increase = metrics.confidence_change([0.5, 0.2, 0.8], [0.25, 0.3, 0.8])
    np.testing.assert_allclose(drop, [0.5, 0.0, 0.0])
    np.testing.assert_array_equal(increase, [0.0, 1.0, 0.0])
    drop, _ = metrics.confidence_change([0.5], [[0.1, 0.5]])
    np.testing.assert_allclose(drop, [[0.8, 0.0]])
    with pytest.raises(VjxError, match="> 0"):
        metrics.confidence_change([0.0], [0.1])


@pytest.mark.parametrize("level, alpha", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849),
                                          ("ratio", 0.797)])
def test_krippendorff_alpha_reproduces_the_published_example(level, alpha):
    assert metrics.krippendorff_alpha(KRIPPENDORFF, level=level) == pytest.approx(alpha, abs=5e-4)


def test_krippendorff_alpha_of_rankings():
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.6, 0.2], [0.7, 0.4, 0.3]])          # cases x methods
    ranks = metrics.case_ranks(scores)
    np.testing.assert_array_equal(ranks, [[1, 2, 3]] * 3)
    assert metrics.krippendorff_alpha(ranks) == 1.0                                  # every case agrees
    np.testing.assert_array_equal(metrics.case_ranks([[0.2, 0.2, NAN, 0.1]], higher_is_better=False),
                                  [[2.5, 2.5, NAN, 1]])
    opposed = metrics.case_ranks(np.array([[1.0, 2.0], [2.0, 1.0]]))
    assert metrics.krippendorff_alpha(opposed) < 0                                   # worse than chance
    assert np.isnan(metrics.krippendorff_alpha(np.ones((3, 2))))


def test_bootstrap_intervals_cover_the_mean_and_shrink_with_cases():
    rng = np.random.default_rng(1)
    few, many = rng.normal(size=10), rng.normal(size=1000)
    for values in (few, many):
        low, high = metrics.bootstrap_interval(values)
        assert low < values.mean() < high
    assert np.subtract(*metrics.bootstrap_interval(many)[::-1]) < np.subtract(*metrics.bootstrap_interval(few)[::-1])
    assert metrics.bootstrap_interval([0.3]) == (0.3, 0.3)
    assert metrics.bootstrap_interval(few) == metrics.bootstrap_interval(few)              # seeded


def test_paired_difference_sees_a_consistent_gap_through_noisy_cases():
    rng = np.random.default_rng(2)
    hard = rng.random(40)                                     # cases differ a lot, the gap is always 0.05
    better = metrics.paired_difference(hard + 0.05, hard)
    assert better.mean == pytest.approx(0.05) and better.low == pytest.approx(0.05) and better.flipped == 0.0
    unpaired_low, _ = metrics.bootstrap_interval(hard + 0.05)
    assert unpaired_low < hard.mean()                         # the methods' own intervals overlap
    noise = metrics.paired_difference(rng.random(40), rng.random(40))
    assert noise.low < 0 < noise.high and noise.flipped > 0.025
    with pytest.raises(VjxError, match="same n"):
        metrics.paired_difference([1.0], [1.0, 2.0])


def test_maximum_in_region_shares_ties():
    maps = np.zeros((3, 2, 2, 4), np.float32)
    maps[0, 1, 0, 1] = 2.0                                  # one maximum, in the left half
    maps[1, 0, 1, 3] = 1.0                                  # one maximum, in the right half
    left = np.zeros((3, 2, 2, 4), bool)
    left[..., :2] = True
    np.testing.assert_array_equal(metrics.maximum_in_region(maps, left), [1.0, 0.0, 0.5])   # 3rd: flat, chance
    maps[0, 0, 0, 3] = 2.0                                  # a tie across the halves: half a hit
    assert float(metrics.maximum_in_region(maps, left)[0]) == 0.5
    with pytest.raises(VjxError, match="regions must be bool"):
        metrics.maximum_in_region(maps, left[:, 0])
