"""obf_universe: order-book features for every TRADING USDT perpetual, pushed to the bus (bible §26.2).

Design notes: ``docs/design/services.obf_universe.md``.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import aiohttp

from prod.aio import stop_event
from prod import metrics
from prod.bus import maps
from prod.runtime import Bus, Clock, RateLog, Service, SystemClock, atomic_write
from prod.runtime.bus import all_within
from prod.settings import Settings
from prod.venue import DepthEvent, VenueError, VenueRestClient, VenueStreamClient
from services.obf_universe.breaker import CLOSED, CircuitBreaker
from services.obf_universe.features import AssetRolling, FeatureParams, book_features, macro

SERVICE = "obf_universe"
log = logging.getLogger(SERVICE)


@dataclass(frozen=True)
class ObfConfig:
    """Effective configuration of obf_universe (frozen; each field a flag and a DOLPHIN_OBF_* variable)."""

    ENV_PREFIX: ClassVar[str] = "DOLPHIN_OBF_"
    settings: Settings
    max_streams_per_conn: int = 200
    stream_suffix: str = "depth5@500ms"
    max_symbols: int = 0            # 0 = the whole discovered universe
    flush_s: float = 0.025          # cadence of shard writes of updated assets
    refresh_s: float = 5.0          # every asset rewritten at least this often
    bar_s: float = 5.0              # rolling-feature bar
    snapshot_s: float = 60.0        # obf_universe_latest + Parquet row cadence
    parquet_s: float = 300.0        # Parquet part-file cadence
    file_s: float = 5.0             # latest_ob_features.json cadence
    warmup_s: float = 60.0          # first-flush delay
    stall_timeout_s: float = 10.0
    heartbeat_s: float = 5.0
    breaker_threshold: int = 5
    breaker_base_s: float = 1.0
    breaker_max_s: float = 30.0
    write_timeout_s: float = 2.0
    max_inflight: int = 4           # pipelined shard flushes awaiting acknowledgement
    hz_connect_timeout_s: float = 3.0
    subscribe_batch: int = 50
    params: FeatureParams = field(default_factory=FeatureParams, metadata={"cli": False})

    def __post_init__(self) -> None:
        checks = {"max_streams_per_conn": self.max_streams_per_conn >= 1, "flush_s": self.flush_s > 0,
                  "refresh_s": 0 < self.refresh_s <= 5.0, "bar_s": self.bar_s > 0,
                  "snapshot_s": self.snapshot_s > 0, "parquet_s": self.parquet_s > 0, "file_s": self.file_s > 0,
                  "warmup_s": self.warmup_s >= 0, "stall_timeout_s": self.stall_timeout_s > 0,
                  "max_symbols": self.max_symbols >= 0, "breaker_threshold": self.breaker_threshold >= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"obf_universe config: out-of-range value for {bad} "
                             f"(refresh_s must be in (0, 5], cadences > 0)")


class State:
    """In-process feature store shared by the hot loop (writes) and the writer thread (reads)."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[dict, float, int]] = {}   # symbol → (features, recv_ts, event_ms)
        self.dirty: set[str] = set()
        self.since_bar: set[str] = set()
        self.counters: dict[str, int] = {"books": 0, "bad_books": 0, "symbol_stalls": 0, "stale_assets_flagged": 0}
        self.connections: list[int] = []

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


class Feed:
    """The hot loop: a :class:`prod.venue.VenueStreamClient` whose events land in :class:`State`."""

    def __init__(self, cfg: ObfConfig, state: State, symbols: list[str], clock: Clock | None = None):
        self.cfg, self.state = cfg, state
        self.now: Callable[[], float] = (clock or SystemClock()).time
        self.rl = RateLog(log)
        self.streams = [f"{s.lower()}@{cfg.stream_suffix}" for s in symbols]
        self.client = VenueStreamClient(cfg.settings.venue_ws, self.streams, on_event=self.on_event,
                                        cap=cfg.max_streams_per_conn, batch=cfg.subscribe_batch,
                                        stall_timeout_s=cfg.stall_timeout_s, name=SERVICE)
        state.connections = [len(g) for g in self.client.groups]
        self._stalled: set[str] = set()

    def on_event(self, ev: Any) -> None:
        """Turn one parsed depth event into features (crossed/malformed frames never get here)."""
        if not isinstance(ev, DepthEvent):
            return
        recv_ts = self.now()
        st = self.state
        if not ev.bids or not ev.asks:
            st.counters["bad_books"] += 1
            self.rl.warning("onesided", "venue %s: dropped one-sided book of %s", self.cfg.settings.venue_ws,
                            ev.symbol)
            return
        feats = book_features(ev, self.cfg.params)
        sym = ev.symbol
        st.latest[sym] = (feats, recv_ts, ev.event_time_ms)
        st.dirty.add(sym)
        st.since_bar.add(sym)
        st.counters["books"] += 1

    def check_symbol_stalls(self) -> None:
        """Count and log streams that went silent on a live connection (once per silence)."""
        stalled = set(self.client.stalled_streams())
        new = stalled - self._stalled
        self._stalled = stalled
        if new:
            self.state.counters["symbol_stalls"] += 1
            log.warning("STALL: %d symbol(s) without updates for %.1fs (e.g. %s); flagged stale after the "
                        "dark streak", len(new), self.cfg.stall_timeout_s, sorted(new)[:5])

    def stats(self) -> dict:
        s = self.client.stats
        return {"frames": s.frames, "garbage_frames": max(0, s.malformed - s.crossed), "crossed_books": s.crossed,
                "stalls": s.stalls, "reconnects": s.reconnects, "gaps": s.gaps, "subscribe_errors": s.errors,
                "connected": sum(1 for c in self.client.connected if c)}


def _pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    i = min(len(sorted_vals) - 1, max(0, int(math.ceil(q / 100.0 * len(sorted_vals))) - 1))
    return sorted_vals[i]


class Writer(threading.Thread):
    """Everything off the hot loop: bars, macro, bus writes behind the breaker, files, Parquet."""

    def __init__(self, cfg: ObfConfig, bus: Bus, state: State, symbols: list[str], t0: float,
                 feed: Feed | None = None, clock: Clock | None = None):
        super().__init__(name="obf-writer", daemon=True)
        self.cfg, self.state, self.symbols, self.t0 = cfg, state, symbols, t0
        self.feed = feed
        self.clock = clock or SystemClock()
        self.stop_evt = threading.Event()
        self.breaker = CircuitBreaker(cfg.breaker_threshold, cfg.breaker_base_s, cfg.breaker_max_s)
        self.bus = bus
        self.rolling = {s: AssetRolling(cfg.params) for s in symbols}
        self.macro = macro([], cfg.params)
        self.last_written: dict[str, float] = {}
        self.latency_ms: deque[float] = deque(maxlen=20_000)
        self.flush_ms: deque[float] = deque(maxlen=5_000)
        self.queue_ms: deque[float] = deque(maxlen=20_000)   # book received → flush started
        self.inflight: deque[dict] = deque()                 # pipelined shard writes
        self.rows: list[dict] = []
        self.data_dir = cfg.settings.data_dir
        self.file_path = self.data_dir / "ob_cache" / "latest_ob_features.json"
        self.rl = RateLog(log)
        self.published = False
        self.bus_writes = 0
        self.macro_writes = 0

    # -- bus ---------------------------------------------------------------------------------
    def _bus_call(self, fn: Callable[[Bus], list], now: float, what: str) -> bool:
        """Run ``fn(bus)`` (returns futures) behind the breaker; True if it was written."""
        if not self.breaker.allow(now):
            return False
        try:
            all_within(fn(self.bus), self.cfg.write_timeout_s)
        except Exception as exc:  # noqa: BLE001 - any bus failure (BusUnavailable at once) feeds the breaker
            tr = self.breaker.failure(self.clock.time())
            self.rl.warning("bus", "bus write (%s) failed: %r", what, exc)
            if tr:
                log.error("circuit breaker %s after %d consecutive failures; file-only mode (backoff %.1fs)",
                          tr.upper(), self.breaker.consecutive, self.breaker.backoff)
            return False
        if self.breaker.success():
            log.warning("circuit breaker CLOSED: bus writes resumed")
        self.bus_writes += 1
        return True

    def _payload(self, sym: str, feats: dict, recv_ts: float, event_ms: int, now: float) -> dict:
        r = self.rolling.get(sym)
        m = self.macro
        p = {"symbol": sym, "ts": recv_ts, "recv_ts": recv_ts, "written_at": now, "event_ms": event_ms, **feats}
        if r is not None:
            p.update(r.last)
            p["stale"] = r.stale
            p.update(r.relative(feats))     # Cat3's scores against the asset's own rolling medians (docs/cat3.md)
        p.update({"cascade_count": m.cascade_count, "regime_signal": m.regime_signal,
                  "withdrawal_stress": m.withdrawal_stress})
        return p

    def flush_shards(self, now: float) -> None:
        st = self.state
        dirty = st.dirty
        st.dirty = set()
        todo = set(dirty)
        for sym, ts in list(self.last_written.items()):
            if now - ts >= self.cfg.refresh_s:
                todo.add(sym)
        for sym in st.latest.keys() - self.last_written.keys():
            todo.add(sym)
        if not todo:
            return
        by_shard: dict[str, dict[str, str]] = {}
        recv: dict[str, float] = {}
        for sym in todo:
            ent = st.latest.get(sym)
            if ent is None:
                continue
            feats, recv_ts, ev = ent
            topic = maps.ob_topic(sym)
            try:
                val = topic.encode(self._payload(sym, feats, recv_ts, ev, now), sym)
            except maps.PayloadError as exc:
                self.rl.warning("enc", "dropped unencodable features: %s", exc)
                continue
            by_shard.setdefault(topic.map, {})[sym] = val
            if sym in dirty:
                recv[sym] = recv_ts
        if not by_shard:
            st.dirty |= dirty
            return
        if not self.breaker.allow(now):
            st.dirty |= dirty
            return
        try:
            from hazelcast.future import combine_futures
            fut = combine_futures([self.bus.map(m).put_all(e) for m, e in by_shard.items()])
        except Exception as exc:  # noqa: BLE001 - BusUnavailable while (re)connecting / client shutting down
            self._shard_result(False, exc)
            st.dirty |= dirty
            return
        clock = self.clock
        entry = {"t": clock.monotonic(), "now": now, "fut": fut, "recv": recv, "syms": list(todo),
                 "dirty": dirty, "done_at": None}
        fut.add_done_callback(lambda _f, e=entry: e.__setitem__("done_at", clock.time()))
        self.inflight.append(entry)

    def reap(self) -> None:
        """Account for finished (or timed-out) shard writes, oldest first."""
        while self.inflight:
            e = self.inflight[0]
            if e["done_at"] is None:
                if self.clock.monotonic() - e["t"] < self.cfg.write_timeout_s:
                    return
                self.inflight.popleft()
                self.state.dirty |= e["dirty"]
                self._shard_result(False, TimeoutError(f"shard write not acknowledged in {self.cfg.write_timeout_s}s"))
                continue
            self.inflight.popleft()
            try:
                e["fut"].result()
            except Exception as exc:  # noqa: BLE001
                self.state.dirty |= e["dirty"]
                self._shard_result(False, exc)
                continue
            self._shard_result(True, None)
            done = e["done_at"]
            for sym in e["syms"]:
                self.last_written[sym] = done
            for r in e["recv"].values():
                self.queue_ms.append((e["now"] - r) * 1000.0)
                self.latency_ms.append((done - r) * 1000.0)

    def _shard_result(self, ok: bool, exc: Exception | None) -> None:
        if ok:
            self.bus_writes += 1
            if self.breaker.success():
                log.warning("circuit breaker CLOSED: bus writes resumed")
            return
        tr = self.breaker.failure(self.clock.time())
        self.rl.warning("bus", "bus write (shards) failed: %r", exc)
        if tr:
            log.error("circuit breaker %s after %d consecutive failures; file-only mode (backoff %.1fs)",
                      tr.upper(), self.breaker.consecutive, self.breaker.backoff)

    # -- bars / snapshots / files ------------------------------------------------------------
    def step_bar(self, now: float) -> None:
        st = self.state
        fresh = st.since_bar
        st.since_bar = set()
        for sym, r in self.rolling.items():
            ent = st.latest.get(sym)
            became, recovered = r.step(ent[0] if ent else None, sym in fresh)
            if became:
                st.inc("stale_assets_flagged")
                self.rl.warning(f"stale:{sym}", "STALE_DATA: %s dark for %d bars", sym, r.dark_streak)
            elif recovered:
                log.info("%s recovered from a dark streak", sym)
        prev = self.macro
        self.macro = macro(self.rolling.values(), self.cfg.params)
        if (prev.regime_signal, prev.cascade_count > 0) != (self.macro.regime_signal, self.macro.cascade_count > 0):
            log.info("OB macro: regime_signal=%d cascade_count=%d withdrawal_stress=%.3f market_imbalance=%.3f",
                     self.macro.regime_signal, self.macro.cascade_count, self.macro.withdrawal_stress,
                     self.macro.market_imbalance)
        if self.published:
            self.publish_macro(now)

    def publish_macro(self, now: float) -> None:
        """Write this bar's macro to ``maps.OB_MACRO`` without waiting (only while the breaker is CLOSED).

        Never through ``breaker.allow``: that hands out the half-open probe, which only the shard
        writes report back on; the macro waits for them to close the breaker.
        """
        m = self.macro
        if m.n_assets == 0 or self.breaker.state != CLOSED:
            return                          # no warm asset yet / bus failing: no macro (the trader goes neutral)
        try:
            payload = maps.OB_MACRO.build(ts=now, cascade_count=m.cascade_count, regime_signal=m.regime_signal,
                                          market_imbalance=m.market_imbalance, withdrawal_stress=m.withdrawal_stress,
                                          n_assets=m.n_assets, median_spread_ratio=m.median_spread_ratio)
            fut = self.bus.publish(maps.OB_MACRO, payload, wait=False)
        except maps.PayloadError as exc:
            self.rl.warning("enc:macro", "dropped unencodable OB macro: %s", exc)
            return
        except Exception as exc:  # noqa: BLE001 - BusUnavailable while (re)connecting: the next bar retries
            self.rl.warning("bus:macro", "%s not written: %r", maps.OB_MACRO.source(), exc)
            return
        self.macro_writes += 1
        fut.add_done_callback(lambda f: f.exception() is not None and self.rl.warning(
            "bus:macro", "%s not written: %r", maps.OB_MACRO.source(), f.exception()))

    def stats(self) -> dict:
        lat = sorted(self.latency_ms)
        st = self.state
        feed = self.feed.stats() if self.feed is not None else {"connected": 0}
        return {**dict(st.counters), **feed, "connections": list(st.connections),
                "n_symbols": len(self.symbols), "n_assets_with_book": len(st.latest),
                "breaker": self.breaker.snapshot(), "published": self.published, "bus_writes": self.bus_writes,
                "macro_writes": self.macro_writes,
                "latency_ms_p50": _pct(lat, 50), "latency_ms_p99": _pct(lat, 99), "latency_samples": len(lat),
                "flush_ms_p50": _pct(sorted(self.flush_ms), 50), "flush_ms_p99": _pct(sorted(self.flush_ms), 99),
                "queue_ms_p50": _pct(sorted(self.queue_ms), 50), "queue_ms_p99": _pct(sorted(self.queue_ms), 99),
                **self.macro.as_dict()}

    def assets_view(self, now: float) -> dict[str, dict]:
        out = {}
        for sym, (feats, recv_ts, ev) in list(self.state.latest.items()):
            p = self._payload(sym, feats, recv_ts, ev, now)
            del p["symbol"]
            out[sym] = p
        return out

    def write_file(self, now: float) -> None:
        body = {"_snapshot_utc": now, "_n_assets": len(self.state.latest), "_published": self.published,
                "_stats": self.stats(), "macro": self.macro.as_dict(), "assets": self.assets_view(now)}
        try:
            atomic_write(self.file_path, json.dumps(body, allow_nan=False, separators=(",", ":")).encode())
        except (OSError, ValueError) as exc:
            self.rl.warning("file", "cannot write %s: %r", self.file_path, exc)

    def snapshot(self, now: float) -> None:
        assets = self.assets_view(now)
        metrics.record_books([now - recv_ts for _f, recv_ts, _e in list(self.state.latest.values())])
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        for sym, a in assets.items():
            self.rows.append({"snapshot_utc": now, "date": day, "symbol": sym, **a})
        try:
            payload = maps.OBF_UNIVERSE.build(_snapshot_utc=now, _n_assets=len(assets), _stats=self.stats(),
                                              assets=assets)
        except maps.PayloadError as exc:
            self.rl.warning("enc", "dropped unencodable universe snapshot: %s", exc)
            return
        self._bus_call(lambda b: [b.publish(maps.OBF_UNIVERSE, payload, wait=False)], now, "universe")

    def flush_parquet(self) -> None:
        if not self.rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq
        rows, self.rows = self.rows, []
        by_day: dict[str, list[dict]] = {}
        for r in rows:
            by_day.setdefault(r["date"], []).append(r)
        for day, rs in by_day.items():
            d = self.data_dir / "ob_universe" / f"date={day}"
            try:
                d.mkdir(parents=True, exist_ok=True)
                nums = [int(p.stem.split("-")[1]) for p in d.glob("part-*.parquet")
                        if p.stem.split("-")[1].isdigit()]
                path = d / f"part-{(max(nums) + 1) if nums else 0:03d}.parquet"
                cols = sorted({k for r in rs for k in r if k != "date"})
                table = pa.table({k: [r.get(k) for r in rs] for k in cols})
                buf = io.BytesIO()
                pq.write_table(table, buf)
                atomic_write(path, buf.getvalue())
                log.info("parquet: wrote %d rows to %s", len(rs), path)
            except (OSError, pa.ArrowException) as exc:
                log.error("parquet: cannot write %s: %r (rows kept for the next flush)", d, exc)
                self.rows.extend(rs)

    def heartbeat(self, now: float) -> None:
        s = self.stats()
        fields = {k: s[k] for k in ("books", "garbage_frames", "crossed_books", "stalls", "reconnects",
                                    "connected", "n_assets_with_book", "latency_ms_p99", "regime_signal",
                                    "cascade_count")}
        fields["breaker"] = s["breaker"]["state"]
        self._bus_call(lambda b: [b.heartbeat(now=now, **fields)], now, "heartbeat")

    # -- loop --------------------------------------------------------------------------------
    def run(self) -> None:
        """Fast loop: bars and shard flushes on a fixed cadence; the slow loop runs beside it."""
        cfg = self.cfg
        slow = threading.Thread(target=self._slow_loop, name="obf-slow", daemon=True)
        slow.start()
        clock = self.clock
        next_bar = self.t0 + cfg.bar_s
        next_flush = clock.time()
        while not self.stop_evt.is_set():
            now = clock.time()
            try:
                if now >= next_bar:
                    self.step_bar(now)
                    next_bar = max(next_bar + cfg.bar_s, now)
                if now - self.t0 >= cfg.warmup_s:
                    if not self.published:
                        self.published = True
                        log.info("warm-up of %.1fs over: publishing features", cfg.warmup_s)
                    self.reap()
                    if self.breaker.ready(now) and len(self.inflight) < cfg.max_inflight:
                        t1 = time.perf_counter()
                        self.flush_shards(now)
                        self.flush_ms.append((time.perf_counter() - t1) * 1000.0)
            except Exception:  # noqa: BLE001 - the writer must survive any single bad cycle
                log.exception("writer cycle failed")
            next_flush = max(next_flush + cfg.flush_s, clock.time() + 0.005)
            clock.wait(self.stop_evt, max(0.0, next_flush - clock.time()))
        slow.join(15)

    def _slow_loop(self) -> None:
        """Snapshots, Parquet, heartbeat and the fallback file, off the shard-flush path."""
        cfg = self.cfg
        nxt = {"snap": self.t0 + cfg.warmup_s, "parquet": self.t0 + cfg.parquet_s,
               "file": self.t0 + min(cfg.file_s, 1.0), "hb": self.t0 + min(cfg.heartbeat_s, 1.0),
               "stall": self.t0 + cfg.stall_timeout_s}
        clock = self.clock
        while not self.stop_evt.is_set():
            now = clock.time()
            try:
                if self.published:
                    if now >= nxt["snap"]:
                        self.snapshot(now)
                        nxt["snap"] = max(nxt["snap"] + cfg.snapshot_s, now)
                    if now >= nxt["parquet"]:
                        self.flush_parquet()
                        nxt["parquet"] = max(nxt["parquet"] + cfg.parquet_s, now)
                if now >= nxt["hb"]:
                    self.heartbeat(now)
                    nxt["hb"] = now + cfg.heartbeat_s
                if self.feed is not None and now >= nxt["stall"]:
                    self.feed.check_symbol_stalls()
                    nxt["stall"] = now + 1.0
                if now >= nxt["file"]:
                    self.write_file(now)
                    nxt["file"] = now + (min(cfg.file_s, 1.0) if self.breaker.state != CLOSED else cfg.file_s)
            except Exception:  # noqa: BLE001
                log.exception("slow writer cycle failed")
            clock.wait(self.stop_evt, max(0.05, min(nxt.values()) - clock.time()))
        now = clock.time()   # final state on the way out
        self.write_file(now)
        self.flush_parquet()


async def _discover(cfg: ObfConfig, stop: asyncio.Event) -> list[str]:
    """Return the TRADING USDT perpetuals from the venue's exchangeInfo (retried until it answers)."""
    backoff = 0.5
    while not stop.is_set():
        try:
            async with VenueRestClient(cfg.settings.venue_rest, timeout_s=15.0) as rest:
                syms = [s.symbol for s in await rest.trading_perpetuals("USDT")]
            if not syms:
                raise VenueError("no TRADING USDT perpetuals")
            return syms[: cfg.max_symbols] if cfg.max_symbols else syms
        except (VenueError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.warning("discovery from %s failed: %r; retrying in %.1fs", cfg.settings.venue_rest, exc, backoff)
            try:
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, 15.0)
    return []


async def run_async(cfg: ObfConfig, bus: Bus, clock: Clock, stop: asyncio.Event) -> None:
    """Run the service until ``stop`` is set (SIGTERM/SIGINT set it through :func:`run`)."""
    t0 = clock.time()
    symbols = await _discover(cfg, stop)
    if not symbols:
        return
    state = State()
    feed = Feed(cfg, state, symbols, clock)
    log.info("universe: %d symbols over %d connections %s", len(symbols), len(state.connections), state.connections)
    writer = Writer(cfg, bus, state, symbols, t0, feed, clock)
    writer.start()
    task = asyncio.create_task(feed.client.run())
    try:
        await stop.wait()
    finally:
        await feed.client.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        writer.stop_evt.set()
        await asyncio.to_thread(writer.join, 15)
        log.info("stopped cleanly")


def run(cfg: ObfConfig, bus: Bus, clock: Clock, stop: threading.Event) -> int:
    """Run the service until SIGTERM/SIGINT (``stop``); the bus connects in the background meanwhile."""
    async def _main() -> None:
        await run_async(cfg, bus, clock, await stop_event(stop))
    asyncio.run(_main())
    return 0


def _bus(cfg: ObfConfig) -> Bus:
    return Bus(cfg.settings, SERVICE, timeout_s=cfg.write_timeout_s, connect_timeout_s=cfg.hz_connect_timeout_s,
               invocation_timeout_s=max(cfg.write_timeout_s * 2, 3.0))


def main(argv: list[str] | None = None) -> int:
    return Service.main(SERVICE, ObfConfig, run, argv, description=__doc__.splitlines()[0], bus_factory=_bus)
