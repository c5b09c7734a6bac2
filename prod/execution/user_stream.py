"""User-data stream client: listen key lifecycle, websocket with reconnect, typed events to a callback.

Design notes: ``docs/design/prod.execution.md``.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Awaitable, Callable

import orjson
from websockets.asyncio.client import connect

from prod.execution import schemas as X
from prod.execution.rest import OrderRestClient
from prod.venue.errors import MalformedMessage

log = logging.getLogger(__name__)


class UserStream:
    """Keeps one user-data stream open; ``await run()`` until ``stop()``."""

    def __init__(self, rest: OrderRestClient, ws_base: str, on_event: Callable[[Any], None],
                 on_connect: Callable[[], Awaitable[None]] | None = None, *, keepalive_s: float = 1800.0,
                 backoff_initial_s: float = 0.2, backoff_max_s: float = 10.0, rng: random.Random | None = None):
        if not ws_base.startswith(("ws://", "wss://")):
            raise ValueError(f"ws_base {ws_base!r} must start with ws(s)://")
        self.rest, self.ws_base = rest, ws_base.rstrip("/")
        self.on_event, self.on_connect = on_event, on_connect
        self.keepalive_s = keepalive_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.rng = rng or random.Random()
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._ws: Any = None
        self.connects = self.reconnects = self.events = self.malformed = 0
        self.unknown_kinds: dict[str, int] = {}
        self.last_event_mono = 0.0
        self._last_warn = 0.0

    async def stop(self) -> None:
        self._stop.set()
        if self._ws is not None:
            await self._ws.close()

    def _warn(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_warn >= 10.0:
            self._last_warn = now
            log.warning(msg, *args)

    async def run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                key = await self.rest.new_listen_key()
                async with connect(f"{self.ws_base}/ws/{key}", open_timeout=5, ping_interval=20,
                                   ping_timeout=20, max_size=1 << 22) as ws:
                    self._ws = ws
                    self.connects += 1
                    if self.connects > 1:
                        self.reconnects += 1
                    attempt = 0
                    self.connected.set()
                    log.info("user stream connected (connect #%d)", self.connects)
                    if self.on_connect is not None:
                        await self.on_connect()
                    keep = asyncio.create_task(self._keepalive())
                    try:
                        async for raw in ws:
                            if self._handle(raw):
                                break                  # listenKeyExpired: get a new key
                    finally:
                        keep.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect with backoff
                self._warn("user stream: %s: %s; reconnecting", type(exc).__name__, exc)
            finally:
                self.connected.clear()
                self._ws = None
            if self._stop.is_set():
                break
            delay = self.rng.uniform(0, min(self.backoff_max_s, self.backoff_initial_s * 2 ** attempt))
            attempt += 1
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self.rest.keepalive_listen_key()
            except Exception as exc:  # noqa: BLE001
                self._warn("user stream: listen key keepalive failed: %s", exc)

    def _handle(self, raw: Any) -> bool:
        """Parse one frame and pass it on; return True when the listen key expired."""
        try:
            ev = orjson.loads(raw)
            if not isinstance(ev, dict):
                raise MalformedMessage(f"user stream: frame is not an object: {str(raw)[:80]}")
            kind = ev.get("e")
            if kind == "ORDER_TRADE_UPDATE":
                parsed: Any = X.parse_order_trade_update(ev)
            elif kind == "ACCOUNT_UPDATE":
                parsed = X.parse_account_update(ev)
            elif kind == "ACCOUNT_CONFIG_UPDATE":
                parsed = X.parse_account_config_update(ev)
            elif kind == "MARGIN_CALL":
                parsed = X.parse_margin_call(ev)
            elif kind == "ALGO_UPDATE":
                parsed = X.parse_algo_update(ev)
            elif kind == "listenKeyExpired":
                log.warning("user stream: listen key expired; reconnecting with a new one")
                return True
            else:                                  # a kind we do not use: ignored, counted, never refused
                k = str(kind)[:40]
                n = self.unknown_kinds[k] = self.unknown_kinds.get(k, 0) + 1
                if n == 1:
                    log.info("user stream: event kind %r is not used; ignored (counted)", k)
                return False
        except (orjson.JSONDecodeError, MalformedMessage) as exc:
            self.malformed += 1
            self._warn("user stream: malformed frame dropped (%d so far): %s", self.malformed, exc)
            return False
        self.events += 1
        self.last_event_mono = time.monotonic()
        self.on_event(parsed)
        return False

