"""Dataset runs over several processes (hosts) with JAX's own multi-process runtime, ``jax.distributed``.

    processes.initialize("10.0.0.1:1234", num_processes=4, process_id=i)   # on each host, before any JAX work
    mine = processes.share(videos)          # this process's share: every n-th video from its index on
    ...                                     # compute and write this share's per-video files atomically
    processes.wait_for_all("sweep")         # every process has written its share
    if processes.is_coordinator(): ...      # process 0 merges the files into one table

Processes share nothing but the output directory (a file system every host sees) and the runtime's
barrier; each runs its share on its own local devices, so no data moves between hosts. Run alone,
a process is process 0 of 1 and takes everything.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import jax

from vjx.errors import ArgumentError, VjxError

T = TypeVar("T")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout_s: int = 300) -> None:
    """Joins this process to a ``jax.distributed`` run; call it before any other JAX work.

    Args:
      coordinator_address: ``host:port`` of process 0 (it listens there). None with the other two
        None: the cluster is detected from the environment (SLURM, Open MPI, Cloud TPU).
      num_processes: how many processes the run has.
      process_id: this process's index in ``[0, num_processes)``.
      timeout_s: how long to wait for every process to join.
    Raises:
      ArgumentError: an address without a count and index (or the reverse), or an index out of range.
      VjxError: the runtime could not start (no coordinator answered, no cluster detected).
    """
    given = (coordinator_address, num_processes, process_id)
    if any(v is not None for v in given) and any(v is None for v in given):
        raise ArgumentError("coordinator_address", "needs num_processes and process_id with it (or give none of "
                            "the three to detect the cluster from the environment)")
    if num_processes is not None:
        if num_processes < 1:
            raise ArgumentError("num_processes", f"must be at least 1, got {num_processes}")
        if not 0 <= process_id < num_processes:
            raise ArgumentError("process_id", f"{process_id} is outside [0, {num_processes})")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id, initialization_timeout=timeout_s)
    except (RuntimeError, ValueError) as e:
        where = f"coordinator {coordinator_address}" if coordinator_address else "the cluster environment"
        raise VjxError(f"jax.distributed could not start with {where}: {' '.join(str(e).split())[:300]}") from e


def share(items: Sequence[T]) -> list[T]:
    """This process's share of ``items``: every ``process_count``-th one from ``process_index`` on."""
    return list(items)[jax.process_index()::jax.process_count()]


def is_coordinator() -> bool:
    """True in process 0, the one that merges the shares."""
    return jax.process_index() == 0


def count() -> int:
    """How many processes the run has (1 without ``jax.distributed``)."""
    return jax.process_count()


def wait_for_all(name: str) -> None:
    """Blocks until every process has reached the barrier ``name`` (nothing to wait for alone)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
