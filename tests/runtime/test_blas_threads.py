"""The interpreter puts numpy's BLAS on one thread: OpenBLAS's threads spin after each product, and
beside torch's threads on two cores they halved the speed of the interpreter's next `linear`."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import numpy, threadpoolctl{imports}; "
         "print(max(i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'))")


def _blas_threads(imports: str = "", **env) -> int:
    # without the thread settings make test exports (OpenBLAS reads OMP_NUM_THREADS too)
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", PROBE.format(imports=imports)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**clean, **env})
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def test_loading_the_interpreter_leaves_numpy_one_blas_thread():
    assert _blas_threads(", runtime.mil.model") == 1


def test_without_the_interpreter_or_when_asked_numpy_keeps_its_threads():
    """Negative controls: the probe sees numpy's own thread count (2 cores here), so the test above can fail."""
    if (os.cpu_count() or 1) < 2:
        import pytest

        pytest.skip("one core: numpy's BLAS has one thread anyway")
    assert _blas_threads() > 1
    assert _blas_threads(", runtime.mil.model", RUNTIME_BLAS_THREADS="default") > 1
