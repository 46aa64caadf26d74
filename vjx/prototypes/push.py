"""The push: every prototype becomes its nearest training patch among clips of its own class.

After it, each prototype *is* a part of a training clip, so a similarity to it reads as
"this part of the video looks like that part of that clip".
"""
from __future__ import annotations

import numpy as np


def push_prototypes(prototypes: np.ndarray, patches: np.ndarray, labels: np.ndarray, prototype_class: np.ndarray,
                    prototype_level: np.ndarray, offsets: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest own-class patch of every prototype.

    Args:
      prototypes: ``P x D``.
      patches: the training clips' add-on patches ``N x T' x H' x W' x D``.
      labels: int ``N x L``, each clip's class at every level.
      prototype_class, prototype_level: int ``P``.
      offsets: first class index of each level among all levels' classes.
    Returns:
      new prototypes ``P x D``; sources int ``P x 4`` (clip, t', h', w'; ``-1`` where no training clip has
      the prototype's class, which then keeps its vector); squared distances ``P`` before the push
      (``inf`` where not pushed).
    """
    n, t, h, w, d = patches.shape
    flat = patches.reshape(n, t * h * w, d).astype(np.float64)
    new = np.array(prototypes, copy=True)
    sources = np.full((len(prototypes), 4), -1, np.int64)
    distances = np.full(len(prototypes), np.inf)
    clip_class = labels + np.asarray(offsets)[None]                                  # N x L, over all levels
    for j, (p, cls, level) in enumerate(zip(prototypes.astype(np.float64), prototype_class, prototype_level)):
        clips = np.flatnonzero(clip_class[:, level] == cls)
        if not len(clips):
            continue
        dist = ((flat[clips] - p) ** 2).sum(-1)                                        # n_c x (T' H' W')
        i, cell = np.unravel_index(np.argmin(dist), dist.shape)
        new[j] = flat[clips[i], cell]
        sources[j] = (clips[i], *np.unravel_index(cell, (t, h, w)))
        distances[j] = dist[i, cell]
    return new.astype(prototypes.dtype), sources, distances


def cell_box(cell: tuple[int, int, int], feature_shape: tuple[int, int, int],
             clip_shape: tuple[int, int, int]) -> tuple[tuple[int, int], ...]:
    """The part of the clip a feature cell ``(t', h', w')`` covers, as ``((t0, t1), (h0, h1), (w0, w1))``
    (the cell's share of the clip; the receptive field is larger)."""
    return tuple((c * s // f, (c + 1) * s // f) for c, f, s in zip(cell, feature_shape, clip_shape))
