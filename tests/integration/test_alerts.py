"""Alerts end to end: the embedded member, ``python -m observability.alerts``, a local aiohttp receiver."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest
from aiohttp import web

from prod.bus import maps
from prod.bus.client import make_client
from tests.helpers import REPO_ROOT, Proc, free_port, wait_until

TOKEN = "123456:TEST-TOKEN"


class Receiver:
    """A local HTTP server in a thread that records webhook and Telegram Bot API posts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.webhook: list[dict] = []
        self.telegram: list[dict] = []
        self.fail_next = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _hook(self, request: web.Request) -> web.Response:
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503)
        self.webhook.append(await request.json())
        return web.json_response({"ok": True})

    async def _tg(self, request: web.Request) -> web.Response:
        self.telegram.append(await request.json())
        return web.json_response({"ok": True, "result": {}})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_post(f"/bot{TOKEN}/sendMessage", self._tg)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> "Receiver":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.webhook]


def _put(client, map_name: str, key: str, payload: dict) -> None:
    client.get_map(map_name).blocking().set(key, maps.encode(map_name, key, payload))


def _state(position=None, history=()) -> dict:
    return {"strategy": "blue", "capital": 25000.0, "updated_at": time.time(),
            "account": {"position": position, "history": list(history)}}


def test_alerts_reach_webhook_and_telegram_rate_limited(hz_member, settings_for, tmp_path):
    _, hz_port = hz_member
    writer = make_client(settings_for(hz_port=hz_port), name="alerts-test-writer", cluster_connect_timeout=10)
    # baselines exist before the dispatcher starts: they must not be alerted
    _put(writer, maps.SAFETY, maps.KEY_LATEST, {"posture": "APEX", "Rm": 1.0, "ts": time.time()})
    _put(writer, maps.META_HEALTH, maps.KEY_LATEST, {"rm_meta": 0.98, "status": "GREEN", "timestamp": time.time(),
                                                     "cycle": 1, "actions": []})
    _put(writer, maps.STATE_BLUE, maps.KEY_LATEST, _state())
    with Receiver() as rx:
        rx.fail_next = 1           # the first delivery gets a 503 and is retried
        env = {"DOLPHIN_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{rx.port}/hook",
               "DOLPHIN_TELEGRAM_BOT_TOKEN": TOKEN, "DOLPHIN_TELEGRAM_CHAT_ID": "-10042",
               "DOLPHIN_TELEGRAM_API": f"http://127.0.0.1:{rx.port}", "DOLPHIN_ALERT_MIN_INTERVAL_S": "60",
               "DOLPHIN_METRICS_PORT_BASE": "0", "DOLPHIN_HZ_MEMBERS": f"127.0.0.1:{hz_port}"}
        proc = Proc("observability.alerts", [], tmp_path / "alerts.log", env=env).start()   # listens on no port
        try:
            wait_until(lambda: "bus hub: listening on" in proc.log_text(), 20, what="alerts listening")
            _put(writer, maps.SAFETY, maps.KEY_LATEST, {"posture": "STALKER", "Rm": 0.62, "ts": time.time()})
            wait_until(lambda: any("APEX → STALKER" in t for t in rx.texts()), 15, what="posture alert")
            _put(writer, maps.META_HEALTH, maps.KEY_LATEST, {
                "rm_meta": 0.61, "status": "DEGRADED", "timestamp": time.time(), "cycle": 2,
                "actions": ["restart exf_fetcher (was STOPPED)"]})
            pos = {"trade_id": 1, "symbol": "BTCUSDT", "direction": -1, "entry_price": 65000.0, "notional": 5000.0}
            _put(writer, maps.STATE_BLUE, maps.KEY_LATEST, _state(pos))
            wait_until(lambda: len(rx.webhook) >= 4, 15, what="4 webhook alerts")
            assert rx.fail_next == 0                      # the 503 was answered and that alert retried
            kinds = sorted(m["kind"] for m in rx.webhook)
            assert kinds == ["posture", "restart", "rm_meta", "trade"], rx.texts()
            assert any("left GREEN: DEGRADED" in t for t in rx.texts())
            assert any("restarted exf_fetcher" in t for t in rx.texts())
            assert any("opened SHORT BTCUSDT" in t for t in rx.texts())
            wait_until(lambda: len(rx.telegram) >= 4, 10, what="4 telegram alerts")
            assert all(m["chat_id"] == "-10042" for m in rx.telegram)
            # a second posture change within the interval is suppressed, not sent
            _put(writer, maps.SAFETY, maps.KEY_LATEST, {"posture": "TURTLE", "Rm": 0.4, "ts": time.time()})
            wait_until(lambda: "alert rate-limited: DOLPHIN posture STALKER → TURTLE" in proc.log_text(), 10,
                       what="rate-limit log line")
            assert sum(1 for m in rx.webhook if m["kind"] == "posture") == 1
            assert TOKEN not in proc.log_text()
            assert proc.p.poll() is None
        finally:
            proc.stop()
            writer.shutdown()


@pytest.mark.parametrize("env,msg", [({}, "no channel"),
                                     ({"DOLPHIN_ALERT_MAX_PER_MIN": "0"}, "DOLPHIN_ALERT_MAX_PER_MIN")])
def test_standalone_refuses_a_bad_configuration(env, msg):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DOLPHIN_ALERT", "DOLPHIN_TELEGRAM"))}
    if env.get("DOLPHIN_ALERT_MAX_PER_MIN"):
        env = {**env, "DOLPHIN_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/x"}
    r = subprocess.run([sys.executable, "-m", "observability.alerts"], cwd=REPO_ROOT, env={**full, **env},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and msg in r.stderr


def _mhs(trader: str, cycle: int, outcomes: dict) -> dict:
    return {"rm_meta": 0.98, "status": "GREEN", "timestamp": time.time(), "cycle": cycle, "actions": [],
            "services": {"dolphin_data:scanner": "RUNNING", "dolphin:event_trader": trader},
            "restart_outcomes": outcomes}


def test_trader_kill_switch_mc_and_failed_restart_alert_once_per_transition(hz_member, settings_for, tmp_path):
    """Issue 28: what matters most reaches the webhook and Telegram once per transition, even within the interval."""
    _, hz_port = hz_member
    writer = make_client(settings_for(hz_port=hz_port), name="alerts-test-writer2", cluster_connect_timeout=10)
    old_fail = {"dolphin_data:acb_processor": {"ok": False, "detail": "restart FAILED (old)", "at": time.time() - 900}}
    _put(writer, maps.SAFETY, maps.KEY_LATEST, {"posture": "APEX", "Rm": 1.0, "ts": time.time()})
    _put(writer, maps.META_HEALTH, maps.KEY_LATEST, _mhs("RUNNING", 1, old_fail))
    _put(writer, maps.SAFETY, maps.KEY_KILL_SWITCH, {"engaged": False, "reason": "cleared", "ts": time.time()})
    _put(writer, maps.FEATURES, maps.KEY_MC_FOREWARNER, {"status": "OK", "ts": time.time(), "catastrophic_prob": 0.01})
    _put(writer, maps.HEARTBEAT, "event_trader", {"service": "event_trader", "ts": time.time(), "pid": 4242})
    with Receiver() as rx:
        env = {"DOLPHIN_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{rx.port}/hook",
               "DOLPHIN_TELEGRAM_BOT_TOKEN": TOKEN, "DOLPHIN_TELEGRAM_CHAT_ID": "-10042",
               "DOLPHIN_TELEGRAM_API": f"http://127.0.0.1:{rx.port}", "DOLPHIN_ALERT_MIN_INTERVAL_S": "600",
               "DOLPHIN_METRICS_PORT_BASE": "0", "DOLPHIN_HZ_MEMBERS": f"127.0.0.1:{hz_port}"}
        proc = Proc("observability.alerts", [], tmp_path / "alerts.log", env=env).start()
        try:
            wait_until(lambda: "bus hub: listening on" in proc.log_text(), 20, what="alerts listening")

            def texts(kind: str) -> list[str]:
                return [m["text"] for m in rx.webhook if m["kind"] == kind]

            # the trader exits (its heartbeat pid changes when supervisord restarts it), then goes FATAL
            _put(writer, maps.HEARTBEAT, "event_trader", {"service": "event_trader", "ts": time.time(), "pid": 4343})
            wait_until(lambda: texts("trader"), 15, what="trader restart alert")
            assert "pid 4242 → 4343" in texts("trader")[0]
            fail = {**old_fail, "dolphin_data:scanner": {"ok": False, "at": time.time(), "detail":
                    "restart FAILED (supervisorctl exit 7): dolphin_data:scanner: ERROR (spawn error)"}}
            _put(writer, maps.META_HEALTH, maps.KEY_LATEST, _mhs("FATAL", 2, fail))
            wait_until(lambda: len(texts("trader")) == 2 and texts("restart_failed"), 15, what="FATAL + restart_failed")
            assert "dolphin:event_trader is FATAL (was RUNNING)" in texts("trader")[1]
            assert texts("restart_failed") == [
                "DOLPHIN meta-health could not restart dolphin_data:scanner: restart FAILED (supervisorctl exit 7): "
                "dolphin_data:scanner: ERROR (spawn error); it stays down until an operator looks"]

            # the kill switch engaged and cleared within the interval: both go out
            _put(writer, maps.SAFETY, maps.KEY_KILL_SWITCH, {"engaged": True, "reason": "venue outage", "by": "ops",
                                                             "ts": time.time()})
            wait_until(lambda: texts("kill_switch"), 15, what="kill switch engaged alert")
            _put(writer, maps.SAFETY, maps.KEY_KILL_SWITCH, {"engaged": False, "reason": "cleared", "ts": time.time()})
            wait_until(lambda: len(texts("kill_switch")) == 2, 15, what="kill switch cleared alert")
            assert texts("kill_switch")[0].startswith("DOLPHIN KILL SWITCH ENGAGED by ops: venue outage")
            assert texts("kill_switch")[1] == "DOLPHIN kill switch cleared: the trader may enter again"

            _put(writer, maps.FEATURES, maps.KEY_MC_FOREWARNER, {"status": "ORANGE", "ts": time.time(),
                                                                 "catastrophic_prob": 0.12, "envelope_score": 0.4})
            wait_until(lambda: texts("mc_forewarner"), 15, what="mc_forewarner alert")
            assert texts("mc_forewarner")[0].startswith("DOLPHIN MC-Forewarner OK → ORANGE (catastrophic prob 0.120")

            # the same states written again raise nothing; a posture change after them marks "all processed"
            _put(writer, maps.META_HEALTH, maps.KEY_LATEST, _mhs("FATAL", 3, fail))
            _put(writer, maps.SAFETY, maps.KEY_KILL_SWITCH, {"engaged": False, "reason": "cleared", "ts": time.time()})
            _put(writer, maps.FEATURES, maps.KEY_MC_FOREWARNER, {"status": "ORANGE", "ts": time.time()})
            _put(writer, maps.HEARTBEAT, "event_trader", {"service": "event_trader", "ts": time.time(), "pid": 4343})
            _put(writer, maps.SAFETY, maps.KEY_LATEST, {"posture": "STALKER", "Rm": 0.7, "ts": time.time()})
            wait_until(lambda: texts("posture"), 15, what="posture sentinel alert")
            kinds = sorted(m["kind"] for m in rx.webhook)
            assert kinds == ["kill_switch", "kill_switch", "mc_forewarner", "posture", "restart_failed",
                             "trader", "trader"], rx.texts()
            assert all(m["urgent"] for m in rx.webhook if m["kind"] != "posture")
            wait_until(lambda: len(rx.telegram) == len(rx.webhook), 10, what="the same alerts on Telegram")
            assert TOKEN not in proc.log_text() and proc.p.poll() is None
        finally:
            proc.stop()
            writer.shutdown()
