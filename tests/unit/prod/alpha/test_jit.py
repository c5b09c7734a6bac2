"""prod.alpha.jit: the engine's kernels interpreted (a trader short of memory) give the numbers compiled gives.

Each per-scan kernel is run compiled and as its Python source on the same inputs (bad prices of every
kind included) and must agree exactly; a whole engine stepped bar by bar in an interpreted process must
end in the same state, trade for trade, as the compiled one here. The trader's entry loads numba only when
its kernels are compiled (the default).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from prod.alpha import irp, jit, signal
from prod.alpha import engine as engine_mod
from prod.alpha.engine import NDAlphaEngine
from prod.alpha.params import EngineParams
from tests.helpers import REPO_ROOT
from tests.unit.prod.alpha.test_alpha_engine import ASSETS, make_data
from tests.unit.prod.alpha.test_alpha_run_bars import corrupt, step_all

ENGINE_RUN = """
import json, sys
from collections import Counter
from prod.alpha import jit
jit.interpret()
from prod.alpha.engine import NDAlphaEngine
from prod.alpha.params import EngineParams
from tests.unit.prod.alpha.test_alpha_engine import ASSETS, make_data
from tests.unit.prod.alpha.test_alpha_run_bars import corrupt, step_all
assert "numba" not in sys.modules
print(json.dumps(__RUN__(int(sys.argv[1]))))
"""


def run_engine(seed: int) -> dict:
    data, vol_ok, hold = corrupt(make_data(seed, bars=3000), seed)
    eng = NDAlphaEngine(EngineParams(), ASSETS)
    skips: Counter = Counter()
    eng.begin_day("2026-01-01")
    step_all(eng, data, vol_ok, hold, 0, 1500, skips)
    eng.end_day()
    eng.begin_day("2026-01-02", posture="STALKER")
    step_all(eng, data, vol_ok, hold, 1500, 3000, skips)
    eng.end_day()
    return json.loads(json.dumps({"state": eng.get_state(), "skips": dict(skips)}, default=str))


def _bad_prices(rng, shape):
    p = 10.0 * np.exp(np.cumsum(rng.normal(0, 0.002, shape), axis=0))
    flat = p.reshape(-1)
    k = rng.choice(flat.size, max(1, flat.size // 40), replace=False)
    flat[k] = rng.choice([np.nan, 0.0, -1.0, np.inf], k.size)
    return p


def test_engine_module_kernels_are_compiled_in_this_process():
    assert not jit.interpreted()
    assert hasattr(irp.select_asset, "py_func") and hasattr(engine_mod._push_prices, "py_func")
    with pytest.raises(RuntimeError, match="after kernels were compiled"):
        jit.interpret()


@pytest.mark.parametrize("seed", range(20))
def test_per_scan_kernels_agree_compiled_and_interpreted(seed):
    rng = np.random.default_rng(seed)
    n_a = int(rng.integers(2, 60))
    window = _bad_prices(rng, (50, n_a))
    if seed % 3 == 0:
        window = np.abs(window)          # mostly valid windows: the ranking itself is exercised
        window[~np.isfinite(window)] = 5.0
        window[window == 0.0] = 5.0
    adj = np.where(rng.random(n_a) < 0.3, rng.normal(0, 0.2, n_a), 0.0)
    depth_ok = rng.random(n_a) < 0.9
    for d in (-1, 1):
        args = (window, d, 5e-5, 45, 0.3, adj)
        a, b = irp.rank_assets_irp(*args), irp.rank_assets_irp.py_func(*args)
        n = int(a[4])
        assert n == int(b[4])
        assert a[0][:n].tolist() == b[0][:n].tolist()
        for x, y in zip(a[1:4], b[1:4]):
            assert x.tolist() == y.tolist()
        assert int(irp.select_asset(*args, 0.35, depth_ok)) == int(irp.select_asset.py_func(*args, 0.35, depth_ok))
        col = window[:, int(rng.integers(0, n_a))].copy()
        for lb in (1, 7, 60):
            assert int(signal.check_dc(col, lb, 0.75, d)) == int(signal.check_dc.py_func(col, lb, 0.75, d))
    L = 8
    row = _bad_prices(rng, (n_a,))
    if seed % 5 == 0:
        row[:] = np.nan
    b1, b2 = np.full((2 * L, n_a), 7.0), np.full((2 * L, n_a), 7.0)
    assert engine_mod._push_prices(b1, 3, L, row) == engine_mod._push_prices.py_func(b2, 3, L, row)
    np.testing.assert_array_equal(b1, b2)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [5, 11])
def test_engine_interpreted_process_ends_in_the_compiled_state(seed):
    import inspect
    src = inspect.getsource(run_engine)
    code = ENGINE_RUN.replace("__RUN__", "run_engine").replace("print(", src + "\nprint(", 1)
    out = subprocess.run([sys.executable, "-c", code, str(seed)], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    interpreted = json.loads(out.stdout.strip().splitlines()[-1])
    compiled = run_engine(seed)
    assert interpreted["state"]["trades"], "the run must trade for the comparison to mean anything"
    assert interpreted == compiled


def _trader_help(kernels: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DOLPHIN_EVENT_TRADER_KERNELS"}
    if kernels is not None:
        env["DOLPHIN_EVENT_TRADER_KERNELS"] = kernels
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "services.event_trader", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("kernels, numba_loaded", [(None, True), ("interpreted", False), ("compiled", True)])
def test_trader_entry_loads_numba_only_when_compiled(kernels, numba_loaded):
    out = _trader_help(kernels)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = {ln.rsplit("|", 1)[-1].strip() for ln in out.stderr.splitlines() if ln.startswith("import time:")}
    assert "prod.alpha.engine" in loaded
    assert ("numba" in loaded) is numba_loaded and ("llvmlite" in loaded) is numba_loaded


def test_trader_entry_refuses_an_unknown_kernels_setting():
    out = _trader_help("jit")
    assert out.returncode != 0
    assert "DOLPHIN_EVENT_TRADER_KERNELS='jit'" in out.stderr and "prod.alpha.engine" not in out.stderr
