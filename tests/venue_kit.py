"""The trader side of the tests against a venue-simulator process: the simulator's test key, a VenueAccount
on it, a quote book around a price."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

from prod.execution import Credentials, ExecConfig
from prod.trading.journal import Journal
from prod.trading.accounts import Book
from prod.trading.venue_account import VenueAccount
from tests.helpers import Proc, wait_until
from tests.market import scan_payload, walk

CREDS = Credentials("dolphin-sim-key", "dolphin-sim-secret")   # the simulator's default account key


def venue_account(port: int, tmp: Path, state=None, *, day: str, **kw) -> VenueAccount:
    """A VenueAccount (10,000 USDT allocation, 5 s fill timeout) on the simulator at ``port``, journal in ``tmp``,
    rolled to ``day``; ``state`` and ``kw`` go to :meth:`VenueAccount.connect`."""
    journal = Journal.open(tmp / "journal.sqlite", tmp / "audit.log")
    cfg = ExecConfig(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", fill_timeout_s=5.0)
    acct = VenueAccount.connect(cfg, journal, 10_000.0, state=state, creds=CREDS, **kw)
    acct.roll_day(day)
    return acct


def quote_book(px: float) -> Book:
    """A 2 bps wide book around ``px``, stamped now."""
    return Book(px * 0.9999, px * 1.0001, time.time())


def exec_driver(tmp: Path, port: int, cmd: str) -> Proc:
    """``tests.integration.exec_driver`` (a trader's venue account in its own process) running ``cmd`` against the
    simulator at ``port``, journal in ``tmp``."""
    return Proc("tests.integration.exec_driver", [str(tmp), str(port), cmd], tmp / f"driver_{cmd}.log").start()


def restart_report(tmp: Path, port: int) -> dict:
    """The exec driver restarted on the journal in ``tmp`` runs to its end; returns its REPORT line."""
    r = exec_driver(tmp, port, "restart")
    try:
        wait_until(lambda: r.p.poll() is not None, 40, what="restarted driver done")
    finally:
        r.kill()
    line = [ln for ln in r.log_text().splitlines() if ln.startswith('{"step": "REPORT"')]
    assert line, r.log_text()
    return json.loads(line[0])


def venue_trader_config(tmp: Path, port: int, marks: dict[str, float]):
    """The venue-mode trader config on the simulator at ``port`` (data under ``tmp/data``), its journal opened
    in a fresh trader dir, and the configured symbols the simulator quotes: ``(cfg, journal, symbols)``."""
    from prod.settings import load_settings
    from services.event_trader.main import TraderConfig
    settings = load_settings(env={}, data_dir=str(tmp / "data"), venue_rest=f"http://127.0.0.1:{port}",
                             venue_ws=f"ws://127.0.0.1:{port}")
    symbols = tuple(s for s in settings.symbols if s in marks)
    cfg = TraderConfig(settings=settings, execution="venue", fill_timeout_s=5.0)
    cfg.trader_dir.mkdir(parents=True)
    journal = Journal.open(cfg.trader_dir / "journal.sqlite", cfg.trader_dir / "audit.log")
    return cfg, journal, symbols


class RecordedScans:
    """Synthetic scans (random-walk prices from ``prices``) fed to a TraderCore between the parity recorder's
    ``begin_scan``/``end_scan``, as the live trader does; ``finish`` closes the recording."""

    def __init__(self, core, rec, prices: dict[str, float], rng: random.Random):
        self.core, self.rec, self.prices, self.rng, self.n = core, rec, prices, rng, 0

    def step(self, vd: float, drift: float, noise: float) -> dict:
        walk(self.prices, self.rng, drift, noise)
        self.n += 1
        t = time.time()
        sc = scan_payload(self.n, self.prices, vd, t)
        self.rec.begin_scan(sc, t)
        try:
            r = self.core.process(sc, t)
        finally:
            self.rec.end_scan()
        return r or {}

    def finish(self, journal: Journal) -> float:
        """Close the recording at the journal's end; return the live capital."""
        self.rec.close({"journal_end_id": journal.last_event_id(), "capital": self.core.account.capital,
                        "last_scan": self.core.last_scan})
        return self.core.account.capital
