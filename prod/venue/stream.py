"""Websocket market-data client for Binance USDT-M streams (real venue or the local simulator).

Design notes: ``docs/design/prod.venue.md``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import orjson
import websockets
from websockets.asyncio.client import connect

from prod.venue.errors import MalformedMessage, UnknownMessage
from prod.venue.schemas import (AggTradeEvent, CrossedBook, DepthEvent, StreamEvent, parse_raw_payload,
                                parse_stream_payload)

log = logging.getLogger(__name__)


@dataclass
class StreamStats:
    """Counters of one client (all connections); read them, do not write."""

    connects: int = 0
    reconnects: int = 0
    frames: int = 0
    events: int = 0
    malformed: int = 0
    unknown: int = 0         # well-formed frames of a kind not used (new event types): ignored, counted
    crossed: int = 0
    gaps: int = 0
    stalls: int = 0
    errors: int = 0          # error replies to SUBSCRIBE etc.
    callback_errors: int = 0
    last_error: str = ""
    per_kind_malformed: dict[str, int] = field(default_factory=dict)
    per_kind_unknown: dict[str, int] = field(default_factory=dict)


class RateLimitedLog:
    """Log a message at most once per ``interval_s`` per key, reporting how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.logger, self.interval, self.clock = logger, interval_s, clock
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, msg: str, *args) -> None:
        now = self.clock()
        last, suppressed = self._last.get(key, (-1e18, 0))
        if now - last >= self.interval:
            extra = f" ({suppressed} similar suppressed)" if suppressed else ""
            self.logger.warning(msg + extra, *args)
            self._last[key] = (now, 0)
        else:
            self._last[key] = (last, suppressed + 1)


class VenueStreamClient:
    """Subscribe to venue streams over as many connections as the cap needs; deliver typed events.

    Parameters
    ----------
    ws_base : websocket base URL, e.g. ``wss://fstream.binance.com`` or ``ws://127.0.0.1:8765``.
    streams : stream names (lower-case symbol), e.g. ``btcusdt@depth5@500ms``, ``!markPrice@arr@1s``.
    on_event : called with every parsed event in the event loop (exceptions are logged and counted).
    cap : max streams per connection (venue limit; the simulator default is 200).
    batch : max stream names per SUBSCRIBE request (and in the initial URL).
    stall_timeout_s : a connection with no data frame for this long is closed and reopened.
    backoff_initial_s, backoff_max_s : reconnect delay bounds (exponential, full jitter).
    """

    def __init__(self, ws_base: str, streams: Iterable[str], on_event: Callable[[StreamEvent], None] | None = None,
                 *, cap: int = 200, batch: int = 50, stall_timeout_s: float = 10.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0, name: str = "venue",
                 open_timeout_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        names = list(dict.fromkeys(streams))
        if not names:
            raise ValueError("VenueStreamClient needs at least one stream")
        if cap < 1 or batch < 1:
            raise ValueError("cap and batch must be >= 1")
        self.ws_base = ws_base.rstrip("/")
        for suffix in ("/stream", "/ws"):
            if self.ws_base.endswith(suffix):
                self.ws_base = self.ws_base[: -len(suffix)]
        self.streams = names
        self.groups = [names[k:k + cap] for k in range(0, len(names), cap)]
        self.on_event = on_event
        self.cap, self.batch = cap, min(batch, cap)
        self.stall_timeout_s = stall_timeout_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.open_timeout_s = open_timeout_s
        self.name = name
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats = StreamStats()
        self.last_msg: dict[str, float] = {}          # stream -> clock() of last event
        self.connected: list[bool] = [False] * len(self.groups)
        self._last_depth_u: dict[str, int] = {}
        self._last_agg: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._wss: list[object | None] = [None] * len(self.groups)
        self._rl = RateLimitedLog(log, 10.0, clock)
        self._next_id = 1
        self._started = clock()

    # ------------------------------------------------------------------ public
    async def run(self) -> None:
        """Run every connection until :meth:`stop`; reconnects by itself, never raises on venue errors."""
        self._stop.clear()
        await asyncio.gather(*(self._run_conn(k) for k in range(len(self.groups))))

    async def stop(self) -> None:
        """Close all connections and make :meth:`run` return."""
        self._stop.set()
        for ws in self._wss:
            if ws is not None:
                try:
                    await ws.close()  # type: ignore[attr-defined]
                except Exception:  # noqa: BLE001
                    pass

    def all_connected(self) -> bool:
        return all(self.connected)

    def stalled_streams(self, timeout_s: float | None = None, now: float | None = None) -> list[str]:
        """Return the streams with no event for ``timeout_s`` (default ``stall_timeout_s``)."""
        t = self.clock() if now is None else now
        lim = self.stall_timeout_s if timeout_s is None else timeout_s
        return [s for s in self.streams if t - self.last_msg.get(s, self._started) > lim]

    # ------------------------------------------------------------------ connection
    def _url(self, first: list[str]) -> str:
        return f"{self.ws_base}/stream?streams=" + "/".join(first)

    async def _run_conn(self, k: int) -> None:
        group = self.groups[k]
        attempt = 0
        while not self._stop.is_set():
            first, rest = group[: self.batch], group[self.batch:]
            opened_at = self.clock()
            try:
                async with connect(self._url(first), open_timeout=self.open_timeout_s, max_size=1 << 24,
                                   ping_interval=20, ping_timeout=20, close_timeout=2,
                                   compression=None) as ws:
                    self._wss[k] = ws
                    self.connected[k] = True
                    self.stats.connects += 1
                    if self.stats.connects > len(self.groups):
                        self.stats.reconnects += 1
                    log.info("%s: connection %d open (%d streams)", self.name, k, len(group))
                    now = self.clock()
                    for s in group:
                        self.last_msg.setdefault(s, now)
                        self._last_depth_u.pop(s, None)   # sequence chains restart on a new connection
                        self._last_agg.pop(s, None)
                    sub_task = asyncio.create_task(self._subscribe_rest(ws, rest))
                    try:
                        await self._read(ws, k)
                    finally:
                        sub_task.cancel()
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
                if self._stop.is_set():
                    break
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self._rl.warning(f"conn{k}", "%s: connection %d failed/closed: %s", self.name, k,
                                 self.stats.last_error)
            finally:
                self._wss[k] = None
                self.connected[k] = False
            if self._stop.is_set():
                break
            if self.clock() - opened_at > 30.0:
                attempt = 0
            delay = min(self.backoff_max_s, self.backoff_initial_s * (2 ** attempt))
            delay = delay * (0.5 + 0.5 * self.rng.random())
            attempt = min(attempt + 1, 20)
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    async def _subscribe_rest(self, ws, rest: list[str]) -> None:
        for j in range(0, len(rest), self.batch):
            req = {"method": "SUBSCRIBE", "params": rest[j:j + self.batch], "id": self._next_id}
            self._next_id += 1
            await ws.send(json.dumps(req))
            await asyncio.sleep(0.25)   # <= 4 requests/s, under the venue's 10 incoming messages/s

    async def _read(self, ws, k: int) -> None:
        while not self._stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=self.stall_timeout_s)
            except asyncio.TimeoutError:
                self.stats.stalls += 1
                self._rl.warning(f"stall{k}", "%s: connection %d stalled (no data for %.1fs); reconnecting",
                                 self.name, k, self.stall_timeout_s)
                await ws.close(code=1000, reason="client: stall")
                return
            self.stats.frames += 1
            try:
                self._handle(raw, k)
            except Exception as exc:  # noqa: BLE001 - a parser bug must not kill the feed: count and drop
                self._bad("unexpected", f"{type(exc).__name__}: {exc}", raw)

    # ------------------------------------------------------------------ frames
    def _bad(self, kind: str, why: str, raw) -> None:
        self.stats.malformed += 1
        self.stats.per_kind_malformed[kind] = self.stats.per_kind_malformed.get(kind, 0) + 1
        self._rl.warning(f"bad:{kind}", "%s: dropped malformed frame from %s (%s): %.120r",
                         self.name, self.ws_base, why, raw)

    def _unknown(self, exc: UnknownMessage) -> None:
        kind = str(exc)[:60]
        self.stats.unknown += 1
        self.stats.per_kind_unknown[kind] = self.stats.per_kind_unknown.get(kind, 0) + 1
        self._rl.warning(f"unknown:{kind}", "%s: ignored a frame of a kind not used (%s)", self.name, kind)

    def _handle(self, raw, k: int) -> None:
        if isinstance(raw, bytes):
            self._bad("binary", "binary frame", raw)
            return
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._bad("json", f"invalid JSON: {exc}", raw)
            return
        if isinstance(msg, dict) and "stream" in msg and "data" in msg:
            stream = msg["stream"]
            if not isinstance(stream, str):
                self._bad("envelope", "stream name is not a string", raw)
                return
            try:
                ev = parse_stream_payload(stream, msg["data"])
            except CrossedBook as exc:
                self.stats.crossed += 1
                self._bad("crossed", str(exc), raw)
                return
            except UnknownMessage as exc:
                self._unknown(exc)
                return
            except MalformedMessage as exc:
                self._bad(stream.partition("@")[2] or stream, str(exc), raw)
                return
        elif isinstance(msg, dict) and ("result" in msg or "error" in msg) and "id" in msg:
            if msg.get("error"):
                self.stats.errors += 1
                self._rl.warning("reply-error", "%s: venue rejected a request on connection %d: %s",
                                 self.name, k, msg["error"])
            return
        else:
            try:
                ev = parse_raw_payload(msg)
            except CrossedBook as exc:
                self.stats.crossed += 1
                self._bad("crossed", str(exc), raw)
                return
            except UnknownMessage as exc:
                self._unknown(exc)
                return
            except MalformedMessage as exc:
                self._bad("raw", str(exc), raw)
                return
            stream = getattr(ev, "symbol", "!arr").lower()
        self._track(stream, ev)
        self.stats.events += 1
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:  # noqa: BLE001 - a consumer bug must not kill the reader
                self.stats.callback_errors += 1
                log.exception("%s: on_event callback failed", self.name)

    def _track(self, stream: str, ev: StreamEvent) -> None:
        self.last_msg[stream] = self.clock()
        if isinstance(ev, DepthEvent):
            prev = self._last_depth_u.get(stream)
            if prev is not None and ev.prev_final_update_id != prev and ev.final_update_id > prev:
                self.stats.gaps += 1
                self._rl.warning(f"gap:{stream}", "%s: sequence gap on %s: pu=%d, previous u=%d",
                                 self.name, stream, ev.prev_final_update_id, prev)
            self._last_depth_u[stream] = ev.final_update_id
        elif isinstance(ev, AggTradeEvent):
            prev = self._last_agg.get(stream)
            if prev is not None and ev.agg_id != prev + 1 and ev.agg_id > prev:
                self.stats.gaps += 1
                self._rl.warning(f"gap:{stream}", "%s: aggTrade gap on %s: %d after %d", self.name, stream,
                                 ev.agg_id, prev)
            self._last_agg[stream] = ev.agg_id
