"""Class embeddings read from a file: HIPE's published ``UCF101_two_level_emb.pth`` layout.

The file is a torch pickle of ``{"objects": [name, ...], "embeddings": N x D float tensor}`` (HIPE's
UCF-101 file: 126 names, the 101 classes, 20 parents and 5 grandparents, in 300-d Poincaré-ball
coordinates). It is read with ``torch.load(weights_only=True)`` only, so a file that would run code
when unpickled is refused, never retried without it.
"""
from __future__ import annotations

import os

import numpy as np

from vjx.errors import VjxError
from vjx.prototypes.hierarchy import Hierarchy, name_key


def load_class_embeddings(path: str | os.PathLike, hierarchy: Hierarchy) -> np.ndarray:
    """float32 ``K x D`` embeddings of ``hierarchy.all_names()`` (K classes of all levels, leaves first).

    Names are matched as :func:`vjx.prototypes.hierarchy.name_key` does. Raises a VjxError naming the
    file if it is not a torch file, needs more than tensors and lists to load, lacks the two keys, has
    rows that do not match the names, or lacks a class of the hierarchy.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VjxError(f"class embeddings {path!r} do not exist; pass a .pth file of {{'objects', 'embeddings'}}")
    try:
        import torch
    except ImportError:
        raise VjxError(f"reading the class embeddings {path!r} needs torch: pip install 'vjx[torch]'") from None
    if tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 6):
        raise VjxError(f"reading {path!r} needs torch >= 2.6 (older torch.load is unsafe); found {torch.__version__}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything weights_only refuses is a bad file for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VjxError(f"class embeddings {path!r} are not a plain tensor dict (refused by torch.load with "
                       f"weights_only=True: {first})") from None
    if not (isinstance(obj, dict) and isinstance(obj.get("objects"), list) and isinstance(obj.get("embeddings"), torch.Tensor)):
        raise VjxError(f"class embeddings {path!r} must be a dict with 'objects' (list of names) and "
                       f"'embeddings' (N x D tensor); found {type(obj).__name__}"
                       + (f" with keys {sorted(map(str, obj))}" if isinstance(obj, dict) else ""))
    names, table = obj["objects"], obj["embeddings"].detach().to(torch.float32).numpy()
    if table.ndim != 2 or len(names) != table.shape[0] or not all(isinstance(n, str) for n in names):
        raise VjxError(f"class embeddings {path!r}: 'embeddings' is {tuple(table.shape)} for {len(names)} "
                       "'objects'; it must be N x D with one string name per row")
    row = {name_key(n): i for i, n in enumerate(names)}
    missing = [n for n in hierarchy.all_names() if name_key(n) not in row]
    if missing:
        raise VjxError(f"class embeddings {path!r} have no row for {len(missing)} classes of the hierarchy "
                       f"{hierarchy.source!r}, e.g. {missing[0]!r}")
    return np.stack([table[row[name_key(n)]] for n in hierarchy.all_names()]).astype(np.float32)
