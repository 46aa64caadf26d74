"""Pictures of attribution maps: heatmaps, overlays, figure grids and side-by-side GIFs.

Everything here is numpy/matplotlib at the boundary: frames are uint8 ``T x H x W x 3``, maps are
float ``T x h x w`` (any resolution; they are resized to the frames bilinearly). Functions return
arrays or encoded bytes; writing files (atomically) is the caller's business, see
:mod:`vjx.pipeline.files`. The default colormap is matplotlib's perceptually uniform ``"inferno"``.

    from vjx import visualize
    png = visualize.figure_png(frames, [("area 10%", masks[0])], title="ironing")
    gif = visualize.gif_bytes(frames, masks[0], fps=4)
"""
from __future__ import annotations

import io
from typing import Sequence

import matplotlib
import numpy as np
from PIL import Image

from vjx.errors import VjxError

matplotlib.use("Agg")
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


def figure_png(frames: np.ndarray, rows: Sequence[tuple[str, np.ndarray]], *, title: str = "",
               cmap: str = DEFAULT_CMAP, max_columns: int = 16, dpi: int = 100) -> bytes:
    """A grid figure: the frames on top, then one overlay row per map; encoded as PNG.

    Args:
      frames: uint8 ``T x H x W x 3``.
      rows: ``(row label, float T x h x w maps in [0, 1])`` per overlay row (one per area or method).
      title: the figure title (label, predictions, preserved probabilities...); may span lines.
      max_columns: at most this many evenly spaced frames are shown.
    Returns:
      the PNG file's bytes.
    """
    frames = np.asarray(frames)
    shown = np.unique(np.linspace(0, len(frames) - 1, min(max_columns, len(frames))).round().astype(int))
    n_rows, n_cols = 1 + len(rows), len(shown)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols + 1.2, 1.3 * n_rows + 0.3 * (title.count("\n") + 1)),
                             squeeze=False)
    try:
        for col, t in enumerate(shown):
            axes[0, col].imshow(frames[t])
            axes[0, col].set_title(f"t={t}", fontsize=7)
        axes[0, 0].set_ylabel("input", fontsize=8)
        for row, (name, maps) in enumerate(rows, start=1):
            blended = overlay(frames[shown], np.asarray(maps)[shown], cmap=cmap)
            for col in range(n_cols):
                axes[row, col].imshow(blended[col])
            axes[row, 0].set_ylabel(name, fontsize=8)
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()
    finally:
        plt.close(fig)


def side_by_side(frames: np.ndarray, maps: np.ndarray, *, alpha: float = 0.5,
                 cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """The original frames and their overlays next to each other: uint8 ``T x H x 2W x 3``."""
    return np.concatenate([np.asarray(frames), overlay(frames, maps, alpha=alpha, cmap=cmap)], axis=2)


def gif_bytes(frames: np.ndarray, maps: np.ndarray, *, fps: float = 4.0, alpha: float = 0.5,
              cmap: str = DEFAULT_CMAP) -> bytes:
    """An endlessly looping animated GIF of :func:`side_by_side` frames, as bytes.

    Args:
      frames: uint8 ``T x H x W x 3``.
      maps: float ``T x h x w`` in ``[0, 1]``.
      fps: playback speed (frames per second).
    """
    combined = side_by_side(frames, maps, alpha=alpha, cmap=cmap)
    images = [Image.fromarray(frame) for frame in combined]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(int(round(1000.0 / max(fps, 1e-3))), 20), loop=0)
    return buffer.getvalue()
