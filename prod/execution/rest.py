"""Signed REST client for the trading endpoints of Binance USDT-M (or the venue simulator).

Design notes: ``docs/design/prod.execution.md``.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Callable

import aiohttp
import orjson

from prod.binance.http import BinanceHttpClient, retry_after_s, wall_ms
from prod.binance.signing import Credentials
from prod.execution.errors import OrderRejected, RateLimited, UnknownOutcome, VenueUnavailable

log = logging.getLogger(__name__)
UNKNOWN_CODES = frozenset({-1006, -1007})
__all__ = ["OrderRestClient", "UNKNOWN_CODES", "wall_ms"]


def _shared(name: str) -> property:
    """An attribute kept by the shared HTTP client (rate budget, server-time offset), read and set here."""
    return property(lambda self: getattr(self.http, name), lambda self, v: setattr(self.http, name, v))


class OrderRestClient:
    """Async signed client; use ``async with OrderRestClient(base, creds) as rest``."""

    def __init__(self, rest_base: str, creds: Credentials, *, timeout_s: float = 5.0, recv_window_ms: int = 5000,
                 retries: int = 3, backoff_initial_s: float = 0.2, backoff_max_s: float = 5.0,
                 max_retry_after_s: float = 30.0, weight_soft_limit: int = 2000, order_soft_limit: int = 1100,
                 time_sync_s: float = 60.0,
                 clock_ms: Callable[[], int] = wall_ms,
                 sleep: Callable[[float], Any] = asyncio.sleep, rng: random.Random | None = None,
                 http: BinanceHttpClient | None = None) -> None:
        if http is not None and http.creds != creds:
            raise ValueError("OrderRestClient: the shared HTTP client signs with other credentials")
        self.http = http or BinanceHttpClient(rest_base, creds, timeout_s=timeout_s, recv_window_ms=recv_window_ms,
                                              weight_soft_limit=weight_soft_limit, order_soft_limit=order_soft_limit,
                                              time_sync_s=time_sync_s, clock_ms=clock_ms, sleep=sleep, rng=rng)
        self._own_http = http is None
        self.base = self.http.base
        self.creds = creds
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.retries = retries
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.retried = self.rate_limited = 0
        self.time_syncs = self.time_resyncs_1021 = 0
        self._sync_lock: asyncio.Lock | None = None

    used_weight = _shared("used_weight")
    order_count = _shared("order_count")
    requests = _shared("requests")
    recv_window_ms = _shared("recv_window_ms")
    time_sync_s = _shared("time_sync_s")
    time_offset_ms = _shared("time_offset_ms")       # server time - local clock (see sync_time)
    time_rtt_ms = _shared("time_rtt_ms")
    time_synced_at = _shared("time_synced_at")       # monotonic time of the last successful sync
    clock_ms = _shared("clock_ms")

    async def __aenter__(self) -> "OrderRestClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_http:
            await self.http.close()

    def server_ms(self) -> int:
        """Return the venue's time now as this client knows it (local clock + offset)."""
        return self.http.server_ms()

    async def sync_time(self) -> int:
        """Measure the server-time offset (``GET /fapi/v1/time``); return it in ms (server - local)."""
        if self._sync_lock is None:
            self._sync_lock = asyncio.Lock()
        async with self._sync_lock:
            timing: list[int] = []           # local clock around the attempt that answered (not the waits)
            j = await self.request("GET", "/fapi/v1/time", signed=False, _sync=False, _timing=timing)
            t0, t1 = timing[-2], timing[-1]
            st = j.get("serverTime") if isinstance(j, dict) else None
            if isinstance(st, bool) or not isinstance(st, int):
                raise UnknownOutcome(f"GET /fapi/v1/time: no integer serverTime in {str(j)[:80]}")
            self.http.set_offset(st, t0, t1)
            self.time_syncs += 1
            return self.time_offset_ms

    def _time_stale(self) -> bool:
        return self.http.time_stale()

    async def request(self, method: str, path: str, params: dict[str, Any] | None = None, *,
                      signed: bool = True, placing: bool = False, _sync: bool = True,
                      _timing: list[int] | None = None) -> Any:
        """Send one request and return its JSON body (see the module docstring for the reactions)."""
        what = f"{method} {path}"
        attempt = 0
        resynced = False
        if signed and _sync and (self.time_synced_at is None or (not placing and self._time_stale())):
            try:
                await self.sync_time()
            except (OrderRejected, UnknownOutcome, VenueUnavailable) as exc:
                if self.time_synced_at is None:
                    log.warning("venue REST: server time not measured (%s); signing with the local clock", exc)
                    self.time_synced_at = time.monotonic()    # try again after time_sync_s, not on every call
                else:
                    log.warning("venue REST: server time resync failed (%s); keeping offset %d ms", exc,
                                self.time_offset_ms)
        if _timing is None:                  # the time request (weight 1) is never held back: it would skew it
            await self.http.throttle(placing, margin_s=0.2)
        while True:
            if _timing is not None:
                _timing.append(self.clock_ms())
            try:
                reply = await self.http.send(method, path, params, signed=signed, timeout=self.timeout)
                body, status, retry_after = reply.body, reply.status, reply.headers.get("Retry-After")
            except aiohttp.ClientConnectorError as exc:
                err: Exception = VenueUnavailable(f"{what}: cannot connect: {exc}")
                if placing:
                    raise err from None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                err = UnknownOutcome(f"{what}: {type(exc).__name__}: {exc}")
                if placing:
                    raise err from None
            else:
                j = None
                try:
                    j = orjson.loads(body) if body else None
                except orjson.JSONDecodeError:
                    if status == 200:
                        raise UnknownOutcome(f"{what}: HTTP 200 with a body that is not JSON: {body[:80]!r}") from None
                code = j.get("code") if isinstance(j, dict) and isinstance(j.get("code"), int) else None
                msg = str(j.get("msg", "")) if isinstance(j, dict) else body[:120].decode(errors="replace")
                if status == 200 and not (code is not None and code < 0):
                    if _timing is not None:
                        _timing.append(self.clock_ms())
                    return j
                if status in (418, 429):
                    self.rate_limited += 1
                    ra = retry_after_s(retry_after)
                    if ra > self.max_retry_after_s or attempt >= self.retries:
                        raise RateLimited(status, ra, msg, what)
                    log.warning("venue REST: %s rate limited (code %s); waiting %.1fs", what, code, ra)
                    attempt += 1
                    self.retried += 1
                    await self.http.sleep(ra)
                    continue
                if code == -1021 and signed and not resynced:
                    # our timestamp was outside recvWindow: not executed; measure the offset again, re-sign once
                    resynced = True
                    self.time_resyncs_1021 += 1
                    before = self.time_offset_ms
                    await self.sync_time()
                    log.warning("venue REST: %s refused with -1021 (%s); server-time offset %d -> %d ms, "
                                "sending once more", what, msg, before, self.time_offset_ms)
                    continue
                if status >= 500 or code in UNKNOWN_CODES:
                    err = UnknownOutcome(f"{what}: HTTP {status} code={code} msg={msg!r}")
                    if placing:
                        raise err
                else:
                    raise OrderRejected(code, msg, status, what)
            if attempt >= self.retries:
                raise err
            delay = self.http.backoff_s(attempt, self.backoff_initial_s, self.backoff_max_s)
            log.warning("venue REST: %s; retry %d/%d in %.2fs", err, attempt + 1, self.retries, delay)
            attempt += 1
            self.retried += 1
            await self.http.sleep(delay)

    # ------------------------------------------------------------------ endpoints
    async def server_time(self) -> Any:
        return await self.request("GET", "/fapi/v1/time", signed=False)

    async def exchange_info(self) -> Any:
        return await self.request("GET", "/fapi/v1/exchangeInfo", signed=False)

    async def new_order(self, **params: Any) -> Any:
        """``POST /fapi/v1/order`` (Binance parameter names); UnknownOutcome if the answer is not definitive."""
        return await self.request("POST", "/fapi/v1/order", params, placing=True)

    async def get_order(self, symbol: str, client_id: str | None = None, order_id: int | None = None) -> Any:
        return await self.request("GET", "/fapi/v1/order", {"symbol": symbol, "orderId": order_id,
                                                            "origClientOrderId": None if order_id else client_id})

    async def cancel_order(self, symbol: str, client_id: str | None = None, order_id: int | None = None) -> Any:
        return await self.request("DELETE", "/fapi/v1/order", {"symbol": symbol, "orderId": order_id,
                                                               "origClientOrderId": None if order_id else client_id})

    async def cancel_all(self, symbol: str) -> Any:
        return await self.request("DELETE", "/fapi/v1/allOpenOrders", {"symbol": symbol})

    async def open_orders(self, symbol: str | None = None) -> Any:
        return await self.request("GET", "/fapi/v1/openOrders", {"symbol": symbol})

    async def user_trades(self, symbol: str, order_id: int | None = None, limit: int = 100) -> Any:
        return await self.request("GET", "/fapi/v1/userTrades", {"symbol": symbol, "orderId": order_id,
                                                                 "limit": limit})

    async def position_risk(self, symbol: str | None = None) -> Any:
        return await self.request("GET", "/fapi/v2/positionRisk", {"symbol": symbol})

    async def account(self) -> Any:
        return await self.request("GET", "/fapi/v2/account")

    async def new_listen_key(self) -> str:
        j = await self.request("POST", "/fapi/v1/listenKey", signed=False)
        if not isinstance(j, dict) or not isinstance(j.get("listenKey"), str):
            raise UnknownOutcome(f"POST /fapi/v1/listenKey: unexpected answer {str(j)[:80]}")
        return j["listenKey"]

    async def keepalive_listen_key(self) -> Any:
        return await self.request("PUT", "/fapi/v1/listenKey", signed=False)

    async def close_listen_key(self) -> Any:
        return await self.request("DELETE", "/fapi/v1/listenKey", signed=False)
