"""vjx.visualize: colours, overlays, figure grids and side-by-side GIFs decode to what was drawn."""
import imageio.v3 as iio
import numpy as np
import pytest

from vjx import visualize
from vjx.errors import VjxError


@pytest.fixture(scope="module")
def clip():
    y, x = np.mgrid[0:32, 0:40]
    frames = np.stack([np.stack([x * 6 + t * 5, y * 7, 255 - x * 6], -1) for t in range(6)]).astype(np.uint8)
    maps = np.zeros((6, 8, 10), np.float32)
    maps[:, 2:6, 3:7] = 1.0                       # a bright square in the middle of every frame
    return frames, maps


def test_heatmap_is_perceptual_dark_to_bright():
    values = np.linspace(0, 1, 11, dtype=np.float32)[None]
    colours = visualize.heatmap(values)[0].astype(float)
    luminance = colours @ np.array([0.2126, 0.7152, 0.0722])
    assert colours.shape == (11, 3)
    assert np.all(np.diff(luminance) > 0), luminance       # inferno: monotone in brightness
    assert luminance[0] < 10 and luminance[-1] > 200
    np.testing.assert_array_equal(visualize.heatmap(np.array([[-3.0, 7.0]]))[0],
                                  visualize.heatmap(np.array([[0.0, 1.0]]))[0])   # clipped to [0, 1]


def test_overlay_blends_and_resizes(clip):
    frames, maps = clip
    assert visualize.overlay(frames, maps, alpha=0.0).tolist() == frames.tolist()
    full = visualize.overlay(frames, maps, alpha=1.0)
    assert full.shape == frames.shape and full.dtype == np.uint8
    # the upsampled square is bright in the centre and dark in the corners
    assert full[:, 16, 20].mean() > 200 and full[:, 0, 0].mean() < 10
    half = visualize.overlay(frames, maps, alpha=0.5).astype(int)
    expected = (frames.astype(int) + full.astype(int)) / 2
    assert np.abs(half - expected).max() <= 1


def test_overlay_rejects_mismatched_lengths(clip):
    frames, maps = clip
    with pytest.raises(VjxError, match="same T"):
        visualize.overlay(frames, maps[:3])


def test_gif_shows_original_and_overlay_side_by_side(clip):
    frames, maps = clip
    data = visualize.gif_bytes(frames, maps, fps=5)
    decoded = iio.imread(data, index=None, extension=".gif")[..., :3]
    assert decoded.shape == (6, 32, 80, 3)
    # GIF palettes are 256 colours: the halves match their sources up to quantisation
    assert np.abs(decoded[:, :, :40].astype(int) - frames).mean() < 6
    overlay = visualize.overlay(frames, maps)
    assert np.abs(decoded[:, :, 40:].astype(int) - overlay).mean() < 6
    assert iio.immeta(data, extension=".gif", index=0)["duration"] == 200


def test_figure_has_a_row_per_map(clip):
    frames, maps = clip
    one = iio.imread(visualize.figure_png(frames, [("a", maps)], title="t"), extension=".png")
    three = iio.imread(visualize.figure_png(frames, [("a", maps), ("b", maps), ("c", 1 - maps)],
                                            title="label\ntop-3"), extension=".png")
    assert one.shape[1] == three.shape[1] and three.shape[0] > one.shape[0] * 1.5
    # the inferno overlay of the all-bright map adds yellow pixels the plain rows do not have
    yellow = (three[..., 0] > 200) & (three[..., 1] > 150) & (three[..., 2] < 120)
    assert yellow.sum() > 100


def test_captions_are_written_on_the_animations_at_the_input_size(clip):
    frames, maps = clip
    captions = [f"frame {t + 1}/6  ironing" for t in range(6)]
    plain = visualize.animation_frames(frames, maps)
    written = visualize.animation_frames(frames, maps, captions)
    assert written.shape == plain.shape == (6, 32, 80, 3)
    changed = (written != plain).any(-1)
    assert changed[:, :16].any() and not changed[:, 20:].any()       # the caption sits in the top band only
    video = iio.imread(visualize.mp4_bytes(frames, maps, fps=5, captions=captions), index=None, plugin="pyav")
    assert video.shape == (6, 32, 80, 3)
    assert np.abs(video.astype(int) - written).mean() < 12            # H.264 is lossy


def test_shared_frames_and_per_frame_shares():
    distinct = np.random.default_rng(0).random((16, 4, 4))
    assert visualize.shared_frames(distinct) == 1
    assert visualize.shared_frames(np.repeat(distinct[:2], 8, axis=0)) == 8   # Grad-CAM on I3D: 2 steps, 16 frames
    maps = np.zeros((4, 2, 2))
    maps[1] = 1.0
    maps[2] = 3.0
    np.testing.assert_allclose(visualize.frame_shares(maps), [0, 0.25, 0.75, 0])
    np.testing.assert_allclose(visualize.frame_shares(np.zeros((4, 2, 2))), [0.25] * 4)


def test_figure_draws_the_per_frame_curves_and_the_note(clip):
    frames, maps = clip
    plain = iio.imread(visualize.figure_png(frames, [("a", maps)], title="t"), extension=".png")
    curve = visualize.FrameCurve("top 10%", maps, np.linspace(0, 1, 6))
    full = iio.imread(visualize.figure_png(frames, [("a", maps)], title="t", note="maps shared by 3 frames",
                                           curves=[curve]), extension=".png")
    assert full.shape[0] > plain.shape[0] + 150 and full.shape[1] == plain.shape[1]
