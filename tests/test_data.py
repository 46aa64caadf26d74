"""vjx.data: reading frame folders and videos, sampling, preprocessing, label sets, the demo clip."""
import json
import pathlib
import subprocess
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

import vjx
from vjx.data import labels as labels_mod
from vjx.data import (LABEL_SETS, close_labels, denormalize, label_set_size, list_videos, load_labels,
                      preprocess_frames, read_video, resolve_label, sample_frames, sample_indices,
                      sample_video_path, video_name)
from vjx.data.preprocess import resized_size
from vjx.errors import VjxError

KINETICS_MEAN = (0.43216, 0.39467, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.21699)


def _write_frames(folder: pathlib.Path, frames, suffix=".png") -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i + 1:09d}{suffix}")
    return folder


def _random_frames(n, h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- reading the shared clips

@pytest.mark.parametrize("dataset,label_set", [("kinetics", "kinetics400"),
                                               ("epic-kitchens-noun", "epic-kitchens-noun")])
def test_shared_frame_folders(shared_data, dataset, label_set):
    folders = list_videos(shared_data / dataset / "sampled_frames")
    assert len(folders) == (4 if dataset == "kinetics" else 8)
    classes = load_labels(label_set)
    for folder in folders:
        video = read_video(folder)
        name = pathlib.Path(folder).name
        assert video.frames.shape == (16, 256, 344, 3) and video.frames.dtype == np.uint8
        assert video.name == name and video.label == name.split("-")[0] and video.fps is None
        assert video.path == folder and video.num_frames == 16
        assert resolve_label(video.label, classes) is not None, video.label
        assert not video.frames.flags.writeable
    # Frames come in name order, pixel-exact.
    last = sorted(pathlib.Path(folders[-1]).glob("*.png"))[-1]
    np.testing.assert_array_equal(video.frames[-1], np.asarray(Image.open(last).convert("RGB")))


def test_label_from_name_is_text_before_first_dash(shared_data):
    video = read_video(shared_data / "kinetics" / "sampled_frames" / "ironing-3sEk_w2T8Fw_15_10")
    assert video.label == "ironing"
    video = read_video(shared_data / "epic-kitchens-noun" / "sampled_frames" / "cupboard-open-P03_05_6777")
    assert video.label == "cupboard"


def test_list_videos_finds_folders_and_files_only(tmp_path):
    _write_frames(tmp_path / "b-clip", _random_frames(2))
    (tmp_path / "a.mp4").write_bytes(b"")       # listed; decoding is read_video's business
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert list_videos(tmp_path) == [str(tmp_path / "a.mp4"), str(tmp_path / "b-clip")]
    with pytest.raises(VjxError, match="holds no frame folder"):
        list_videos(tmp_path / "empty")
    with pytest.raises(VjxError, match="not a directory"):
        list_videos(tmp_path / "missing")


def test_video_name_is_the_folder_or_file_name_as_given(tmp_path, monkeypatch):
    folder = _write_frames(tmp_path / "ironing-abc", _random_frames(2))
    (tmp_path / "abseiling-link").symlink_to(folder)
    assert video_name(folder) == read_video(folder).name == "ironing-abc"
    assert video_name(tmp_path / "abseiling-link") == read_video(tmp_path / "abseiling-link").name == "abseiling-link"
    assert read_video(tmp_path / "abseiling-link").label == "abseiling"
    monkeypatch.chdir(folder)
    assert video_name(".") == "ironing-abc" and video_name(tmp_path / "clip.v2.mp4") == "clip.v2"


# ---------------------------------------------------------------- the bundled demo clip

def test_bundled_clip_decodes():
    path = pathlib.Path(sample_video_path())
    assert path.is_file() and path.stat().st_size < 400_000
    credits = (path.parent / "CREDITS.txt").read_text()
    assert "Blender Foundation" in credits and "CC-BY 3.0" in credits
    video = vjx.read_video(path)
    assert video.frames.shape == (90, 256, 456, 3) and video.fps == 25.0
    assert video.name == "bigbuckbunny_excerpt"
    assert video.frames.std() > 30                           # real content, not a blank stream
    assert np.abs(np.diff(video.frames[::10].astype(np.int16), axis=0)).mean() > 5   # it moves
    clip = vjx.get_spec("i3d").prepare(video.frames)
    assert clip.shape == (16, 224, 224, 3) and -1.0 <= clip.min() < clip.max() <= 1.0


def test_rotation_metadata_matches_ffmpeg(tmp_path):
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    rotated, reference = tmp_path / "rot.mp4", tmp_path / "first.png"
    subprocess.run([ffmpeg, "-loglevel", "error", "-display_rotation", "90", "-i", sample_video_path(),
                    "-frames:v", "3", "-c", "copy", str(rotated)], check=True)
    # The ffmpeg command line applies the display matrix itself: an independent reference.
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(rotated), "-frames:v", "1", str(reference)],
                   check=True)
    video = read_video(rotated)
    assert video.frames.shape[1:] == (456, 256, 3)
    np.testing.assert_array_equal(video.frames[0], iio.imread(reference))


def test_gif_and_color_modes_become_rgb(tmp_path):
    gray = np.tile(np.arange(0, 240, 10, dtype=np.uint8)[:, None], (1, 32))
    folder = tmp_path / "modes"
    folder.mkdir()
    Image.fromarray(gray, "L").save(folder / "1.png")
    rgba = np.dstack([np.full((24, 32, 3), 100, np.uint8), np.full((24, 32), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "2.png")
    Image.fromarray(np.full((24, 32, 3), 50, np.uint8)).save(folder / "3.jpg", quality=100)
    frames = read_video(folder).frames
    assert frames.shape == (3, 24, 32, 3)
    np.testing.assert_array_equal(frames[0], np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(frames[1], 100)
    assert np.abs(frames[2].astype(int) - 50).max() <= 2
    gif = tmp_path / "clip.gif"
    iio.imwrite(gif, np.stack([np.roll(gray, 3 * k, axis=0) for k in range(5)]), extension=".gif",
                duration=100)
    video = read_video(gif)
    assert video.frames.shape == (5, 24, 32, 3) and video.name == "clip"


def test_exif_orientation_applied(tmp_path):
    image = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6                                          # "rotate 90 CW to display"
    folder = tmp_path / "exif"
    folder.mkdir()
    image.save(folder / "1.jpg", exif=exif)
    assert read_video(folder).frames.shape == (1, 40, 20, 3)


# ---------------------------------------------------------------- reading errors

def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(VjxError, match="does not exist"):
        read_video(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no frames")
    with pytest.raises(VjxError, match="holds no .png"):
        read_video(tmp_path / "empty")


def test_single_image_is_refused(tmp_path):
    folder = _write_frames(tmp_path / "f", _random_frames(1))
    with pytest.raises(VjxError, match="single image"):
        read_video(folder / "000000001.png")


def test_corrupt_and_truncated_png(tmp_path):
    folder = _write_frames(tmp_path / "garbage", _random_frames(2))
    (folder / "000000003.png").write_bytes(b"\x00not a png at all" * 10)
    with pytest.raises(VjxError, match="000000003.png.*not a readable image"):
        read_video(folder)
    folder = _write_frames(tmp_path / "truncated", _random_frames(2, 64, 64))
    data = (folder / "000000002.png").read_bytes()
    (folder / "000000002.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(VjxError, match="000000002.png.*corrupt or truncated"):
        read_video(folder)


def test_corrupt_and_truncated_mp4(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(VjxError, match="garbage.mp4.*cannot be decoded"):
        read_video(garbage)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(pathlib.Path(sample_video_path()).read_bytes()[:3000])
    with pytest.raises(VjxError, match="truncated.mp4"):
        read_video(truncated)



def test_an_empty_file_is_called_empty(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"")
    with pytest.raises(VjxError, match=r"clip.mp4' is an empty file \(0 bytes\)"):
        read_video(tmp_path / "clip.mp4")
    folder = _write_frames(tmp_path / "frames", _random_frames(2))
    (folder / "000000003.png").write_bytes(b"")
    with pytest.raises(VjxError, match=r"000000003.png' is an empty file"):
        read_video(folder)

def test_mixed_frame_sizes(tmp_path):
    folder = _write_frames(tmp_path / "mixed", _random_frames(2))
    Image.fromarray(_random_frames(1, 24, 30)[0]).save(folder / "000000003.png")
    with pytest.raises(VjxError, match="frame 2 is 30x24 but frame 0 is 32x24"):
        read_video(folder)


def test_memory_limit(tmp_path):
    folder = _write_frames(tmp_path / "f", _random_frames(4))
    assert read_video(folder, max_bytes=4 * 24 * 32 * 3).num_frames == 4
    with pytest.raises(VjxError, match="max_bytes"):
        read_video(folder, max_bytes=4 * 24 * 32 * 3 - 1)
    with pytest.raises(VjxError, match="bigbuckbunny_excerpt.mp4.*max_bytes"):
        read_video(sample_video_path(), max_bytes=10 * 256 * 456 * 3)


def test_decompression_bomb_limit(tmp_path, monkeypatch):
    folder = _write_frames(tmp_path / "f", _random_frames(1, 40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)      # 1600 px: a warning in Pillow
    with pytest.raises(VjxError, match="decompression-bomb"):
        read_video(folder)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)       # > 2x the limit: an error in Pillow
    with pytest.raises(VjxError, match="decompression-bomb"):
        read_video(folder)


# ---------------------------------------------------------------- sampling

@pytest.mark.parametrize("n,t,expected", [
    (16, 16, list(range(16))),
    (40, 16, list(range(8, 40, 2))),          # r = 2: 0..38 is 20 indices, keep the last 16
    (33, 16, list(range(2, 33, 2))),          # r = 2: 0..32 is 17 indices
    (50, 8, [6, 12, 18, 24, 30, 36, 42, 48]),  # r = 6: 0..48 is 9 indices
    (90, 16, list(range(10, 90, 5))),          # the demo clip: r = 5, 0..85 is 18 indices
])
def test_long_range_first_indices(n, t, expected):
    np.testing.assert_array_equal(sample_indices(n, t), expected)


def test_sample_frames_takes_those_frames():
    frames = np.arange(40, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    np.testing.assert_array_equal(sample_frames(frames, 16)[:, 0, 0, 0], range(8, 40, 2))


def test_too_few_frames_and_repeat_mode():
    frames = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    with pytest.raises(VjxError, match="has 10 frames but the model needs 16"):
        sample_frames(frames, 16)
    with pytest.warns(UserWarning, match="10 frames.*needs 16.*repeated"):
        picked = sample_frames(frames, 16, repeat=True)
    np.testing.assert_array_equal(picked[:, 0, 0, 0], [0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 6, 7, 8, 8, 9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample_indices(16, 16, repeat=True)                   # enough frames: no warning
    with pytest.raises(VjxError, match="no frames"):
        sample_indices(0, 16, repeat=True)
    with pytest.raises(VjxError, match="N x H x W x 3"):
        sample_frames(frames[0], 16)


# ---------------------------------------------------------------- preprocessing

def test_preprocess_crop_and_normalisation_by_hand():
    t, h, w = 2, 100, 200
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    frames = np.stack([np.dstack([cols, rows, np.full_like(rows, 10 * k)]) for k in range(t)])
    frames = frames.astype(np.uint8)
    out = preprocess_frames(frames, resize=100, crop=50, mean=KINETICS_MEAN, std=KINETICS_STD)
    assert out.shape == (2, 50, 50, 3) and out.dtype == np.float32
    # Short side already 100: no resampling; crop offsets top = 25, left = 75.
    i, j = 7, 31
    expected = (np.array([75 + j, 25 + i, 10], np.float32) / 255 - KINETICS_MEAN) / KINETICS_STD
    np.testing.assert_allclose(out[1, i, j], expected, rtol=1e-6)
    np.testing.assert_allclose(denormalize(out, mean=KINETICS_MEAN, std=KINETICS_STD),
                               frames[:, 25:75, 75:125] / 255.0, atol=1e-6)


def test_preprocess_keeps_aspect_and_antialiases():
    assert resized_size(256, 344, 128) == (128, 172)
    assert resized_size(300, 200, 100) == (150, 100)
    color = np.array([200, 100, 50], np.uint8)
    out = preprocess_frames(np.broadcast_to(color, (1, 60, 80, 3)).copy(), resize=30, crop=30,
                            mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(out, np.broadcast_to(color / 255.0, (1, 30, 30, 3)), atol=1e-6)
    # A one-pixel checkerboard halved: antialiased bilinear gives mid-grey, a 2-tap gather 0 or 255.
    board = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    out = preprocess_frames(np.repeat(board[None, ..., None], 3, axis=3), resize=32, crop=16,
                            mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(out, 0.5, atol=0.01)


def test_registry_prepare_on_shared_clip(shared_data):
    frames = read_video(shared_data / "kinetics" / "sampled_frames" / "abseiling-BkIhp07ge9E_22_10").frames
    x = vjx.get_spec("r2plus1d_18").prepare(frames)
    assert x.shape == (16, 112, 112, 3) and x.dtype == np.float32
    assert 0.3 < x.std() < 3


def test_preprocess_errors():
    ok = np.zeros((2, 20, 30, 3), np.uint8)
    with pytest.raises(VjxError, match="uint8"):
        preprocess_frames(ok.astype(np.float32), resize=20, crop=10, mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(VjxError, match="T x H x W x 3"):
        preprocess_frames(ok[..., :1], resize=20, crop=10, mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(VjxError, match="crop=40 does not fit frames of 30x20"):
        preprocess_frames(ok, resize=20, crop=40, mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(VjxError, match="std > 0"):
        preprocess_frames(ok, resize=20, crop=10, mean=(0,) * 3, std=(1, 0, 1))


# ---------------------------------------------------------------- label sets

def test_label_sets_from_shared_data(shared_data):
    for name, size in LABEL_SETS.items():
        assert len(load_labels(name, shared_data)) == size == label_set_size(name)
        assert load_labels(name) == load_labels(name, shared_data)  # the shipped lists are the originals'
    kinetics = load_labels("kinetics400")
    assert kinetics[0] == "abseiling" and resolve_label("abseiling", kinetics) == 0
    assert resolve_label("Air_Drumming", kinetics) == kinetics.index("air drumming")
    assert resolve_label("not a class", kinetics) is None
    assert "abseiling" in close_labels("abseilin", kinetics)
    assert load_labels("epic-kitchens-noun")[:2] == ("Nothing", "pan")
    assert load_labels("epic-kitchens-verb")[:2] == ("take", "put")


def test_labels_dir_env_override(tmp_path, monkeypatch):
    (tmp_path / "kinetics").mkdir()
    names = [f"class {i}" for i in range(400)]
    (tmp_path / "kinetics" / "classes.json").write_text(json.dumps(names))
    monkeypatch.setenv("VJX_LABELS_DIR", str(tmp_path))
    assert load_labels("kinetics400") == tuple(names)
    # A directory named explicitly is the only one searched: no silent fallback to the shipped lists.
    with pytest.raises(VjxError, match=r"EPIC_noun_classes.csv.*not found in VJX_LABELS_DIR.*unset VJX_LABELS_DIR"):
        load_labels("epic-kitchens-noun")


def test_label_errors(tmp_path, monkeypatch):
    with pytest.raises(VjxError, match="unknown label set 'kinetics600'.*kinetics400"):
        load_labels("kinetics600")
    with pytest.raises(VjxError, match="unknown label set"):
        label_set_size("ucf50")
    with pytest.raises(VjxError, match=r"kinetics/classes.json.*not found in labels_dir.*put the original "
                                       r"toolkit's file at .*pass labels_dir=None"):
        load_labels("kinetics400", tmp_path)
    (tmp_path / "kinetics").mkdir()
    (tmp_path / "kinetics" / "classes.json").write_text(json.dumps(["a", "b"]))
    with pytest.raises(VjxError, match="lists 2 classes but kinetics400 has 400"):
        load_labels("kinetics400", tmp_path)
    (tmp_path / "epic-kitchens-verb").mkdir()
    (tmp_path / "epic-kitchens-verb" / "EPIC_verb_classes.csv").write_text("id,name\n0,take\n")
    with pytest.raises(VjxError, match="not a valid epic-kitchens-verb file"):
        load_labels("epic-kitchens-verb", tmp_path)


@pytest.mark.parametrize("label_set, first, last", [("kinetics400", "abseiling", "zumba"),
                                                    ("epic-kitchens-noun", "Nothing", "trouser"),
                                                    ("epic-kitchens-verb", "take", "reverse")])
def test_fresh_installation_names_real_classes(tmp_path, monkeypatch, label_set, first, last):
    """With no labels_dir and no VJX_LABELS_DIR, anywhere, the names come from the package itself."""
    monkeypatch.delenv("VJX_LABELS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    path = labels_mod.label_file(label_set)
    assert path.is_relative_to(pathlib.Path(vjx.__file__).resolve().parent / "assets")
    names = load_labels(label_set)
    assert (len(names), names[0], names[-1]) == (label_set_size(label_set), first, last)
    assert len(set(names)) == len(names)


def test_shared_data_not_copied_into_package():
    package = pathlib.Path(vjx.__file__).parent
    shipped = {p.name for p in package.rglob("*") if p.is_file()}
    assert not shipped & {"classes.json", "EPIC_noun_classes.csv", "EPIC_verb_classes.csv"}
    assert not list(package.rglob("000000001.png"))
