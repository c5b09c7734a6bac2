"""Signed trading endpoints and user-data streams of the venue simulator (mixin of :class:`server.VenueSim`).

Design notes: ``docs/design/standins.venue_sim.md``.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import WSMsgType, web

from standins.venue_sim import messages as M
from standins.venue_sim.exchange import ExchangeError, SimExchange

log = logging.getLogger("venue_sim")

ORDER_LIMIT_1M = 1200
USER_GARBAGE = (
    "not json at all",
    '{"e":"ORDER_TRADE_UPDATE","E":1,"o":{"s":"BTCUSDT","c":"x"',
    '{"e":"ORDER_TRADE_UPDATE","E":1,"T":1,"o":{"s":"ETHUSDT","c":"DLP-garbage","S":"SELL","X":"FILLED",'
    '"x":"TRADE","i":1,"q":"1","z":"NaN","l":"1","L":"-3","n":"0","t":1,"T":1,"ap":"0"}}',
    '{"e":"ACCOUNT_UPDATE","E":"soon","a":[]}',
    "[1, 2, 3]",
)
LISTEN_KEY_TTL_S = 3600.0


class UserApi:
    """Signed REST handlers and user streams; expects ``exchange`` (SimExchange) and ``model``."""

    exchange: SimExchange
    model: Any
    cfg: Any

    def init_user_api(self) -> None:
        self.listen_keys: dict[str, tuple[str, float]] = {}       # listenKey -> (api key, expiry wall time)
        self.user_conns: dict[str, set[web.WebSocketResponse]] = {}
        self.user_transports: dict[web.WebSocketResponse, Any] = {}
        self.user_combined: dict[web.WebSocketResponse, str] = {}     # combined-stream user conns → listenKey
        self.user_refuse_until = 0.0
        self.user_mute_until = 0.0
        self.ack_delay_ms = 0.0
        self.ack_delay_until = 0.0
        self.ack_lost_left = 0
        self.reject_left = 0
        self.reject_code, self.reject_msg = -2019, "Margin is insufficient."
        self.user_garbage_left = 0
        self.order_counts: dict[str, tuple[int, int]] = {}
        self.user_events_sent = 0
        self.user_events_lost = 0
        self.clock_skew_ms = 0

    # ------------------------------------------------------------------ auth
    def _api_key(self, request: web.Request) -> str | web.Response:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            return self._bad(-2014, "API-key format invalid.", request, status=401)
        if key not in self.exchange.secrets:
            return self._bad(-2015, "Invalid API-key, IP, or permissions for action.", request, status=401)
        return key

    async def _signed(self, request: web.Request) -> tuple[str, dict[str, str]] | web.Response:
        """Check key, signature and timestamp; return (api key, params)."""
        key = self._api_key(request)
        if isinstance(key, web.Response):
            return key
        body = ""
        if request.method in ("POST", "PUT", "DELETE") and request.can_read_body:
            body = await request.text()
        sig = None
        kept: list[str] = []
        for part_src in (request.query_string, body):
            pieces = [p for p in part_src.split("&") if p]
            keep = []
            for p in pieces:
                if p.startswith("signature="):
                    sig = p[len("signature="):]
                else:
                    keep.append(p)
            kept.append("&".join(keep))
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        params.pop("signature", None)
        if not sig:
            return self._bad(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
                             request)
        ts_raw = params.get("timestamp")
        if not ts_raw:
            return self._bad(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
                             request)
        payload = kept[0] + kept[1]
        want = hmac.new(self.exchange.secrets[key].encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sig.lower()):
            return self._bad(-1022, "Signature for this request is not valid.", request)
        try:
            ts = int(ts_raw)
            rw = int(params.get("recvWindow", "5000"))
        except ValueError:
            return self._bad(-1100, "Illegal characters found in parameter 'timestamp'.", request)
        if not 0 < rw <= 60_000:
            return self._bad(-1131, "recvWindow must be less than 60000", request)
        def outside(now: int) -> bool:
            return ts >= now + 1000 or now - ts > rw
        # against the wall clock, as Binance (at speed 1 that is serverTime, see RestApi.server_time_ms)
        if outside(int(time.time() * 1000) + self.clock_skew_ms):
            return self._bad(-1021, "Timestamp for this request is outside of the recvWindow.", request)
        return key, params

    def _count_order(self, key: str) -> int:
        minute = int(time.time() // 60)
        m, n = self.order_counts.get(key, (minute, 0))
        n = (n if m == minute else 0) + 1
        self.order_counts[key] = (minute, n)
        return n

    def _ujson(self, body: Any, request: web.Request, key: str | None = None, status: int = 200) -> web.Response:
        r = self._json(body, status=status, request=request)
        if key is not None:
            m, n = self.order_counts.get(key, (0, 0))
            r.headers["X-MBX-ORDER-COUNT-1M"] = str(n if m == int(time.time() // 60) else 0)
        return r

    def _exc(self, exc: ExchangeError, request: web.Request, key: str | None = None) -> web.Response:
        return self._ujson({"code": exc.code, "msg": exc.msg}, request, key, status=exc.status)

    async def _ack_faults(self) -> None:
        if self.ack_delay_ms > 0 and asyncio.get_running_loop().time() < self.ack_delay_until:
            await asyncio.sleep(self.ack_delay_ms / 1000.0)

    # ------------------------------------------------------------------ orders
    async def h_order_post(self, request: web.Request) -> web.Response:
        s = await self._signed(request)
        if isinstance(s, web.Response):
            return s
        key, p = s
        self._charge(request, 1)
        if self._count_order(key) > ORDER_LIMIT_1M:
            return self._ujson({"code": -1015, "msg": f"Too many new orders; current limit is {ORDER_LIMIT_1M} "
                                                      "orders per MINUTE."}, request, key, status=429)
        if self.reject_left > 0:
            self.reject_left -= 1
            return self._ujson({"code": self.reject_code, "msg": self.reject_msg}, request, key, status=400)
        resp_type = p.get("newOrderRespType", "ACK")
        if resp_type not in ("ACK", "RESULT"):
            return self._bad(-1130, "Data sent for parameter 'newOrderRespType' is not valid.", request)
        try:
            o = self.exchange.place(key, p, self.model.t_ms)
        except ExchangeError as exc:
            return self._exc(exc, request, key)
        ack = self.exchange.order_json(o)
        if resp_type == "ACK":
            ack.update(status="NEW", executedQty=self.exchange.fq(o.i, 0), cumQty=self.exchange.fq(o.i, 0),
                       cumQuote="0.00000000", avgPrice="0.00", updateTime=o.time_ms)
        self.flush_user_events()
        if self.ack_lost_left > 0:
            self.ack_lost_left -= 1
            return self._ujson({"code": -1007, "msg": "Timeout waiting for response from backend server. Send "
                                                      "status unknown; execution status unknown."},
                               request, key, status=503)
        await self._ack_faults()
        return self._ujson(ack, request, key)

    def _order_ref(self, p: dict[str, str], request: web.Request) -> tuple[int | None, str | None] | web.Response:
        oid, cid = p.get("orderId"), p.get("origClientOrderId")
        if not oid and not cid:
            return self._bad(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
                             request)
        if oid:
            try:
                return int(oid), None
            except ValueError:
                return self._bad(-1100, "Illegal characters found in parameter 'orderId'.", request)
        return None, cid

    async def _order_request(self, request: web.Request):
        """Signed, weighed, with a valid symbol and order reference: (key, params, ref), or the error response."""
        s = await self._signed(request)
        if isinstance(s, web.Response):
            return s
        key, p = s
        self._charge(request, 1)
        if (i := self._sym_param(p, request)) is not None:
            return i
        ref = self._order_ref(p, request)
        if isinstance(ref, web.Response):
            return ref
        return key, p, ref

    async def h_order_get(self, request: web.Request) -> web.Response:
        return await self._query_order(request, open_only=False)

    async def h_open_order_get(self, request: web.Request) -> web.Response:
        """``GET /fapi/v1/openOrder``: like ``/order`` but only an open order (else ``-2013``)."""
        return await self._query_order(request, open_only=True)

    async def _query_order(self, request: web.Request, open_only: bool) -> web.Response:
        r = await self._order_request(request)
        if isinstance(r, web.Response):
            return r
        key, p, ref = r
        o = self.exchange.find(key, *ref)
        if o is None or o.symbol != p["symbol"] or (open_only and not o.open):
            return self._bad(-2013, "Order does not exist.", request)
        return self._ujson(self.exchange.order_json(o), request)

    async def h_all_orders(self, request: web.Request) -> web.Response:
        """``GET /fapi/v1/allOrders``: the symbol's orders still kept (open and the last closed), oldest first."""
        q = await self._history_request(request)
        if isinstance(q, web.Response):
            return q
        key, p, limit, oid = q
        rows = [o for o in self.exchange.account(key).orders.values()
                if o.symbol == p["symbol"] and (oid is None or o.order_id >= oid)]
        rows.sort(key=lambda o: o.order_id)
        rows = rows[:limit] if oid is not None else rows[-limit:]
        return self._ujson([self.exchange.order_json(o) for o in rows], request)

    async def h_order_delete(self, request: web.Request) -> web.Response:
        r = await self._order_request(request)
        if isinstance(r, web.Response):
            return r
        key, p, ref = r
        try:
            o = self.exchange.find(key, *ref)
            if o is None or o.symbol != p["symbol"]:
                raise ExchangeError(-2011, "Unknown order sent.")
            self.exchange.cancel(key, o.order_id, None, self.model.t_ms)
        except ExchangeError as exc:
            return self._exc(exc, request)
        self.flush_user_events()
        await self._ack_faults()
        return self._ujson(self.exchange.order_json(o), request)

    async def h_all_open_delete(self, request: web.Request) -> web.Response:
        s = await self._signed(request)
        if isinstance(s, web.Response):
            return s
        key, p = s
        self._charge(request, 1)
        if (i := self._sym_param(p, request)) is not None:
            return i
        self.exchange.cancel_all(key, p["symbol"], self.model.t_ms)
        self.flush_user_events()
        return self._ujson({"code": 200, "msg": "The operation of cancel all open order is done."}, request)

    def _sym_param(self, p: dict[str, str], request: web.Request, required: bool = True) -> web.Response | None:
        sym = p.get("symbol")
        if not sym:
            if required:
                return self._bad(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                                 request)
            return None
        if sym not in self.model.index:
            return self._bad(-1121, "Invalid symbol.", request)
        return None

    async def _history_request(self, request: web.Request
                               ) -> tuple[str, dict[str, str], int, int | None] | web.Response:
        """The signed, symbol-bound history query (``allOrders``, ``userTrades``), weight 5: returns
        ``(key, params, limit, orderId or None)`` or the error response."""
        s = await self._signed(request)
        if isinstance(s, web.Response):
            return s
        key, p = s
        if (i := self._sym_param(p, request)) is not None:
            return i
        self._charge(request, 5)
        try:
            limit = min(1000, max(1, int(p.get("limit", "500"))))
            oid = int(p["orderId"]) if p.get("orderId") else None
        except ValueError:
            return self._bad(-1100, "Illegal characters found in parameter 'limit'.", request)
        return key, p, limit, oid

    async def h_open_orders(self, request: web.Request) -> web.Response:
        s = await self._signed(request)
        if isinstance(s, web.Response):
            return s
        key, p = s
        if (i := self._sym_param(p, request, required=False)) is not None:
            return i
        self._charge(request, 1 if p.get("symbol") else 40)
        acct = self.exchange.account(key)
        out = [self.exchange.order_json(acct.orders[x]) for x in acct.by_client.values()
               if not p.get("symbol") or acct.orders[x].symbol == p["symbol"]]
        return self._ujson(out, request)

    async def h_user_trades(self, request: web.Request) -> web.Response:
        q = await self._history_request(request)
        if isinstance(q, web.Response):
            return q
        key, p, limit, oid = q
        rows = [t for t in self.exchange.account(key).trades
                if t["symbol"] == p["symbol"] and (oid is None or t["orderId"] == oid)]
        return self._ujson(rows[-limit:], request)

    # ------------------------------------------------------------------ listen keys + user streams
    async def h_listen_key(self, request: web.Request) -> web.Response:
        key = self._api_key(request)
        if isinstance(key, web.Response):
            return key
        self._charge(request, 1)
        now = time.monotonic()
        mine = [lk for lk, (k, exp) in self.listen_keys.items() if k == key and exp > now]
        if request.method == "POST":
            lk = mine[0] if mine else secrets.token_urlsafe(48).replace("-", "a").replace("_", "b")[:64]
            self.listen_keys[lk] = (key, now + LISTEN_KEY_TTL_S)
            return self._ujson({"listenKey": lk}, request)
        if not mine:
            return self._bad(-1125, "This listenKey does not exist.", request)
        if request.method == "PUT":
            self.listen_keys[mine[0]] = (key, now + LISTEN_KEY_TTL_S)
            return self._ujson({"listenKey": mine[0]}, request)
        del self.listen_keys[mine[0]]
        for ws in list(self.user_conns.pop(key, ())):
            asyncio.ensure_future(ws.close(code=1000, message=b"listenKey deleted"))
        return self._ujson({}, request)

    def is_listen_key(self, lk: str) -> bool:
        return lk in self.listen_keys

    async def handle_user_ws(self, request: web.Request, lk: str, combined: bool = False) -> web.StreamResponse:
        """The user stream of ``lk``: ``/ws/<listenKey>``, ``/private/ws/<listenKey>`` or ``/private/ws?listenKey=``;
        ``/stream?streams=<listenKey>`` (``combined``) wraps each event as ``{"stream": lk, "data": event}``."""
        key, exp = self.listen_keys[lk]
        loop = asyncio.get_running_loop()
        if loop.time() < self.user_refuse_until:
            return web.Response(status=503, text="venue_sim: user streams refused (fault injection)")
        if exp <= time.monotonic():
            return web.Response(status=400, text="listenKey expired")
        ws = web.WebSocketResponse(heartbeat=180.0, autoping=True, compress=False)
        await ws.prepare(request)
        self.user_conns.setdefault(key, set()).add(ws)
        self.user_transports[ws] = request.transport
        if combined:
            self.user_combined[ws] = lk
        log.info("venue_sim: user stream open for %s…", key[:6])
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self.user_conns.get(key, set()).discard(ws)
            self.user_transports.pop(ws, None)
            self.user_combined.pop(ws, None)
            log.info("venue_sim: user stream closed for %s…", key[:6])
        return ws

    def flush_user_events(self) -> None:
        """Send every account's pending events to its user streams (lost if none or muted)."""
        muted = asyncio.get_running_loop().time() < self.user_mute_until
        now = time.monotonic()
        for key, acct in self.exchange.accounts.items():
            for lk, (k, exp) in list(self.listen_keys.items()):
                if k == key and exp <= now:
                    del self.listen_keys[lk]
                    acct.outbox.append({"e": "listenKeyExpired", "E": self.model.t_ms, "listenKey": lk})
            if not acct.outbox:
                continue
            events, acct.outbox = acct.outbox, []
            conns = [ws for ws in self.user_conns.get(key, ()) if not ws.closed]
            if muted or not conns:
                self.user_events_lost += len(events)
                continue
            frames = []
            for ev in events:
                if self.user_garbage_left > 0:       # fault: a bad frame before each real one
                    self.user_garbage_left -= 1
                    frames.append(USER_GARBAGE[self.user_garbage_left % len(USER_GARBAGE)])
                frames.append(orjson.dumps(ev).decode())
            for ws in conns:
                clk = self.user_combined.get(ws)
                out = frames if clk is None else [f'{{"stream":{orjson.dumps(clk).decode()},"data":{f}}}'
                                                  for f in frames]
                asyncio.ensure_future(_send_all(ws, out))
            self.user_events_sent += len(frames)

    async def user_fault(self, kind: str, body: dict, now: float) -> dict:
        """Apply one of the order-side faults; raise ValueError for an unknown kind."""
        dur = float(body.get("duration_s", 30.0))
        if kind == "user_stream_drop":
            mode = body.get("mode", "close")
            if mode == "mute":
                self.user_mute_until = now + dur
                return {"muted_s": dur}
            self.user_refuse_until = now + dur
            closing = []
            n = 0
            for conns in self.user_conns.values():
                for ws in list(conns):
                    n += 1
                    tr = self.user_transports.pop(ws, None)
                    if mode == "abort" and tr is not None:
                        tr.abort()
                    else:
                        closing.append(ws.close(code=1001, message=b"venue_sim: user_stream_drop fault"))
                conns.clear()
            await asyncio.gather(*closing, return_exceptions=True)
            return {"dropped": n, "refuse_s": dur}
        if kind == "ack_delay":
            self.ack_delay_ms = float(body.get("delay_ms", 2000))
            self.ack_delay_until = now + dur
            return {"ack_delay_ms": self.ack_delay_ms, "duration_s": dur}
        if kind == "ack_lost":
            self.ack_lost_left += int(body.get("count", 1))
            return {"ack_lost_left": self.ack_lost_left}
        if kind == "user_garbage":
            self.user_garbage_left += int(body.get("count", 5))
            return {"user_garbage_left": self.user_garbage_left}
        if kind == "clock_skew":
            self.clock_skew_ms = int(body.get("offset_ms", 2000))
            return {"clock_skew_ms": self.clock_skew_ms}
        if kind == "delist":
            i = self.model.index[str(body["symbol"]).upper()]
            st = str(body.get("status", "SETTLING"))
            if st == "TRADING":
                self.exchange.status.pop(i, None)
            else:
                self.exchange.status[i] = st
            self.exchange_info_body = orjson.dumps(M.exchange_info(self.model, self.exchange.status))
            return {"symbol": self.model.symbols[i], "status": st}
        if kind == "reject_orders":
            self.reject_left += int(body.get("count", 1))
            self.reject_code = int(body.get("code", -2019))
            self.reject_msg = str(body.get("msg", "Margin is insufficient."))
            return {"reject_left": self.reject_left, "code": self.reject_code}
        raise ValueError(f"unknown fault kind {kind!r}")

    def clear_user_faults(self) -> None:
        self.clock_skew_ms = 0
        if self.exchange.status:
            self.exchange.status.clear()
            self.exchange_info_body = orjson.dumps(M.exchange_info(self.model))
        self.user_refuse_until = self.user_mute_until = 0.0
        self.ack_delay_until = 0.0
        self.ack_lost_left = self.reject_left = self.user_garbage_left = 0

    def user_fault_state(self, now: float) -> dict:
        return {"user_stream_refusing": now < self.user_refuse_until, "user_stream_muted": now < self.user_mute_until,
                "ack_delay_ms": self.ack_delay_ms if now < self.ack_delay_until else 0,
                "ack_lost_left": self.ack_lost_left, "reject_left": self.reject_left, "clock_skew_ms": self.clock_skew_ms,
                "delisted": {self.model.symbols[i]: st for i, st in self.exchange.status.items()}}


async def _send_all(ws: web.WebSocketResponse, frames: list[str]) -> None:
    try:
        for f in frames:
            await ws.send_str(f)
    except (ConnectionError, RuntimeError):     # closed under us: those events are lost, as on the venue
        pass
