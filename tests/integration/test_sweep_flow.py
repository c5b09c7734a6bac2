"""The sweep flow (issue 32): a real Prefect flow on a real local Dask cluster, against a real Prefect server.

A 2 × 2 grid × 2 one-day windows on small synthetic days: every row of the Parquet table must equal a direct
backtest of the same parameters and window; the server must hold the flow run and its eight task runs. Bad input
(empty grid, no data, unknown parameter, refused value) exits 2 naming the cause, before anything runs.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from prod.backtest import synth
from prod.backtest.runner import BacktestOptions, run_backtest
from prod.configs import BLUE_PATH
from prod.flows import sweep
from tests.helpers import REPO_ROOT, wait_until

pytestmark = pytest.mark.timeout(600)
GRID = ["fixed_tp_pct=0.006,0.0095", "max_hold_bars=60,120"]


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep_days")
    synth.generate(d, 2, 42, bars=3000)
    return d


def _direct(days, tmp_path, tp, hold, date):
    doc = yaml.safe_load(BLUE_PATH.read_text())
    doc["engine"].update(fixed_tp_pct=tp, max_hold_bars=hold)
    cfg = tmp_path / f"direct_{tp}_{hold}_{date}.yml"
    cfg.write_text(yaml.safe_dump(doc))
    d = dt.date.fromisoformat(date)
    return run_backtest(BacktestOptions(config=cfg, data=days, date_from=d, date_to=d, png=False, allow_drift=True,
                                        summary=tmp_path / f"direct_{tp}_{hold}_{date}.json")).summary


def test_a_2x2_grid_on_2_windows_through_prefect_and_dask_equals_direct_backtests(prefect_api, days, tmp_path):
    spec = sweep.build_spec(BLUE_PATH, days, grid=GRID, window_days=1)
    assert len(spec.param_sets) == 4 and spec.windows == (("2026-01-01", "2026-01-01", 1),
                                                          ("2026-01-02", "2026-01-02", 1))
    res = sweep.run_sweep(spec, tmp_path / "out" / "s", workers=2)
    assert "LocalCluster" in res["runner"] and "workers=2" in res["runner"]
    rows = pq.read_table(res["table"]).to_pylist()
    assert len(rows) == 8 and res["backtests"] == 8 and res["backtest_days"] == 8 and res["tasks"] == 8
    assert {(r["p.fixed_tp_pct"], r["p.max_hold_bars"], r["date_from"]) for r in rows} == {
        (tp, h, d) for tp in (0.006, 0.0095) for h in (60, 120) for d in ("2026-01-01", "2026-01-02")}
    for r in rows:
        s = _direct(days, tmp_path, r["p.fixed_tp_pct"], r["p.max_hold_bars"], r["date_from"])
        for m in ("trades", "roi_pct", "max_drawdown_pct", "final_capital", "win_rate_pct", "config_hash"):
            assert r[m] == s[m], (m, r, s[m])
        assert r["exits_tp"] == s["exit_reasons"].get("FIXED_TP", 0)
        assert r["exits_max_hold"] == s["exit_reasons"].get("MAX_HOLD", 0)
    assert len({r["roi_pct"] for r in rows}) > 1, "every cell gave the same ROI: the parameters did not reach the engine"
    page = (tmp_path / "out" / "s.html").read_text()
    assert "fixed_tp_pct (rows) × max_hold_bars (columns)" in page and "<script" not in page
    # the server saw the flow run and one task run per cell
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def _runs():
        async with get_client() as c:
            frs = await c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["sweep"])))
            trs = await c.read_task_runs()
            return frs, [t for t in trs if t.flow_run_id == frs[0].id]
    def all_cells():     # the server records task runs from the flow's events, a moment after the flow returns
        frs, trs = asyncio.run(_runs())
        return (frs, trs) if sum(t.name.startswith("sweep_backtest") for t in trs) >= 8 else None
    frs, trs = wait_until(all_cells, 30, interval=0.2, what="the sweep's 8 task runs on the server")
    assert frs and frs[0].state.is_completed()
    assert sum(t.name.startswith("sweep_backtest") for t in trs) == 8


@pytest.mark.parametrize("argv, why", [
    ([], "empty grid: no parameters"),
    (["--grid", "fixed_tp_pct="], "empty grid: parameter 'fixed_tp_pct' has no values"),
    (["--grid", "no_such_knob=1,2"], "unknown engine parameter 'no_such_knob'"),
    (["--grid", "fixed_tp_pct=2.0"], "fixed_tp_pct: must be in (0, 1)"),
    (["--grid", "max_hold_bars=60", "--window-days", "5"], "no data: 2 day file(s)"),
    (["--grid-file", "prod/configs/sweeps/todo2_subday_acb.yml", "--exf-history", "/no/such/exf"],
     "--exf-history /no/such/exf: no such directory"),
    (["--grid", "max_hold_bars=60", "--mc-model", "/no/such/model.zip"], "--mc-model /no/such/model.zip: no such file"),
])
def test_bad_input_exits_2_with_the_reason(days, argv, why, capsys):
    assert sweep.main(["--data", str(days), *argv]) == 2
    assert why in capsys.readouterr().err


def test_no_data_exits_2_from_the_command_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "prod.flows.sweep", "--data", str(tmp_path), "--grid",
                        "max_hold_bars=60,120"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and f"no data: no YYYY-MM-DD.parquet day files in {tmp_path}" in p.stderr


@pytest.mark.parametrize("name, n", [("todo1_vd_exit", 16), ("todo2_subday_acb", 16), ("todo6_tf_exit", 16),
                                     ("random_exits", 32)])
def test_the_shipped_grid_files_expand(days, tmp_path, name, n):
    (tmp_path / "exf").mkdir()
    spec = sweep.build_spec(BLUE_PATH, days, REPO_ROOT / "prod" / "configs" / "sweeps" / f"{name}.yml",
                            exf_history=tmp_path / "exf")
    assert len(spec.param_sets) == n and spec.windows
    if name == "todo2_subday_acb":
        assert spec.exf_history == (tmp_path / "exf").resolve() and spec.varied == ("subday_acb_high", "subday_acb_low")
    if name == "random_exits":
        assert all(0.004 <= s["fixed_tp_pct"] <= 0.02 and isinstance(s["max_hold_bars"], int) for s in spec.param_sets)
