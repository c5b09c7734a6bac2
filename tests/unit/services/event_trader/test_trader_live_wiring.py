"""Issue 19 live wiring in the decision core: the OB macro reaches the engine (OB-3, OB-5 exits), stale
macros go neutral, HIBERNATE force-exits (§11.7), an MC RED day manages the open position to its exit but
opens nothing, and the §15.1 payload fields."""
from __future__ import annotations


import pytest

from prod.alpha import exits as ex
from prod.bus import maps
from prod.bus.payloads import PayloadError
from tests.unit.services.event_trader.test_trader import Market, _run_until_entry, _trader
from tests.market import morning

STRESS = {"cascade_count": 0, "regime_signal": 1, "market_imbalance": 0.0, "withdrawal_stress": 0.6, "n_assets": 40}
CASCADE = {"cascade_count": 3, "regime_signal": 1, "market_imbalance": 0.0, "withdrawal_stress": 0.3, "n_assets": 40}
SHORT_FAVOURED = {"cascade_count": 0, "regime_signal": 0, "market_imbalance": -0.3, "withdrawal_stress": 0.0,
                  "n_assets": 40}


def _macro(ts: float, **fields):
    return maps.OB_MACRO.build(ts=ts, **fields)


class MacroFeed:
    """Publishes ``fields`` as a fresh macro before every scan (obf_universe does it once per bar)."""

    def __init__(self, tr, m, fields):
        self.tr, self.m, self.fields = tr, m, fields
        self.process = tr.process

    def __call__(self, scan):
        if self.fields is not None:
            assert self.tr.on_ob_macro(_macro(self.m.t + 5, **self.fields))   # the bar of the coming scan
        return self.process(scan)


def _entered(tmp_path, macro_fields=None):
    m = Market(morning())
    tr, j = _trader(tmp_path, m)
    tr.process = MacroFeed(tr, m, macro_fields)
    n, r = _run_until_entry(tr, m)
    return tr, j, m, n, r


def _hold_at_pnl(tr, m, n, pnl_pct, scans, macro_fields=None):
    """Pin the position's asset at ``pnl_pct`` (direction-aware) and run flat scans; return the exit or None."""
    pos = tr.engine.position
    m.prices[pos.asset] = pos.entry_price * (1.0 + pnl_pct / pos.direction)
    for k in range(n + 1, n + 1 + scans):
        if macro_fields is not None:
            tr.on_ob_macro(_macro(m.t + 5, **macro_fields))
        r = tr.process(m.scan(k, 0.0, 0.0, 0.0))
        if r and r.get("exited"):
            return k, r
    return None


class TestObMacro:
    def test_macro_payload_reaches_the_engine_and_a_stale_one_turns_neutral_by_name(self, tmp_path, caplog):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        assert tr.engine._ob.get_macro() is None
        assert tr.on_ob_macro(_macro(m.t, **STRESS)) is True
        got = tr.engine._ob.get_macro()
        assert (got.regime_signal, got.cascade_count, got.withdrawal_stress) == (1, 0, 0.6)
        assert tr.process(m.scan(1, 0.0))["ob_regime"] == 1           # 5 s later: still fresh
        with caplog.at_level("WARNING", logger="event_trader"):
            m.t += 15                                                  # 20 s without an update > 15 s
            r = tr.process(m.scan(2, 0.0))
        assert r["ob_regime"] is None and tr.engine._ob.get_macro() is None
        assert any("ob_macro_latest" in rec.getMessage() and "stale" in rec.getMessage() for rec in caplog.records)

    def test_an_old_or_future_dated_macro_is_dropped_and_leaves_the_engine_neutral(self, tmp_path):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        tr.on_ob_macro(_macro(m.t, **STRESS))
        assert tr.on_ob_macro(_macro(m.t - 16, **SHORT_FAVOURED)) is False
        assert tr.engine._ob.get_macro() is None and tr.macro_dropped == 1
        assert tr.on_ob_macro(_macro(m.t + 60, **STRESS)) is False
        assert tr.on_ob_macro(_macro(m.t - 14, **STRESS)) is True      # just inside the limit

    def test_a_malformed_macro_on_the_key_turns_the_engine_neutral_at_once(self, tmp_path):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        tr.on_ob_macro(_macro(m.t, **STRESS))
        tr.on_ob_macro_invalid(PayloadError("DOLPHIN_FEATURES['ob_macro_latest']: ob_macro out of range"))
        assert tr.engine._ob.get_macro() is None and "invalid" in tr.heartbeat_fields()["ob_macro_drop_reason"]
        assert tr.heartbeat_fields()["ob_macro"] is False

    def test_out_of_range_macro_never_builds(self):
        for bad in ({"regime_signal": 2}, {"market_imbalance": 1.5}, {"withdrawal_stress": -0.1},
                    {"cascade_count": 41}, {"withdrawal_stress": float("nan")}):
            with pytest.raises(PayloadError):
                _macro(1.0, **{**STRESS, **bad})

    def test_withdrawal_stress_takes_a_short_profit_at_tp_x060_the_champion_exit_holds(self, tmp_path):
        p = 0.0095 * 0.60 + 0.00002         # just above the stressed TP (0.57 %), far below the champion 0.95 %
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        tr, _, m, n, r = _entered(tmp_path / "a", STRESS)
        assert r["entered"]["side"] == "SELL"
        out = _hold_at_pnl(tr, m, n, p, 3, STRESS)
        assert out is not None and out[1]["exited"]["reason"] == ex.FIXED_TP
        tr2, _, m2, n2, _ = _entered(tmp_path / "b", None)
        assert _hold_at_pnl(tr2, m2, n2, p, 3) is None and tr2.engine.position is not None

    def test_cascade_halves_max_hold_live(self, tmp_path):
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        tr, _, m, n, _ = _entered(tmp_path / "a", CASCADE)
        hold = tr.params.max_hold_bars
        _k, r = _hold_at_pnl(tr, m, n, 0.0, hold, CASCADE)
        assert r["exited"]["reason"] == ex.MAX_HOLD and r["exited"]["bars_held"] == int(hold * 0.50)
        tr2, _, m2, n2, _ = _entered(tmp_path / "b", None)
        _k2, r2 = _hold_at_pnl(tr2, m2, n2, 0.0, hold + 1)
        assert r2["exited"]["reason"] == ex.MAX_HOLD and r2["exited"]["bars_held"] == hold

    def test_market_imbalance_favouring_the_short_raises_entry_leverage_by_ob3(self, tmp_path):
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        tr, _, _, _, r = _entered(tmp_path / "a", SHORT_FAVOURED)
        tr2, _, _, _, r2 = _entered(tmp_path / "b", None)
        lev, lev0 = r["entered"]["leverage"], r2["entered"]["leverage"]
        # eff = -1 * -0.3 = 0.3 > 0.10 → 1 + min(0.20, 0.3) = 1.20 on the final leverage (unless capped)
        cap = tr.params.abs_max_leverage
        assert lev == pytest.approx(min(cap, lev0 * 1.20)) and lev > lev0


class TestPostureAndMcDay:
    def test_hibernate_force_exits_the_open_position_and_no_entry_follows(self, tmp_path):
        m = Market(morning())
        tr, j = _trader(tmp_path, m)
        n, _ = _run_until_entry(tr, m)
        tr.set_posture("HIBERNATE", "test")
        r = tr.process(m.scan(n + 1, -0.06, -0.002, 0.003))
        assert r["exited"]["reason"] == ex.HIBERNATE_HALT and tr.account.position is None
        notes = [tr.process(m.scan(k, -0.06, -0.002, 0.003)) for k in range(n + 2, n + 62)]
        assert not any(x and x.get("entered") for x in notes)
        assert len(j.events("ENTRY")) == 1 and len(j.events("EXIT")) == 1
        assert tr.signals_not_taken > 0                                  # the signal kept firing, held back

    def test_mc_red_day_manages_the_open_position_to_its_exit_and_blocks_new_entries(self, tmp_path):
        m = Market(morning())
        tr, j = _trader(tmp_path, m)
        n, _ = _run_until_entry(tr, m)
        held_before = tr.engine.position.bars_held
        tr.set_mc_status("RED", "test")
        day0 = tr.engine.date
        m.t = (int(m.t // 86400) + 1) * 86400 + 1.0                      # the next UTC day: RED applies
        pos = tr.engine.position
        m.prices[pos.asset] = pos.entry_price                            # flat: only max-hold can close it
        exit_r = None
        for k in range(n + 1, n + 1 + tr.params.max_hold_bars):
            r = tr.process(m.scan(k, -0.06, 0.0, 0.0))
            assert not r.get("entered")
            if r.get("exited"):
                exit_r, n = r, k
                break
        assert tr.engine.date != day0 and tr.engine.mc_status == "RED" and tr.engine.regime_dd_halt
        assert exit_r is not None and exit_r["exited"]["reason"] == ex.MAX_HOLD
        assert exit_r["exited"]["bars_held"] == tr.params.max_hold_bars and held_before < tr.params.max_hold_bars
        later = [tr.process(m.scan(k, -0.06, -0.002, 0.003)) for k in range(n + 1, n + 61)]
        assert not any(x and x.get("entered") for x in later)
        assert len(j.events("ENTRY")) == 1 and tr.signals_not_taken > 0


class TestPayloads151:
    def test_state_latest_has_date_pnl_trades_drawdown_and_pnl_carries_stale_state(self, tmp_path):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        n, _ = _run_until_entry(tr, m)
        for k in range(n + 1, n + 40):
            if (r := tr.process(m.scan(k, -0.06, -0.002, 0.003))) and r.get("exited"):
                break
        acct = tr.account
        st = maps.STATE_LATEST.decode(maps.STATE_LATEST.encode(tr.state_payload()))
        assert st.date == acct.day == tr.engine.date
        assert st.trades == acct.day_trades == 1
        assert st.pnl == pytest.approx(acct.capital - acct.day_start_capital) and st.pnl != 0.0
        assert st.drawdown == pytest.approx(1.0 - acct.capital / acct.peak_capital) and st.drawdown >= 0.0
        assert tr.pnl_payload(acct.day).stale_state is False
        assert tr.pnl_payload(acct.day, stale_state=True).stale_state is True
        assert '"_v":"1.1"' in maps.PNL_BLUE_DAY.encode(tr.pnl_payload(acct.day), acct.day)

    def test_readers_accept_the_1_0_payloads_without_the_new_fields(self):
        old_state = ('{"_v":"1.0","strategy":"blue","capital":25000.0,"updated_at":1.0,"peak_capital":25000.0}')
        st = maps.STATE_LATEST.decode(old_state)
        assert (st.date, st.pnl, st.trades, st.drawdown) == (None, None, None, None)
        old_pnl = ('{"_v":"1.0","date":"2026-01-01","strategy":"blue","capital":1.0,"pnl":0.0,"trades":0,'
                   '"updated_at":1.0}')
        assert maps.PNL_BLUE_DAY.decode(old_pnl, "2026-01-01").stale_state is False
        with pytest.raises(PayloadError, match="schema version"):
            maps.PNL_BLUE_DAY.decode(old_pnl.replace('"1.0"', '"2.0"'), "2026-01-01")

    def test_a_stale_state_decision_publishes_its_pnl_flagged(self, tmp_path):
        from tests.unit.services.event_trader.test_trader import RecordingOutputs
        m = Market(morning())
        out = RecordingOutputs()
        tr, _ = _trader(tmp_path, m, outputs=out)
        for k in range(1, 160):
            tr.process(m.scan(k, 0.0, 0, 0.001 + k * 0.00002))
        original = tr.engine.step_bar

        def step_while_the_safety_listener_fires(*a, **kw):
            tr.set_posture("STALKER" if tr.posture == "APEX" else "APEX", "map-listener")
            return original(*a, **kw)

        tr.engine.step_bar = step_while_the_safety_listener_fires
        for k in range(160, 220):
            r = tr.process(m.scan(k, -0.06, -0.002, 0.003))
            if r and r.get("entered"):
                break
        assert r.get("entered") and r["stale_state"] is True
        pnls = [p for _d, p in out.pnls]
        assert pnls and pnls[-1].stale_state is True
