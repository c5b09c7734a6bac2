"""Synchronous facade over :class:`ExecutionClient`: its own asyncio loop in a daemon thread.

The trader decides on a plain thread; :class:`ExecutionRuntime` runs the REST client, the user
stream and the poller on a private event loop and lets that thread call coroutines with a timeout
(:meth:`call`). Configuration comes from :class:`ExecConfig`; the credentials from the environment.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from prod.binance.http import BinanceHttpClient
from prod.binance.signing import Credentials
from prod.execution.client import ExecutionClient
from prod.execution.rest import OrderRestClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecConfig:
    """Endpoints and timings of the execution client (paper = simulator URLs, live = the venue's)."""

    rest_base: str
    ws_base: str | None
    recv_window_ms: int = 5000
    timeout_s: float = 5.0
    poll_interval_s: float = 0.1
    stream_silence_s: float = 1.0
    lost_after_s: float = 5.0
    fill_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.rest_base.startswith(("http://", "https://")):
            raise ValueError(f"ExecConfig.rest_base {self.rest_base!r}: must start with http(s)://")
        if self.ws_base is not None and not self.ws_base.startswith(("ws://", "wss://")):
            raise ValueError(f"ExecConfig.ws_base {self.ws_base!r}: must start with ws(s)://")
        for k in ("timeout_s", "poll_interval_s", "stream_silence_s", "lost_after_s", "fill_timeout_s"):
            if not 0 < getattr(self, k) <= 600:
                raise ValueError(f"ExecConfig.{k} {getattr(self, k)}: must be in (0, 600]")
        if not 1 <= self.recv_window_ms <= 60_000:
            raise ValueError(f"ExecConfig.recv_window_ms {self.recv_window_ms}: must be in [1, 60000]")


    @classmethod
    def from_settings(cls, settings, **kw) -> "ExecConfig":
        """Endpoints from ``prod.settings.Settings`` (``DOLPHIN_VENUE_REST`` / ``_WS``), timings from ``kw``."""
        return cls(rest_base=settings.venue_rest, ws_base=settings.venue_ws, **kw)


class ExecutionRuntime:
    """Start with :meth:`start`, call coroutines with :meth:`call`, end with :meth:`stop`.

    ``http`` is the process's one Binance HTTP client (session, weight budget, server-time offset); the
    runtime builds one when none is given. Everything the runtime sends (orders, the user stream's listen
    key, the preflight through :attr:`client`) goes through it; a market-data client in the same process
    shares it with ``VenueRestClient(..., http=runtime.http)`` on this runtime's loop (:meth:`call`).
    """

    def __init__(self, cfg: ExecConfig, creds: Credentials,
                 on_order: Callable[[str, dict], None] | None = None, on_account: Callable[[Any], None] | None = None,
                 *, http: BinanceHttpClient | None = None):
        if http is not None and http.creds != creds:
            raise ValueError("ExecutionRuntime: the shared HTTP client signs with other credentials")
        self.cfg, self._creds, self._on_order, self._on_account = cfg, creds, on_order, on_account
        self.http = http or BinanceHttpClient(cfg.rest_base, creds, timeout_s=cfg.timeout_s,
                                              recv_window_ms=cfg.recv_window_ms)
        self._own_http = http is None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="execution-loop", daemon=True)
        self.client: ExecutionClient | None = None
        self._rest: OrderRestClient | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self, timeout_s: float = 20.0) -> ExecutionClient:
        """Start the loop thread, connect, load symbol rules and open the user stream."""
        self._thread.start()

        async def _go() -> ExecutionClient:
            self._rest = OrderRestClient(self.cfg.rest_base, self._creds, timeout_s=self.cfg.timeout_s,
                                         recv_window_ms=self.cfg.recv_window_ms, http=self.http)
            c = ExecutionClient(self._rest, self.cfg.ws_base, on_order=self._on_order,
                                poll_interval_s=self.cfg.poll_interval_s, stream_silence_s=self.cfg.stream_silence_s,
                                lost_after_s=self.cfg.lost_after_s, on_account=self._on_account)
            await c.start()
            return c

        self.client = self.call(_go, timeout_s=timeout_s)
        return self.client

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, timeout_s: float = 30.0, **kw: Any) -> Any:
        """Run ``fn(*args, **kw)`` on the loop and return its result (TimeoutError after ``timeout_s``)."""
        fut = asyncio.run_coroutine_threadsafe(fn(*args, **kw), self.loop)
        try:
            return fut.result(timeout_s)
        except TimeoutError:
            fut.cancel()
            raise

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self._thread.is_alive():
            return

        async def _end() -> None:
            if self.client is not None:
                await self.client.stop()
            if self._rest is not None:
                await self._rest.close()
            if self._own_http:
                await self.http.close()

        try:
            self.call(_end, timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001
            log.warning("execution runtime stop: %s", exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)
