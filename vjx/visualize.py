"""Pictures of attribution maps: heatmaps, overlays, figure grids and side-by-side GIFs.

Everything here is numpy/matplotlib at the boundary: frames are uint8 ``T x H x W x 3``, maps are
float ``T x h x w`` (any resolution; they are resized to the frames bilinearly). Functions return
arrays or encoded bytes; writing files (atomically) is the caller's business, see
:mod:`vjx.pipeline.files`. The default colormap is matplotlib's perceptually uniform ``"inferno"``.

    from vjx import visualize
    png = visualize.figure_png(frames, [("top 10%", masks[0])], title="ironing",
                               curves=[visualize.FrameCurve("top 10%", masks[0], frame_probs)])
    captions = [f"t={t}  ironing" for t in range(len(frames))]
    gif = visualize.gif_bytes(frames, masks[0], fps=4, captions=captions)
    mp4 = visualize.mp4_bytes(frames, masks[0], fps=4, captions=captions)
"""
from __future__ import annotations

import dataclasses
import io
import logging
from typing import Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vjx.errors import VjxError

matplotlib.use("Agg")
# Under absl (the scripts) the root logger is at INFO, and building matplotlib's font cache on a
# fresh machine would print "generated new fontManager" in absl's format.
logging.getLogger("matplotlib").setLevel(logging.WARNING)
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the non-interactive backend)

DEFAULT_CMAP = "inferno"


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of float ``T x h x w`` maps to ``T x H x W`` (``size = (H, W)``)."""
    maps = np.asarray(maps, np.float32)
    if maps.shape[1:] == tuple(size):
        return maps
    height, width = size
    return np.stack([np.asarray(Image.fromarray(m, mode="F").resize((width, height), Image.BILINEAR))
                     for m in maps])


def heatmap(maps: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """Colours float maps in ``[0, 1]`` (``... x H x W``) with ``cmap``: uint8 ``... x H x W x 3``."""
    rgba = matplotlib.colormaps[cmap](np.clip(np.asarray(maps, np.float32), 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(frames: np.ndarray, maps: np.ndarray, *, alpha: float = 0.5,
            cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """Blends the coloured maps over the frames.

    Args:
      frames: uint8 ``T x H x W x 3``.
      maps: float ``T x h x w`` in ``[0, 1]``; resized to ``H x W``.
      alpha: weight of the heatmap, in ``[0, 1]``.
    Returns:
      uint8 ``T x H x W x 3``.
    """
    frames = np.asarray(frames)
    maps = np.asarray(maps)
    if frames.ndim != 4 or frames.shape[-1] != 3 or maps.ndim != 3 or len(maps) != len(frames):
        raise VjxError(f"overlay needs frames T x H x W x 3 and maps T x h x w with the same T, got "
                       f"{frames.shape} and {maps.shape}")
    colours = heatmap(resize_maps(maps, frames.shape[1:3]), cmap).astype(np.float32)
    blended = (1.0 - alpha) * frames.astype(np.float32) + alpha * colours
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class FrameCurve:
    """One map row's per-frame importance, drawn under the figure's frame grid.

    Attributes:
      label: the row's label.
      maps: float ``T x h x w``: the curve shows each frame's share of the map's total.
      probabilities: float ``T`` or None: the target probability with only that frame's mask applied.
    """

    label: str
    maps: np.ndarray
    probabilities: np.ndarray | None = None


def frame_shares(maps: np.ndarray) -> np.ndarray:
    """Each frame's share of a map's total: float ``T x h x w`` -> ``T`` summing to 1 (uniform if all zero)."""
    totals = np.asarray(maps, np.float64).reshape(len(maps), -1).sum(axis=1)
    return totals / totals.sum() if totals.sum() > 0 else np.full(len(maps), 1.0 / len(maps))


def shared_frames(maps: np.ndarray) -> int:
    """How many consecutive frames share each map (1 when they differ): e.g. 8 for Grad-CAM on I3D,
    whose layer has 2 time steps for 16 frames."""
    maps = np.asarray(maps)
    changes = [0] + [t for t in range(1, len(maps)) if not np.array_equal(maps[t], maps[t - 1])] + [len(maps)]
    runs = set(np.diff(changes).tolist())
    return runs.pop() if len(runs) == 1 and len(maps) > 1 else 1


def figure_png(frames: np.ndarray, rows: Sequence[tuple[str, np.ndarray]], *, title: str = "",
               note: str = "", curves: Sequence[FrameCurve] = (), cmap: str = DEFAULT_CMAP,
               max_columns: int = 16, dpi: int = 100) -> bytes:
    """A grid figure: the frames on top, then one overlay row per map, then the per-frame curves; PNG.

    Args:
      frames: uint8 ``T x H x W x 3``.
      rows: ``(row label, float T x h x w maps in [0, 1])`` per overlay row (one per area or method).
      title: the figure title (class, probabilities, what each mask keeps...); may span lines.
      note: a line under the figure (e.g. that maps are shared by several frames).
      curves: per-frame importance under the grid (each frame's share of the map; with
        probabilities, the target probability with only that frame's mask on a second axis).
      max_columns: at most this many evenly spaced frames are shown.
    Returns:
      the PNG file's bytes.
    """
    frames = np.asarray(frames)
    shown = np.unique(np.linspace(0, len(frames) - 1, min(max_columns, len(frames))).round().astype(int))
    n_rows, n_cols = 1 + len(rows), len(shown)
    title_h, note_h, curve_h = 0.2 * (title.count("\n") + 1) + 0.25 if title else 0.0, 0.3 if note else 0.0, 1.7
    height = 1.3 * n_rows + (curve_h + 0.35 if curves else 0.0) + title_h + note_h + 0.2
    fig = plt.figure(figsize=(max(1.3 * n_cols + 1.2, 8.0), height))
    try:
        grid = fig.add_gridspec(n_rows + bool(curves), n_cols,
                                height_ratios=[1.3] * n_rows + ([curve_h] if curves else []),
                                top=1 - (title_h + 0.1) / height, bottom=(note_h + (0.45 if curves else 0.1)) / height,
                                left=0.08, right=0.94 if any(c.probabilities is not None for c in curves) else 0.98,
                                hspace=0.25, wspace=0.04)
        images = [frames[shown]] + [overlay(frames[shown], np.asarray(maps)[shown], cmap=cmap) for _, maps in rows]
        for row, (name, pictures) in enumerate(zip(["input"] + [name for name, _ in rows], images)):
            for col, t in enumerate(shown):
                ax = fig.add_subplot(grid[row, col])
                ax.imshow(pictures[col])
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if row == 0:
                    ax.set_title(f"frame {t}", fontsize=7)
                if col == 0:
                    ax.set_ylabel(name, fontsize=8)
        if curves:
            _draw_curves(fig.add_subplot(grid[n_rows, :]), curves, len(frames))
        if title:
            fig.suptitle(title, fontsize=8.5, y=1 - 0.05 / height, va="top")
        if note:
            fig.text(0.01, 0.05 / height, note, fontsize=8, va="bottom", style="italic")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()
    finally:
        plt.close(fig)


def _draw_curves(ax, curves: Sequence[FrameCurve], num_frames: int) -> None:
    """Per-frame share of each map (solid, left axis) and the target probability with only that frame's
    mask (dashed, right axis)."""
    t = np.arange(num_frames)
    colours = plt.get_cmap("tab10")
    top = 0.0
    for i, curve in enumerate(curves):
        shares = frame_shares(curve.maps)
        top = max(top, float(shares.max()))
        ax.plot(t, shares, "-o", ms=2.5, lw=1.2, color=colours(i), label=f"{curve.label}: share")
    ax.set_xlim(-0.5, num_frames - 0.5)
    ax.set_xticks(t if num_frames <= 32 else t[::max(1, num_frames // 16)])
    ax.set_xlabel("frame", fontsize=7)
    ax.set_ylabel("share of the map", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_ylim(0, 1.4 * top)                                 # room for the legend above the curves
    handles, labels = ax.get_legend_handles_labels()
    if any(curve.probabilities is not None for curve in curves):
        right = ax.twinx()
        for i, curve in enumerate(curves):
            if curve.probabilities is not None:
                right.plot(t, curve.probabilities, "--", lw=1.0, color=colours(i),
                           label=f"{curve.label}: p with this frame's mask alone")
        right.set_ylabel("target p", fontsize=7)
        right.tick_params(labelsize=6)
        right.set_ylim(0, 1.4 * max(float(np.max(c.probabilities)) for c in curves if c.probabilities is not None)
                       + 1e-6)
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, fontsize=6, loc="upper left", ncol=2, frameon=False)


def side_by_side(frames: np.ndarray, maps: np.ndarray, *, alpha: float = 0.5,
                 cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """The original frames and their overlays next to each other: uint8 ``T x H x 2W x 3``."""
    return np.concatenate([np.asarray(frames), overlay(frames, maps, alpha=alpha, cmap=cmap)], axis=2)


def animation_frames(frames: np.ndarray, maps: np.ndarray, captions: Sequence[str] = (), *,
                     alpha: float = 0.5, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """:func:`side_by_side` frames with each frame's caption (frame index, class) written on it."""
    combined = side_by_side(frames, maps, alpha=alpha, cmap=cmap)
    if not captions:
        return combined
    size = max(9, combined.shape[1] // 16)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:                                         # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    out = []
    for frame, caption in zip(combined, captions):
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        box = draw.textbbox((3, 2), caption, font=font)
        draw.rectangle((0, 0, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
        draw.text((3, 2), caption, fill=(255, 255, 255), font=font)
        out.append(np.asarray(image))
    return np.stack(out)


def gif_bytes(frames: np.ndarray, maps: np.ndarray, *, fps: float = 4.0, captions: Sequence[str] = (),
              alpha: float = 0.5, cmap: str = DEFAULT_CMAP) -> bytes:
    """An endlessly looping animated GIF of :func:`animation_frames`, as bytes.

    Args:
      frames: uint8 ``T x H x W x 3``.
      maps: float ``T x h x w`` in ``[0, 1]``.
      fps: playback speed (frames per second).
      captions: ``T`` lines written on the frames (e.g. frame index and class), or none.
    """
    images = [Image.fromarray(frame) for frame in animation_frames(frames, maps, captions, alpha=alpha, cmap=cmap)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(int(round(1000.0 / max(fps, 1e-3))), 20), loop=0)
    return buffer.getvalue()


def mp4_bytes(frames: np.ndarray, maps: np.ndarray, *, fps: float = 4.0, captions: Sequence[str] = (),
              alpha: float = 0.5, cmap: str = DEFAULT_CMAP) -> bytes:
    """An H.264 MP4 (yuv420p, plays in browsers) of :func:`animation_frames`, encoded with PyAV, as bytes.

    Args: as :func:`gif_bytes`; odd frame sides are padded by one black pixel (H.264 needs even sides).
    """
    from fractions import Fraction

    import av

    pictures = animation_frames(frames, maps, captions, alpha=alpha, cmap=cmap)
    t, h, w = pictures.shape[:3]
    pictures = np.pad(pictures, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = pictures.shape[2], pictures.shape[1], "yuv420p"
        for picture in pictures:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()
