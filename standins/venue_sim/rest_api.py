"""Binance-shaped REST endpoints of the venue simulator (mixin of :class:`server.VenueSim`).

Request weights and the ``X-MBX-USED-WEIGHT-1M`` header follow Binance USDT-M (2400 per IP per minute,
then HTTP 429 ``-1003`` with ``Retry-After``); parameter errors use the venue's codes (-1100, -1102,
-1120, -1121, -1130); DVOL answers in Deribit's JSON-RPC shape, fear & greed in alternative.me's.
The mixin reads ``self.model`` and the REST fault state set by the admin API.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from standins.venue_sim import messages as M

WEIGHT_LIMIT = 2400


class RestApi:
    """REST handlers; expects ``model``, ``weights``, ``rest_delay_ms``, ``rest_delay_until``, ``rest_error``."""

    model: Any
    weights: dict
    rest_delay_ms: float
    rest_delay_until: float
    rest_error: dict | None
    clock_skew_ms: int

    # ------------------------------------------------------------------ REST plumbing
    def _json(self, body: Any, status: int = 200, weight: int = 0, request: web.Request | None = None,
               raw: bytes | None = None) -> web.Response:
        headers = {}
        if request is not None:
            headers["X-MBX-USED-WEIGHT-1M"] = str(self._used_weight(request))
        return web.Response(body=raw if raw is not None else orjson.dumps(body), status=status,
                            content_type="application/json", headers=headers)

    def _used_weight(self, request: web.Request) -> int:
        ip = str(request.remote)
        minute = int(time.time() // 60)
        m, w = self.weights.get(ip, (minute, 0))
        return w if m == minute else 0

    def _charge(self, request: web.Request, weight: int) -> int:
        ip = str(request.remote)
        minute = int(time.time() // 60)
        m, w = self.weights.get(ip, (minute, 0))
        if m != minute:
            w = 0
        w += weight
        self.weights[ip] = (minute, w)
        return w

    def _bad(self, code: int, msg: str, request: web.Request, status: int = 400) -> web.Response:
        return self._json({"code": code, "msg": msg}, status=status, request=request)

    @web.middleware
    async def rest_middleware(self, request: web.Request, handler):
        if request.path.startswith(("/sim/", "/ws", "/stream", "/public/", "/market/", "/private/")):
            return await handler(request)
        loop = asyncio.get_running_loop()
        if self.rest_delay_ms > 0 and loop.time() < self.rest_delay_until:
            await asyncio.sleep(self.rest_delay_ms / 1000.0)
        if self.rest_error and self.rest_error["count"] > 0:
            self.rest_error["count"] -= 1
            st = self.rest_error["status"]
            ra = self.rest_error["retry_after"]
            if self.rest_error["count"] == 0:
                self.rest_error = None
            body = ({"code": -1003, "msg": ("Too many requests; current limit of IP(%s) is %d requests per "
                                            "minute. Please use the websocket for live updates to avoid "
                                            "polling the API." % (request.remote, WEIGHT_LIMIT))}
                    if st in (418, 429) else {"code": -1000, "msg": "An unknown error occurred while "
                                              "processing the request."})
            return web.Response(body=orjson.dumps(body), status=st, content_type="application/json",
                                headers={"Retry-After": str(ra),
                                         "X-MBX-USED-WEIGHT-1M": str(self._used_weight(request))})
        try:
            return await handler(request)
        except web.HTTPNotFound:            # Binance answers an unknown path with a JSON body, never HTML
            return self._json({"code": -5000, "msg": f"Path {request.path}, Method "
                                                     f"{request.method} is invalid"}, status=404)
        except web.HTTPMethodNotAllowed:
            return self._json({"code": -5000, "msg": f"Path {request.path}, Method "
                                                     f"{request.method} is invalid"}, status=405)

    def _symbol(self, request: web.Request, required: bool = True) -> int | web.Response | None:
        s = request.query.get("symbol")
        if not s:
            if required:
                return self._bad(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or "
                                        "malformed.", request)
            return None
        i = self.model.index.get(s)
        if i is None:
            return self._bad(-1121, "Invalid symbol.", request)
        return i

    def _int_param(self, request: web.Request, name: str, default: int | None, lo: int, hi: int
                   ) -> int | None | web.Response:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            v = int(raw)
        except ValueError:
            return self._bad(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                    f"'^[0-9]{{1,20}}$'.", request)
        if not lo <= v <= hi:
            return self._bad(-1130, f"Data sent for parameter '{name}' is not valid.", request)
        return v

    # ------------------------------------------------------------------ REST endpoints
    async def h_ping(self, request: web.Request) -> web.Response:
        self._charge(request, 1)
        return self._json({}, request=request)

    async def h_time(self, request: web.Request) -> web.Response:
        self._charge(request, 1)
        return self._json({"serverTime": self.server_time_ms()}, request=request)

    def server_time_ms(self) -> int:
        """Binance's serverTime is its wall clock, which never stalls. At speed 1 so is ours, even while a starved
        tick loop lets market time fall behind (a client's clock check must not fail on the simulator's load);
        at another speed market time is the only clock that fits the streams. Plus the clock_skew fault."""
        base = int(time.time() * 1000) if self.cfg.speed == 1.0 else self.model.t_ms
        return base + self.clock_skew_ms

    async def h_exchange_info(self, request: web.Request) -> web.Response:
        self._charge(request, 1)
        return self._json(None, request=request, raw=self.exchange_info_body)

    def _over_limit(self, request: web.Request, weight: int) -> web.Response | None:
        if self._charge(request, weight) > WEIGHT_LIMIT:
            return web.Response(body=orjson.dumps({"code": -1003, "msg": "Too many requests; current limit "
                                                   f"of IP({request.remote}) is {WEIGHT_LIMIT} requests per "
                                                   "minute."}), status=429, content_type="application/json",
                                headers={"Retry-After": str(60 - int(time.time()) % 60),
                                         "X-MBX-USED-WEIGHT-1M": str(self._used_weight(request))})
        return None

    async def _ticker(self, request: web.Request, w_one: int, w_all: int, render) -> web.Response:
        i = self._symbol(request, required=False)
        if isinstance(i, web.Response):
            return i
        if (r := self._over_limit(request, w_one if i is not None else w_all)) is not None:
            return r
        rows = render(self.model, [i] if i is not None else list(range(self.model.n)))
        return self._json(rows[0] if i is not None else rows, request=request)

    async def h_ticker_24hr(self, request: web.Request) -> web.Response:
        return await self._ticker(request, 1, 40, M.ticker_24hr)

    async def h_ticker_price(self, request: web.Request) -> web.Response:
        return await self._ticker(request, 1, 2, M.ticker_price)

    async def h_book_ticker(self, request: web.Request) -> web.Response:
        return await self._ticker(request, 2, 5, M.book_ticker_rest)

    async def h_depth(self, request: web.Request) -> web.Response:
        i = self._symbol(request)
        if isinstance(i, web.Response):
            return i
        limit = self._int_param(request, "limit", 500, 5, 1000)
        if isinstance(limit, web.Response):
            return limit
        if limit not in (5, 10, 20, 50, 100, 500, 1000):
            return self._bad(-1130, "Data sent for parameter 'limit' is not valid.", request)
        w = 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
        if (r := self._over_limit(request, w)) is not None:
            return r
        return self._json(M.depth_snapshot(self.model, i, limit), request=request)

    async def h_klines(self, request: web.Request) -> web.Response:
        i = self._symbol(request)
        if isinstance(i, web.Response):
            return i
        interval = request.query.get("interval")
        if not interval:
            return self._bad(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or "
                                    "malformed.", request)
        iv = _INTERVAL_MIN.get(interval)
        if interval == "1s" and self.model.k1_cap:
            iv = 0          # simulator extension (Binance spot has 1s klines, USDT-M does not)
        if iv is None:
            return self._bad(-1120, "Invalid interval.", request)
        limit = self._int_param(request, "limit", 500, 1, 1500)
        if isinstance(limit, web.Response):
            return limit
        st = self._int_param(request, "startTime", None, 0, 2 ** 62)
        et = self._int_param(request, "endTime", None, 0, 2 ** 62)
        for v in (st, et):
            if isinstance(v, web.Response):
                return v
        w = 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
        if (r := self._over_limit(request, w)) is not None:
            return r
        if iv == 0:
            return self._json(self._klines_1s_rows(i, limit, st, et), request=request)
        return self._json(self._klines_rows(i, iv, limit, st, et), request=request)

    def _klines_1s_rows(self, i: int, limit: int, st: int | None, et: int | None) -> list:
        m = self.model
        times, f = m.klines_1s(i, st, et, limit)
        pd, qd = m.price_dec[i], m.qty_dec[i]
        rows = []
        for k in range(times.size):
            t0 = int(times[k])
            rows.append([t0, f"{f['o'][k]:.{pd}f}", f"{f['h'][k]:.{pd}f}", f"{f['l'][k]:.{pd}f}",
                         f"{f['c'][k]:.{pd}f}", f"{f['v'][k]:.{qd}f}", t0 + 999, f"{f['q'][k]:.5f}",
                         int(f["n"][k]), f"{f['V'][k]:.{qd}f}", f"{f['Q'][k]:.5f}", "0"])
        return rows

    def _klines_rows(self, i: int, iv: int, limit: int, st: int | None, et: int | None) -> list:
        m = self.model
        times, f = m.klines_1m(i)
        ivms = iv * 60_000
        keys = times - times % ivms
        rows = []
        uniq, first = np.unique(keys, return_index=True)
        bounds = list(first) + [len(keys)]
        for k, t0 in enumerate(uniq):
            a, b = bounds[k], bounds[k + 1]
            t0 = int(t0)
            if st is not None and t0 < st:
                continue
            if et is not None and t0 > et:
                continue
            o, c = f["o"][a], f["c"][b - 1]
            rows.append([t0, M.fmt_price(m, i, o), M.fmt_price(m, i, f["h"][a:b].max()),
                         M.fmt_price(m, i, f["l"][a:b].min()), M.fmt_price(m, i, c),
                         f"{f['v'][a:b].sum():.{m.qty_dec[i]}f}", t0 + ivms - 1, f"{f['q'][a:b].sum():.5f}",
                         int(f["n"][a:b].sum()), f"{f['V'][a:b].sum():.{m.qty_dec[i]}f}",
                         f"{f['Q'][a:b].sum():.5f}", "0"])
        if st is not None:
            return rows[:limit]
        return rows[-limit:]

    async def h_premium(self, request: web.Request) -> web.Response:
        i = self._symbol(request, required=False)
        if isinstance(i, web.Response):
            return i
        if (r := self._over_limit(request, 1 if i is not None else 10)) is not None:
            return r
        if i is None:
            return self._json([M.premium_index(self.model, k) for k in range(self.model.n)], request=request)
        return self._json(M.premium_index(self.model, i), request=request)

    async def h_funding_rate(self, request: web.Request) -> web.Response:
        i = self._symbol(request, required=False)
        if isinstance(i, web.Response):
            return i
        m = self.model
        idx = [i] if i is not None else list(range(m.n))
        eight = 8 * 3_600_000
        last = m.t_ms - m.t_ms % eight
        return self._json([{"symbol": m.symbols[k], "fundingTime": last, "fundingRate": f"{m.funding[k]:.8f}",
                            "markPrice": f"{m.mid[k]:.8f}"} for k in idx], request=request)

    async def h_taker(self, request: web.Request) -> web.Response:
        i = self._symbol(request)
        if isinstance(i, web.Response):
            return i
        period = request.query.get("period")
        if not period:
            return self._bad(-1102, "Mandatory parameter 'period' was not sent, was empty/null, or "
                                    "malformed.", request)
        pm = _INTERVAL_MIN.get(period)
        if pm is None or pm < 5 or period not in _TAKER_PERIODS:
            return self._bad(-1130, "Data sent for parameter 'period' is not valid.", request)
        limit = self._int_param(request, "limit", 30, 1, 500)
        if isinstance(limit, web.Response):
            return limit
        times, buy, sell = self.model.taker_buckets(i)
        if buy[-1] + sell[-1] <= 0:          # the bucket in progress is served once it has volume
            times, buy, sell = times[:-1], buy[:-1], sell[:-1]
        pms = pm * 60_000
        keys = times - times % pms
        out = []
        uniq, first = np.unique(keys, return_index=True)
        bounds = list(first) + [len(keys)]
        for k, t0 in enumerate(uniq):
            a, b = bounds[k], bounds[k + 1]
            bv, sv = float(buy[a:b].sum()), float(sell[a:b].sum())
            ratio = bv / sv if sv > 0 else 0.0
            out.append({"buySellRatio": f"{ratio:.4f}", "buyVol": f"{bv:.4f}", "sellVol": f"{sv:.4f}",
                        "timestamp": int(t0)})
        return self._json(out[-limit:], request=request)

    async def h_dvol(self, request: web.Request) -> web.Response:
        q = request.query
        cur = (q.get("currency") or "").upper()
        t0 = time.time()

        def derr(reason: str, param: str) -> web.Response:
            return web.Response(body=orjson.dumps({
                "jsonrpc": "2.0", "error": {"message": "Invalid params", "data": {"reason": reason,
                                                                                 "param": param},
                                            "code": -32602},
                "usIn": int(t0 * 1e6), "usOut": int(time.time() * 1e6), "usDiff": 1, "testnet": False}),
                status=400, content_type="application/json")
        if cur not in self.model.dvol:
            return derr("wrong format" if cur else "required", "currency")
        try:
            st = int(q["start_timestamp"])
            et = int(q["end_timestamp"])
        except (KeyError, ValueError):
            return derr("required", "start_timestamp" if "start_timestamp" not in q else "end_timestamp")
        res = q.get("resolution", "60")
        res_s = {"1": 1, "60": 60, "3600": 3600, "43200": 43200, "1D": 86400}.get(res)
        if res_s is None:
            return derr("wrong format", "resolution")
        if et >= int(time.time() * 1000) - 300_000:
            # "up to now" by the caller's wall clock means up to market now (market time runs ahead at speed > 1)
            et = max(et, self.model.t_ms)
        hist = self.model.dvol_hist[cur] + [(self.model.t_ms, float(self.model.dvol[cur]))]
        step = max(res_s, 60) * 1000
        buckets: dict[int, list[float]] = {}
        for ts, v in hist:
            if st <= ts <= et:
                buckets.setdefault(ts - ts % step, []).append(v)
        data = [[k, round(v[0], 2), round(max(v), 2), round(min(v), 2), round(v[-1], 2)]
                for k, v in sorted(buckets.items())][-1000:]
        return web.Response(body=orjson.dumps({
            "jsonrpc": "2.0", "result": {"data": data, "continuation": None},
            "usIn": int(t0 * 1e6), "usOut": int(time.time() * 1e6), "usDiff": 1, "testnet": False}),
            content_type="application/json")

    async def h_fng(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "1"))
        except ValueError:
            limit = 1
        m = self.model
        day = 86_400_000
        today = m.t_ms - m.t_ms % day
        cur = int(round(min(100, max(0, m.fng))))
        entries = [(today, cur)] + [(t, v) for t, v in reversed(m.fng_hist)]
        if limit <= 0:
            limit = len(entries)
        data = []
        for k, (t, v) in enumerate(entries[:limit]):
            e = {"value": str(v), "value_classification": _fng_class(v), "timestamp": str(t // 1000)}
            if k == 0:
                e["time_until_update"] = str((today + day - m.t_ms) // 1000)
            data.append(e)
        return web.json_response({"name": "Fear and Greed Index", "data": data, "metadata": {"error": None}})


_INTERVAL_MIN = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240,
                 "6h": 360, "8h": 480, "12h": 720, "1d": 1440}
_TAKER_PERIODS = {"5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"}


def _fng_class(v: int) -> str:
    if v < 25:
        return "Extreme Fear"
    if v < 47:
        return "Fear"
    if v <= 54:
        return "Neutral"
    if v < 76:
        return "Greed"
    return "Extreme Greed"
