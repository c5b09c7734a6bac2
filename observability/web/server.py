"""The web console's HTTP side (aiohttp): the page, a read-only JSON API and the live websocket.

Design notes: ``docs/design/observability.md``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from observability.alerts import AlertConfig, Alerter
from observability.web.hub import BusHub
from observability.web.model import decode_entry, pretty
from prod import metrics
from prod.bus import maps
from prod.settings import Settings, load_settings

log = logging.getLogger("observability.web")

STATIC = Path(__file__).resolve().parent / "static"
SERVICE_NAME = "web_console"
QUEUE_LIMIT = 500

HUB = web.AppKey("hub", BusHub)
ALERTER = web.AppKey("alerter", Alerter)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str, allow_nan=False)


class _Socket:
    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LIMIT)

    def offer(self, text: str) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("web console: a page is not keeping up; closing its socket (it will reconnect)")
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(None)


class Broadcaster:
    """Turns hub notifications into one ``batch`` message per flush for every open page."""

    def __init__(self, hub: BusHub):
        self.hub = hub
        self.sockets: set[_Socket] = set()
        self._entries: list[dict] = []
        self._bus: dict | None = None
        self._trader_dirty = False
        self._health_dirty = False
        self._posture_dirty = False
        self._scheduled = False
        hub.consumers.append(self.on_change)
        hub.bus_consumers.append(self.on_bus)

    def on_change(self, map_name: str, key: str | None, msg: dict, payload: dict | None, now: float) -> None:
        self._entries.append(msg)
        if map_name in (maps.STATE_BLUE, maps.PNL_BLUE):
            self._trader_dirty = True
        if map_name in (maps.META_HEALTH, maps.HEARTBEAT):
            self._health_dirty = True
        if map_name == maps.SAFETY:
            self._posture_dirty = True
        self._kick()

    def on_bus(self, bus: dict) -> None:
        self._bus = bus
        self._kick()

    def _kick(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        model, now = self.hub.model, time.time()
        latest: dict[tuple, dict] = {}
        for e in self._entries:                  # one entry per key per batch: the newest
            latest.pop((e["map"], e.get("key")), None)
            latest[(e["map"], e.get("key"))] = e
        msg: dict[str, Any] = {"t": "batch", "now": now, "entries": list(latest.values()), "sizes": model.sizes(),
                               "counts": {"updates": model.updates, "bad": model.bad}}
        if self._bus is not None:
            msg["bus"] = self._bus
        if self._trader_dirty:
            msg["trader"] = model.trader(now)
        if self._health_dirty:
            meta, src = model.meta_health()
            msg["meta"], msg["meta_source"], msg["services"] = meta, src, model.services()
        if self._posture_dirty:
            msg["posture"] = model.posture()
        self._entries, self._bus, self._trader_dirty, self._health_dirty = [], None, False, False
        self._posture_dirty = False
        if not self.sockets:
            return
        text = _dumps(msg)
        for s in list(self.sockets):
            s.offer(text)


def _record_metrics(map_name: str, key: str | None, msg: dict, payload: dict | None, now: float) -> None:
    """Mirror what the console sees on the bus into its own /metrics (posture, rm_meta, PnL, lag)."""
    if payload is None or key is None:
        return
    if map_name == maps.SAFETY and key == maps.KEY_LATEST:
        metrics.record_safety(payload)
        metrics.listener_lag(map_name, payload.get("ts"), now)
    elif map_name == maps.META_HEALTH and key == maps.KEY_LATEST:
        metrics.record_meta_health(payload)
        metrics.listener_lag(map_name, payload.get("timestamp"), now)
    elif map_name == maps.PNL_BLUE and key == time.strftime("%Y-%m-%d", time.gmtime(now)):
        metrics.record_pnl("blue", payload)
    elif map_name == maps.FEATURES and key == maps.KEY_EIGEN_SCAN:
        metrics.record_scan(payload, now)
        metrics.listener_lag(map_name, payload.get("bridge_ts"), now)


BROADCASTER = web.AppKey("broadcaster", Broadcaster)


# ── handlers ─────────────────────────────────────────────────────────────────────────────────
async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def api_maps(request: web.Request) -> web.Response:
    model = request.app[HUB].model
    return web.json_response({"sizes": model.sizes(), "bus": model.bus})


async def api_map(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    model = request.app[HUB].model
    if name not in model.keys:
        raise web.HTTPNotFound(text=f"no map {name!r} on the console")
    return web.json_response({"map": name, "size": len(model.keys[name]), "keys": model.key_list(name),
                              "values": name in model.values})


async def api_entry(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    name, key = request.query.get("map"), request.query.get("key")
    if not name or key is None:
        raise web.HTTPBadRequest(text="need ?map=NAME&key=KEY")
    if name not in hub.model.keys:
        raise web.HTTPNotFound(text=f"no map {name!r} on the console")
    entry = hub.model.entry(name, key)
    source = "listener"
    if entry is None:
        try:
            raw = await asyncio.get_running_loop().run_in_executor(None, hub.read_entry, name, key)
        except Exception as exc:  # noqa: BLE001 - not connected / member gone
            raise web.HTTPServiceUnavailable(text=f"cannot read {name}[{key!r}]: {exc}") from exc
        if raw is None:
            raise web.HTTPNotFound(text=f"{name}[{key!r}] is absent")
        entry, source = decode_entry(name, key, raw, time.time()), "read"
    body = {"map": name, "key": key, "source": source, "received": entry.received, "error": entry.error,
            "pretty": pretty(entry.payload if entry.payload is not None else entry.raw)}
    return web.json_response(body, dumps=_dumps)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    hub: BusHub = request.app[HUB]
    br: Broadcaster = request.app[BROADCASTER]
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    sock = _Socket(ws)
    await ws.send_str(_dumps(hub.model.snapshot(time.time())))
    br.sockets.add(sock)

    async def writer() -> None:
        while True:
            text = await sock.queue.get()
            if text is None:
                await ws.close()
                return
            await ws.send_str(text)

    task = asyncio.create_task(writer())
    try:
        async for msg in ws:            # the page sends nothing that changes state; drain until it goes
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        br.sockets.discard(sock)
        task.cancel()
    return ws


LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _hostname(host_header: str | None) -> str:
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@web.middleware
async def loopback_guard(request: web.Request, handler):
    """Refuse requests for another host name (DNS rebinding) and cross-site websocket opens.

    Applies while the console is bound to loopback: the page is then reachable only as
    127.0.0.1 / localhost, and a web socket may only be opened by the console's own page.
    """
    if request.app[LOOPBACK_ONLY]:
        if _hostname(request.headers.get("Host")) not in LOOPBACK_NAMES:
            raise web.HTTPForbidden(text="the DOLPHIN console answers only to 127.0.0.1 / localhost")
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin is not None:
            o = origin.split("://", 1)[-1]
            if _hostname(o) not in LOOPBACK_NAMES:
                raise web.HTTPForbidden(text=f"websocket from another site refused (Origin {origin})")
    return await handler(request)


LOOPBACK_ONLY = web.AppKey("loopback_only", bool)


def build_app(settings: Settings, *, alerts: bool = True, connect_timeout: float = 3.0,
              retry_s: float = 1.0, loopback_only: bool = True) -> web.Application:
    """Build the console application; its bus hub starts and stops with the app."""
    app = web.Application(middlewares=[loopback_guard])
    app[LOOPBACK_ONLY] = loopback_only
    hub = BusHub(settings, None, connect_timeout=connect_timeout, retry_s=retry_s)
    _load_meta_file(hub, settings)
    app[HUB] = hub
    app[BROADCASTER] = Broadcaster(hub)
    hub.consumers.append(_record_metrics)
    cfg = AlertConfig.from_env() if alerts else AlertConfig()
    if cfg.enabled:
        alerter = Alerter(cfg)
        hub.consumers.append(alerter.on_change)
        app[ALERTER] = alerter
        log.info("alerts: %s", cfg.describe())
    elif alerts:
        log.info("alerts: off (no DOLPHIN_ALERT_WEBHOOK_URL / DOLPHIN_TELEGRAM_* set)")

    async def on_startup(app: web.Application) -> None:
        hub.loop = asyncio.get_running_loop()
        if ALERTER in app:
            await app[ALERTER].start()
        hub.start()

    async def on_cleanup(app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, hub.stop)
        if ALERTER in app:
            await app[ALERTER].close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/", index)
    app.router.add_get("/api/maps", api_maps)
    app.router.add_get("/api/map/{name}", api_map)
    app.router.add_get("/api/entry", api_entry)
    app.router.add_get("/ws", ws_handler)
    app.router.add_static("/static", STATIC, show_index=False)
    return app


def _load_meta_file(hub: BusHub, settings: Settings) -> None:
    path = settings.run_logs / "meta_health.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        log.error("web console: cannot read %s (%s); waiting for DOLPHIN_META_HEALTH", path, exc)
        return
    if isinstance(data, dict):
        hub.model.meta_file = data


def main(argv: list[str] | None = None) -> int:
    """Parse flags, load settings, serve the console until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(prog="python -m observability.web", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, help="HTTP port (default DOLPHIN_WEB_PORT or 8088)")
    ap.add_argument("--members", help="comma-separated host:port (default DOLPHIN_HZ_MEMBERS)")
    ap.add_argument("--cluster", help="cluster name (default DOLPHIN_HZ_CLUSTER)")
    ap.add_argument("--no-alerts", action="store_true", help="do not run the alert dispatcher in this process")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(
        hz_members=tuple(m.strip() for m in a.members.split(",") if m.strip()) if a.members else None,
        hz_cluster=a.cluster, web_port=a.port)
    log.info("web console start: http://%s:%s/ members=%s settings=%s", a.host, settings.web_port,
             settings.hz_members, settings.as_log_dict())
    try:      # bind first, so a port in use fails at once, before the bus client starts
        sock = socket.create_server((a.host, settings.web_port), reuse_port=False)
    except OSError as exc:
        log.error("web console: cannot listen on %s:%s (%s); set DOLPHIN_WEB_PORT or --port", a.host,
                  settings.web_port, exc)
        return 2
    metrics.start_metrics(SERVICE_NAME, settings)
    app = build_app(settings, alerts=not a.no_alerts, loopback_only=a.host in LOOPBACK_NAMES)
    web.run_app(app, sock=sock, print=None, handle_signals=True, shutdown_timeout=5, access_log=None)
    return 0
