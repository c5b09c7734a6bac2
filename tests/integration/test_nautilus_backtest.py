"""The Nautilus engine (prod.nautilus) against the native backtest on the same synthetic days, and DolphinActor's
bus wiring (§14.2, §14.3, §14.6, §14.7) against the real embedded Hazelcast member.

Needs the ``.[nautilus]`` extra (installed by ``make venv``); without it the import error names the extra.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from prod.backtest import synth
from prod.backtest.runner import BacktestOptions, run_backtest
from prod.bus import maps
from prod.configs import BLUE_PATH
from prod.nautilus import INSTALL_HINT, NautilusUnavailable, check_version, require_nautilus
from prod.runtime import Bus
from tests.helpers import REPO_ROOT, wait_until

require_nautilus()
from prod.nautilus.backtest import precisions, run_nautilus_backtest  # noqa: E402

DAYS, BARS, SEED = 3, 3000, 11


def _decisions(trades):
    return [(t["entry_bar"], t["asset"], t["direction"]) for t in trades]


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    d = tmp_path_factory.mktemp("nt_synth")
    synth.generate(d, DAYS, SEED, bars=BARS)
    return d


@pytest.fixture(scope="module")
def both(days, tmp_path_factory):
    out = tmp_path_factory.mktemp("nt_out")
    nat = run_backtest(BacktestOptions(config=BLUE_PATH, data=days, summary=out / "native.json", png=False))
    nt = run_nautilus_backtest(BacktestOptions(config=BLUE_PATH, data=days, summary=out / "nautilus.json", png=False))
    return nat, nt


def test_decisions_match_the_native_engine_exactly(both):
    nat, nt = both
    assert nat.summary["trades"] >= 5, "the synthetic days must trade for the comparison to mean anything"
    assert _decisions(nt.summary["trade_list"]) == _decisions(nat.summary["trade_list"])
    assert [(t["exit_bar"], t["reason"]) for t in nt.summary["trade_list"]] == \
        [(t["exit_bar"], t["reason"]) for t in nat.summary["trade_list"]]
    assert nt.summary["nautilus"]["entries_not_taken"] == 0
    assert nt.summary["skip_reasons"] == nat.summary["skip_reasons"]


def test_fills_and_fees_come_from_nautilus_and_differ_only_as_explained(both):
    """Entry fills at the scan price rounded to the tick; exits at the scan price (the engine's own record adds
    its 2/5 bps exit slippage); commissions are the taker rate on both legs; realised PnL is price move minus them."""
    nat, nt = both
    taker = 0.0005
    for t, d, native in zip(nt.summary["trade_list"], nt.summary["nautilus"]["fill_diff"], nat.summary["trade_list"]):
        pp, _ = precisions(t["engine_entry_price"])
        tick = 10.0 ** -pp
        assert abs(t["entry_price"] - t["engine_entry_price"]) <= tick / 2 + 1e-12
        assert abs(t["entry_price"] - native["entry_price"]) <= tick / 2 + 1e-12       # the same scan price
        # the engine's exit record is the scan price moved against the short by its slippage model
        assert t["exit_price"] < t["engine_exit_price"]
        assert -6.0 < d["exit_px_bps"] < 0.0
        expected_fees = taker * t["qty"] * (t["entry_price"] + t["exit_price"])
        assert t["fees"] == pytest.approx(expected_fees, rel=1e-6, abs=1e-6)
        gross = t["direction"] * (t["exit_price"] - t["entry_price"]) * t["qty"]
        assert t["net_pnl"] == pytest.approx(gross - t["fees"], abs=0.02)
        # the native engine charged the SmartPlacer blend (§8.1), Nautilus the taker rate on market orders
        assert native["fees"] > 0 and t["fees"] > 0
    assert nt.summary["final_capital"] == pytest.approx(
        nt.summary["initial_capital"] + sum(t["net_pnl"] for t in nt.summary["trade_list"]), abs=0.05)


def test_summary_and_reports_have_the_native_shape(both):
    nat, nt = both
    assert set(nat.summary) <= set(nt.summary)                     # every native key is there
    assert nt.summary["engine"] == "nautilus" and nt.summary["days"] == DAYS and nt.summary["bars"] == DAYS * BARS
    assert Path(nt.summary["html_report"]).read_text().count("<table") >= 1
    assert json.loads(nt.summary_path.read_text())["trades"] == nt.summary["trades"]
    assert nt.summary["nautilus"]["driver_bars"] == DAYS * BARS


def test_cli_engine_nautilus(days, tmp_path):
    r = subprocess.run([sys.executable, "-m", "prod.backtest", "--engine", "nautilus", "--config", str(BLUE_PATH),
                        "--data", str(days), "--summary", str(tmp_path / "s.json"), "--no-png", "--no-progress",
                        "--to", "2026-01-01"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ROI ") and "days 1" in r.stdout
    assert json.loads((tmp_path / "s.json").read_text())["engine"] == "nautilus"
    r = subprocess.run([sys.executable, "-m", "prod.backtest", "--engine", "nautilus", "--config", str(BLUE_PATH),
                        "--data", str(days), "--survival", "--no-png"], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--survival is not supported with --engine nautilus" in r.stderr


def test_version_outside_the_pin_or_absent_names_the_extra():
    for v in (None, "1.220.0", "1.222.1"):
        with pytest.raises(NautilusUnavailable) as ei:
            check_version(v)
        msg = str(ei.value)
        assert INSTALL_HINT in msg and "\n" not in msg
    check_version("1.221.0")


def test_native_engine_and_trader_never_import_nautilus():
    code = ("import sys, prod.backtest.runner, prod.backtest.__main__, prod.trading.core, "
            "services.event_trader.main; "
            "bad=[m for m in sys.modules if m.startswith('nautilus_trader') or m.startswith('prod.nautilus')]; "
            "print(bad); assert not bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------- the bus (§14)
def _safety(posture: str, rm: float) -> str:
    return maps.SAFETY_LATEST.encode({"posture": posture, "Rm": rm, "ts": time.time()})


@pytest.fixture
def bus(hz_member, settings_for):
    _, port = hz_member
    b = Bus(settings_for(hz_port=port), "test-nautilus-actor", backoff_s=(0.1, 0.5)).start()
    assert b.wait_connected(30), "test bus did not connect"
    try:
        yield b
    finally:
        b.close()


def test_actor_posture_acb_and_results_through_the_bus(days, tmp_path, bus):
    client = bus.client
    client.get_map(maps.SAFETY).blocking().set(maps.KEY_LATEST, _safety("TURTLE", 0.6))
    seen = {}

    def before(actor):
        # §14.2: an ACB update from another thread lands in _pending_acb only; the engine sees it at the next bar
        t = threading.Thread(target=actor._on_acb, args=(maps.KEY_ACB_BOOST, maps.ACB_BOOST.build(
            boost=1.35, beta=0.5, computed_at=time.time())))
        t.start(); t.join()
        seen["pending"] = dict(actor._pending_acb)
        seen["engine_pending"] = actor.engine.next_acb

    opts = BacktestOptions(config=BLUE_PATH, data=days, summary=tmp_path / "s.json", png=False,
                           date_to=synth.dt.date(2026, 1, 1))
    res = run_nautilus_backtest(opts, bus=bus, before_run=before)
    assert seen["pending"] == {"boost": 1.35, "beta": 0.5}
    assert seen["engine_pending"] == (1.0, 0.0)                  # not applied on the listener thread
    day = res.summary["per_day"][0]
    assert day["boost"] == 1.35 and day["beta"] == 0.5           # applied at the top of the first bar
    assert day["posture"] == "TURTLE" and res.summary["nautilus"]["posture_source"] == "map"   # §14.6 fallback
    assert res.summary["trades"] == 0                            # TURTLE halts entries
    pnl_map = client.get_map(maps.PNL_BLUE).blocking()
    wait_until(lambda: pnl_map.get("2026-01-01") is not None, timeout=10)
    p = maps.PNL_BLUE_DAY.decode(pnl_map.get("2026-01-01"), "2026-01-01")
    assert p.day_end and p.posture == "TURTLE" and p.capital == pytest.approx(res.summary["final_capital"])

    # the CP AtomicReference wins over the map
    client.cp_subsystem.get_atomic_reference(maps.SAFETY_ATOMIC_REF).blocking().set(_safety("STALKER", 0.8))
    res = run_nautilus_backtest(opts, bus=bus)
    assert res.summary["per_day"][0]["posture"] == "STALKER"
    assert res.summary["nautilus"]["posture_source"] == "cp-atomic-ref"


def test_gate_change_mid_step_is_flagged_stale(days, tmp_path, bus):
    """§14.3: a posture pushed by the SAFETY listener while step_bar runs marks that bar's result stale."""
    hits = []

    def before(actor):
        eng = actor.engine
        real_step = eng.step_bar

        def step_with_listener_firing(*a):
            r = real_step(*a)
            if a[0] == 500:                                       # the listener thread fires during this step
                t = threading.Thread(target=actor._on_safety, args=(maps.KEY_LATEST, maps.SAFETY_LATEST.decode(
                    _safety("STALKER", 0.8))))
                t.start(); t.join()
                hits.append(a[0])
            return r
        eng.step_bar = step_with_listener_firing

    opts = BacktestOptions(config=BLUE_PATH, data=days, summary=tmp_path / "s.json", png=False,
                           date_to=synth.dt.date(2026, 1, 1))
    res = run_nautilus_backtest(opts, bus=bus, before_run=before)
    assert hits == [500]
    assert res.summary["nautilus"]["stale_state_events"] == 1
    assert res.summary["per_day"][0]["posture"] == "STALKER"     # handed to the engine at the next bar


def test_flow_one_day_replay_through_nautilus_matches_the_native_flow_replay(days):
    """The §17.2 supervisor flow's ``engine="nautilus"`` path: the same day, posture, boost/beta and start capital
    give the same trades and exit reasons as the flow's native ``replay_day``; the money is Nautilus's."""
    from prod.backtest.data import load_day
    from prod.configs import load_config
    from prod.flows.common import DayContext, replay_day
    from prod.nautilus.backtest import replay_day_nautilus

    cfg = load_config(BLUE_PATH)
    day = load_day("2026-01-02", days / "2026-01-02.parquet")
    ctx = DayContext(posture="APEX", posture_source="default", boost=1.2, beta=0.5, mc_status=None)
    native, _ = replay_day(cfg, day, ctx, start_capital=20_000.0, close_at_end=True)
    nt = replay_day_nautilus(cfg, day, ctx, start_capital=20_000.0, close_at_end=True)
    assert native["trades"] > 0
    for k in ("date", "trades", "exit_reasons", "boost", "beta", "posture", "mc_status", "open_position", "bars",
              "start_capital"):
        assert nt[k] == native[k], k
    assert nt["runner"] == "nautilus" and nt["fees"] > 0
    assert nt["pnl"] == pytest.approx(nt["capital"] - 20_000.0)
    assert nt["capital"] != native["capital"]                    # Nautilus's fills and fees, not the engine's model


def test_flow_refuses_an_unknown_engine():
    from prod.flows.backtest import backtest_supervisor_flow
    with pytest.raises(ValueError, match="engine='vectorbt'"):
        backtest_supervisor_flow.fn(date="2026-01-01", engine="vectorbt")


def test_ob_dir_books_reach_the_engine_as_in_the_native_replay(tmp_path):
    """--ob-dir: the recorded books (written by the real obf_universe Writer) feed the engine's OB layers bar by
    bar as in the native replay, so the decisions still match; a bid-heavy book vetoes every SHORT in both."""
    from tests.integration.test_backtest_ob import BARS, _write_ob
    synth.generate(tmp_path / "days", 1, 11, bars=BARS)
    for name, sign in (("ask", -1), ("bid", +1)):
        ob = _write_ob(tmp_path / name, sign)
        o = dict(config=BLUE_PATH, data=tmp_path / "days", png=False, ob_dir=ob)
        nat = run_backtest(BacktestOptions(summary=tmp_path / f"{name}_n.json", **o))
        nt = run_nautilus_backtest(BacktestOptions(summary=tmp_path / f"{name}_t.json", **o))
        assert _decisions(nt.summary["trade_list"]) == _decisions(nat.summary["trade_list"])
        assert nt.summary["ob"]["rows_applied"] == nat.summary["ob"]["rows_applied"] > 0
        assert nt.summary["ob"]["bars_with_ob"] == nat.summary["ob"]["bars_with_ob"]
        if sign > 0:
            assert nt.summary["trades"] == 0
            continue
        assert nt.summary["trades"] > 0
        # the matching engine trades against the recorded spread (10 bps in these books): a SHORT sells at the
        # bid, half a spread under the scan price, and buys back at the ask, half a spread over it
        assert "quotes at the recorded spread for 50 symbols" in nt.summary["ob"]["matching"]
        half = 0.1 / 100.05 * 1e4 / 2                               # the books' spread_bps / 2 (bid 100.0, ask 100.1)
        for t in nt.summary["trade_list"]:
            pp, _ = precisions(t["engine_entry_price"])
            tick_bps = 10.0 ** -pp / t["engine_entry_price"] * 1e4
            assert -half - tick_bps - 1e-6 <= (t["entry_price"] / t["engine_entry_price"] - 1) * 1e4 <= -half + 1e-6
            assert t["exit_price"] > t["engine_exit_price"] / (1 + 0.0002) - 1e-12   # above the exit scan price
