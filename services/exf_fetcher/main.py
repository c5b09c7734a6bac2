"""exf_fetcher: external factors (funding, DVOL, fear & greed, taker ratio) → ``exf_latest`` (bible §16.7).

Design notes: ``docs/design/services.exf_fetcher.md``.
"""
from __future__ import annotations

import asyncio
import io
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, ClassVar, Sequence

import aiohttp

from prod.aio import stop_event
from prod.bus import maps
from prod.runtime import Bus, BusUnavailable, Clock, RateLog, Service, SystemClock, atomic_write
from prod.settings import Settings
from prod.venue import DvolCandle, FearGreed, PremiumIndex, TakerRatio, VenueError, VenueRestClient
from prod.venue.macro import DeribitClient, FearGreedClient

SERVICE = "exf_fetcher"
log = logging.getLogger(SERVICE)
INDICATORS = ("funding_btc", "dvol_btc", "fng", "taker")


class FetchError(Exception):
    """One fetch failed (HTTP error, timeout, malformed body); the message names the URL."""


def _num(x: Any, what: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(x, bool):
        raise FetchError(f"{what}: bool is not a number")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise FetchError(f"{what}: not a number ({x!r:.40})") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise FetchError(f"{what}: out of range ({v})")
    return v


def pick_funding(items: Sequence[PremiumIndex]) -> tuple[float, float]:
    """premiumIndex rows → (BTCUSDT lastFundingRate, ts seconds); a rate beyond ±5 % is rejected."""
    row = next((x for x in items if x.symbol == "BTCUSDT"), None)
    if row is None:
        raise FetchError("premiumIndex: no BTCUSDT row")
    return _num(row.last_funding_rate, "lastFundingRate", -0.05, 0.05), row.time_ms / 1000.0


def pick_dvol(candles: Sequence[DvolCandle]) -> tuple[float, float]:
    """DVOL candles → (close of the newest, ts seconds)."""
    if not candles:
        raise FetchError("volatility index: no candles")
    last = max(candles, key=lambda c: c.timestamp_ms)
    return _num(last.close, "dvol close", 0.0, 1000.0), last.timestamp_ms / 1000.0


def pick_fng(items: Sequence[FearGreed]) -> tuple[float, float]:
    """fear & greed rows (newest first) → (value 0–100, ts seconds)."""
    if not items:
        raise FetchError("fng: no data")
    last = max(items, key=lambda x: x.timestamp_s)
    return _num(last.value, "fng value", 0.0, 100.0), float(last.timestamp_s)


def pick_taker(items: Sequence[TakerRatio]) -> tuple[float, float]:
    """taker ratio rows → (newest buySellRatio, ts seconds)."""
    if not items:
        raise FetchError("takerlongshortRatio: no rows")
    last = max(items, key=lambda x: x.timestamp_ms)
    return _num(last.buy_sell_ratio, "buySellRatio", 0.0, 100.0), last.timestamp_ms / 1000.0


@dataclass(frozen=True)
class ExfConfig:
    """Effective configuration of exf_fetcher (frozen; each field a flag and a DOLPHIN_EXF_* variable)."""

    ENV_PREFIX: ClassVar[str] = "DOLPHIN_EXF_"
    settings: Settings
    dvol_url: str = ""              # "" = venue REST
    fng_url: str = ""
    funding_interval_s: float = 30.0
    dvol_interval_s: float = 60.0
    fng_interval_s: float = 300.0
    taker_interval_s: float = 60.0
    stale_factor: float = 3.0
    push_s: float = 10.0
    history_s: float = 60.0
    warmup_s: float = field(default=0.0, metadata={"flags": ("--warmup",),
                                                   "help": "seconds before a partial first push"})
    retries: int = 2
    timeout_s: float = 5.0
    heartbeat_s: float = 5.0
    write_timeout_s: float = 3.0        # acknowledgement of one bus write
    hz_connect_timeout_s: float = 3.0   # one connection attempt of the bus

    def __post_init__(self) -> None:
        for k in ("funding_interval_s", "dvol_interval_s", "fng_interval_s", "taker_interval_s", "push_s",
                  "history_s", "timeout_s", "heartbeat_s", "write_timeout_s", "hz_connect_timeout_s"):
            if not getattr(self, k) > 0:
                raise ValueError(f"exf_fetcher config: {k} must be > 0")
        if self.stale_factor < 1 or self.retries < 0 or self.warmup_s < 0:
            raise ValueError("exf_fetcher config: stale_factor >= 1, retries >= 0, warmup >= 0 required")


@dataclass(frozen=True)
class Sources:
    """The three REST clients ExF reads: Binance, Deribit, alternative.me."""
    binance: VenueRestClient
    deribit: DeribitClient
    fng: FearGreedClient


@dataclass
class Indicator:
    name: str
    interval_s: float
    source: str
    fetch: Callable[[Sources], Awaitable[tuple[float, float]]]
    value: float | None = None
    ts: float | None = None
    fetched_at: float | None = None
    failures: int = 0
    error: str | None = None
    next_at: float = 0.0
    fail_backoff: float = 2.0

    def status(self, now: float, stale_factor: float) -> str:
        if self.value is None or self.fetched_at is None:
            return "MISSING"
        if now - self.fetched_at > stale_factor * self.interval_s:
            return "STALE"
        return "DEGRADED" if self.failures else "OK"


def build_indicators(cfg: ExfConfig, clock: Clock | None = None) -> list[Indicator]:
    clock = clock or SystemClock()
    rest = cfg.settings.venue_rest.rstrip("/")
    dvol = (cfg.dvol_url or rest).rstrip("/")
    fng = (cfg.fng_url or rest).rstrip("/")

    async def f_funding(r: Sources) -> tuple[float, float]:
        return pick_funding(await r.binance.premium_index("BTCUSDT"))

    async def f_dvol(r: Sources) -> tuple[float, float]:
        end = int(clock.time() * 1000)
        return pick_dvol(await r.deribit.dvol("BTC", start_ms=end - 3_600_000, end_ms=end, resolution="60"))

    async def f_fng(r: Sources) -> tuple[float, float]:
        return pick_fng(await r.fng.fear_greed(1))

    async def f_taker(r: Sources) -> tuple[float, float]:
        return pick_taker(await r.binance.taker_long_short_ratio("BTCUSDT", "5m", 1))

    return [
        Indicator("funding_btc", cfg.funding_interval_s, f"{rest}/fapi/v1/premiumIndex", f_funding),
        Indicator("dvol_btc", cfg.dvol_interval_s, f"{dvol}/api/v2/public/get_volatility_index_data", f_dvol),
        Indicator("fng", cfg.fng_interval_s, f"{fng}/fng/", f_fng),
        Indicator("taker", cfg.taker_interval_s, f"{rest}/futures/data/takerlongshortRatio", f_taker),
    ]


def build_payload(inds: list[Indicator], now: float, stale_factor: float) -> dict:
    """Return the exf_latest payload for the indicators' current state."""
    out: dict[str, Any] = {"_pushed_at": now, "indicators": {}}
    n_ok = 0
    for ind in inds:
        st = ind.status(now, stale_factor)
        usable = st in ("OK", "DEGRADED")
        n_ok += usable
        out[ind.name] = ind.value if usable else None
        out["indicators"][ind.name] = {
            "value": ind.value, "ts": ind.ts, "fetched_at": ind.fetched_at,
            "age_s": None if ind.fetched_at is None else max(0.0, now - ind.fetched_at),
            "status": st, "failures": ind.failures, "error": ind.error, "interval_s": ind.interval_s}
    out["n_ok"] = n_ok
    return out


def _atomic_parquet(rows: list[dict], base: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    by_day: dict[str, list[dict]] = {}
    for r in rows:
        by_day.setdefault(time.strftime("%Y-%m-%d", time.gmtime(r["ts"])), []).append(r)
    for day, rs in by_day.items():
        d = base / f"date={day}"
        d.mkdir(parents=True, exist_ok=True)
        nums = [int(p.stem.split("-")[1]) for p in d.glob("part-*.parquet") if p.stem.split("-")[1].isdigit()]
        path = d / f"part-{(max(nums) + 1) if nums else 0:03d}.parquet"
        cols = ["ts", *INDICATORS, *(f"{n}_status" for n in INDICATORS)]
        schema = pa.schema([("ts", pa.float64()), *((n, pa.float64()) for n in INDICATORS),
                            *((f"{n}_status", pa.string()) for n in INDICATORS)])
        table = pa.table({c: [r.get(c) for r in rs] for c in cols}, schema=schema)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        atomic_write(path, buf.getvalue())


class Fetcher:
    """Schedules the indicators, pushes exf_latest, keeps the Parquet history."""

    def __init__(self, cfg: ExfConfig, bus: Bus, clock: Clock):
        self.cfg = cfg
        self.clock = clock
        self.inds = build_indicators(cfg, clock)
        self.bus = bus
        self.rl = RateLog(log)
        self.rows: list[dict] = []
        self.t0 = clock.time()
        self.last_push = 0.0
        self.last_sig: tuple | None = None
        self.last_hist_sig: tuple | None = None
        self.last_hist_row = 0.0
        self.pushes = 0
        self.bus_failures = 0

    async def fetch_one(self, rest: Sources, ind: Indicator) -> None:
        """One scheduled fetch (the REST client retries transient errors ``--retries`` times)."""
        try:
            value, ts = await ind.fetch(rest)
        except (FetchError, VenueError, aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            ind.failures += 1
            ind.error = f"{type(exc).__name__}: {exc}"[:200]
            self.rl.warning(f"fail:{ind.name}", "%s: fetch %s failed (%d in a row): %s",
                            ind.name, ind.source, ind.failures, ind.error)
            ind.next_at = self.clock.time() + min(ind.interval_s, ind.fail_backoff)
            ind.fail_backoff = min(ind.interval_s, ind.fail_backoff * 2)
            return
        now = self.clock.time()
        ind.value, ind.ts, ind.fetched_at = value, ts, now
        if ind.failures:
            log.info("%s recovered after %d failure(s)", ind.name, ind.failures)
        ind.failures, ind.error = 0, None
        ind.fail_backoff = 2.0
        ind.next_at = now + ind.interval_s

    def _bus(self, what: str, fn: Callable[[Bus], Any]) -> bool:
        """Run ``fn(bus)``; on a bus failure count it, log it rate-limited and return False."""
        try:
            fn(self.bus)
            return True
        except Exception as exc:  # noqa: BLE001 - bus away, no ack, client error: keep fetching, retry
            self.bus_failures += 1
            why = "not connected" if isinstance(exc, BusUnavailable) else repr(exc)
            self.rl.warning(f"bus:{what}", "bus %s skipped (%s); fetching goes on (bus failures so far: %d)",
                            what, why, self.bus_failures)
            return False

    def push(self, now: float, force: bool = False) -> bool:
        """Push exf_latest on a change or every ``push_s``; record the history row either way."""
        cfg = self.cfg
        sig = tuple((i.value, i.ts, i.status(now, cfg.stale_factor), i.failures) for i in self.inds)
        if not force and sig == self.last_sig and now - self.last_push < cfg.push_s:
            return False
        if now - self.t0 < cfg.warmup_s and any(i.value is None for i in self.inds):
            return False
        payload = build_payload(self.inds, now, cfg.stale_factor)
        if sig != self.last_hist_sig or now - self.last_hist_row >= cfg.push_s:
            self.last_hist_sig, self.last_hist_row = sig, now     # history is kept while the bus is down too
            self.rows.append({"ts": now, **{n: payload[n] for n in INDICATORS},
                              **{f"{n}_status": payload["indicators"][n]["status"] for n in INDICATORS}})
        if self._bus("push", lambda b: b.publish(maps.EXF, payload, timeout=cfg.write_timeout_s)):
            self.last_sig, self.last_push = sig, now
            self.pushes += 1
            return True
        return False

    def flush_history(self) -> None:
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        try:
            _atomic_parquet(rows, self.cfg.settings.data_dir / "exf")
        except Exception as exc:  # noqa: BLE001 - disk trouble: keep the rows for the next flush
            log.error("history: cannot write %s: %r", self.cfg.settings.data_dir / "exf", exc)
            self.rows = rows + self.rows

    def heartbeat(self, now: float) -> None:
        st = {i.name: i.status(now, self.cfg.stale_factor) for i in self.inds}
        self._bus("heartbeat", lambda b: b.heartbeat(now=now, pushes=self.pushes, statuses=st,
                                                     bus_failures=self.bus_failures))

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        last_hist = last_hb = 0.0
        kw = dict(timeout_s=cfg.timeout_s, retries=cfg.retries, backoff_initial_s=0.2, backoff_max_s=2.0,
                  max_retry_after_s=30.0)
        venue = cfg.settings.venue_rest
        async with VenueRestClient(venue, **kw) as binance, DeribitClient(cfg.dvol_url or venue, **kw) as deribit, \
                FearGreedClient(cfg.fng_url or venue, **kw) as fng:
            rest = Sources(binance, deribit, fng)
            while not stop.is_set():
                now = self.clock.time()
                due = [i for i in self.inds if now >= i.next_at]
                if due:
                    await asyncio.gather(*(self.fetch_one(rest, i) for i in due))
                now = self.clock.time()
                await asyncio.to_thread(self.push, now)
                if now - last_hist >= cfg.history_s:
                    last_hist = now
                    await asyncio.to_thread(self.flush_history)
                if now - last_hb >= cfg.heartbeat_s and self.bus.connected:   # the first beat once connected
                    last_hb = now
                    await asyncio.to_thread(self.heartbeat, now)
                nxt = min([i.next_at for i in self.inds] + [self.last_push + cfg.push_s, now + 1.0])
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(0.05, nxt - self.clock.time()))
                except asyncio.TimeoutError:
                    pass
        await asyncio.to_thread(self.flush_history)
        log.info("stopped cleanly")


def run(cfg: ExfConfig, bus: Bus, clock: Clock, stop: threading.Event) -> int:
    """Run the fetcher until SIGTERM/SIGINT (``stop``); the bus connects in the background meanwhile."""
    async def _main() -> None:
        await Fetcher(cfg, bus, clock).run(await stop_event(stop))
    asyncio.run(_main())
    return 0


def _bus(cfg: ExfConfig) -> Bus:
    return Bus(cfg.settings, SERVICE, timeout_s=cfg.write_timeout_s, connect_timeout_s=cfg.hz_connect_timeout_s,
               invocation_timeout_s=max(2 * cfg.write_timeout_s, 3.0))


def main(argv: list[str] | None = None) -> int:
    return Service.main(SERVICE, ExfConfig, run, argv, description=__doc__.splitlines()[0], bus_factory=_bus)
