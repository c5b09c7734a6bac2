"""Funding fees through the recorder and the parity replay (issue 29): booked live at a scan, replayed at the same one."""
from __future__ import annotations

import sqlite3

from prod.backtest import parity
from prod.settings import load_settings
from prod.trading.core import CoreLimits
from prod.trading.journal import Journal
from services.event_trader.main import TraderConfig, load_engine_params, start_recorder
from prod.execution.funding import apply_funding
from tests.integration.test_recorder_parity import VenueLike
from tests.market import Market, morning


class FundedVenue(VenueLike):
    """The venue-like account with VenueAccount's funding path: rows taken on another thread wait in ``funding_due``."""

    def book_funding(self, row):
        return apply_funding(self, row)


def _run(tmp_path):
    m = Market(morning(), seed=3)
    s = load_settings(env={}, data_dir=str(tmp_path))
    j = Journal.open(tmp_path / "journal.sqlite", tmp_path / "audit.log")
    params = load_engine_params()
    VenueLike.refused = True                      # no refusal in this run
    core, rec = start_recorder(TraderConfig(settings=s, record_dir=str(tmp_path / "recordings")),
                               dict(limits=CoreLimits(), symbols=tuple(s.symbols), clock=lambda: m.t + 0.001,
                                    account_type=FundedVenue), j, params, "venue")
    core.account.kill_exits, core.account.funding_due = [], []
    core.journal_event("TRADER_START", {"capital": core.account.capital, "last_scan": core.last_scan})
    booked, tran = [], 100
    for n in range(1, 400):
        sc = m.scan(n, 0.0 if n < 160 else (-0.06 if n < 260 else 0.01), 0.0 if n < 160 else -0.002,
                    0.001 + min(n, 159) * 0.00002 if n < 160 else 0.003)
        rec.begin_scan(sc, m.t)
        try:
            r = core.process(sc, m.t)
        finally:
            rec.end_scan()
        booked += (r or {}).get("funding", [])
        pos = core.account.position
        if pos is not None and n % 9 == 0:        # an 8-hour mark while in position: the venue charges funding
            tran += 1
            core.account.funding_due.append({"trade_id": pos.trade_id, "symbol": pos.symbol,
                                             "income": -0.0001 * pos.notional * (1 + tran % 3), "asset": "USDT",
                                             "time_ms": int(m.t * 1000), "tran_id": tran, "source": "venue"})
    rec.close({"journal_end_id": j.last_event_id(), "capital": core.account.capital, "last_scan": core.last_scan})
    j.close()
    return rec.dir, core.account.capital, booked


def test_funding_is_journaled_into_capital_and_the_replay_books_the_same_fee_at_the_same_scan(tmp_path):
    run_dir, cap, booked = _run(tmp_path)
    assert len(booked) >= 2, "the run must pay funding at least twice"
    code, diffs, s = parity.run_parity(run_dir)
    assert code == parity.EXIT_OK, diffs
    assert s["replay_capital"] == cap and s["trades"] >= 1
    live, _ = parity.live_events(parity.load_recording(run_dir), tmp_path / "journal.sqlite")
    fund = [e for e in live if e["kind"] == "FUNDING"]
    assert [e["payload"]["tran_id"] for e in fund] == [b["tran_id"] for b in booked]
    # the capital after each fee is the capital before it plus the fee (booked into PnL, not beside it)
    assert all(abs(e["payload"]["capital_after"] - b["capital_after"]) == 0 for e, b in zip(fund, booked))
    # a fee the replay would book differently is a difference: change one in the live journal
    con = sqlite3.connect(tmp_path / "journal.sqlite")
    row = con.execute("SELECT id, payload FROM events WHERE kind='FUNDING' ORDER BY id LIMIT 1").fetchone()
    con.execute("UPDATE events SET payload=? WHERE id=?", (row[1].replace('"income":-', '"income":-1'), row[0]))
    con.commit()
    con.close()
    code, diffs, _ = parity.run_parity(run_dir)
    assert code == parity.EXIT_DIFF and any("FUNDING" in d and "income" in d for d in diffs), diffs
