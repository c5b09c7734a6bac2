"""The one ledger: paper, venue and replayed accounts book the same entry and exit to the same numbers, at the
strategy's costs (EngineParams), and a strategy cost change reaches the paper account."""
from __future__ import annotations

import dataclasses

import pytest

from prod.alpha.params import EngineParams
from prod.trading.replay import RecordedFillsFactory
from prod.execution.orders import Fill as VenueFill
from prod.trading.accounts import Book, Costs, PaperAccount, PaperAccounts, Position
from prod.trading.journal import Journal
from prod.trading.venue_account import VenueAccount

NOW = 1_700_000_000.0
CAP = 10_000.0


def _paper_round_trip(costs: Costs, reason: str = "TAKE_PROFIT") -> tuple[PaperAccount, dict, dict]:
    acct = PaperAccounts(costs).new(CAP)
    acct.roll_day("2026-01-01")
    entry = acct.open(7, "ETHUSDT", -1, 5_000.0, Book(99.0, 99.1, NOW), 99.05, NOW, 11)
    exit_ = acct.close(reason, Book(97.9, 98.0, NOW + 60), 97.95, NOW + 60, 12)
    return acct, entry, exit_


def _ledger(acct) -> dict:
    d = acct.ledger_dict()      # the one ledger's part of each account's state
    return {k: d[k] for k in ("capital", "peak_capital", "position", "trades", "day", "day_start_capital",
                              "day_trades", "fees_paid")}


def test_paper_books_the_exit_with_the_strategy_costs():
    costs = Costs.of(EngineParams())
    acct, entry, exit_ = _paper_round_trip(costs)
    gross = -1 * (98.0 - 99.0) / 99.0 * 5_000.0          # a short bought back at the ask
    fee = costs.taker_fee * 5_000.0
    assert entry["price"] == 99.0 and entry["fee"] == pytest.approx(fee)
    assert exit_["gross"] == pytest.approx(gross) and exit_["net"] == pytest.approx(gross - 2 * fee)
    assert acct.capital == pytest.approx(CAP + gross - 2 * fee) == exit_["capital_after"]
    assert acct.trades == acct.day_trades == 1 and acct.position is None and acct.history == [exit_]


def test_a_strategy_fee_change_reaches_the_paper_account():
    params = dataclasses.replace(EngineParams(), taker_fee=0.001, other_slippage=0.003)
    acct = PaperAccounts(Costs.of(params)).new(CAP)
    f = acct.open(1, "ETHUSDT", 1, 1_000.0, None, 100.0, NOW, 1)     # no book: the scan price + the slippage
    assert f["fee"] == pytest.approx(1.0) and f["price"] == pytest.approx(100.3) and f["source"] == "scan+slip"
    x = acct.close("STOP_LOSS", None, 100.0, NOW, 2)
    assert x["price"] == pytest.approx(100.0 * (1 - params.stop_slippage))


def test_paper_venue_and_replayed_accounts_book_the_same_numbers(tmp_path):
    costs = Costs.of(EngineParams())
    paper, entry, exit_ = _paper_round_trip(costs)

    # the replay: the same fills, recorded, booked by the replay's account
    fac = RecordedFillsFactory(costs)
    rep = fac.new(CAP)
    rep.roll_day("2026-01-01")
    fac.calls[:] = [{"op": "open", "args": {"trade_id": 7, "symbol": "ETHUSDT", "direction": -1, "notional": 5_000.0},
                     "fill": dict(entry)},
                    {"op": "close", "args": {"reason": "TAKE_PROFIT"}, "fill": dict(exit_)}]
    rep.open(7, "ETHUSDT", -1, 5_000.0, None, 99.05, NOW, 11)
    rep.close("TAKE_PROFIT", None, 97.95, NOW + 60, 12)

    # the venue account: the same entry and the venue's exit fills (two partial fills at the same price)
    journal = Journal.open(tmp_path / "j.sqlite", tmp_path / "a.log")
    try:
        venue = VenueAccount(None, journal, CAP, costs=costs)
        venue.roll_day("2026-01-01")
        qty = 5_000.0 / 99.0
        venue.book_entry(Position(7, "ETHUSDT", -1, 99.0, 5_000.0, entry["fee"], NOW, 11, "venue"))
        venue.qty = qty
        half = exit_["fee"] / 2
        fills = [VenueFill(1, qty / 2, 98.0, half, False, 0.0, 1), VenueFill(2, qty / 2, 98.0, half, False, 0.0, 2)]
        vx = venue._book_exit(venue.position, fills, "TAKE_PROFIT", NOW + 60, 12)
    finally:
        journal.close()

    assert _ledger(paper) == pytest.approx(_ledger(rep))
    assert _ledger(venue) == pytest.approx(_ledger(paper))
    assert vx["gross"] == pytest.approx(exit_["gross"]) and vx["net"] == pytest.approx(exit_["net"])
    assert vx["capital_after"] == pytest.approx(exit_["capital_after"]) and vx["qty"] == pytest.approx(qty)


def test_restored_paper_account_keeps_its_costs_and_ledger():
    params = dataclasses.replace(EngineParams(), taker_fee=0.002)
    fac = PaperAccounts(Costs.of(params))
    acct, _, _ = _paper_round_trip(Costs.of(params))
    back = fac.from_dict(acct.to_dict())
    assert back.to_dict() == acct.to_dict() and back.costs.taker_fee == 0.002
    assert "costs" not in acct.to_dict()
