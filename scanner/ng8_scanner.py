"""NG8 eigenscan service: sample venue prices every scan, run one ``enhance()`` pass, publish once.

Design notes: ``docs/design/scanner.md``.
"""
from __future__ import annotations

import os

# One BLAS thread: the scan's LAPACK calls are small, and on a shared host threaded BLAS spin-waits.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import asyncio
import json
import logging
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from prod import metrics
from prod.bus import maps
from prod.runtime import Bus, BusUnavailable, Clock, RateLog, Service
from prod.settings import ConfigError, Settings
from prod.scans import arrow_io
from scanner.pricebook import PriceBook
from scanner.records import build_record
from scanner.engine import HISTORY_ROWS, INSTABILITY_SCANS, MIN_ASSETS, WINDOWS, EigenEngine, ScanResult

log = logging.getLogger("scanner")

SERVICE = "scanner"


@dataclass(frozen=True)
class ScannerConfig:
    """Effective configuration of the scanner process (flags and ``DOLPHIN_SCANNER_*`` variables)."""

    ENV_PREFIX: ClassVar[str] = "DOLPHIN_SCANNER_"
    MODULE: ClassVar[str] = "scanner.ng8_scanner"
    settings: Settings
    precision: str = field(default="arb512", metadata={"help": "arb512 or float64"})
    stale_after_s: float | None = None
    backfill_max_gap_s: float | None = None
    heartbeat_s: float = 5.0
    max_scans: int | None = field(default=None, metadata={"help": "stop after this many scans (tests, smoke runs)"})
    bus: bool = field(default=True, metadata={"help": "--no-bus writes Arrow files only"})
    venue_backfill: bool = field(default=True, metadata={
        "help": "cold start from venue 1s klines when the archive is short"})
    universe: str = field(default="priority", metadata={
        "help": "obf: also scan every TRADING USDT perp into <data>/arrow_scans_obf (50-asset output unchanged)"})

    def __post_init__(self) -> None:
        if self.precision not in ("arb512", "float64"):
            raise ConfigError(f"--precision {self.precision!r}: expected arb512 or float64")
        if self.stale_after_s is not None and not self.stale_after_s > 0:
            raise ConfigError(f"--stale-after-s {self.stale_after_s}: must be > 0")
        if self.backfill_max_gap_s is not None and not self.backfill_max_gap_s >= 0:
            raise ConfigError(f"--backfill-max-gap-s {self.backfill_max_gap_s}: must be >= 0")
        if self.universe not in ("priority", "obf"):
            raise ConfigError(f"--universe {self.universe!r}: expected priority or obf")
        if self.max_scans is not None and self.max_scans < 1:
            raise ConfigError(f"--max-scans {self.max_scans}: must be >= 1")
        if not self.heartbeat_s > 0:
            raise ConfigError(f"--heartbeat-s {self.heartbeat_s}: must be > 0")

    @property
    def stale_s(self) -> float:
        if self.stale_after_s is not None:
            return self.stale_after_s
        return max(3.0 * self.settings.scan_interval_s, 15.0)

    @property
    def backfill_gap_s(self) -> float:
        if self.backfill_max_gap_s is not None:
            return self.backfill_max_gap_s
        return max(6.0 * self.settings.scan_interval_s, 30.0)

    @property
    def venue_rest(self) -> str:
        """REST base for the cold-start history: the configured one, or derived from a non-default websocket.

        The simulator serves REST and websockets on one port, so a scanner pointed at another
        websocket only (``--venue-ws``) takes its REST base from the same host.
        """
        s, default = self.settings, Settings()
        if s.venue_rest != default.venue_rest or s.venue_ws == default.venue_ws:
            return s.venue_rest
        return ("http" + s.venue_ws[2:]).split("/ws")[0].split("/stream")[0].rstrip("/")


def warm(engine: EigenEngine, rows: list[list[float | None]], timestamps_ns: list[int]) -> ScanResult | None:
    """Feed history rows through ``engine`` (the last INSTABILITY_SCANS + 1 with full scans); return the last result."""
    quiet = max(0, len(rows) - (INSTABILITY_SCANS + 1))
    for row in rows[:quiet]:
        engine.append(row)
    res = None
    for ts, row in zip(timestamps_ns[quiet:], rows[quiet:]):
        res = engine.enhance(row, ts)
    return res


VENUE_ROWS = max(WINDOWS) + INSTABILITY_SCANS + 2
VENUE_WAIT_S = 45.0     # how long a cold start waits for an unreachable venue before starting without its history


async def venue_backfill(cfg: "ScannerConfig", symbols: tuple[str, ...]):
    """Build an engine warmed from venue 1s klines; return (engine, last row, history) or None."""
    from prod.venue.rest import VenueRestClient
    from scanner import venue_backfill as vb
    s = cfg.settings
    t0 = time.monotonic()
    async with VenueRestClient(cfg.venue_rest, timeout_s=10.0, retries=2) as rest:
        # the venue may be starting beside us: wait for it (bounded) rather than cold-start for good
        if not await vb.wait_reachable(rest, VENUE_WAIT_S):
            return None
        hist = await vb.fetch_history(rest, symbols, VENUE_ROWS, s.scan_interval_s, cfg.stale_s)
    if hist is None:
        return None
    last = hist.rows[-1]
    if sum(p is not None for p in last) < MIN_ASSETS:
        log.warning("venue backfill: only %d of %d symbols have a price at market now; not used (cold start)",
                    sum(p is not None for p in last), len(symbols))
        return None
    engine = EigenEngine(symbols, precision_mode=cfg.precision)
    loop = asyncio.get_running_loop()
    res = await loop.run_in_executor(None, warm, engine, hist.rows, [t * 1_000_000 for t in hist.times_ms])
    lam = {w: res.windows[w].lambda_max for w in WINDOWS} if res is not None else {}
    log.info("backfilled %d scans from venue 1s klines (market time %d..%d ms, step %d ms = interval %gs x speed %g, "
             "%d/%d symbols complete, %d requests, %.1fs; warm %s; lambda %s)", len(hist.rows), hist.times_ms[0],
             hist.anchor_ms, hist.step_ms, s.scan_interval_s, hist.speed, len(hist.full), len(symbols),
             hist.requests, time.monotonic() - t0, res.warm_windows if res else [], json.dumps(lam))
    return engine, last, hist


VENUE_BACKFILL_TIMEOUT_S = 90.0


async def _bounded_venue_backfill(cfg: "ScannerConfig", symbols: tuple[str, ...], stop: asyncio.Event):
    """Run :func:`venue_backfill` bounded in time and interruptible by ``stop``; never raises."""
    task = asyncio.create_task(venue_backfill(cfg, symbols))
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, timeout=VENUE_BACKFILL_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            log.warning("venue backfill: %s; cold start", "stopped" if stop.is_set() else
                        f"no result after {VENUE_BACKFILL_TIMEOUT_S:.0f}s")
            task.cancel()
            return None
        return task.result()
    except Exception as exc:  # noqa: BLE001 - history is optional; the live scan must still start
        log.error("venue backfill failed (%s: %s); cold start", type(exc).__name__, exc)
        return None
    finally:
        stopper.cancel()


def backfill(engine: EigenEngine, arrow_dir: Path, symbols: tuple[str, ...], now_s: float,
             max_gap_s: float) -> list[float | None] | None:
    """Replay the recent contiguous archive into ``engine``; return the last prices used or None."""
    recs = arrow_io.latest_scans(arrow_dir, HISTORY_ROWS + INSTABILITY_SCANS)
    if not recs:
        return None
    if now_s - recs[-1]["timestamp_ns"] / 1e9 > max_gap_s:
        log.info("backfill: newest archived scan is %.1fs old (> %.1fs); cold start",
                 now_s - recs[-1]["timestamp_ns"] / 1e9, max_gap_s)
        return None
    start = len(recs) - 1
    while start > 0 and 0 < (recs[start]["timestamp_ns"] - recs[start - 1]["timestamp_ns"]) / 1e9 <= max_gap_s:
        start -= 1
    recs = recs[start:]
    rows = []
    for r in recs:
        pos = {a: p for a, p in zip(r["assets"], r["prices"])}
        rows.append([pos.get(s) for s in symbols])
    warm(engine, rows, [r["timestamp_ns"] for r in recs])
    log.info("backfill: %d archived scans (scan %d..%d) loaded into the price history",
             len(rows), recs[0]["scan_number"], recs[-1]["scan_number"])
    return rows[-1]


class ScanPublisher:
    """One map write per scan through the bus, never blocking the scan loop; failures counted."""

    def __init__(self, bus: Bus | None):
        self.bus = bus
        self.failures = 0
        self.rl = RateLog(log, 10.0)

    def put(self, payload: dict, scan_number: int) -> bool:
        metrics.record_scan(payload)
        if self.bus is None:
            return False
        try:
            fut = self.bus.publish(maps.EIGEN_SCAN, payload, wait=False)
        except BusUnavailable:
            self.failures += 1
            self.rl.warning("down", "bus: not connected; scan %d not written to the map (Arrow file kept; "
                                    "%d scans missed so far)", scan_number, self.failures)
            return False

        def _done(f, n=scan_number):
            try:
                f.result()
            except Exception as exc:  # noqa: BLE001 - member away: counted, the next scan retries
                self.failures += 1
                self.rl.warning("write", "bus: map write of scan %d failed: %s", n, exc)
        fut.add_done_callback(_done)
        return True

    def heartbeat(self, **fields) -> None:
        if self.bus is None:
            return
        try:
            self.bus.heartbeat(**fields)
        except BusUnavailable:
            pass


async def scan_loop(cfg: ScannerConfig, bus: Bus | None, clock: Clock, stop: asyncio.Event) -> int:
    """Run the scanner until ``stop`` is set (or ``max_scans`` scans); return the number of scans."""
    from prod.venue.schemas import MarkPriceArrayEvent, MarkPriceEvent
    from prod.venue.stream import VenueStreamClient

    s = cfg.settings
    symbols = tuple(s.symbols)
    arrow_dir = s.arrow_dir
    engine = EigenEngine(symbols, precision_mode=cfg.precision)
    book = PriceBook(symbols, cfg.stale_s, clock.monotonic)
    source = f"{s.venue_ws} markPrice@1s"

    def on_event(ev) -> None:
        if isinstance(ev, MarkPriceEvent):
            book.offer(ev.symbol, ev.mark_price, source)
        elif isinstance(ev, MarkPriceArrayEvent):
            for it in ev.items:
                book.offer(it.symbol, it.mark_price, source)

    # the price feed runs while history loads, so the first scan after the backfill has prices
    feed = VenueStreamClient(s.venue_ws, [f"{x.lower()}@markPrice@1s" for x in symbols], on_event=on_event,
                             name="scanner-venue", stall_timeout_s=max(10.0, cfg.stale_s))
    feed_task = asyncio.create_task(feed.run())
    uni = None
    if cfg.universe == "obf":   # whole-universe scan beside the 50-asset one (scanner/universe.py)
        from scanner import universe
        uni = await universe.start(s, cfg.precision, cfg.stale_s, clock.monotonic)
    last = backfill(engine, arrow_dir, symbols, clock.time(), cfg.backfill_gap_s)
    scan_number = arrow_io.last_scan_number(arrow_dir)
    log.info("scan numbering resumes after %d (archive %s)", scan_number, arrow_dir)
    out = ScanPublisher(bus)
    loop = asyncio.get_running_loop()
    interval = s.scan_interval_s
    need_venue = engine.rows < HISTORY_ROWS and cfg.venue_backfill
    if engine.rows < HISTORY_ROWS and not cfg.venue_backfill:
        log.info("venue backfill disabled; windows stay null until live scans fill them")

    async def prepare():
        got = await _bounded_venue_backfill(cfg, symbols, stop) if need_venue else None
        if bus is not None:
            # one map write per scan: do not start scanning before the bus is there (bounded wait)
            if not await loop.run_in_executor(None, bus.wait_connected, s.hz_connect_timeout_s):
                log.warning("bus: not connected after %.1fs; scanning anyway (Arrow only until it is)",
                            s.hz_connect_timeout_s)
        return got

    # While history loads, the book is sampled on the scan grid (no scan numbers, nothing published):
    # the samples after the venue history's market "now" bridge it to the first published scan, so
    # every return in the windows spans one scan step however long the fetch took (market time runs
    # speed x faster than wall time on the simulator).
    t0 = clock.monotonic()
    k = 1
    pending: list[tuple[float, list[float | None]]] = []
    prep = asyncio.create_task(prepare())
    while not prep.done():
        delay = t0 + k * interval - clock.monotonic()
        if delay > 0:
            await asyncio.wait({prep}, timeout=delay)
            if prep.done():
                break
        k += 1 + max(0, int((clock.monotonic() - (t0 + k * interval)) / interval))
        prices = book.sample()
        if any(p is not None for p in prices):
            pending.append((time.monotonic(), prices))
    got = prep.result()
    if got is not None:
        engine, vlast, hist = got
        bridge = [(t, p) for t, p in pending if t >= hist.anchor_wall + interval / 2]
        if bridge:
            await loop.run_in_executor(None, warm, engine, [p for _, p in bridge],
                                       [clock.time_ns() - int((time.monotonic() - t) * 1e9) for t, _ in bridge])
            log.info("bridged %d live samples (scan cadence, not published) between the venue history and the "
                     "first scan", len(bridge))
        last = vlast
    if last is not None and not pending:      # with samples taken, the book's jump references are current
        book.seed_reference(last)
    engine.set_cadence(interval)          # spacing-gap rule from here on (history timestamps are market time)
    produced = 0
    archive_faults = 0
    archive_error: str | None = None
    next_t = t0 + k * interval
    last_hb = -math.inf
    waiting_logged = False
    try:
        while not stop.is_set():
            now = clock.monotonic()
            if now < next_t:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=next_t - now)
                except asyncio.TimeoutError:
                    pass
                continue
            behind = int((now - next_t) / interval)
            if behind > 0:
                log.warning("scan loop %d interval(s) behind; skipping them", behind)
            next_t += (behind + 1) * interval
            prices = book.sample()
            if all(p is None for p in prices):
                if not waiting_logged:
                    log.info("waiting for the first venue prices (%s)", source)
                    waiting_logged = True
                continue
            scan_number += 1
            ts_ns = clock.time_ns()
            res = await loop.run_in_executor(None, engine.enhance, prices, ts_ns)
            rec = build_record(scan_number, res)
            try:
                path = arrow_io.write_scan(arrow_dir, rec)
                archive_error = None
            except OSError as exc:
                # the archive is the record, but a full or read-only disk must not blind the trader:
                # the scan still goes on the bus and the fault rides in the heartbeat (MHS reports it)
                archive_faults += 1
                archive_error = f"{type(exc).__name__}: {exc}"
                out.rl.error("arrow", "scan %d: Arrow write failed (%s); published to the bus only "
                                      "(%d archive faults so far)", scan_number, exc, archive_faults)
                path = None
            out.put(arrow_io.payload_from_record(rec, clock.time()), scan_number)
            if uni is not None:
                await loop.run_in_executor(None, uni.scan, scan_number, ts_ns)
            produced += 1
            log.debug("scan %d -> %s vel_div=%s warm=%s", scan_number, path.name if path else "(no archive)",
                      res.vel_div, res.warm_windows)
            if clock.monotonic() - last_hb >= cfg.heartbeat_s or (archive_error and archive_faults == 1):
                last_hb = clock.monotonic()
                out.heartbeat(scan_number=scan_number, warm_windows=res.warm_windows,
                              n_assets=res.n_assets, rejected_ticks=book.rejected,
                              precision_fallbacks=engine.fallbacks, bus_failures=out.failures,
                              archive_faults=archive_faults, archive_error=archive_error)
            if cfg.max_scans is not None and produced >= cfg.max_scans:
                break
    finally:
        if uni is not None:
            await uni.stop()
        await feed.stop()
        feed_task.cancel()
        try:
            await feed_task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass
        log.info("scanner stopped after %d scans (last scan number %d)", produced, scan_number)
    return produced


def run(cfg: ScannerConfig, bus: Bus, clock: Clock, stop: threading.Event) -> int:
    """Service entry: run the asyncio scan loop until ``stop``; exit 0."""
    log.info("scanner schema %s; venue REST for the cold start: %s", arrow_io.SCHEMA_VERSION, cfg.venue_rest)

    async def _main() -> int:
        astop = asyncio.Event()
        lp = asyncio.get_running_loop()
        threading.Thread(target=lambda: (stop.wait(), lp.call_soon_threadsafe(astop.set)),
                         name="scanner-stop", daemon=True).start()
        return await scan_loop(cfg, bus if cfg.bus else None, clock, astop)

    asyncio.run(_main())
    return 0


def main(argv: list[str] | None = None) -> int:
    return Service.main(SERVICE, ScannerConfig, run, argv, description=__doc__.splitlines()[0],
                        connect=lambda cfg: cfg.bus)


if __name__ == "__main__":
    from prod.runtime.service import without_pandas
    without_pandas()   # the scanner does not use pandas; pyarrow would load it
    sys.exit(main())
