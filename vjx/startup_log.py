"""Keeps JAX's "no TPU here" notice off the console of machines that have no TPU library.

When JAX starts it tries every backend it knows. Where no TPU library is installed (every CPU and
GPU machine), the TPU attempt fails and JAX logs, at INFO level::

    Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so: libtpu.so: cannot open
    shared object file: No such file or directory

Python's default logging hides INFO, but absl (the experiment scripts' flags and logging) lowers the
root logger to INFO, so every script run began with that line. :func:`hide_missing_tpu_notice`
drops exactly that record. It is recognised by JAX asking for the bare name ``libtpu.so``, which
it does only when it found no TPU library at all; a TPU library that is installed but fails to load
is named by its path and still shows, as does every other backend's failure (CUDA's included).
"""
from __future__ import annotations

import logging

_JAX_BACKEND_LOGGER = "jax._src.xla_bridge"
_NOTICE = "Unable to initialize backend 'tpu'"
_NO_LIBRARY = "Failed to open libtpu.so: libtpu.so: cannot open shared object file"


class _HideMissingTpuNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith(_NOTICE) and _NO_LIBRARY in message)


def hide_missing_tpu_notice() -> None:
    """Installs the filter on JAX's backend logger (once; later calls do nothing)."""
    logger = logging.getLogger(_JAX_BACKEND_LOGGER)
    if not any(isinstance(f, _HideMissingTpuNotice) for f in logger.filters):
        logger.addFilter(_HideMissingTpuNotice())
