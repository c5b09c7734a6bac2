"""``--universe obf``: the eigenscan of every TRADING USDT perpetual (540+), beside the 50-asset scan.

Design notes: ``docs/design/scanner.md``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from prod.settings import PRIORITY_SYMBOLS, Settings
from prod.scans import arrow_io
from scanner.engine import EigenEngine
from scanner.pricebook import PriceBook   # the scanner's tick rules, shared
from scanner.records import build_record

log = logging.getLogger("scanner.universe")

ARROW_SUBDIR = "arrow_scans_obf"
ALL_MARKET_STREAM = "!markPrice@arr@1s"


def order_universe(discovered: list[str]) -> tuple[str, ...]:
    """PRIORITY_SYMBOLS present in ``discovered`` first (in their order), then the rest as discovered."""
    have = set(discovered)
    head = [s for s in PRIORITY_SYMBOLS if s in have]
    rest = [s for s in dict.fromkeys(discovered) if s not in set(head)]
    return tuple(head + rest)


async def discover(settings: Settings, attempts: int = 5) -> tuple[str, ...]:
    """TRADING USDT perpetuals of the venue (retried with backoff); empty tuple if it never answers."""
    from prod.venue import VenueError, VenueRestClient
    delay = 0.5
    for k in range(attempts):
        try:
            async with VenueRestClient(settings.venue_rest, timeout_s=10.0, retries=2) as rest:
                return order_universe([s.symbol for s in await rest.trading_perpetuals("USDT")])
        except (VenueError, OSError, asyncio.TimeoutError) as exc:
            log.warning("universe discovery: exchangeInfo failed (%s); retry %d/%d in %.1fs",
                        exc, k + 1, attempts, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return ()


class UniverseScan:
    """The whole-universe scan: its own price book, engine and Arrow archive."""

    def __init__(self, symbols: tuple[str, ...], settings: Settings, precision: str, stale_s: float,
                 clock_monotonic):
        self.symbols = symbols
        self.book = PriceBook(symbols, stale_s, clock_monotonic)
        self.engine = EigenEngine(symbols, precision_mode=precision)
        self.arrow_dir = Path(settings.data_dir) / ARROW_SUBDIR
        self.source = f"{settings.venue_ws} {ALL_MARKET_STREAM}"
        self.failures = 0
        self._last_err = -1e18
        self.feed = None
        self._task = None

    def on_event(self, ev) -> None:
        from prod.venue.schemas import MarkPriceArrayEvent, MarkPriceEvent
        if isinstance(ev, MarkPriceArrayEvent):
            for it in ev.items:
                self.book.offer(it.symbol, it.mark_price, self.source)
        elif isinstance(ev, MarkPriceEvent):
            self.book.offer(ev.symbol, ev.mark_price, self.source)

    def start_feed(self, ws_base: str, stall_timeout_s: float) -> None:
        from prod.venue.stream import VenueStreamClient
        self.feed = VenueStreamClient(ws_base, [ALL_MARKET_STREAM], on_event=self.on_event,
                                      name="scanner-universe", stall_timeout_s=stall_timeout_s)
        self._task = asyncio.create_task(self.feed.run())

    async def stop(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    def scan(self, scan_number: int, ts_ns: int) -> Path | None:
        """Sample the universe book, run one ``enhance`` and write the Arrow file; None on failure."""
        try:
            prices = self.book.sample()
            if all(p is None for p in prices):
                return None
            res = self.engine.enhance(prices, ts_ns)
            return arrow_io.write_scan(self.arrow_dir, build_record(scan_number, res))
        except Exception as exc:  # noqa: BLE001 - the 50-asset scan must go on
            self.failures += 1
            if time.monotonic() - self._last_err >= 30.0:
                self._last_err = time.monotonic()
                log.error("universe scan %d failed (%s: %s); %d failures so far", scan_number,
                          type(exc).__name__, exc, self.failures)
            return None


async def start(settings: Settings, precision: str, stale_s: float, clock_monotonic) -> UniverseScan | None:
    """Discover the universe and start its price feed; None (logged) when the venue lists nothing."""
    symbols = await discover(settings)
    if len(symbols) < 10:
        log.error("universe: %d symbols discovered; --universe obf disabled, 50-asset scan only", len(symbols))
        return None
    uni = UniverseScan(symbols, settings, precision, stale_s, clock_monotonic)
    uni.start_feed(settings.venue_ws, max(10.0, stale_s))
    log.info("universe: %d symbols (%d priority first) on %s; scans -> %s", len(symbols),
             sum(s in set(PRIORITY_SYMBOLS) for s in symbols), ALL_MARKET_STREAM, uni.arrow_dir)
    return uni
