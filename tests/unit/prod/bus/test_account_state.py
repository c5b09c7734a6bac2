"""The one decoder of the trader's account state (``EngineState.account``), shared by the TUI, the web console
and the alerts: what the accounts write decodes; garbage gives an empty account and an error naming the source."""
from __future__ import annotations

import json

import pytest

from prod.alpha.params import EngineParams
from prod.bus import maps
from prod.bus.payloads import AccountState, EngineState, PayloadError
from prod.trading.accounts import Book, Costs, PaperAccounts

NOW = 1_700_000_000.0


def _state(account) -> dict:
    return {"strategy": "blue", "capital": 100.0, "updated_at": NOW, "account": account}


def _paper_account() -> dict:
    acct = PaperAccounts(Costs.of(EngineParams())).new(10_000.0)
    acct.roll_day("2026-01-01")
    acct.open(1, "ETHUSDT", -1, 1_000.0, Book(99.0, 99.1, NOW), 99.0, NOW, 1)
    acct.close("TAKE_PROFIT", Book(98.0, 98.1, NOW), 98.0, NOW + 5, 2)
    acct.open(2, "BTCUSDT", 1, 2_000.0, Book(50_000.0, 50_001.0, NOW), 50_000.0, NOW + 6, 3)
    return acct.to_dict()


def test_what_the_paper_account_writes_decodes_through_the_bus():
    raw = maps.encode(maps.STATE_BLUE, maps.KEY_LATEST, _state(_paper_account()))
    st = maps.decode(maps.STATE_BLUE, maps.KEY_LATEST, raw)
    assert isinstance(st, EngineState)
    acct, err = AccountState.read(st, "test")
    assert err is None
    assert acct.position is not None and acct.position["symbol"] == "BTCUSDT" and acct.position["trade_id"] == 2
    assert [t["trade_id"] for t in acct.closed_trades] == [1] and acct.trades == 1 and acct.day == "2026-01-01"
    assert acct.capital == pytest.approx(json.loads(raw)["account"]["capital"]) and acct.safety is None


def test_a_venue_account_block_and_a_dict_state_decode():
    d = _paper_account()
    d["safety"] = {"frozen": True, "reasons": ["position differs"], "margin_calls": 2}
    d["venue"] = {"qty": 0.04}
    acct, err = AccountState.read(_state(d), "test")
    assert err is None and acct.safety["frozen"] is True and acct.venue == {"qty": 0.04}


def test_no_account_is_an_empty_account():
    for state in (_state({}), {"strategy": "blue"}, None, "junk"):
        acct, err = AccountState.read(state, "test")
        assert err is None and acct.position is None and acct.closed_trades == []


@pytest.mark.parametrize("account, what", [
    ("not an object", "expected a JSON object"),
    ({"capital": "lots"}, "account_state.capital"),
    ({"capital": float("inf")}, "account_state.capital"),
    ({"position": {"symbol": "ETHUSDT", "direction": "short", "entry_price": 1.0, "notional": 1.0}}, "direction"),
    ({"position": {"symbol": "ETHUSDT"}}, "missing field"),
    ({"history": "nope"}, "account_state.history"),
    ({"trades": True}, "account_state.trades"),
])
def test_garbage_gives_an_empty_account_and_an_error_naming_the_source(account, what):
    acct, err = AccountState.read(_state(account), "DOLPHIN_STATE_BLUE['latest']")
    assert acct == AccountState() and acct.position is None
    assert err is not None and "DOLPHIN_STATE_BLUE['latest'].account" in err and what in err


def test_history_items_that_are_not_objects_are_skipped():
    acct, err = AccountState.read(_state({"history": [{"trade_id": 1}, 7, None, "x"]}), "test")
    assert err is None and acct.closed_trades == [{"trade_id": 1}]


def test_a_bad_position_built_in_code_fails_validation_naming_the_source():
    with pytest.raises(PayloadError, match=r"trader: account_state.position: account_position is missing field"):
        AccountState(position={"symbol": "X"}).validate("trader")
