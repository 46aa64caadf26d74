"""Shared fixtures: where ../shared/data is, the planted model and its videos on disk, float32
precision settings for parity, and the memory each test module leaves behind given back."""
import ctypes
import gc
import os
import pathlib

import jax
import pytest

jax.config.update("jax_default_matmul_precision", "highest")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("VJX_SHARED_DATA", REPO.parent / "shared" / "data"))


_LIBC = ctypes.CDLL(None)


@pytest.fixture(scope="module", autouse=True)
def release_memory_after_module():
    """After each test module: drop its compiled functions and garbage, and hand freed heap to the OS.

    Without this one pytest process keeps every module's models, torch references and XLA
    executables: the suite's resident memory grew to 8.7 GB by its end.
    """
    yield
    gc.collect()
    jax.clear_caches()
    if hasattr(_LIBC, "malloc_trim"):                       # glibc: return freed arenas to the OS
        _LIBC.malloc_trim(0)


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
