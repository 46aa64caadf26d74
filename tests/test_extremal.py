"""Extremal perturbation end to end: ground truth on the planted model, variants, errors, jit cache."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.planted import BLOCK, block_indicator, planted_apply, planted_variables, planted_video
from vjx.attribution import extremal
from vjx.attribution.extremal import ExtremalConfig
from vjx.attribution.perturbation import loop
from vjx.attribution.perturbation.mask import MaskGeometry
from vjx.errors import VjxError

# gain 8: the target stays probable (0.995) but not saturated, so the reward still has a gradient
GAIN = 8.0
# seeds every 6 px (0, 6, 12, 18, ...): the block (rows 10-21, cols 8-19) holds the seed points 12, 18
STEP, SIGMA = 6, 4.0
INSIDE = block_indicator()
BLOCK_FRAMES = range(*BLOCK[0])


def _block_area(fraction: float) -> float:
    """``fraction`` of the block's volume as a ratio of the padded mask volume (what areas refer to)."""
    hp, wp = MaskGeometry(32, 32, STEP, SIGMA).padded_shape
    return fraction * INSIDE.sum() / (INSIDE.shape[0] * hp * wp)


def _run(method, num_iter=80, areas=None, **overrides):
    config = ExtremalConfig(areas=areas or (_block_area(0.6),), num_iter=num_iter, step=STEP, sigma=SIGMA,
                            step_start=30, **overrides)
    return getattr(extremal, method)(planted_apply, planted_video(1), np.array([1]), config,
                                     variables=planted_variables(GAIN))


@pytest.fixture(scope="module")
def found():
    return {m: _run(m) for m in ("ep3d", "step")}


@pytest.mark.parametrize("method,min_inside", [("ep3d", 0.6), ("step", 0.45)])
def test_finds_the_planted_block(found, method, min_inside):
    """The block is 7% of the clip; the mask's smooth edges (sigma 4 px around a 12 px block) cap the
    share of mass a perfect mask can put inside at about 0.7."""
    r = found[method]
    masks = np.asarray(r.masks[0, 0])
    assert r.masks.shape == (1, 1, 8, 32, 32) and masks.min() >= 0 and masks.max() <= 1
    inside = (masks * INSIDE).sum() / masks.sum()
    assert inside >= min_inside, inside
    for f in BLOCK_FRAMES:                                   # pointing game on every frame with the block
        assert INSIDE[f].ravel()[masks[f].argmax()] == 1, f
        if method == "ep3d":             # STEP's 7-frame ellipsoid thins out at its ends in an 8-frame clip
            assert masks[f][INSIDE[f] == 1].mean() > 0.75        # the block is kept
    assert float(r.probabilities[0, 0]) > 0.5
    assert r.history["reward"].shape == (1, 1, 80)
    assert ("step_loss" in r.history) == (method == "step")


def test_3d_ep_leaves_the_frames_without_evidence_empty(found):
    masks = np.asarray(found["ep3d"].masks[0, 0])
    assert masks[[0, 1, 6, 7]].max() < 0.05


def test_ep2d_holds_every_frame_to_the_area():
    r = _run("ep2d", num_iter=40)
    masks = np.asarray(r.masks[0, 0])
    per_frame = masks.sum(axis=(1, 2))
    assert per_frame.min() > 0.2 * per_frame.max()           # evidence-free frames get mask too (3D-EP: none)
    for f in BLOCK_FRAMES:
        assert INSIDE[f].ravel()[masks[f].argmax()] == 1


@pytest.mark.parametrize("variant", ["delete", "dual"])
def test_delete_and_dual_mark_the_block(variant):
    r = _run("ep3d", num_iter=40, variant=variant)
    masks = np.asarray(r.masks[0, 0])
    assert masks[INSIDE == 1].mean() > 3 * masks[INSIDE == 0].mean()
    if variant == "delete":                                   # deleting the block kills the class
        assert float(r.history["probability"][0, 0, -1]) < 0.5 * float(r.base_probability[0])


def test_temporal_smoothing_spreads_the_mask_over_time():
    smooth = _run("ep3d_temporal_smoothing", num_iter=40, temporal_sigma=1.5)
    masks = np.asarray(smooth.masks[0, 0])
    assert masks.shape == (8, 32, 32)
    assert masks[1].max() > 0.05                               # a neighbour of the block frames
    assert INSIDE[3].ravel()[masks[3].argmax()] == 1


def test_no_recompile_and_areas_do_not_change_the_program():
    before = loop.TRACES["3d"]
    first = _run("ep3d", num_iter=3, areas=(0.05, 0.1))
    after_first = loop.TRACES["3d"]
    again = _run("ep3d", num_iter=3, areas=(0.05, 0.1))
    other_areas = _run("ep3d", num_iter=3, areas=(0.02, 0.2))
    assert loop.TRACES["3d"] == after_first <= before + 1
    np.testing.assert_array_equal(first.masks, again.masks)
    assert not np.array_equal(first.masks, other_areas.masks)


def test_same_key_same_masks():
    key = jax.random.key(3)
    cfg = dict(num_iter=35, areas=(0.03,), step_start=30)
    a = extremal.step(planted_apply, planted_video(1), np.array([1]), ExtremalConfig(step=STEP, sigma=SIGMA, **cfg),
                      variables=planted_variables(GAIN), key=key)
    b = extremal.step(planted_apply, planted_video(1), np.array([1]), ExtremalConfig(step=STEP, sigma=SIGMA, **cfg),
                      variables=planted_variables(GAIN), key=key)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.history["step_loss"], b.history["step_loss"])


def test_extremal_area_follows_the_bound():
    areas = (0.01, 0.03, 0.05)
    easy = _run("ep3d", num_iter=3, areas=areas, extremal_bound=0.0)
    impossible = _run("ep3d", num_iter=3, areas=areas, extremal_bound=1.5)
    assert float(easy.extremal_area[0]) == pytest.approx(0.01)
    assert np.isnan(float(impossible.extremal_area[0]))
    assert easy.probabilities.shape == (1, 3) and easy.masks.shape == (1, 3, 8, 32, 32)
    np.testing.assert_allclose(easy.areas, areas)


@pytest.mark.parametrize("change,match", [
    (dict(areas=(0.0,)), "between 0 and 1"),
    (dict(areas=(0.1, 1.0)), "between 0 and 1"),
    (dict(areas=()), "non-empty"),
    (dict(variant="keep"), "variant"),
    (dict(perturbation="noise"), "perturbation"),
    (dict(num_iter=0), "num_iter"),
    (dict(sigma=1.0), "too small"),
])
def test_bad_config_is_a_vjx_error(change, match):
    config = dict(areas=(0.05,), num_iter=2, step=STEP, sigma=SIGMA)
    config.update(change)
    with pytest.raises(VjxError, match=match):
        extremal.ep3d(planted_apply, planted_video(1), np.array([1]), ExtremalConfig(**config),
                      variables=planted_variables())


def test_bad_inputs_are_vjx_errors():
    config = ExtremalConfig(areas=(0.05,), num_iter=2)
    tiny = np.zeros((1, 8, 5, 5, 3), np.float32)
    with pytest.raises(VjxError, match="smaller than the mask step"):
        extremal.ep3d(lambda v, x: jnp.zeros((x.shape[0], 3)), tiny, np.array([1]), config, variables={})
    with pytest.raises(VjxError, match="out of range"):
        extremal.ep3d(planted_apply, planted_video(1), np.array([7]), config, variables=planted_variables())
    with pytest.raises(VjxError, match="frames"):
        short = np.zeros((1, 4, 32, 32, 3), np.float32)
        extremal.step(lambda v, x: jnp.zeros((x.shape[0], 3)), short, np.array([1]), config, variables={})
