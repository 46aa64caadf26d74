"""RISE and occlusion against their definitions computed directly (one model call per perturbed clip)."""
import jax
import numpy as np
import pytest

from test_backprop import tiny_apply, tiny_pair, tiny_videos
from vjx.attribution import OcclusionConfig, RiseConfig, occlusion, removal, rise
from vjx.errors import ArgumentError


def _probabilities(variables, clips, target):
    """Target softmax probability of each clip (``N x T x H x W x 3``), one model call."""
    logits = np.asarray(tiny_apply(variables, np.asarray(clips, np.float32)), np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p[:, target] / p.sum(1)


def test_occlusion_is_the_mean_drop_over_covering_windows():
    _, variables = tiny_pair()
    video = tiny_videos(1)[0]
    target = int(np.argmax(tiny_apply(variables, video[None])))           # its probability drops somewhere
    config = OcclusionConfig(window=(4, 8, 8), stride=(4, 6, 6), batch=3)      # overlapping in space, last flush
    attr = occlusion(tiny_apply, video[None], [target], config, variables=variables)
    base = _probabilities(variables, video[None], target)[0]
    total, count = np.zeros((8, 16, 16)), np.zeros((8, 16, 16))
    starts = [(t, h, w) for t in (0, 4) for h in (0, 6, 8) for w in (0, 6, 8)]
    assert attr.diagnostics["windows"] == len(starts) == 18
    clips = np.repeat(video[None], len(starts), axis=0)
    for clip, (t, h, w) in zip(clips, starts):
        clip[t:t + 4, h:h + 8, w:w + 8] = 0
    for drop, (t, h, w) in zip(base - _probabilities(variables, clips, target), starts):
        total[t:t + 4, h:h + 8, w:w + 8] += drop
        count[t:t + 4, h:h + 8, w:w + 8] += 1
    np.testing.assert_allclose(attr.raw[0], total / count, atol=2e-6)
    maps = np.asarray(attr.maps[0])
    assert maps.min() == 0 and maps.max() == pytest.approx(1.0)


def test_rise_is_the_probability_weighted_mean_of_its_masks():
    _, variables = tiny_pair()
    video, target, key = tiny_videos(1)[0], 2, jax.random.key(5)
    config = RiseConfig(num_masks=5, grid=(2, 3, 3), keep=0.5, batch=2)     # 5 masks in calls of 2: one padded
    attr = rise(tiny_apply, video[None], [target], config, variables=variables, key=key)
    keys = jax.random.split(key, 5)
    masks = [np.asarray(removal.rise_mask(k, (2, 3, 3), 0.5, (8, 16, 16))) for k in keys]
    assert all(m.shape == (8, 16, 16) and 0 <= m.min() and m.max() <= 1 for m in masks)
    assert len({m.tobytes() for m in masks}) == 5
    kept = _probabilities(variables, [video * m[..., None] for m in masks], target)
    expected = sum(p * m for p, m in zip(kept, masks)) / (5 * 0.5)
    np.testing.assert_allclose(attr.raw[0], expected, rtol=1e-5, atol=1e-7)
    again = rise(tiny_apply, video[None], [target], RiseConfig(num_masks=5, grid=(2, 3, 3), batch=5),
                 variables=variables, key=key)
    np.testing.assert_allclose(again.raw, attr.raw, rtol=1e-6)


def test_bad_settings_name_their_argument():
    for build, argument in ((lambda: RiseConfig(num_masks=0), "num_masks"), (lambda: RiseConfig(batch=0), "batch"),
                            (lambda: OcclusionConfig(window=(0, 4, 4)), "method")):
        with pytest.raises(ArgumentError) as caught:
            build()
        assert caught.value.argument == argument
