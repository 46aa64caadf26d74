"""vjx.metrics against numpy references, hand-computed cases and the planted model's known evidence."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import vjx
from tests.planted import PlantedEvidence, block_indicator, planted_apply, planted_variables, planted_video
from vjx import attribution, metrics
from vjx.attribution import extremal
from vjx.attribution.perturbation import pyramid
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


@pytest.mark.parametrize("method", ["ep3d", "ep2d"])
def test_preservation_is_the_extremal_methods_own_score(method):
    """The optimised masks give back ExtremalResult.probabilities (soft) and .hard_probabilities
    (its hard masks: of the whole clip for 3D-EP, of each frame for 2D-EP): one pyramid, one rule."""
    config = extremal.ExtremalConfig(areas=(0.05, 0.2), num_iter=3, seed_spacing=6, sigma=4.0)
    video, targets = planted_video(2), np.array([1, 0])
    result = getattr(extremal, method)(planted_apply, video, targets, config, variables=planted_variables(8.0))
    soft = metrics.preserved_probability(planted_apply, video, targets, result.masks, variables=planted_variables(8.0))
    hard = np.asarray(result.hard_masks, np.float32)
    kept = metrics.preserved_probability(planted_apply, video, targets, hard, variables=planted_variables(8.0))
    frame_axes = (2, 3, 4) if method == "ep3d" else (3, 4)
    assert (hard.sum(frame_axes) > 0).all()                  # each mask keeps something in view
    assert soft.shape == kept.shape == (2, 2)
    np.testing.assert_allclose(soft, result.probabilities, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(kept, result.hard_probabilities, rtol=1e-5, atol=1e-7)


def test_preservation_batches_areas_and_compiles_once():
    rng = np.random.default_rng(1)
    masks = rng.uniform(size=(2, 3, *INSIDE.shape)).astype(np.float32)
    together = _preserved(masks, perturbation="fade")
    size = metrics.preservation._preserved_probability._cache_size()
    for a in range(3):
        np.testing.assert_allclose(_preserved(masks[:, a], perturbation="fade"), together[:, a], rtol=1e-6)
    _preserved(masks[::-1].copy(), perturbation="fade")
    assert metrics.preservation._preserved_probability._cache_size() == size + 1               # the 4-D shape only


@pytest.mark.parametrize("masks, kwargs, match", [
    (np.ones((1, 8, 32, 16)), {}, "do not fit the videos"),
    (np.full((1, 8, 32, 32), 2.0), {}, r"in \[0, 1\]"),
    (np.ones((1, 8, 32, 32)), {"perturbation": "noise"}, "perturbation must be"),
    (np.ones((1, 8, 32, 32)), {"num_levels": 1}, "num_levels"),
])
def test_preservation_errors_name_the_argument(masks, kwargs, match):
    with pytest.raises(VjxError, match=match):
        _preserved(masks.astype(np.float32), **kwargs)


# --- deletion / insertion -------------------------------------------------------------------------

def _curve_reference(video, target, ranking, baseline, steps, insertion):
    """One model call per step, as a per-step loop would do it: ``k + 1`` probabilities of one map."""
    order = np.lexsort((np.arange(ranking.size), -ranking.ravel()))
    probs = []
    for j in range(steps + 1):
        changed = np.zeros(ranking.size, bool)
        changed[order[:round(j / steps * ranking.size)]] = True
        changed = changed.reshape(ranking.shape)[..., None]
        x = np.where(changed, video, baseline) if insertion else np.where(changed, baseline, video)
        logits = np.asarray(planted_apply(planted_variables(), x[None]), np.float64)[0]
        probs.append(np.exp(logits[target]) / np.exp(logits).sum())
    return np.array(probs)


@pytest.mark.parametrize("insertion", [False, True])
def test_curves_match_a_per_step_loop(insertion):
    rng = np.random.default_rng(2)
    videos = planted_video(2)
    videos[1] = np.roll(videos[1], 3, axis=2)                          # a block that spills out of place
    maps = rng.integers(0, 5, size=(2, 3, *INSIDE.shape)).astype(np.float32)   # ties everywhere
    targets = np.array([1, 0])
    fn = metrics.insertion_curve if insertion else metrics.deletion_curve
    curve = fn(planted_apply, videos, targets, maps, variables=planted_variables(), steps=6,
               baseline="constant", constant=-0.25, batch_size=4)
    assert curve.probabilities.shape == (2, 3, 7) and curve.auc.shape == (2, 3)
    np.testing.assert_allclose(curve.fractions, np.round(np.arange(7) / 6 * INSIDE.size) / INSIDE.size)
    for b in range(2):
        for a in range(3):
            expected = _curve_reference(videos[b], targets[b], maps[b, a], -0.25, 6, insertion)
            np.testing.assert_allclose(curve.probabilities[b, a], expected, rtol=2e-5, atol=1e-7)
            np.testing.assert_allclose(curve.auc[b, a], np.trapezoid(expected, np.asarray(curve.fractions)),
                                       rtol=2e-5)


def test_blur_baseline_is_the_pyramids_strongest_level_and_batching_changes_nothing():
    video, target = planted_video(1), np.array([1])
    rng = np.random.default_rng(3)
    ranking = rng.uniform(size=(1, *INSIDE.shape)).astype(np.float32)
    blurred = pyramid.build_pyramid(video, 8, 20.0, "blur")[:, :, 0]                # sigma 20
    ends = metrics.preserved_probability(planted_apply, np.concatenate([video, blurred]), np.array([1, 1]),
                                         np.ones((2, *INSIDE.shape), np.float32), variables=planted_variables())
    deletion = metrics.deletion_curve(planted_apply, video, target, ranking, variables=planted_variables(), steps=5)
    insertion = metrics.insertion_curve(planted_apply, video, target, ranking, variables=planted_variables(),
                                        steps=5, batch_size=1)
    np.testing.assert_allclose(deletion.probabilities[0, [0, -1]], ends, rtol=1e-5)
    np.testing.assert_allclose(insertion.probabilities[0, [0, -1]], ends[::-1], rtol=1e-5)
    for batch_size in (1, 4, 100):
        again = metrics.deletion_curve(planted_apply, video, target, ranking, variables=planted_variables(),
                                       steps=5, batch_size=batch_size)
        np.testing.assert_allclose(again.probabilities, deletion.probabilities, rtol=1e-6)


@pytest.mark.parametrize("baseline", ["blur", "constant"])
def test_curves_reward_the_planted_evidence(baseline):
    """Ranking by the true block: the class dies at once under deletion and appears at once under
    insertion; a random ranking keeps / lacks the evidence until most of the clip changed.
    Measured (steps 20): deletion AUC 0.069 / 0.054 (block) vs 0.76 / 0.71 (random); insertion
    0.975 (block) vs 0.76 / 0.72 (random)."""
    rng = np.random.default_rng(0)
    maps = np.stack([INSIDE, rng.uniform(size=INSIDE.shape).astype(np.float32)])[None]   # 1 x 2 x T x H x W
    args = (planted_apply, planted_video(1), np.array([1]), maps)
    deletion = metrics.deletion_curve(*args, variables=planted_variables(), baseline=baseline)
    insertion = metrics.insertion_curve(*args, variables=planted_variables(), baseline=baseline)
    (del_block, del_random), = np.asarray(deletion.auc)
    (ins_block, ins_random), = np.asarray(insertion.auc)
    assert del_block < 0.1 and del_random > 0.6, deletion.auc
    assert ins_block > 0.95 and ins_random < 0.8, insertion.auc
    assert deletion.probabilities[0, 0, 2] < 0.05 and insertion.probabilities[0, 0, 2] > 0.99


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"baseline": "noise"}, "baseline must be one of"),
    ({"maps": np.ones((1, 8, 16, 32), np.float32)}, "maps of shape"),
])
def test_curve_errors_name_the_argument(kwargs, match):
    args = {"maps": np.ones((1, *INSIDE.shape), np.float32), **kwargs}
    maps = args.pop("maps")
    with pytest.raises(VjxError, match=match):
        metrics.deletion_curve(planted_apply, planted_video(1), np.array([1]), maps, variables=planted_variables(),
                               **args)


# --- pointing games -------------------------------------------------------------------------------

def test_spatial_pointing_boxes_are_x_columns_y_rows():
    """Frames of 10 rows x 20 columns; a box given as (x0, y0, x1, y1) counts x along the columns.
    The same box with x and y swapped would miss, so a transposed convention cannot pass."""
    maps = np.zeros((1, 3, 10, 20), np.float32)
    maps[0, 0, 2, 15] = 1                                    # row 2, column 15: the point (x=15, y=2)
    maps[0, 1, 2, 15] = 1
    maps[0, 2, 7, 3] = 1                                     # (x=3, y=7)
    boxes = np.array([[[13, 0, 17, 4],                       # columns 13-17, rows 0-4: holds (15, 2)
                       [0, 13, 4, 17],                       # the transposed box: rows 13-17 lie outside
                       [3, 7, 3, 7]]], np.float32)           # a single point: edges are included
    result = metrics.spatial_pointing_game(maps, boxes, tolerance=0.0)
    np.testing.assert_array_equal(result.hits, [[True, False, True]])
    np.testing.assert_array_equal(result.points, [[[15, 2], [15, 2], [3, 7]]])
    np.testing.assert_allclose(result.hit_rate, 2 / 3)


def test_spatial_pointing_tolerance_counts_only_annotated_frames_and_classes():
    maps = np.zeros((2, 3, 16, 16), np.float32)
    maps[:, :, 5, 10] = 1                                    # every frame points at (x=10, y=5)
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[:, :] = (13, 9, 15, 12)                            # nearest point (13, 9): dx 3, dy 4 -> 5 px
    boxes[1, 2] = (0, 0, 1, 1)                               # far away: a miss
    annotated = np.array([[True, True, False], [True, False, True]])
    near = metrics.spatial_pointing_game(maps, boxes, annotated, tolerance=5.0, labels=[2, 0], num_classes=3)
    far = metrics.spatial_pointing_game(maps, boxes, annotated, tolerance=4.99)
    np.testing.assert_array_equal(near.hits, [[True, True, False], [True, False, False]])
    np.testing.assert_array_equal(near.counted, annotated)
    np.testing.assert_allclose(near.hit_rate, 3 / 4)                                      # 4 annotated frames
    np.testing.assert_allclose(near.class_hit_rates, [1 / 2, np.nan, 1.0])
    assert not np.asarray(far.hits).any() and far.hit_rate == 0 and far.class_hit_rates is None


def _pointing_reference(maps, boxes, annotated, tolerance):
    """Loops: B x A x T hits, with a frame's maximum found by numpy's argmax (first occurrence)."""
    b, a, t, h, w = maps.shape
    hits = np.zeros((b, a, t), bool)
    for i, j, f in np.ndindex(b, a, t):
        y, x = np.unravel_index(maps[i, j, f].argmax(), (h, w))
        for k in np.flatnonzero(annotated[i, f]):
            x0, y0, x1, y1 = boxes[i, f, k]
            nearest = np.clip(x, x0, x1), np.clip(y, y0, y1)
            hits[i, j, f] |= np.hypot(x - nearest[0], y - nearest[1]) <= tolerance
    return hits


def test_spatial_pointing_matches_numpy_with_areas_and_several_boxes():
    rng = np.random.default_rng(4)
    maps = rng.integers(0, 6, size=(3, 2, 5, 12, 18)).astype(np.float32)                # ties: first max
    corner = rng.uniform(0, 15, size=(3, 5, 2, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0, 5, size=corner.shape)], -1).astype(np.float32)
    annotated = rng.uniform(size=(3, 5, 2)) < 0.7
    result = metrics.spatial_pointing_game(maps, boxes, annotated, tolerance=3.0, labels=[0, 1, 0])
    expected = _pointing_reference(maps, boxes, annotated, 3.0)
    np.testing.assert_array_equal(result.hits, expected)
    counted = np.broadcast_to(annotated.any(-1)[:, None], expected.shape)
    np.testing.assert_allclose(result.hit_rate, expected.sum((0, 2)) / counted.sum((0, 2)), rtol=1e-6)
    assert result.class_hit_rates.shape == (2, 2)
    np.testing.assert_allclose(result.class_hit_rates[:, 1], expected[1].sum(-1) / counted[1].sum(-1), rtol=1e-6)


def test_temporal_pointing_segment_is_a_half_open_frame_range():
    frame_sums = np.array([[1, 5, 2, 2], [3, 1, 1, 3], [0, 1, 2, 9]], np.float32)        # B x T
    maps = np.broadcast_to(frame_sums[:, :, None, None] / 4, (3, 4, 2, 2))
    segments = np.array([[1, 3], [1, 4], [0, 3]])           # frame 1 in; frame 0 (first of the tie) out; 3 = stop
    result = metrics.temporal_pointing_game(maps, segments, labels=[1, 1, 0])
    np.testing.assert_array_equal(result.points, [1, 0, 3])
    np.testing.assert_array_equal(result.hits, [True, False, False])
    np.testing.assert_allclose(result.hit_rate, 1 / 3)
    np.testing.assert_allclose(result.class_hit_rates, [0.0, 0.5])
    swept = metrics.temporal_pointing_game(np.stack([maps, maps[:, ::-1]], 1), segments)
    np.testing.assert_array_equal(swept.points, [[1, 2], [0, 0], [3, 0]])       # reversed: 2, 0 (tie), 0
    np.testing.assert_array_equal(swept.hits, [[True, True], [False, False], [False, True]])
    np.testing.assert_allclose(swept.hit_rate, [1 / 3, 2 / 3])


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.spatial_pointing_game(np.zeros((1, 2, 4, 4)), np.zeros((1, 3, 4))), "boxes must be"),
    (lambda: metrics.spatial_pointing_game(np.zeros((1, 1, 4, 4)), [[[3, 0, 1, 2]]]), "x0 <= x1"),
    (lambda: metrics.spatial_pointing_game(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4)), [[1]]), "annotated must"),
    (lambda: metrics.spatial_pointing_game(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4)), tolerance=-1),
     "tolerance"),
    (lambda: metrics.spatial_pointing_game(np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4)), labels=[0, 3],
                                           num_classes=3), "labels must lie"),
    (lambda: metrics.temporal_pointing_game(np.zeros((1, 4, 2, 2)), [[2, 5]]), r"segments\[0\] = \[2, 5\]"),
    (lambda: metrics.temporal_pointing_game(np.zeros((1, 4, 2, 2)), [[2.0, 3.0]]), "integer"),
])
def test_pointing_errors_name_the_argument(call, match):
    with pytest.raises(VjxError, match=match):
        call()


# --- rank correlation and model randomisation -----------------------------------------------------

def test_rank_correlation_is_scipys_spearman():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 7, size=(3, 4, 6, 5)).astype(np.float32)                       # ties
    b = a + rng.normal(size=a.shape).astype(np.float32) * np.array([0.1, 2.0, 50.0])[:, None, None, None]
    b[2] = -b[2]
    expected = [stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(3)]
    np.testing.assert_allclose(metrics.rank_correlation(a, b), expected, rtol=1e-5, atol=1e-6)
    assert np.isnan(metrics.rank_correlation(np.ones((1, 8)), rng.normal(size=(1, 8)))[0])
    with pytest.raises(VjxError, match="one shape"):
        metrics.rank_correlation(np.ones((2, 4)), np.ones((2, 5)))


class TinyNet(nn.Module):
    """Three layers defined in the order stem, block, head (sorted by name: block, head, stem)."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (1, 3, 3), name="stem")(x))
        x = nn.relu(nn.Conv(4, (1, 3, 3), name="block")(x))
        return nn.Dense(3, name="head")(x.mean((1, 2, 3)))


def _tiny_apply(variables, video):
    return TinyNet().apply(variables, video)


def _tiny_init(key):
    return TinyNet().init(key, jnp.zeros((1, 2, 8, 8, 3)))


def test_model_randomisation_cascades_from_the_top():
    """Against the cascade done by hand: definition order (head, block, stem), scipy's Spearman."""
    x = np.random.default_rng(6).normal(size=(2, 2, 8, 8, 3)).astype(np.float32)
    targets = np.array([0, 2])

    def attribute(model, variables):
        return attribution.gradient(model, x, targets, variables=variables).maps

    trained = _tiny_init(jax.random.key(1))
    result = metrics.model_randomisation(_tiny_apply, attribute, variables=trained, init_fn=_tiny_init)
    assert result.layers == (("head",), ("block",), ("stem",))
    fresh = _tiny_init(jax.random.key(0))["params"]
    params = dict(trained["params"])
    reference = np.asarray(attribute(_tiny_apply, trained))
    for level, name in enumerate(("head", "block", "stem")):
        params[name] = fresh[name]
        maps = np.asarray(attribute(_tiny_apply, {"params": params}))
        expected = [stats.spearmanr(reference[i].ravel(), maps[i].ravel()).statistic for i in range(2)]
        np.testing.assert_allclose(result.correlations[:, level], expected, rtol=1e-4)
    assert (np.asarray(result.correlations[:, -1]) < 0.5).all(), result.correlations    # measured 0.19, 0.17
    grouped = metrics.model_randomisation(_tiny_apply, attribute, variables=trained, init_fn=_tiny_init,
                                          layers=["head", ("stem", "block")])
    assert grouped.layers == (("head",), ("stem", "block"))
    np.testing.assert_allclose(grouped.correlations, result.correlations[:, ::2], rtol=1e-6)


def test_model_randomisation_of_a_vjx_model_initialises_from_its_spec():
    """The planted model's normalised gradient x input is the block, whatever the head's scale: a
    re-initialised head leaves the map's ranks unchanged (correlation 1), as the check should show."""
    spec = dataclasses.replace(vjx.get_spec("r3d"), num_frames=INSIDE.shape[0], crop=INSIDE.shape[1], num_classes=3)
    model = vjx.Model(PlantedEvidence(), planted_variables(), spec)
    video = planted_video(1)

    def attribute(model, variables):
        return attribution.gradient_x_input(model, video, np.array([1]), variables=variables).maps

    result = metrics.model_randomisation(model, attribute)
    assert result.layers == (("head",), ("redness",)) and result.correlations.shape == (1, 2)
    np.testing.assert_allclose(result.correlations[0, 0], 1.0, rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"init_fn": None}, "needs init_fn"),
    ({"layers": ["head", "conv9"]}, "'conv9' is not a parameter path"),
    ({"init_fn": lambda key: {"params": {"head": {"kernel": jnp.zeros((4, 3))}}}}, "do not match"),
    ({"key": jax.random.key(1)}, "reproduces the trained weights of layers head"),     # the trained model's key
])
def test_model_randomisation_errors_name_the_argument(kwargs, match):
    args = {"init_fn": _tiny_init, **kwargs}
    with pytest.raises(VjxError, match=match):
        metrics.model_randomisation(_tiny_apply, lambda m, v: None, variables=_tiny_init(jax.random.key(1)), **args)
