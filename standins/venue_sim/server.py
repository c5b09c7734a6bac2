"""aiohttp server of the venue simulator: websocket streams, REST endpoints, admin (regime + faults).

One tick task advances the model every 100 ms of market time (wall interval 100 ms / speed), renders
each due stream message once (only for streams somebody subscribed to), frames it once as a
websocket text frame and writes each connection's frames of the tick with one ``transport.write``.
A connection whose send buffer exceeds 8 MB is closed as a slow consumer (the real venue does the same).
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from standins.venue_sim import messages as M
from standins.venue_sim.account_api import AccountApi
from standins.venue_sim.exchange import ExchangeConfig, SimExchange
from standins.venue_sim.rest_api import RestApi
from standins.venue_sim.user_api import UserApi
from standins.venue_sim.model import REGIMES, TICK_MS, MarketModel
from standins.venue_sim.universe import build_universe

log = logging.getLogger("venue_sim")

SLOW_CONSUMER_BYTES = 8 * 1024 * 1024
# stream suffix -> emission period in ticks (0 = event driven)
KIND_PERIOD = {"depth5@500ms": 5, "depth5@100ms": 1, "bookTicker": 0, "aggTrade": 0,
               "markPrice@1s": 10, "markPrice": 30, "kline_1m": 5}
ARR_STREAMS = {"!markPrice@arr@1s": 10, "!markPrice@arr": 30}
GARBAGE = (
    b"this is not json",
    b'{"stream":"btcusdt@depth5@500ms","data":{"e":"depthUpdate","E":17',
    b'{"e":"bookTicker","u":1,"s":"BTCUSDT","b":"NaN","B":"1","a":"-5","A":"x","T":1,"E":1}',
    b'{"e":"depthUpdate","E":"yesterday","s":42,"b":[["1"]],"a":null}',
    b"[1, 2, 3]",
)


@dataclass(frozen=True)
class SimConfig:
    """Effective configuration of one simulator process."""

    host: str = "127.0.0.1"
    port: int = 8765
    seed: int = 42
    speed: float = 1.0
    replay: str | None = None
    stream_cap: int = 200
    n_symbols: int = 560
    start_ms: int | None = None     # market time origin; None = wall clock at start
    klines_1s: int = 4096           # seconds of 1s klines served (extension); 0 = off, like USDT-M
    liq_tau_s: float = 90.0         # lag of the books' response to a regime (model.LIQ_TAU_S)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    api_keys: tuple[tuple[str, str], ...] = (("dolphin-sim-key", "dolphin-sim-secret"),)

    def __post_init__(self) -> None:
        if not 0.01 <= self.speed <= 1000:
            raise ValueError(f"--speed {self.speed}: must be in [0.01, 1000]")
        if not 1 <= self.stream_cap <= 100_000:
            raise ValueError(f"--stream-cap {self.stream_cap}: must be >= 1")
        if not 50 <= self.n_symbols <= 5000:
            raise ValueError(f"--symbols {self.n_symbols}: must be in [50, 5000]")
        if self.klines_1s != 0 and not 60 <= self.klines_1s <= 86_400:
            raise ValueError(f"--klines-1s {self.klines_1s}: must be 0 (off) or in [60, 86400]")
        if not (math.isfinite(self.liq_tau_s) and 1.0 <= self.liq_tau_s <= 86_400):
            raise ValueError(f"--liq-tau-s {self.liq_tau_s}: must be in [1, 86400] seconds")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port {self.port}: out of range")
        if not self.api_keys or any(not k or not sec for k, sec in self.api_keys):
            raise ValueError("--api-key: need at least one KEY:SECRET pair, both non-empty")


def ws_frame(payload: bytes) -> bytes:
    """Return ``payload`` framed as one unmasked FIN text frame (server -> client)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


@dataclass(eq=False)
class Conn:
    ws: web.WebSocketResponse
    transport: Any
    combined: bool
    peer: str
    cid: int
    streams: set[str] = field(default_factory=set)
    pending: list[bytes] = field(default_factory=list)
    sent: int = 0


def err_frame(code: int, msg: str, req_id: Any) -> bytes:
    return orjson.dumps({"error": {"code": code, "msg": msg}, "id": req_id})


class VenueSim(RestApi, UserApi, AccountApi):
    """The running simulator: model, subscriptions, faults, counters and the aiohttp app."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        driver = None
        if cfg.replay:
            from standins.venue_sim.replay import ReplayDriver
            driver = ReplayDriver(cfg.replay)
            universe = driver.universe()
            start = driver.start_ms
        else:
            universe = build_universe(cfg.seed, cfg.n_symbols)
            start = cfg.start_ms if cfg.start_ms is not None else int(time.time() * 1000)
        self.model = MarketModel(universe, cfg.seed, start, driver=driver, kline_1s_s=cfg.klines_1s,
                                 liq_tau_s=cfg.liq_tau_s)
        self.replay_driver = driver
        self.lower_index = {s.lower(): i for i, s in enumerate(self.model.symbols)}
        self.conns: set[Conn] = set()
        self.subs: dict[str, dict[int, set[Conn]]] = {k: defaultdict(set) for k in KIND_PERIOD}
        self.arr_subs: dict[str, set[Conn]] = {k: set() for k in ARR_STREAMS}
        self._cid = 0
        self.msgs_sent = 0
        self.bytes_sent = 0
        self.garbage_sent = 0
        # faults (wall-clock deadlines, loop.time())
        self.stalled: dict[str, float] = {}        # stream name or "*" -> until
        self.crossed_until: dict[int, float] = {}
        self.garbage_left = 0
        self.gap_left: dict[int, int] = {}          # symbol -> depth messages still to drop
        self.last_depth_u: dict[str, dict[int, int]] = {"depth5@500ms": {}, "depth5@100ms": {}}
        self._switches_seen = self.model.n_switches
        self.rest_delay_ms = 0.0
        self.rest_delay_until = 0.0
        self.rest_error: dict | None = None
        self.refuse_until = 0.0
        self.weights: dict[str, tuple[int, int]] = {}
        self.lag_logged = False
        self._task: asyncio.Task | None = None
        self.exchange_info_body = orjson.dumps(M.exchange_info(self.model))
        self.exchange = SimExchange(self.model, cfg.exchange, dict(cfg.api_keys))
        self.init_user_api()
        self.init_account_api()

    # ------------------------------------------------------------------ stream names
    def parse_stream(self, name: str) -> tuple[str, int] | None:
        """Return (kind, symbol index) for a valid stream name, ('arr', -1) for array streams, else None."""
        if name in ARR_STREAMS:
            return name, -1
        sym, _, kind = name.partition("@")
        i = self.lower_index.get(sym)
        if i is None or kind not in KIND_PERIOD or sym != sym.lower():
            return None
        return kind, i

    def _add(self, conn: Conn, name: str) -> None:
        kind, i = self.parse_stream(name)  # type: ignore[misc]
        if i < 0:
            self.arr_subs[kind].add(conn)
        else:
            self.subs[kind][i].add(conn)
        conn.streams.add(name)

    def _remove(self, conn: Conn, name: str) -> None:
        p = self.parse_stream(name)
        conn.streams.discard(name)
        if p is None:
            return
        kind, i = p
        if i < 0:
            self.arr_subs[kind].discard(conn)
        else:
            s = self.subs[kind].get(i)
            if s is not None:
                s.discard(conn)
                if not s:
                    del self.subs[kind][i]

    def _drop_conn(self, conn: Conn) -> None:
        for name in list(conn.streams):
            self._remove(conn, name)
        self.conns.discard(conn)

    # ------------------------------------------------------------------ tick loop
    async def tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick_wall = TICK_MS / 1000.0 / self.cfg.speed
        wall0 = loop.time()
        done = 0
        while True:
            due = int((loop.time() - wall0) / tick_wall) - done
            if due <= 0:
                await asyncio.sleep(wall0 + (done + 1) * tick_wall - loop.time())
                continue
            if due > 50:
                if not self.lag_logged:
                    log.warning("venue_sim: cannot keep up with speed %.2f (%d ticks behind); market time "
                                "now runs slower than requested", self.cfg.speed, due)
                    self.lag_logged = True
                wall0 += (due - 50) * tick_wall
                due = 50
            for _ in range(due):
                self.step_and_publish(loop.time())
                done += 1
            await asyncio.sleep(0)

    def step_and_publish(self, now: float) -> None:
        """Advance one tick, expire faults, build the due messages and write them to subscribers."""
        m = self.model
        m.step()
        self.exchange.on_tick(m.t_ms)
        self.account_tick(m.t_ms, now)
        self.flush_user_events()
        if m.n_switches != self._switches_seen:
            self._switches_seen = m.n_switches
            e = m.timeline[-1]
            log.info("venue_sim: regime -> %s at market time %d (forced=%s)", e["regime"], e["start_ms"], e["forced"])
        self._expire_faults(now)
        t = m.tick_no
        stalled_all = "*" in self.stalled
        if not stalled_all:
            self._publish(t)
        if self.garbage_left > 0 and self.conns:
            g = ws_frame(GARBAGE[self.garbage_sent % len(GARBAGE)])
            for c in self.conns:
                c.pending.append(g)
            self.garbage_sent += 1
            self.garbage_left -= 1
        for c in list(self.conns):
            if c.pending:
                data = b"".join(c.pending)
                n = len(c.pending)
                c.pending.clear()
                tr = c.transport
                if tr is None or tr.is_closing():
                    continue
                if tr.get_write_buffer_size() > SLOW_CONSUMER_BYTES:
                    log.warning("venue_sim: closing slow consumer %s (conn %d)", c.peer, c.cid)
                    self._drop_conn(c)
                    asyncio.ensure_future(c.ws.close(code=1008, message=b"slow consumer"))
                    continue
                tr.write(data)
                c.sent += n
                self.msgs_sent += n
                self.bytes_sent += len(data)

    def _expire_faults(self, now: float) -> None:
        for k, until in list(self.stalled.items()):
            if now >= until:
                del self.stalled[k]
                log.info("venue_sim: stall of %s ended", k)
        for i, until in list(self.crossed_until.items()):
            if now >= until:
                del self.crossed_until[i]
                self.model.set_crossed(i, False)
                log.info("venue_sim: crossed book of %s ended", self.model.symbols[i])

    def _emit(self, name: str, data: bytes, conns) -> None:
        if self.stalled and name in self.stalled:
            return
        raw = comb = None
        for c in conns:
            if c.combined:
                if comb is None:
                    comb = ws_frame(b'{"stream":"' + name.encode() + b'","data":' + data + b"}")
                c.pending.append(comb)
            else:
                if raw is None:
                    raw = ws_frame(data)
                c.pending.append(raw)

    def _publish(self, t: int) -> None:
        m = self.model
        syms = m.symbols
        dumps = orjson.dumps
        for kind, period in (("depth5@500ms", 5), ("depth5@100ms", 1)):
            subs = self.subs[kind]
            if subs and t % period == 0:
                for i, conns in subs.items():
                    if not conns:
                        continue
                    last = self.last_depth_u[kind]
                    pu = last.get(i, int(m.prev_update_id[i]))
                    last[i] = int(m.update_id[i])
                    if self.gap_left.get(i, 0) > 0:      # fault: this message is lost on the wire
                        self.gap_left[i] -= 1
                        continue
                    msg = M.depth_partial(m, i, pu + 1, pu)
                    self._emit(f"{syms[i].lower()}@{kind}", dumps(msg), conns)
        subs = self.subs["bookTicker"]
        if subs:
            changed = m.top_changed
            for i, conns in subs.items():
                if conns and (changed[i] or i in m.crossed):
                    self._emit(f"{syms[i].lower()}@bookTicker", dumps(M.book_ticker(m, i)), conns)
        subs = self.subs["aggTrade"]
        if subs and m.trade_sym.size:
            for j in range(m.trade_sym.size):
                conns = subs.get(int(m.trade_sym[j]))
                if conns:
                    i, msg = M.agg_trade(m, j)
                    self._emit(f"{syms[i].lower()}@aggTrade", dumps(msg), conns)
        mark_due = [(k, p) for k, p in (("markPrice@1s", 10), ("markPrice", 30)) if t % p == 0]
        arr_due = [(k, p) for k, p in ARR_STREAMS.items() if t % p == 0 and self.arr_subs[k]]
        if mark_due or arr_due:
            mark, index, nft = m.mark_price(), m.index_price(), m.next_funding_ms()
            for kind, _ in mark_due:
                for i, conns in self.subs[kind].items():
                    if conns:
                        self._emit(f"{syms[i].lower()}@{kind}", dumps(M.mark_price(m, i, mark, index, nft)),
                                   conns)
            for kind, _ in arr_due:
                arr = [M.mark_price(m, i, mark, index, nft) for i in range(m.n)]
                self._emit(kind, dumps(arr), self.arr_subs[kind])
        subs = self.subs["kline_1m"]
        if subs and (t % 5 == 0 or m.kline_closed):
            for i, conns in subs.items():
                if not conns:
                    continue
                if m.kline_closed:
                    self._emit(f"{syms[i].lower()}@kline_1m", dumps(M.kline(m, i, True)), conns)
                if t % 5 == 0:
                    self._emit(f"{syms[i].lower()}@kline_1m", dumps(M.kline(m, i, False)), conns)

    # ------------------------------------------------------------------ websocket
    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        for cat in ("/public/", "/market/", "/private/"):     # Binance's 2026 category URLs: same streams
            if path.startswith(cat):
                path = path[len(cat) - 1:]
                break
        lk = path[4:] if path.startswith("/ws/") else request.query.get("listenKey", "")
        if lk and self.is_listen_key(lk):
            return await self.handle_user_ws(request, lk)
        lk = request.query.get("streams", "") if path.startswith("/stream") else ""
        if lk and self.is_listen_key(lk):       # /stream?streams=<listenKey>: combined frames (Nautilus's client)
            return await self.handle_user_ws(request, lk, combined=True)
        loop = asyncio.get_running_loop()
        if loop.time() < self.refuse_until:
            return web.Response(status=503, text="venue_sim: connections refused (fault injection)")
        combined = path.startswith("/stream")
        initial: list[str] = []
        if combined:
            q = request.query.get("streams", "")
            initial = [s for s in q.split("/") if s]
        elif path.startswith("/ws/"):
            initial = [s for s in path[4:].split("/") if s]
        ws = web.WebSocketResponse(heartbeat=180.0, autoping=True, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        self._cid += 1
        conn = Conn(ws, request.transport, combined, str(request.remote), self._cid)
        self.conns.add(conn)
        log.info("venue_sim: conn %d open from %s path=%s streams=%d", conn.cid, conn.peer, path, len(initial))
        try:
            bad = [s for s in initial if self.parse_stream(s) is None]
            if bad:     # Binance accepts unknown names in the URL silently (ccxt opens /ws/<n> and SUBSCRIBEs)
                log.info("venue_sim: conn %d: ignoring unknown stream names in the URL %s", conn.cid, bad[:5])
                initial = [s for s in initial if s not in bad]
            if len(initial) > self.cfg.stream_cap:
                msg = f"Invalid request: too many streams ({len(initial)} > limit {self.cfg.stream_cap})"
                await ws.send_str(err_frame(2, msg, None).decode())
                await ws.close(code=1008, message=msg[:100].encode())
                return ws
            for s in initial:
                self._add(conn, s)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    reply = self._on_request(conn, msg.data)
                    if reply is not None:
                        await ws.send_str(reply.decode())
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_str(err_frame(3, "Invalid JSON: binary frames are not accepted", None).decode())
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._drop_conn(conn)
            log.info("venue_sim: conn %d closed (%d msgs sent)", conn.cid, conn.sent)
        return ws

    def _on_request(self, conn: Conn, text: str) -> bytes | None:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return err_frame(3, f"Invalid JSON: {exc}", None)
        if not isinstance(req, dict):
            return err_frame(2, "Invalid request: expected a JSON object", None)
        req_id = req.get("id")
        if req_id is not None and (not isinstance(req_id, int) or isinstance(req_id, bool) or req_id < 0):
            return err_frame(2, "Invalid request: request ID must be an unsigned integer", None)
        method = req.get("method")
        params = req.get("params", [])
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY"):
            if method is None:
                return err_frame(2, "Invalid request: missing field `method`", req_id)
            return err_frame(2, f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, "
                                "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`", req_id)
        if method == "LIST_SUBSCRIPTIONS":
            return orjson.dumps({"result": sorted(conn.streams), "id": req_id})
        if not isinstance(params, list):
            return err_frame(2, "Invalid request: params must be an array", req_id)
        if method == "GET_PROPERTY":
            if params != ["combined"]:
                return err_frame(0, "Unknown property", req_id)
            return orjson.dumps({"result": conn.combined, "id": req_id})
        if method == "SET_PROPERTY":
            if len(params) != 2 or params[0] != "combined":
                return err_frame(0, "Unknown property", req_id)
            if not isinstance(params[1], bool):
                return err_frame(1, "Invalid value type: expected Boolean", req_id)
            conn.combined = params[1]
            return orjson.dumps({"result": None, "id": req_id})
        if not all(isinstance(p, str) for p in params):
            return err_frame(2, "Invalid request: stream names must be strings", req_id)
        if method == "SUBSCRIBE":
            bad = [p for p in params if self.parse_stream(p) is None]
            if bad:
                return err_frame(2, f"Invalid request: invalid stream name '{bad[0]}'", req_id)
            new = set(params) - conn.streams
            if len(conn.streams) + len(new) > self.cfg.stream_cap:
                return err_frame(2, f"Invalid request: too many streams (limit {self.cfg.stream_cap} per "
                                    f"connection; {len(conn.streams)} subscribed, {len(new)} requested)", req_id)
            for p in new:
                self._add(conn, p)
        else:
            for p in params:
                self._remove(conn, p)
        return orjson.dumps({"result": None, "id": req_id})

    # ------------------------------------------------------------------ sim/admin endpoints
    async def h_regime(self, request: web.Request) -> web.Response:
        m = self.model
        return web.json_response({"current": m.regime, "forced": m.forced, "market_time_ms": m.t_ms,
                                  "timeline": m.timeline})

    async def h_status(self, request: web.Request) -> web.Response:
        m = self.model
        return web.json_response({
            "market_time_ms": m.t_ms, "ticks": m.tick_no, "speed": self.cfg.speed, "seed": self.cfg.seed,
            "n_symbols": m.n, "replay": self.cfg.replay, "regime": m.regime, "klines_1s_s": m.k1_cap,
            "connections": len(self.conns), "streams": sum(len(c.streams) for c in self.conns),
            "messages_sent": self.msgs_sent, "bytes_sent": self.bytes_sent, "garbage_sent": self.garbage_sent,
            "user_streams": sum(len(c) for c in self.user_conns.values()), "fills": self.exchange.fills,
            "user_events_sent": self.user_events_sent, "user_events_lost": self.user_events_lost,
            "funding_charged": self.funding_charged,
            "faults": self.active_faults()})

    def active_faults(self) -> dict:
        now = asyncio.get_running_loop().time()
        return {"stalled": {k: round(v - now, 3) for k, v in self.stalled.items()},
                "crossed": {self.model.symbols[i]: round(v - now, 3) for i, v in self.crossed_until.items()},
                "garbage_left": self.garbage_left,
                "rest_delay_ms": self.rest_delay_ms if now < self.rest_delay_until else 0,
                "rest_error": self.rest_error, "refusing": now < self.refuse_until, **self.user_fault_state(now)}

    async def h_admin_regime(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if body.get("release"):
                self.model.release_regime()
            else:
                hold = body.get("hold_s")
                self.model.force_regime(str(body.get("regime")), None if hold is None else float(hold),
                                        settle=bool(body.get("settle", False)),
                                        episode_seed=body.get("episode_seed"))
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        log.info("venue_sim: regime -> %s (forced=%s)", self.model.regime, self.model.forced)
        return await self.h_regime(request)

    async def h_admin_fault(self, request: web.Request) -> web.Response:
        """Inject a fault: kind = drop_all | stall | crossed | gap | garbage | rest_delay | rest_error | clear,
        reset_weight (every IP's request weight for the current minute back to 0, so tests sharing one simulator
        do not share its per-minute budget), or an order-side fault (user_api: user_stream_drop | user_garbage |
        ack_delay | ack_lost | reject_orders)."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            kind = body.get("kind")
            now = asyncio.get_running_loop().time()
            dur = float(body.get("duration_s", 3600.0))
            if kind == "drop_all":
                conns = list(self.conns)
                self.refuse_until = now + float(body.get("refuse_s", 0.0))
                closing = []
                for c in conns:
                    self._drop_conn(c)
                    if body.get("mode") == "abort":
                        if c.transport is not None:
                            c.transport.abort()
                    else:
                        closing.append(c.ws.close(code=1001, message=b"venue_sim: drop_all fault"))
                await asyncio.gather(*closing, return_exceptions=True)
                result: Any = {"dropped": len(conns)}
            elif kind == "stall":
                stream = body.get("stream") or "*"
                self.stalled[stream] = now + dur
                result = {"stalled": stream, "duration_s": dur}
            elif kind == "crossed":
                i = self.model.index[str(body["symbol"]).upper()]
                self.crossed_until[i] = now + dur
                self.model.set_crossed(i, True)
                result = {"crossed": self.model.symbols[i], "duration_s": dur}
            elif kind == "gap":
                i = self.model.index[str(body["symbol"]).upper()]
                self.gap_left[i] = self.gap_left.get(i, 0) + int(body.get("count", 1))
                result = {"gap": self.model.symbols[i], "count": self.gap_left[i]}
            elif kind == "garbage":
                self.garbage_left += int(body.get("count", 5))
                result = {"garbage_left": self.garbage_left}
            elif kind == "rest_delay":
                self.rest_delay_ms = float(body.get("delay_ms", 2000))
                self.rest_delay_until = now + dur
                result = {"rest_delay_ms": self.rest_delay_ms, "duration_s": dur}
            elif kind == "rest_error":
                st = int(body.get("status", 429))
                self.rest_error = {"status": st, "count": int(body.get("count", 1)),
                                   "retry_after": int(body.get("retry_after", 1))}
                result = dict(self.rest_error)
            elif kind == "reset_weight":
                result = {"weights_reset": len(self.weights)}
                self.weights.clear()
            elif kind == "clear":
                self.stalled.clear()
                for i in list(self.crossed_until):
                    self.model.set_crossed(i, False)
                self.crossed_until.clear()
                self.garbage_left = 0
                self.gap_left.clear()
                self.rest_delay_until = 0.0
                self.rest_error = None
                self.refuse_until = 0.0
                self.clear_user_faults()
                result = {"cleared": True}
            else:
                result = await self.user_fault(str(kind), body, now)
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": f"bad fault request: {exc!r}"}, status=400)
        log.warning("venue_sim: fault injected %s -> %s", body, result)
        return web.json_response({"ok": True, "result": result})

    # ------------------------------------------------------------------ app
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.rest_middleware])
        r = app.router
        for cat in ("", "/public", "/market", "/private"):
            r.add_get(f"{cat}/ws", self.handle_ws)
            r.add_get(f"{cat}/ws/{{streams:.*}}", self.handle_ws)
            r.add_get(f"{cat}/stream", self.handle_ws)
        r.add_get("/fapi/v1/ping", self.h_ping)
        r.add_get("/fapi/v1/time", self.h_time)
        r.add_get("/fapi/v1/exchangeInfo", self.h_exchange_info)
        r.add_get("/fapi/v1/depth", self.h_depth)
        r.add_get("/fapi/v1/klines", self.h_klines)
        r.add_get("/fapi/v1/premiumIndex", self.h_premium)
        r.add_get("/fapi/v1/fundingRate", self.h_funding_rate)
        r.add_get("/futures/data/takerlongshortRatio", self.h_taker)
        r.add_get("/api/v2/public/get_volatility_index_data", self.h_dvol)
        r.add_get("/fng/", self.h_fng)
        r.add_get("/fng", self.h_fng)
        r.add_post("/fapi/v1/order", self.h_order_post)
        r.add_get("/fapi/v1/order", self.h_order_get)
        r.add_delete("/fapi/v1/order", self.h_order_delete)
        r.add_delete("/fapi/v1/allOpenOrders", self.h_all_open_delete)
        r.add_get("/fapi/v1/openOrders", self.h_open_orders)
        r.add_get("/fapi/v1/openOrder", self.h_open_order_get)
        r.add_get("/fapi/v1/allOrders", self.h_all_orders)
        r.add_get("/fapi/v1/userTrades", self.h_user_trades)
        r.add_get("/fapi/v1/ticker/24hr", self.h_ticker_24hr)
        r.add_get("/fapi/v1/ticker/price", self.h_ticker_price)
        r.add_get("/fapi/v2/ticker/price", self.h_ticker_price)
        r.add_get("/fapi/v1/ticker/bookTicker", self.h_book_ticker)
        for v in ("v2", "v3"):
            r.add_get(f"/fapi/{v}/positionRisk", self.h_position_risk if v == "v2" else self.h_position_risk_v3)
            r.add_get(f"/fapi/{v}/account", self.h_account if v == "v2" else self.h_account_v3)
            r.add_get(f"/fapi/{v}/balance", self.h_balance)
        r.add_get("/fapi/v1/positionSide/dual", self.h_dual_get)
        r.add_post("/fapi/v1/positionSide/dual", self.h_dual_post)
        r.add_get("/fapi/v1/multiAssetsMargin", self.h_multi_get)
        r.add_post("/fapi/v1/multiAssetsMargin", self.h_multi_post)
        r.add_post("/fapi/v1/leverage", self.h_leverage)
        r.add_post("/fapi/v1/marginType", self.h_margin_type)
        r.add_get("/fapi/v1/leverageBracket", self.h_leverage_bracket)
        r.add_get("/fapi/v1/accountConfig", self.h_account_config)
        r.add_get("/fapi/v1/symbolConfig", self.h_symbol_config)
        r.add_get("/fapi/v1/commissionRate", self.h_commission_rate)
        r.add_get("/fapi/v1/income", self.h_income)
        r.add_get("/fapi/v1/adlQuantile", self.h_adl_quantile)
        r.add_post("/fapi/v1/countdownCancelAll", self.h_countdown)
        r.add_post("/fapi/v1/algoOrder", self.h_algo_post)
        r.add_get("/fapi/v1/algoOrder", self.h_algo_get)
        r.add_delete("/fapi/v1/algoOrder", self.h_algo_delete)
        r.add_get("/fapi/v1/openAlgoOrders", self.h_open_algo)
        r.add_delete("/fapi/v1/algoOpenOrders", self.h_algo_open_delete)
        r.add_get("/fapi/v1/allAlgoOrders", self.h_all_algo)
        r.add_post("/fapi/v1/listenKey", self.h_listen_key)
        r.add_put("/fapi/v1/listenKey", self.h_listen_key)
        r.add_delete("/fapi/v1/listenKey", self.h_listen_key)
        r.add_get("/sim/regime", self.h_regime)
        r.add_get("/sim/status", self.h_status)
        r.add_post("/sim/admin/regime", self.h_admin_regime)
        r.add_post("/sim/admin/fault", self.h_admin_fault)
        r.add_post("/sim/admin/account", self.h_admin_account)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._task = asyncio.create_task(self.tick_loop())

    async def _on_shutdown(self, app: web.Application) -> None:
        if self._task:
            self._task.cancel()
        await asyncio.gather(*(c.ws.close(code=1001, message=b"venue_sim shutting down")
                               for c in list(self.conns)), return_exceptions=True)
        await asyncio.gather(*(ws.close(code=1001, message=b"venue_sim shutting down")
                               for conns in self.user_conns.values() for ws in list(conns)),
                             return_exceptions=True)


def run(cfg: SimConfig) -> None:
    """Build the simulator for ``cfg`` and serve until SIGTERM/SIGINT."""
    sim = VenueSim(cfg)
    log.info("venue_sim: %d symbols, regime=%s, market start %d, regimes %s", sim.model.n, sim.model.regime,
             sim.model.t_ms, REGIMES)
    web.run_app(sim.make_app(), host=cfg.host, port=cfg.port, print=None, handle_signals=True, access_log=None,
                shutdown_timeout=2.0)
