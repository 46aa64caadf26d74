"""Shared fixtures: where ../shared/data is, the planted model and its videos on disk, and float32
precision settings for parity."""
import os
import pathlib

import jax
import pytest

jax.config.update("jax_default_matmul_precision", "highest")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("VJX_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real sample clips and label files (``../shared/data`` beside the checkout)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set VJX_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def planted():
    """The planted model as a ``vjx.Model`` (one object per session, so each method compiles once)."""
    from tests.planted import planted_model
    return planted_model()


@pytest.fixture(scope="session")
def planted_videos(tmp_path_factory) -> tuple[str, str]:
    """Two frame folders of the planted video: ``abseiling-full`` (8 frames), ``notaclass-short`` (5)."""
    from tests.planted import write_planted_frames
    root = tmp_path_factory.mktemp("planted")
    return (write_planted_frames(root / "abseiling-full"), write_planted_frames(root / "notaclass-short", 5))
