"""REST market-data client of Binance USDT-M, and the JSON-GET client it shares with the other data sources.

:class:`JsonRestClient` sends GET requests with a per-request timeout, retries transient failures (network
errors, timeouts, 5xx) with exponential backoff and jitter, honours ``429``/``418`` ``Retry-After`` and raises
typed errors (:mod:`prod.venue.errors`); a 4xx with a venue error body raises :class:`VenueRequestError` at once.
:class:`VenueRestClient` is that for Binance, sending through the shared :class:`prod.binance.http.BinanceHttpClient`
(session, used weight and the pause before the limit) and returning typed objects from :mod:`prod.venue.schemas`.
Deribit and alternative.me are other venues: :mod:`prod.venue.macro`.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable

import aiohttp
import orjson

from prod.binance.http import BinanceHttpClient, Reply, retry_after_s
from prod.binance.signing import encode_params
from prod.venue import schemas as S
from prod.venue.errors import (MalformedMessage, RateLimitedError, TransientVenueError, VenueRequestError,
                               VenueUnreachableError)

log = logging.getLogger(__name__)


class JsonRestClient:
    """Typed-error JSON GETs against one base; use as ``async with Client(base) as c: ...``.

    Parameters
    ----------
    base : the REST base URL.
    timeout_s : total timeout of one HTTP attempt.
    retries : extra attempts after the first for transient failures.
    max_retry_after_s : a Retry-After longer than this raises :class:`RateLimitedError` instead of waiting.
    """

    name = "REST"

    def __init__(self, base: str, *, timeout_s: float = 10.0, retries: int = 3, backoff_initial_s: float = 0.25,
                 backoff_max_s: float = 8.0, max_retry_after_s: float = 120.0,
                 session: aiohttp.ClientSession | None = None, rng: random.Random | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"rest_base {base!r} must start with http(s)://")
        self.base = base.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.retries = retries
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.retried = 0
        self._requests = 0
        self._session = session
        self._own_session = session is None
        self.rng = rng or random.Random()
        self._sleep = sleep

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def requests(self) -> int:
        return self._requests

    async def _before(self) -> None:
        """Hook before a request (rate budget)."""

    async def _send(self, path: str, q: dict[str, str]) -> Reply:
        self._requests += 1
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        url = self.base + path + ("?" + encode_params(q) if q else "")
        async with self._session.get(url, timeout=self.timeout) as resp:
            return Reply(resp.status, resp.headers.copy(), await resp.read())

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``base + path`` and return the decoded JSON body (with retries and rate-limit handling)."""
        url = self.base + path
        q = {k: str(v) for k, v in (params or {}).items() if v is not None}
        await self._before()
        attempt = 0
        while True:
            try:
                reply = await self._send(path, q)
                body, status, retry_after = reply.body, reply.status, reply.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                err: Exception = VenueUnreachableError(f"GET {url}: {type(exc).__name__}: {exc}")
            else:
                if status == 200:
                    try:
                        return orjson.loads(body)
                    except orjson.JSONDecodeError as exc:
                        raise MalformedMessage(f"GET {url}: body is not JSON: {body[:120]!r}") from exc
                if status in (418, 429):
                    ra = retry_after_s(retry_after)
                    err = RateLimitedError(status, ra, body[:200].decode(errors="replace"))
                    if ra > self.max_retry_after_s or attempt >= self.retries:
                        raise err
                    log.warning("%s: %s; waiting %.1fs", self.name, err, ra)
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
            log.warning("%s: %s; retry %d/%d in %.2fs", self.name, err, attempt + 1, self.retries, delay)
            attempt += 1
            self.retried += 1
            await self._sleep(delay)


class VenueRestClient(JsonRestClient):
    """Typed market-data client of Binance USDT-M; ``http`` shares one session and rate budget with execution.

    Parameters
    ----------
    rest_base : Binance USDT-M REST base (``http://127.0.0.1:8765`` for the simulator).
    weight_soft_limit : self-throttle once the venue reports this much used weight in the minute.
    http : the shared Binance HTTP client (default: one of this client's own).
    """

    name = "venue REST"

    def __init__(self, rest_base: str, *, timeout_s: float = 10.0, retries: int = 3, backoff_initial_s: float = 0.25,
                 backoff_max_s: float = 8.0, max_retry_after_s: float = 120.0, weight_soft_limit: int = 2000,
                 session: aiohttp.ClientSession | None = None, rng: random.Random | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep, http: BinanceHttpClient | None = None) -> None:
        super().__init__(rest_base, timeout_s=timeout_s, retries=retries, backoff_initial_s=backoff_initial_s,
                         backoff_max_s=backoff_max_s, max_retry_after_s=max_retry_after_s, rng=rng, sleep=sleep)
        self.http = http or BinanceHttpClient(rest_base, timeout_s=timeout_s, weight_soft_limit=weight_soft_limit,
                                              sleep=sleep, rng=self.rng, session=session)
        self._own_http = http is None
        self.rest_base = self.base

    @property
    def used_weight(self) -> int:
        return self.http.used_weight

    @used_weight.setter
    def used_weight(self, v: int) -> None:
        self.http.used_weight = v

    @property
    def weight_soft_limit(self) -> int:
        return self.http.weight_soft_limit

    @property
    def requests(self) -> int:
        return self.http.requests

    async def close(self) -> None:
        if self._own_http:
            await self.http.close()

    async def _before(self) -> None:
        await self.http.throttle(margin_s=0.5)

    async def _send(self, path: str, q: dict[str, str]) -> Reply:
        return await self.http.send("GET", path, q, timeout=self.timeout)

    async def get_json(self, base: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` of this client's Binance base (``base`` must be it) and return the JSON body."""
        if base.rstrip("/") != self.base:
            raise ValueError(f"{base}: this client talks to {self.base} only (Deribit, alternative.me: prod.venue.macro)")
        return await self.get(path, params)

    # ------------------------------------------------------------------ Binance USDT-M
    async def exchange_info(self) -> tuple[S.SymbolInfo, ...]:
        """Return every contract of ``/fapi/v1/exchangeInfo``."""
        return S.parse_exchange_info(await self.get("/fapi/v1/exchangeInfo"))

    async def trading_perpetuals(self, quote: str = "USDT") -> tuple[S.SymbolInfo, ...]:
        """Return the TRADING perpetual contracts quoted in ``quote``."""
        return tuple(s for s in await self.exchange_info()
                     if s.status == "TRADING" and s.contract_type == "PERPETUAL" and s.quote_asset == quote)

    async def depth(self, symbol: str, limit: int = 100) -> S.DepthSnapshot:
        """Return the order book snapshot of ``/fapi/v1/depth``."""
        return S.parse_depth_snapshot(symbol, await self.get("/fapi/v1/depth",
                                                                  {"symbol": symbol, "limit": limit}))

    async def klines(self, symbol: str, interval: str = "1m", limit: int = 500, start_ms: int | None = None,
                     end_ms: int | None = None) -> tuple[S.Kline, ...]:
        """Return candles of ``/fapi/v1/klines`` (oldest first)."""
        return S.parse_klines(await self.get("/fapi/v1/klines", {
            "symbol": symbol, "interval": interval, "limit": limit, "startTime": start_ms, "endTime": end_ms}))

    async def premium_index(self, symbol: str | None = None) -> tuple[S.PremiumIndex, ...]:
        """Return mark price and funding of one symbol (or all) from ``/fapi/v1/premiumIndex``."""
        return S.parse_premium_index(await self.get("/fapi/v1/premiumIndex",
                                                         {"symbol": symbol}))

    async def taker_long_short_ratio(self, symbol: str, period: str = "5m", limit: int = 30
                                     ) -> tuple[S.TakerRatio, ...]:
        """Return taker buy/sell volume ratios of ``/futures/data/takerlongshortRatio``."""
        return S.parse_taker_ratio(await self.get("/futures/data/takerlongshortRatio",
                                                       {"symbol": symbol, "period": period, "limit": limit}))
