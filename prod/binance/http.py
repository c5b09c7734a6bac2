"""The one HTTP client of Binance USDT-M (or the simulator), shared by market data and execution.

It owns what both sides need of the venue: the aiohttp session, request signing, the used-weight and
order-count headers with the self-throttle before a limit, ``Retry-After``, backoff with jitter and the
server-time offset. What a status means (retry, raise which error) stays with the caller:
:class:`prod.venue.rest.VenueRestClient` (market data) and :class:`prod.execution.rest.OrderRestClient`.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import aiohttp

from prod.binance.signing import Credentials, encode_params, signed_query

log = logging.getLogger(__name__)


def wall_ms() -> int:
    return int(time.time() * 1000)


# The server-time offset is a property of this host's clock and the venue, not of one client: the last
# measurement per REST base (for clients on the wall clock) seeds a new client while it is younger than its
# time_sync_s, so short-lived clients (CLI commands, reconnects) do not each spend a request on it.
_OFFSETS: dict[str, tuple[int, float, float]] = {}      # base -> (offset ms, rtt ms, monotonic time measured)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


def retry_after_s(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks for (1 s when absent or unreadable)."""
    try:
        return float(value) if value else 1.0
    except ValueError:
        return 1.0


class BinanceHttpClient:
    """One session and one rate budget per venue base; pass the same instance to both sides to share them.

    Parameters
    ----------
    base : Binance USDT-M REST base (``http://127.0.0.1:8765`` for the simulator).
    creds : API key and secret for signed requests (None: market data only).
    weight_soft_limit, order_soft_limit : pause to the next minute once the venue reports this much.
    time_sync_s : age after which the server-time offset is measured again.
    """

    def __init__(self, base: str, creds: Credentials | None = None, *, timeout_s: float = 10.0,
                 recv_window_ms: int = 5000, weight_soft_limit: int = 2000, order_soft_limit: int = 1100,
                 time_sync_s: float = 60.0, clock_ms: Callable[[], int] = wall_ms,
                 sleep: Callable[[float], Any] = asyncio.sleep, rng: random.Random | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"rest_base {base!r} must start with http(s)://")
        self.base = base.rstrip("/")
        self.creds = creds
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.recv_window_ms = recv_window_ms
        self.weight_soft_limit, self.order_soft_limit = weight_soft_limit, order_soft_limit
        self.used_weight = self.order_count = 0
        self.requests = 0
        self.clock_ms, self.sleep = clock_ms, sleep
        self.rng = rng or random.Random()
        self._session = session
        self._own_session = session is None
        self.time_sync_s = time_sync_s
        self.time_offset_ms = 0              # server time - local clock (see set_offset)
        self.time_rtt_ms = 0.0
        self.time_synced_at: float | None = None   # monotonic time of the last successful sync
        known = _OFFSETS.get(self.base) if clock_ms is wall_ms else None
        if known is not None and time.monotonic() - known[2] < time_sync_s:
            self.time_offset_ms, self.time_rtt_ms, self.time_synced_at = known

    async def __aenter__(self) -> "BinanceHttpClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    # ── rate budget ──────────────────────────────────────────────────────────────────────────
    async def throttle(self, is_order: bool = False, margin_s: float = 0.2) -> None:
        """Pause to the next minute when the used weight (or, for an order, the order count) is at its limit."""
        if self.used_weight >= self.weight_soft_limit or (is_order and self.order_count >= self.order_soft_limit):
            wait = 60.0 - time.time() % 60.0 + margin_s
            log.warning("venue REST: weight %d / orders %d near the limit; pausing %.1fs", self.used_weight,
                        self.order_count, wait)
            await self.sleep(wait)
            self.used_weight = self.order_count = 0

    def backoff_s(self, attempt: int, initial_s: float, max_s: float) -> float:
        """Exponential backoff with jitter (50-100 % of the step) before retry ``attempt + 1``."""
        return min(max_s, initial_s * 2 ** attempt) * (0.5 + 0.5 * self.rng.random())

    # ── server time ──────────────────────────────────────────────────────────────────────────
    def server_ms(self) -> int:
        """Return the venue's time now as this client knows it (local clock + offset)."""
        return self.clock_ms() + self.time_offset_ms

    def set_offset(self, server_time_ms: int, sent_ms: int, received_ms: int) -> int:
        """Record a ``/fapi/v1/time`` answer: offset = serverTime - midpoint of send and receive; return it."""
        self.time_offset_ms = server_time_ms - (sent_ms + received_ms) // 2
        self.time_rtt_ms = float(received_ms - sent_ms)
        self.time_synced_at = time.monotonic()
        if self.clock_ms is wall_ms:
            _OFFSETS[self.base] = (self.time_offset_ms, self.time_rtt_ms, self.time_synced_at)
        return self.time_offset_ms

    def time_stale(self) -> bool:
        return self.time_synced_at is None or time.monotonic() - self.time_synced_at >= self.time_sync_s

    # ── one request ──────────────────────────────────────────────────────────────────────────
    def url(self, path: str, params: Mapping[str, Any] | None = None, *, signed: bool = False) -> str:
        """``base + path`` with the query (signed with a fresh server timestamp when ``signed``)."""
        if signed:
            if self.creds is None:
                raise ValueError(f"{path}: a signed request needs credentials")
            return f"{self.base}{path}?" + signed_query(params or {}, self.creds.secret, self.server_ms(),
                                                          self.recv_window_ms)
        q = {k: v for k, v in (params or {}).items() if v is not None}
        return f"{self.base}{path}" + ("?" + encode_params(q) if q else "")

    async def send(self, method: str, path: str, params: Mapping[str, Any] | None = None, *, signed: bool = False,
                   timeout: aiohttp.ClientTimeout | None = None) -> Reply:
        """Send one request (no retry) and return its status, headers and body; transport errors propagate.

        The used weight and order count the venue reports are kept; the API key header goes with every
        request when there are credentials.
        """
        self.requests += 1
        headers = {"X-MBX-APIKEY": self.creds.api_key} if self.creds is not None else {}
        async with self.session().request(method, self.url(path, params, signed=signed), headers=headers,
                                          timeout=timeout or self.timeout) as resp:
            body = await resp.read()
            h = resp.headers
            if (w := h.get("X-MBX-USED-WEIGHT-1M", "")).isdigit():
                self.used_weight = int(w)
            if (c := h.get("X-MBX-ORDER-COUNT-1M", "")).isdigit():
                self.order_count = int(c)
            return Reply(resp.status, h.copy(), body)
