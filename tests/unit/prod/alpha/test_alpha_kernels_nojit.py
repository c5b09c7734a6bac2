"""The numba kernels of prod/alpha run as plain Python too (NUMBA_DISABLE_JIT=1 in a subprocess),
so coverage and tracebacks see them; the layer golden tests are re-run that way."""
from __future__ import annotations

import os
import subprocess
import sys
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def test_alpha_kernel_tests_pass_with_jit_disabled():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    tests = ["tests/unit/prod/alpha/test_alpha_layers.py", "tests/unit/prod/alpha/test_alpha_vol.py",
             "-k", "dc or irp or rank or select or alignment or ars or dvol or decisions"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


def test_run_bars_scans_and_the_batch_gate_pass_with_jit_disabled():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    tests = ["tests/unit/prod/alpha/test_alpha_run_bars.py", "tests/unit/prod/alpha/test_alpha_vol.py",
             "-k", "every_bar or between_blocks or batch_gate"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


def test_engine_gives_the_same_trades_with_jit_disabled():
    code = (
        "import json;"
        "from tests.unit.prod.alpha.test_alpha_engine import run, fresh, make_data, trade_dicts;"
        "print(json.dumps(trade_dicts(run(fresh(), make_data(21, bars=1500)))))"
    )
    outs = []
    for jit_off in ("1", "0"):
        env = {**os.environ, "NUMBA_DISABLE_JIT": jit_off}
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(proc.stdout)
    assert outs[0] == outs[1] and outs[0].count("trade_id") > 3
