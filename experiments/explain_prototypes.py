"""Explain clips level by level with a trained prototype network.

    python -m experiments.explain_prototypes --run_dir runs/hipe --videos clips/swimming-001 \\
        --output_dir runs/hipe/explanations

For each clip writes <name>.png (per level: the frame | where the top prototype of the predicted class
matches | the training clip's patch that prototype was pushed to), <name>.npz (per level k x T x H x W
activation maps) and <name>.json (per level: predicted class, top prototypes, similarities, sources).
"""
from __future__ import annotations

from absl import flags

from experiments import _cli

_RUN_DIR = flags.DEFINE_string("run_dir", None, "A finished run of experiments.train_prototypes (required).")
_VIDEOS = flags.DEFINE_list("videos", None, "Frame folders or video files to explain, comma separated (required).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the files go (default: <run_dir>/explanations).")
_TOP_K = flags.DEFINE_integer("top_k", 3, "Prototypes shown per level.")


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    import os

    from vjx import prototypes
    from vjx.errors import VjxError

    if not _RUN_DIR.value or not _VIDEOS.value:
        raise VjxError("--run_dir and --videos are required")
    if _TOP_K.value < 1:
        raise VjxError("--top_k must be at least 1")
    output_dir = _OUTPUT_DIR.value or os.path.join(_RUN_DIR.value, "explanations")
    for record in prototypes.explain_run(_RUN_DIR.value, _VIDEOS.value, output_dir, top_k=_TOP_K.value):
        print(record["video"] + ": " + " / ".join(level["predicted"] for level in record["levels"]))
    print(f"figures, .npz and .json in {output_dir}")


if __name__ == "__main__":
    _cli.run(main)
