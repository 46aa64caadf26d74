"""The flags of a dataset run across processes or hosts (``jax.distributed``), shared by sweep and evaluate.

    python -m experiments.sweep ... --coordinator_address host0:1234 --num_processes 2 --process_id 0   # host0
    python -m experiments.sweep ... --coordinator_address host0:1234 --num_processes 2 --process_id 1   # host1
    srun python -m experiments.evaluate ... --distributed       # SLURM / Open MPI / Cloud TPU: detected

Every process takes its share of the videos and writes into the same --output_dir (a file system
all hosts see); process 0 merges the table once all are done.
"""
from __future__ import annotations

from absl import flags

_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port where process 0 listens (with "
                                   "--num_processes and --process_id): run across processes with jax.distributed.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "How many processes the run has.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 ... --num_processes - 1.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Run as one process of a cluster detected from the "
                                 "environment (SLURM, Open MPI, Cloud TPU).")
ALL_FLAGS = (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID, _DISTRIBUTED)
# Library argument -> flag, for ArgumentErrors of vjx.pipeline.processes.initialize.
FLAG_NAMES = {"coordinator_address": "--coordinator_address", "num_processes": "--num_processes",
              "process_id": "--process_id"}


def start() -> None:
    """Joins the jax.distributed run the flags describe (nothing without them); call before any JAX work."""
    from vjx.pipeline import processes

    explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if _DISTRIBUTED.value or any(v is not None for v in explicit):
        processes.initialize(*explicit)
