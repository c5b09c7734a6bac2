"""The engine and the account agree by construction: the account fills an entry before the engine opens it, so
a refused entry never opens (and is never undone) in the engine."""
from __future__ import annotations

from dataclasses import dataclass, field

from prod.execution import EntryNotFilled
from prod.settings import load_settings
from prod.trading.accounts import PaperAccount
from prod.trading.core import CoreLimits, TraderCore
from prod.trading.journal import Journal
from services.event_trader.main import load_engine_params
from tests.market import Market, morning


@dataclass(eq=False)
class WatchedAccount(PaperAccount):
    """A paper account that refuses its first entry and notes whether the engine held a position at each open."""

    engine_held: list = field(default_factory=list)
    core: list = field(default_factory=list)

    def open(self, *a, **kw):
        self.engine_held.append(self.core[0].engine.position is not None)
        if len(self.engine_held) == 1:
            raise EntryNotFilled("EXPIRED with nothing filled")
        return super().open(*a, **kw)


@dataclass
class WatchedAccounts:
    core: list = field(default_factory=list)

    def new(self, capital: float) -> WatchedAccount:
        return WatchedAccount(capital=capital, peak_capital=capital, day_start_capital=capital, core=self.core)

    def from_dict(self, d) -> WatchedAccount:
        acct = WatchedAccount(capital=0.0, peak_capital=0.0, core=self.core)
        acct.load_ledger(d)
        return acct


def test_the_account_fills_before_the_engine_opens_and_a_refusal_leaves_the_engine_flat(tmp_path):
    m = Market(morning())
    s = load_settings(env={}, data_dir=str(tmp_path))
    j = Journal.open(tmp_path / "j.sqlite", tmp_path / "audit.log")
    factory = WatchedAccounts()
    tr = TraderCore(CoreLimits(), j, load_engine_params(), tuple(s.symbols), clock=lambda: m.t,
                    account_type=factory)
    factory.core.append(tr)
    for n in range(1, 160):
        tr.process(m.scan(n, 0.0, 0, 0.001 + n * 0.00002))
    refused = entered = None
    for n in range(160, 280):
        r = tr.process(m.scan(n, -0.06, -0.002, 0.003))
        if r and r.get("not_taken"):
            refused = r
            assert tr.engine.position is None and tr.account.position is None
            assert r["note"] == "entry_not_taken"
        if r and r.get("entered"):
            entered = r
            break
    assert refused is not None and entered is not None
    assert tr.account.engine_held == [False, False]      # at both fills the engine was still flat
    assert tr.engine.position.trade_id == entered["entered"]["trade_id"] == tr.account.position.trade_id
    assert [e["kind"] for e in j.events() if e["kind"] in ("ENTRY", "ENTRY_NOT_TAKEN")] == ["ENTRY_NOT_TAKEN", "ENTRY"]
    j.close()
