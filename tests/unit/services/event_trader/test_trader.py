"""Trader building blocks: lock, journal + audit chain, paper fills, the decision core without a bus."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prod.settings import load_settings
from prod.trading.core import CoreLimits, TraderCore
from services.event_trader.main import load_engine_params
from prod.trading.journal import GENESIS, Journal, JournalIntegrityError, parse_audit
from services.event_trader.lock import InstanceLock, LockBusy
from prod.alpha.params import EngineParams
from prod.trading.accounts import Book, PaperAccount, fill_price

from tests.helpers import REPO_ROOT
from tests.market import Market, morning

TAKER_FEE = EngineParams().taker_fee   # the strategy's fee (the paper account's costs come from EngineParams)



# ── lock ──────────────────────────────────────────────────────────────────────────────────────
class TestInstanceLock:
    def test_second_holder_refused_with_pid_and_freed_after_kill9(self, tmp_path):
        path = tmp_path / "t.lock"
        code = ("import sys,time; from services.event_trader.lock import InstanceLock; "
                f"InstanceLock({str(path)!r}).acquire(); print('locked', flush=True); time.sleep(60)")
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=str(REPO_ROOT))
        try:
            assert p.stdout.readline().strip() == "locked"
            with pytest.raises(LockBusy, match=str(p.pid)):
                InstanceLock(path).acquire()
        finally:
            p.kill()
            p.wait(10)
        with InstanceLock(path):
            assert path.read_text().strip() == str(__import__("os").getpid())


# ── journal ───────────────────────────────────────────────────────────────────────────────────
def _journal(tmp_path) -> Journal:
    return Journal.open(tmp_path / "j.sqlite", tmp_path / "audit.log")


class TestJournal:
    def test_chain_and_snapshot_round_trip(self, tmp_path):
        j = _journal(tmp_path)
        j.append("ENTRY", {"trade_id": 1, "note": "a|b"}, 7, snapshot=(7, {"x": 1}, {"y": [1, 2]}))
        j.append("EXIT", {"trade_id": 1}, 9, snapshot=(9, {"x": 2}, {"y": []}))
        j.close()
        j2 = _journal(tmp_path)
        assert j2.load_snapshot() == (9, {"x": 2}, {"y": []})
        lines = parse_audit(tmp_path / "audit.log")
        assert [l.event for l in lines] == ["JOURNAL_CREATED", "ENTRY", "EXIT"]
        assert lines[0].prev == GENESIS and lines[1].prev == lines[0].hash
        assert [e["kind"] for e in j2.events()] == ["JOURNAL_CREATED", "ENTRY", "EXIT"]

    def test_older_periodic_snapshot_never_overwrites_a_trade_snapshot(self, tmp_path):
        j = _journal(tmp_path)
        j.append("ENTRY", {"trade_id": 1}, 101, snapshot=(101, {"pos": 1}, {}))
        assert j.save_snapshot(100, {"pos": None}, {}) is False     # queued before the trade
        assert j.load_snapshot() == (101, {"pos": 1}, {})
        assert j.save_snapshot(102, {"pos": 1, "bar": 2}, {}) is True
        assert j.load_snapshot()[0] == 102

    def test_edited_line_refuses(self, tmp_path):
        j = _journal(tmp_path)
        j.append("ENTRY", {"notional": 1000.0}, 1)
        j.close()
        p = tmp_path / "audit.log"
        p.write_text(p.read_text().replace("1000.0", "9000.0"))
        with pytest.raises(JournalIntegrityError, match="hash mismatch"):
            _journal(tmp_path)

    def test_truncated_log_refuses(self, tmp_path):
        j = _journal(tmp_path)
        j.append("ENTRY", {"a": 1}, 1)
        j.append("EXIT", {"a": 2}, 2)
        j.close()
        p = tmp_path / "audit.log"
        lines = p.read_text().splitlines(keepends=True)
        p.write_text("".join(lines[:-1]))
        with pytest.raises(JournalIntegrityError, match="truncated"):
            _journal(tmp_path)

    def test_torn_last_line_refuses(self, tmp_path):
        j = _journal(tmp_path)
        j.append("ENTRY", {"a": 1}, 1)
        j.close()
        p = tmp_path / "audit.log"
        p.write_text(p.read_text()[:-5])
        with pytest.raises(JournalIntegrityError):
            _journal(tmp_path)

    def test_deleted_journal_with_existing_audit_refuses(self, tmp_path):
        _journal(tmp_path).close()
        for f in tmp_path.glob("j.sqlite*"):
            f.unlink()
        with pytest.raises(JournalIntegrityError, match="no anchor"):
            _journal(tmp_path)

    def test_one_uncommitted_tail_line_is_closed_by_a_recovery_event(self, tmp_path):
        j = _journal(tmp_path)
        j.append("ENTRY", {"a": 1}, 1)
        # simulate a crash after the audit append but before the journal commit
        from prod.trading.journal import AuditLine, line_hash
        h = line_hash(j.seq + 1, "1.0", j.tail, "EXIT", "{}")
        with open(tmp_path / "audit.log", "a") as fh:
            fh.write(AuditLine(j.seq + 1, "1.0", j.tail, "EXIT", "{}", h).render())
        j.close()
        j2 = _journal(tmp_path)
        assert parse_audit(tmp_path / "audit.log")[-1].event == "UNCOMMITTED_TAIL"
        assert [e["kind"] for e in j2.events()][-1] == "UNCOMMITTED_TAIL"


# ── paper ─────────────────────────────────────────────────────────────────────────────────────
class TestPaper:
    NOW = 1000.0

    def test_short_opens_at_bid_and_covers_at_ask_with_taker_fees(self):
        acct = PaperAccount.new(10_000.0)
        book = Book(99.0, 101.0, self.NOW)
        o = acct.open(1, "BTCUSDT", -1, 5_000.0, book, 100.0, self.NOW, 1)
        assert o["price"] == 99.0 and o["source"] == "book" and o["fee"] == pytest.approx(TAKER_FEE * 5000)
        c = acct.close("FIXED_TP", Book(89.0, 90.0, self.NOW + 1), 89.5, self.NOW + 1, 2)
        assert c["price"] == 90.0
        gross = (99.0 - 90.0) / 99.0 * 5000.0
        assert c["gross"] == pytest.approx(gross)
        assert acct.capital == pytest.approx(10_000.0 + gross - 2 * TAKER_FEE * 5000.0)
        assert acct.position is None and acct.trades == 1

    def test_stale_or_crossed_book_falls_back_to_scan_price_with_slippage(self):
        stale = Book(99.0, 101.0, self.NOW - 100)
        crossed = Book(101.0, 99.0, self.NOW)
        for b in (stale, crossed, None):
            px, src = fill_price(-1, True, b, 100.0, self.NOW)
            assert src == "scan+slip" and px == pytest.approx(100.0 * (1 - 0.0002))
        px, _ = fill_price(-1, False, None, 100.0, self.NOW, slip=0.0005)
        assert px == pytest.approx(100.05)

    def test_second_entry_refused_and_state_round_trip(self):
        acct = PaperAccount.new(1000.0)
        acct.open(1, "ETHUSDT", -1, 100.0, None, 10.0, self.NOW, 3)
        with pytest.raises(RuntimeError, match="already open"):
            acct.open(2, "ETHUSDT", -1, 100.0, None, 10.0, self.NOW, 4)
        again = PaperAccount.from_dict(acct.to_dict())
        assert again == acct

    def test_bad_price_never_fills(self):
        with pytest.raises(ValueError):
            fill_price(-1, True, None, float("nan"), self.NOW)


# ── the decision loop without a bus ───────────────────────────────────────────────────────────


def _trader(tmp_path, market, **kw):
    s = load_settings(env={}, data_dir=str(tmp_path))
    j = Journal.open(tmp_path / "j.sqlite", tmp_path / "audit.log")
    return TraderCore(CoreLimits(), j, load_engine_params(), tuple(s.symbols), clock=lambda: market.t, **kw), j


def _run_until_entry(tr, m, start=1):
    n = start
    for n in range(start, start + 159):
        tr.process(m.scan(n, 0.0, 0, 0.001 + n * 0.00002))
    for n in range(n + 1, n + 60):  # noqa: B020 - continue numbering where the warm-up stopped
        r = tr.process(m.scan(n, -0.06, -0.002, 0.003))
        if r and r.get("entered"):
            return n, r
    raise AssertionError("no entry")


class TestDecisionLoop:
    def test_dedup_staleness_and_bad_prices(self, tmp_path):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        s = m.scan(1, 0.0)
        assert tr.process(s) is not None
        assert tr.process(dict(s)) is None and tr.scans_dup == 1
        old = m.scan(2, 0.0)
        m.t += 11
        assert tr.process(old) is None and tr.scans_stale == 1
        bad = m.scan(3, 0.0)
        bad["asset_prices"] = bad["asset_prices"][:-1]
        assert tr.process(bad) is None and tr.scans_bad == 1

    def test_acb_pending_flag_is_applied_on_the_next_bar(self, tmp_path):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        tr.process(m.scan(1, 0.0))
        assert tr.on_acb(1.35, 0.8) is True
        assert tr.on_acb(float("nan"), 0.8) is False     # dropped, keeps the valid one
        assert tr.on_acb("x", None) is False             # dropped
        assert tr.on_acb(1.2, -0.1) is False             # out of range
        assert tr._pending_acb == {"boost": 1.35, "beta": 0.8}
        tr.process(m.scan(2, 0.0))
        assert tr._pending_acb is None
        assert tr.engine.day_base_boost == 1.35 and tr.engine.day_beta == 0.8

    def test_hibernate_blocks_entries(self, tmp_path):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        tr.set_posture("HIBERNATE", "test")
        with pytest.raises(AssertionError, match="no entry"):
            _run_until_entry(tr, m)
        assert tr.account.trades == 0 and tr.account.position is None

    def test_mc_red_blocks_entries_for_the_day_and_orange_halves_size(self, tmp_path):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        tr.set_mc_status("RED", "test")
        tr.set_mc_status("PURPLE", "test")            # junk dropped, RED kept
        with pytest.raises(AssertionError, match="no entry"):
            _run_until_entry(tr, m)
        assert tr.engine.mc_status == "RED" and tr.engine.regime_dd_halt and tr.account.trades == 0
        m2 = Market(morning())
        (tmp_path / "o").mkdir()
        tr2, _ = _trader(tmp_path / "o", m2)
        tr2.set_mc_status("ORANGE", "test")
        tr2.process(m2.scan(1, 0.0))
        assert tr2.engine.mc_status == "ORANGE" and tr2.engine._mc_scale == 0.5 and not tr2.engine.regime_dd_halt

    def test_a_signal_held_back_by_a_gate_is_counted_and_logged_with_the_gate(self, tmp_path, caplog):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        tr.set_posture("TURTLE", "test")          # TURTLE halts entries (§11.7)
        with caplog.at_level("INFO", logger="event_trader"):
            with pytest.raises(AssertionError, match="no entry"):
                _run_until_entry(tr, m)
        assert tr.signals_not_taken > 0
        assert any("not taken: halted" in r.getMessage() for r in caplog.records)

    def test_restart_mid_position_restores_and_never_double_enters(self, tmp_path):
        m = Market(morning())
        tr, j = _trader(tmp_path, m)
        n, r = _run_until_entry(tr, m)
        cap, pos = tr.account.capital, tr.account.position
        last_scan = m.scan(n, -0.06)  # the same scan number delivered again after restart
        j.close()
        tr2, j2 = _trader(tmp_path, m)
        assert tr2.account.capital == cap and tr2.account.position == pos
        assert tr2.engine.position is not None and tr2.engine.position.trade_id == pos.trade_id
        assert tr2.process(last_scan) is None               # dedup across the restart
        r2 = tr2.process(m.scan(n + 1, -0.06, 0.0, 0.0005))
        assert "entered" not in r2
        entries = [e for e in j2.events("ENTRY")]
        assert len(entries) == 1

    def test_paper_trades_change_capital_exactly_by_fills(self, tmp_path):
        m = Market(morning())
        tr, j = _trader(tmp_path, m)
        n, _ = _run_until_entry(tr, m)
        for k in range(n + 1, n + 40):
            r = tr.process(m.scan(k, -0.06, -0.002, 0.003))
            if r and r.get("exited"):
                break
        exits = j.events("EXIT")
        assert exits, "expected the position to close on the falling market"
        x = exits[0]["payload"]
        e = j.events("ENTRY")[0]["payload"]
        assert x["capital_after"] == pytest.approx(25_000.0 - e["fee"] + x["gross"] - x["fee"])
        assert tr.engine.capital == tr.account.capital

    def test_gate_change_during_step_bar_is_flagged_stale(self, tmp_path):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        tr.process(m.scan(1, 0.0))
        original = tr.engine.step_bar

        def step_while_the_safety_listener_fires(*a, **kw):
            tr.set_posture("STALKER", "map-listener")   # the safety listener thread, mid-evaluation
            return original(*a, **kw)

        tr.engine.step_bar = step_while_the_safety_listener_fires
        r = tr.process(m.scan(2, 0.0))
        assert r["stale_state"] is True and tr.stale_state_events == 1
        tr.engine.step_bar = original
        assert tr.process(m.scan(3, 0.0))["stale_state"] is False

    def test_an_acb_update_between_scans_is_applied_and_not_flagged_stale(self, tmp_path):
        m = Market(morning())
        tr, _ = _trader(tmp_path, m)
        tr.process(m.scan(1, 0.0))
        beta0 = tr.engine.day_beta
        tr.on_acb(1.5, 0.8 if beta0 != 0.8 else 0.2)   # the listener, before the scan
        r = tr.process(m.scan(2, 0.0))
        assert r["stale_state"] is False and tr.stale_state_events == 0
        assert tr.engine.day_beta != beta0 and tr.engine.day_base_boost == pytest.approx(1.5)


# ── the core's outputs and its pluggable account ─────────────────────────────────────────────
class RecordingOutputs:
    def __init__(self):
        self.pnls, self.states, self.day_states, self.snaps = [], [], [], []

    def pnl(self, day, payload):
        self.pnls.append((day, payload))

    def state(self, payload):
        self.states.append(payload)

    def day_state(self, day, payload):
        self.day_states.append((day, payload))

    def snapshot(self, snap):
        self.snaps.append(snap)


class CountingAccount(PaperAccount):
    """Another account type with PaperAccount's interface (as a venue-backed one will have)."""

    opened = 0

    def open(self, *a, **kw):
        type(self).opened += 1
        return super().open(*a, **kw)


def test_core_hands_typed_pnl_and_state_to_its_outputs_and_uses_the_injected_account(tmp_path):
    from prod.bus import maps
    from prod.bus.payloads import EngineState, Pnl
    m = Market(morning())
    s = load_settings(env={}, data_dir=str(tmp_path))
    j = Journal.open(tmp_path / "j.sqlite", tmp_path / "audit.log")
    out = RecordingOutputs()
    tr = TraderCore(CoreLimits(snapshot_every_s=0.0), j, load_engine_params(), tuple(s.symbols),
                    clock=lambda: m.t, account_type=CountingAccount, outputs=out)
    assert isinstance(tr.account, CountingAccount)
    n, r = _run_until_entry(tr, m)
    assert CountingAccount.opened == 1 and out.snaps            # periodic snapshots between trades
    day, pnl = out.pnls[-1]
    assert isinstance(pnl, Pnl) and day == tr.account.day == pnl.date
    assert pnl.open_position["trade_id"] == r["entered"]["trade_id"]
    st = out.states[-1]
    assert isinstance(st, EngineState) and st.last_scan_number == n and st.account["position"] is not None
    assert maps.STATE_LATEST.decode(maps.STATE_LATEST.encode(st)).capital == tr.account.capital
    assert maps.PNL_BLUE_DAY.decode(maps.PNL_BLUE_DAY.encode(pnl, day), day).trades == pnl.trades
    # a scan of the next UTC day rolls the day: the day's final PnL and its state under state_blue_<date>
    first_day = tr.account.day
    m.t = (int(m.t // 86400) + 1) * 86400 + 1.0
    tr.process(m.scan(n + 1, 0.0))
    assert [d for d, _ in out.day_states] == [first_day]
    assert out.pnls[-1][0] == first_day and out.pnls[-1][1].day_end is True
    assert tr.account.day != first_day


def test_writes_while_the_bus_is_away_are_skipped_counted_and_logged_once_per_map(tmp_path, caplog):
    import queue
    from prod.runtime import Bus
    from services.event_trader.main import BusOutputs
    m = Market(morning())
    tr, _ = _trader(tmp_path, m)
    tr.process(m.scan(1, 0.0))
    out = BusOutputs(Bus(load_settings(env={}), "test-away"), queue.Queue())   # never started
    with caplog.at_level("WARNING", logger="event_trader"):
        for _ in range(3):
            out.pnl(tr.account.day, tr.pnl_payload(tr.account.day))
            out.state(tr.state_payload())
            out.day_state(tr.account.day, tr.state_payload())
    assert out.skipped_writes == 9
    lines = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    assert len(lines) == 2 and any("DOLPHIN_PNL_BLUE" in x for x in lines)


def test_decision_log_says_every_interval_what_the_trader_decided_and_what_it_held_back(caplog):
    """Issue 20: the trader logged nothing between posture changes."""
    import logging as _logging

    from services.event_trader.main import DecisionLog

    lg = _logging.getLogger("t.decisions")
    dl = DecisionLog(60.0, lg)
    d = {"scan_number": 7, "vel_div": -0.0123, "latency_ms": 1.0, "posture": "APEX", "vol_ok": True,
         "note": "no_signal"}
    with caplog.at_level(_logging.INFO, "t.decisions"):
        assert dl.offer(d, 0.0, 3) is None                      # starts the interval
        assert dl.offer({"scan_number": 8, "note": "scanner warming up"}, 30.0, 3) is None   # not a decision
        assert dl.offer({**d, "scan_number": 9}, 59.0, 4) is None
        line = dl.offer({**d, "scan_number": 10, "vel_div": None}, 60.5, 5)
    assert line == ("decision: scan 10 vel_div=n/a posture=APEX vol_ok=True note=no_signal | "
                    "3 scans, 2 signals held back since the last line")
    assert [r.getMessage() for r in caplog.records] == [line]
    assert dl.offer({**d, "scan_number": 11}, 61.0, 5) is None     # the next interval starts over


class TestGapGate:
    """Issue 21: a scan marked post-gap (gap_hold) never opens a position; the hold is journaled once."""

    def test_post_gap_scans_make_no_entry_and_the_gate_is_journaled(self, tmp_path, caplog):
        m = Market(morning())
        tr, j = _trader(tmp_path, m)
        for n in range(1, 160):
            tr.process(m.scan(n, 0.0, 0, 0.001 + n * 0.00002))
        with caplog.at_level("INFO", logger="event_trader"):
            for n in range(160, 220):            # the signal that enters in _run_until_entry, but post-gap
                s = m.scan(n, -0.06, -0.002, 0.003)
                s.update(gap_hold=True, gap_s=9000.0)
                r = tr.process(s)
                assert r is not None and r.get("gate") == "gap" and not r.get("entered")
        assert tr.account.position is None and tr.gap_held_scans == 60
        assert sum("[GAP]" in r.getMessage() for r in caplog.records) == 1
        gates = j.db.execute("SELECT payload FROM events WHERE kind='GATE'").fetchall()
        assert len(gates) == 1 and '"gate":"gap"' in gates[0][0]
        for n in range(220, 280):                # windows valid again: the same signal enters
            r = tr.process(m.scan(n, -0.06, -0.002, 0.003))
            if r and r.get("entered"):
                break
        else:
            raise AssertionError("no entry after the gap hold ended")


# ── the account's "not filled" path and forced exits (venue execution) ────────────────────────
class RefusingAccount(PaperAccount):
    """An account whose venue refuses the next entries with the given errors (as VenueAccount raises them)."""

    refusals: list = []

    def open(self, *a, **kw):
        if type(self).refusals:
            raise type(self).refusals.pop(0)
        return super().open(*a, **kw)


def test_entry_not_filled_killed_or_duplicate_leaves_no_position_and_is_journaled_not_taken(tmp_path):
    from prod.execution import DuplicateDecision, EntryNotFilled, KillSwitchActive
    RefusingAccount.refusals = [EntryNotFilled("EXPIRED with nothing filled"), KillSwitchActive("kill switch"),
                                DuplicateDecision("sent already")]
    m = Market(morning())
    s = load_settings(env={}, data_dir=str(tmp_path))
    j = Journal.open(tmp_path / "j.sqlite", tmp_path / "audit.log")
    tr = TraderCore(CoreLimits(), j, load_engine_params(), tuple(s.symbols), clock=lambda: m.t,
                    account_type=RefusingAccount)
    n = 1
    for n in range(1, 160):
        tr.process(m.scan(n, 0.0, 0, 0.001 + n * 0.00002))
    not_taken, entered = [], None
    for n in range(n + 1, n + 120):  # noqa: B020
        r = tr.process(m.scan(n, -0.06, -0.002, 0.003))
        if r and r.get("not_taken"):
            not_taken.append(r["not_taken"]["error"])
            assert tr.engine.position is None and tr.account.position is None
        if r and r.get("entered"):
            entered = r
            break
    assert not_taken == ["EntryNotFilled", "KillSwitchActive", "DuplicateDecision"]
    kinds = [e["kind"] for e in j.events()]
    assert kinds.count("ENTRY_NOT_TAKEN") == 3 and kinds.count("ENTRY") == 1
    assert entered is not None and tr.engine.position is not None and tr.account.position is not None
    # the restored journal agrees: one position, engine and account together
    j.close()
    j2 = Journal.open(tmp_path / "j.sqlite", tmp_path / "audit.log")
    tr2 = TraderCore(CoreLimits(), j2, load_engine_params(), tuple(s.symbols), clock=lambda: m.t,
                     account_type=RefusingAccount)
    assert tr2.account.position.trade_id == entered["entered"]["trade_id"]


class KilledAccount(PaperAccount):
    """An account whose kill switch flattened the position outside a decision (``kill_exits``)."""

    def kill(self, now):
        pos = self.position
        self.__dict__.setdefault("kill_exits", []).append(self.close("KILL_SWITCH", None, 100.0, now, -1))
        return pos


def test_kill_exit_is_booked_into_engine_and_journal_at_the_next_scan(tmp_path):
    m = Market(morning())
    tr, j = _trader(tmp_path, m, account_type=KilledAccount)
    n, r = _run_until_entry(tr, m)
    assert tr.engine.position is not None
    tr.account.kill(m.t)
    assert tr.account.position is None and tr.engine.position is not None     # not booked yet
    r = tr.process(m.scan(n + 1, 0.0))
    assert tr.engine.position is None and tr.engine.capital == tr.account.capital
    assert [x["reason"] for x in r["kill_exits"]] == ["KILL_SWITCH"] and not tr.account.kill_exits
    exits = [e for e in j.events() if e["kind"] == "EXIT"]
    assert len(exits) == 1 and '"KILL_SWITCH"' in json.dumps(exits[0])


def test_execution_mode_auto_is_venue_only_with_both_keys_and_the_secret_is_never_in_the_config_log(tmp_path):
    from prod.runtime.config import config_log_dict
    from services.event_trader.main import TraderConfig
    cfg = TraderConfig(settings=load_settings(env={}, data_dir=str(tmp_path)))
    assert cfg.execution_mode({}) == "paper"
    assert cfg.execution_mode({"DOLPHIN_VENUE_API_KEY": "k"}) == "paper"
    env = {"DOLPHIN_VENUE_API_KEY": "k", "DOLPHIN_VENUE_API_SECRET": "s3cr3t-value"}
    assert cfg.execution_mode(env) == "venue"
    assert TraderConfig(settings=cfg.settings, execution="paper").execution_mode(env) == "paper"
    assert "s3cr3t-value" not in json.dumps(config_log_dict(cfg), default=str)
    with pytest.raises(Exception, match="execution"):
        TraderConfig(settings=cfg.settings, execution="live-ish")


class FailingExitAccount(PaperAccount):
    """An account whose venue times out on the exit (the kill switch flag is its way out)."""

    def close(self, *a, **kw):
        raise TimeoutError("venue did not answer")


def test_exit_the_venue_cannot_do_engages_the_kill_switch_and_is_journaled_never_a_crash(tmp_path):
    from prod.execution.killswitch import KillSwitch
    m = Market(morning())
    tr, j = _trader(tmp_path, m, account_type=FailingExitAccount)
    tr.account.__dict__["kill_switch"] = KillSwitch(tmp_path / "KILL")
    n, _ = _run_until_entry(tr, m)
    failed = None
    for n in range(n + 1, n + 200):  # noqa: B020 - hold until the engine exits
        r = tr.process(m.scan(n, 0.0))
        if r and r.get("exit_failed"):
            failed = r["exit_failed"]
            break
    assert failed is not None and failed["error"] == "TimeoutError" and failed["kill_switch"] is True
    assert tr.account.kill_switch.active() and tr.account.position is not None
    assert [e["payload"]["error"] for e in j.events("EXIT_FAILED")] == ["TimeoutError"]
