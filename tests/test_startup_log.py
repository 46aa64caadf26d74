"""A script's console starts with its own output: JAX's "no TPU library" notice is hidden, nothing else."""
import logging
import pathlib
import subprocess
import sys

import pytest

import vjx  # noqa: F401  (installs the filter in this process too)

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTICE = "Unable to initialize backend 'tpu'"
# An absl program, as the experiment scripts are (absl lowers the root logger to INFO), that starts
# JAX's backends and then writes its first line.
PROGRAM = """
import sys
from absl import app
{imports}

def main(argv):
    jax.devices()
    print("first line", file=sys.stderr)

app.run(main)
"""


def _stderr(imports: str) -> str:
    result = subprocess.run([sys.executable, "-c", PROGRAM.format(imports=imports)], cwd=REPO,
                            capture_output=True, text=True, timeout=300, check=True)
    return result.stderr


def test_first_stderr_line_is_the_programs_own():
    if NOTICE not in _stderr("import jax"):
        pytest.skip("JAX logs no TPU notice on this machine (a TPU library is installed, or JAX changed)")
    assert _stderr("import jax\nimport vjx").splitlines()[0] == "first line"


@pytest.mark.parametrize("message, shown", [
    (f"{NOTICE}: INTERNAL: Failed to open libtpu.so: libtpu.so: cannot open shared object file: "
     "No such file or directory", False),
    # A TPU library that JAX found (it names its path) but that fails is a real problem: shown.
    (f"{NOTICE}: INTERNAL: Failed to open /opt/libtpu/libtpu.so: undefined symbol: TpuInit", True),
    ("Unable to initialize backend 'cuda': FAILED_PRECONDITION: No visible GPU devices.", True),
])
def test_only_the_missing_library_notice_is_hidden(message, shown):
    logger = logging.getLogger("jax._src.xla_bridge")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, None, None)
    assert bool(logger.filter(record)) == shown
