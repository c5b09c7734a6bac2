"""REST market-data client for Binance USDT-M (plus Deribit DVOL and alternative.me fear & greed).

:class:`VenueRestClient` (asyncio, aiohttp) sends GET requests with a per-request timeout, retries
transient failures (network errors, timeouts, 5xx) with exponential backoff and jitter, honours
``429``/``418`` ``Retry-After`` and the ``X-MBX-USED-WEIGHT-1M`` header (it pauses until the next
minute once the used weight passes ``weight_soft_limit``), and returns typed frozen objects from
:mod:`prod.venue.schemas`. A 4xx with a venue error body raises :class:`VenueRequestError` at once.

Against the simulator all three bases are the same URL; against the real venues use
``rest_base="https://fapi.binance.com"``, ``deribit_base="https://www.deribit.com"``,
``fng_base="https://api.alternative.me"``.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Callable

import aiohttp
import orjson

from prod.venue import schemas as S
from prod.venue.errors import (MalformedMessage, RateLimitedError, TransientVenueError, VenueRequestError,
                               VenueUnreachableError)

log = logging.getLogger(__name__)


class VenueRestClient:
    """Typed async REST client; use as ``async with VenueRestClient(base) as rest: ...``.

    Parameters
    ----------
    rest_base : Binance USDT-M REST base (``http://127.0.0.1:8765`` for the simulator).
    deribit_base, fng_base : bases for DVOL and fear & greed (default: ``rest_base``).
    timeout_s : total timeout of one HTTP attempt.
    retries : extra attempts after the first for transient failures.
    max_retry_after_s : a Retry-After longer than this raises :class:`RateLimitedError` instead of waiting.
    weight_soft_limit : self-throttle once the venue reports this much used weight in the minute.
    """

    def __init__(self, rest_base: str, *, deribit_base: str | None = None, fng_base: str | None = None,
                 timeout_s: float = 10.0, retries: int = 3, backoff_initial_s: float = 0.25,
                 backoff_max_s: float = 8.0, max_retry_after_s: float = 120.0, weight_soft_limit: int = 2000,
                 session: aiohttp.ClientSession | None = None, rng: random.Random | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        if not rest_base.startswith(("http://", "https://")):
            raise ValueError(f"rest_base {rest_base!r} must start with http(s)://")
        self.rest_base = rest_base.rstrip("/")
        self.deribit_base = (deribit_base or rest_base).rstrip("/")
        self.fng_base = (fng_base or rest_base).rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.retries = retries
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.weight_soft_limit = weight_soft_limit
        self.used_weight = 0
        self.requests = 0
        self.retried = 0
        self._session = session
        self._own_session = session is None
        self.rng = rng or random.Random()
        self._sleep = sleep

    async def __aenter__(self) -> "VenueRestClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def get_json(self, base: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``base + path`` and return the decoded JSON body (with retries and rate-limit handling)."""
        url = base + path
        q = {k: str(v) for k, v in (params or {}).items() if v is not None}
        if self.used_weight >= self.weight_soft_limit and base == self.rest_base:
            wait = 60.0 - time.time() % 60.0 + 0.5
            log.warning("venue REST: used weight %d >= %d; pausing %.1fs until the next minute",
                        self.used_weight, self.weight_soft_limit, wait)
            await self._sleep(wait)
            self.used_weight = 0
        attempt = 0
        while True:
            self.requests += 1
            try:
                async with self._sess().get(url, params=q, timeout=self.timeout) as resp:
                    body = await resp.read()
                    w = resp.headers.get("X-MBX-USED-WEIGHT-1M")
                    if w is not None and w.isdigit():
                        self.used_weight = int(w)
                    status = resp.status
                    retry_after = resp.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                err: Exception = VenueUnreachableError(f"GET {url}: {type(exc).__name__}: {exc}")
            else:
                if status == 200:
                    try:
                        return orjson.loads(body)
                    except orjson.JSONDecodeError as exc:
                        raise MalformedMessage(f"GET {url}: body is not JSON: {body[:120]!r}") from exc
                if status in (418, 429):
                    try:
                        ra = float(retry_after) if retry_after else 1.0
                    except ValueError:
                        ra = 1.0
                    err = RateLimitedError(status, ra, body[:200].decode(errors="replace"))
                    if ra > self.max_retry_after_s or attempt >= self.retries:
                        raise err
                    log.warning("venue REST: %s; waiting %.1fs", err, ra)
                    attempt += 1
                    self.retried += 1
                    await self._sleep(ra)
                    continue
                if 400 <= status < 500:
                    code, msg = None, body[:200].decode(errors="replace")
                    try:
                        j = orjson.loads(body)
                        if isinstance(j, dict):
                            code = j.get("code") if isinstance(j.get("code"), int) else None
                            msg = str(j.get("msg", j.get("error", msg)))
                    except orjson.JSONDecodeError:
                        pass
                    raise VenueRequestError(status, code, msg, url)
                err = TransientVenueError(f"GET {url}: HTTP {status}: {body[:120]!r}")
            if attempt >= self.retries:
                raise err
            delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** attempt) * (0.5 + 0.5 * self.rng.random())
            log.warning("venue REST: %s; retry %d/%d in %.2fs", err, attempt + 1, self.retries, delay)
            attempt += 1
            self.retried += 1
            await self._sleep(delay)

    # ------------------------------------------------------------------ Binance USDT-M
    async def exchange_info(self) -> tuple[S.SymbolInfo, ...]:
        """Return every contract of ``/fapi/v1/exchangeInfo``."""
        return S.parse_exchange_info(await self.get_json(self.rest_base, "/fapi/v1/exchangeInfo"))

    async def trading_perpetuals(self, quote: str = "USDT") -> tuple[S.SymbolInfo, ...]:
        """Return the TRADING perpetual contracts quoted in ``quote``."""
        return tuple(s for s in await self.exchange_info()
                     if s.status == "TRADING" and s.contract_type == "PERPETUAL" and s.quote_asset == quote)

    async def depth(self, symbol: str, limit: int = 100) -> S.DepthSnapshot:
        """Return the order book snapshot of ``/fapi/v1/depth``."""
        return S.parse_depth_snapshot(symbol, await self.get_json(self.rest_base, "/fapi/v1/depth",
                                                                  {"symbol": symbol, "limit": limit}))

    async def klines(self, symbol: str, interval: str = "1m", limit: int = 500, start_ms: int | None = None,
                     end_ms: int | None = None) -> tuple[S.Kline, ...]:
        """Return candles of ``/fapi/v1/klines`` (oldest first)."""
        return S.parse_klines(await self.get_json(self.rest_base, "/fapi/v1/klines", {
            "symbol": symbol, "interval": interval, "limit": limit, "startTime": start_ms, "endTime": end_ms}))

    async def premium_index(self, symbol: str | None = None) -> tuple[S.PremiumIndex, ...]:
        """Return mark price and funding of one symbol (or all) from ``/fapi/v1/premiumIndex``."""
        return S.parse_premium_index(await self.get_json(self.rest_base, "/fapi/v1/premiumIndex",
                                                         {"symbol": symbol}))

    async def taker_long_short_ratio(self, symbol: str, period: str = "5m", limit: int = 30
                                     ) -> tuple[S.TakerRatio, ...]:
        """Return taker buy/sell volume ratios of ``/futures/data/takerlongshortRatio``."""
        return S.parse_taker_ratio(await self.get_json(self.rest_base, "/futures/data/takerlongshortRatio",
                                                       {"symbol": symbol, "period": period, "limit": limit}))

    # ------------------------------------------------------------------ other sources
    async def dvol(self, currency: str = "BTC", start_ms: int | None = None, end_ms: int | None = None,
                   resolution: str = "60") -> tuple[S.DvolCandle, ...]:
        """Return Deribit DVOL candles (``/api/v2/public/get_volatility_index_data``)."""
        now = int(time.time() * 1000)
        end = end_ms if end_ms is not None else now + 86_400_000 * 365
        start = start_ms if start_ms is not None else 0
        return S.parse_dvol(await self.get_json(self.deribit_base, "/api/v2/public/get_volatility_index_data", {
            "currency": currency, "start_timestamp": start, "end_timestamp": end, "resolution": resolution}))

    async def fear_greed(self, limit: int = 1) -> tuple[S.FearGreed, ...]:
        """Return the latest fear & greed values (newest first) from alternative.me ``/fng/``."""
        return S.parse_fng(await self.get_json(self.fng_base, "/fng/", {"limit": limit, "format": "json"}))
