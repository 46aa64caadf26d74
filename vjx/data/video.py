"""Reading videos: frame folders (the original toolkit's layout) and video files.

A *frame folder* holds one image per frame (``.png``/``.jpg``/``.jpeg``), in name order, as in the
original's ``sampled_frames/<label>-<id>/000000001.png``. A *video file* (mp4, avi, webm, gif, ...)
is decoded as a stream through ``imageio.v3`` with the PyAV plugin, so a wrong frame count in the
header cannot over- or under-allocate. Either way the result is a :class:`Video` of uint8 RGB frames.

Decoding is defensive: the decoded size is checked against ``max_bytes`` frame by frame (and, for
folders, before any pixel is decoded), grayscale/palette/RGBA become RGB, frames of different
shapes are an error, rotation metadata (EXIF orientation, the mp4 display matrix) is applied, and
every decoder or Pillow error -- Pillow's decompression-bomb limit included -- becomes one
:class:`~vjx.errors.VjxError` naming the file.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import struct
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps

from vjx.errors import VjxError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".gif", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".ogv",
                  ".wmv", ".flv")
# 4 GiB of uint8 RGB is ~18k frames at 256 x 340: far beyond any clip vjx explains.
DEFAULT_MAX_BYTES = 4 * 1024**3


@dataclasses.dataclass(frozen=True, eq=False)
class Video:
    """A decoded video.

    Attributes:
      frames: uint8 ``N x H x W x 3`` RGB, read-only.
      name: the folder name or the file stem, e.g. ``"ironing-3sEk_w2T8Fw_15_10"``.
      fps: frames per second of a video file; ``None`` for a frame folder.
      label: the name up to its first ``"-"`` (the original's rule), e.g. ``"ironing"``.
      path: where it was read from.
    """

    frames: np.ndarray
    name: str
    fps: float | None
    label: str
    path: str

    @property
    def num_frames(self) -> int:
        """N, the number of frames."""
        return int(self.frames.shape[0])


def label_from_name(name: str) -> str:
    """The original's label rule: ``"ironing-3sEk_w2T8Fw_15_10"`` -> ``"ironing"``."""
    return name.split("-", 1)[0]


def video_name(path: str | os.PathLike) -> str:
    """A video's name: a frame folder's own name or a video file's stem.

    ``.../ironing-3sEk_w2T8Fw_15_10/`` -> ``"ironing-3sEk_w2T8Fw_15_10"``, ``clip.mp4`` -> ``"clip"``.
    A folder given as ``.`` or through a symlink keeps the name it was given by (not resolved).
    """
    p = pathlib.Path(path)
    return pathlib.Path(os.path.abspath(p)).name if p.is_dir() else p.stem


def read_video(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Video:
    """Reads a frame folder or a video file into uint8 RGB frames.

    Args:
      path: a folder of ``.png``/``.jpg``/``.jpeg`` frames (sorted by name) or a video file.
      max_bytes: refuse to hold more than this many bytes of decoded frames (``N * H * W * 3``).

    Returns:
      A :class:`Video` with frames uint8 ``N x H x W x 3``.

    Raises:
      VjxError: missing path, empty folder, unreadable/corrupt file, mixed frame sizes, or more
        decoded data than ``max_bytes``.

    Example:
      >>> video = read_video(sample_video_path())   # doctest: +SKIP
      >>> video.frames.shape                         # doctest: +SKIP
      (90, 256, 456, 3)
    """
    p = pathlib.Path(path)
    if not p.exists():
        raise VjxError(f"video {str(p)!r} does not exist; pass a frame folder or a video file.")
    if p.is_dir():
        frames, fps = _read_folder(p, max_bytes), None
    elif p.suffix.lower() in FRAME_SUFFIXES:
        raise VjxError(f"video {str(p)!r} is a single image; pass the folder that holds the frames.")
    else:
        frames, fps = _read_file(p, max_bytes)
    name = video_name(p)
    frames.flags.writeable = False
    return Video(frames=frames, name=name, fps=fps, label=label_from_name(name), path=str(p))


def frame_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The frame images of a folder, sorted by name (the original's order)."""
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in FRAME_SUFFIXES and f.is_file())


def list_videos(directory: str | os.PathLike) -> list[str]:
    """The videos of a "videos dir": its frame folders and video files, sorted by name.

    Raises:
      VjxError: the directory is missing or holds no frame folder and no video file.
    """
    d = pathlib.Path(directory)
    if not d.is_dir():
        raise VjxError(f"videos dir {str(d)!r} is not a directory; pass a folder of frame folders "
                       "or video files.")
    found = [str(e) for e in sorted(d.iterdir())
             if (e.is_dir() and frame_files(e)) or (e.is_file() and e.suffix.lower() in VIDEO_SUFFIXES)]
    if not found:
        raise VjxError(f"videos dir {str(d)!r} holds no frame folder ({'/'.join(FRAME_SUFFIXES)} "
                       f"files) and no video file ({', '.join(VIDEO_SUFFIXES)}).")
    return found


def _too_big(where: str, nbytes: int, max_bytes: int) -> VjxError:
    return VjxError(f"video {where!r} decodes to {nbytes / 2**20:.0f} MiB or more, above max_bytes="
                    f"{max_bytes} ({max_bytes / 2**20:.0f} MiB); trim or downscale it, or raise max_bytes.")


def _stack(frames: Iterable[np.ndarray], where: str, max_bytes: int) -> np.ndarray:
    """Collects RGB frames, checking shapes agree and the running size stays within ``max_bytes``."""
    out: list[np.ndarray] = []
    for frame in frames:
        if out and frame.shape != out[0].shape:
            raise VjxError(f"video {where!r}: frame {len(out)} is {frame.shape[1]}x{frame.shape[0]} "
                           f"but frame 0 is {out[0].shape[1]}x{out[0].shape[0]}; all frames must "
                           "have one size.")
        if (len(out) + 1) * frame.nbytes > max_bytes:
            raise _too_big(where, (len(out) + 1) * frame.nbytes, max_bytes)
        out.append(frame)
    if not out:
        raise VjxError(f"video {where!r} has no frames; check the file or folder.")
    return np.stack(out)


def _read_folder(folder: pathlib.Path, max_bytes: int) -> np.ndarray:
    files = frame_files(folder)
    empty = next((f for f in files if f.stat().st_size == 0), None)
    if empty is not None:
        raise VjxError(f"frame {str(empty)!r} is an empty file (0 bytes); replace or remove it.")
    if not files:
        raise VjxError(f"frame folder {str(folder)!r} holds no {'/'.join(FRAME_SUFFIXES)} files; "
                       "put the frames there or pass a video file.")
    width, height = _open_image(files[0]).size
    if len(files) * width * height * 3 > max_bytes:
        raise _too_big(str(folder), len(files) * width * height * 3, max_bytes)
    return _stack((_load_image(f) for f in files), str(folder), max_bytes)


def _open_image(file: pathlib.Path) -> Image.Image:
    """Opens (lazily) an image, with Pillow's decompression-bomb warning promoted to an error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(file)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise VjxError(f"frame {str(file)!r} has more pixels than Pillow's decompression-bomb limit "
                       f"(PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}); downscale the frames, "
                       f"or raise that limit if you trust the file. ({e})") from e
    except (OSError, ValueError, SyntaxError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise VjxError(f"frame {str(file)!r} is not a readable image ({e}); replace or remove it.") from e


def _load_image(file: pathlib.Path) -> np.ndarray:
    """One frame as uint8 ``H x W x 3``, EXIF orientation applied."""
    image = _open_image(file)
    try:
        with image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:
        raise VjxError(f"frame {str(file)!r} is corrupt or truncated ({e}); replace or remove it.") from e


def _read_file(file: pathlib.Path, max_bytes: int) -> tuple[np.ndarray, float | None]:
    """Decodes a video file as a stream with imageio's PyAV plugin; returns frames and fps."""
    import av
    import imageio.v3 as iio

    where = str(file)
    if file.stat().st_size == 0:
        raise VjxError(f"video {where!r} is an empty file (0 bytes); copy it again or pass another video.")
    try:
        meta = iio.immeta(file, plugin="pyav")
        quarter_turns = _quarter_turns(_display_matrix(file))
        frames = _stack(_rotated(iio.imiter(file, plugin="pyav", format="rgb24"), quarter_turns),
                        where, max_bytes)
    except VjxError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError, IndexError, StopIteration) as e:
        raise VjxError(f"video {where!r} cannot be decoded ({type(e).__name__}: {e}); check that it "
                       "is a complete video file (re-encode it to H.264 mp4 with ffmpeg if needed) "
                       "or extract its frames into a folder.") from e
    fps = meta.get("fps")
    return frames, (float(fps) if fps and math.isfinite(fps) else None)


def _display_matrix(file: pathlib.Path) -> bytes | None:
    """The first video frame's display matrix (36 bytes of side data), or None if it has none.

    Read with PyAV itself: imageio's per-frame metadata breaks on PyAV 18.1.1, whose side data
    iterates over its types instead of its entries; a lookup by name works on 18.1.0 and 18.1.1 alike.
    """
    import av

    with av.open(str(file)) as container:
        for frame in container.decode(video=0):
            try:
                return bytes(frame.side_data["DISPLAYMATRIX"])
            except KeyError:
                return None
    return None


def _rotated(frames: Iterator[np.ndarray], quarter_turns: int) -> Iterator[np.ndarray]:
    for frame in frames:
        yield np.ascontiguousarray(np.rot90(frame, quarter_turns)) if quarter_turns else frame


def _quarter_turns(display_matrix: bytes | None) -> int:
    """Counter-clockwise quarter turns a display matrix asks for (FFmpeg's convention).

    The matrix is 9 int32 values, the first four in 16.16 fixed point; the rotation angle is
    ``-atan2(b, a)`` after normalising the columns (``av_display_rotation_get``), rounded to 90°.
    """
    if not display_matrix or len(display_matrix) != 36:
        return 0
    m = struct.unpack("<9i", display_matrix)
    a, b, c, d = (v / 65536.0 for v in (m[0], m[1], m[3], m[4]))
    scale_0, scale_1 = math.hypot(a, c), math.hypot(b, d)
    if scale_0 == 0 or scale_1 == 0:
        return 0
    degrees = -math.degrees(math.atan2(b / scale_1, a / scale_0))
    return round(degrees / 90) % 4
