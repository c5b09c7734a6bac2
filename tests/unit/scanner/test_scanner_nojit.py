"""The scanner's inverse-iteration kernel runs as plain Python too (NUMBA_DISABLE_JIT=1 in a subprocess),
so coverage and tracebacks see it (CONVENTIONS: numba kernels are tested twice)."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import REPO_ROOT


def test_direct_path_tests_pass_with_jit_disabled():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/unit/scanner/test_scanner_incremental.py", "-k", "top2"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


def test_double_double_rayleigh_and_certificate_tests_pass_with_jit_disabled():
    # the compiled kernel takes its exact products from the FMA instruction; plain Python from Dekker's split
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/unit/scanner/test_scanner_kernels.py", "-k", "rayleigh or certificate"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
