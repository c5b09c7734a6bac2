"""Operator alerts (trader down, kill switch, MC-Forewarner, failed MHS restarts, posture, trades) to webhook/Telegram.

Design notes: ``docs/design/observability.md``.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

import aiohttp

from prod.bus import maps
from prod.bus.payloads import AccountState

log = logging.getLogger("observability.alerts")

_RESTART_RE = re.compile(r"^restart (\S+)")
TRADER_SERVICE = "event_trader"           # the trader's service name: heartbeat key, program ``group:event_trader``
_MC_SAME = {"GREEN": "OK"}                # McForewarner: OK is §12's name for GREEN
_MC_EFFECT = {"OK": "normal sizing", "ORANGE": "the trader halves its size from the next day roll",
              "RED": "no new entries from the next day roll"}


@dataclass(frozen=True)
class Alert:
    """One alert: ``kind`` (trader, kill_switch, mc_forewarner, restart_failed, posture, rm_meta, restart,
    trade), a subject for rate limiting, the text; ``urgent`` ones skip the per-subject interval."""

    kind: str
    subject: str
    text: str
    ts: float
    details: Mapping[str, Any] = field(default_factory=dict)
    urgent: bool = False


@dataclass(frozen=True)
class AlertConfig:
    """Where alerts go and how often (see the module docstring for the variables)."""

    webhook_url: str | None = None
    telegram_token: str | None = None
    telegram_chat_id: str | None = None
    telegram_api: str = "https://api.telegram.org"
    min_interval_s: float = 60.0
    max_per_min: int = 20
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError("DOLPHIN_ALERT_WEBHOOK_URL: must start with http:// or https://")
        if bool(self.telegram_token) != bool(self.telegram_chat_id):
            raise ValueError("DOLPHIN_TELEGRAM_BOT_TOKEN and DOLPHIN_TELEGRAM_CHAT_ID: set both or neither")
        if not self.telegram_api.startswith(("http://", "https://")):
            raise ValueError("DOLPHIN_TELEGRAM_API: must start with http:// or https://")
        if self.min_interval_s < 0 or self.max_per_min < 1 or self.timeout_s <= 0:
            raise ValueError("DOLPHIN_ALERT_MIN_INTERVAL_S must be >= 0 and DOLPHIN_ALERT_MAX_PER_MIN >= 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AlertConfig":
        """Build the config from ``DOLPHIN_ALERT_*`` / ``DOLPHIN_TELEGRAM_*``; a bad value raises ValueError naming it."""
        env = os.environ if env is None else env
        kw: dict[str, Any] = {}
        for var, name, conv in (("DOLPHIN_ALERT_WEBHOOK_URL", "webhook_url", str),
                                ("DOLPHIN_TELEGRAM_BOT_TOKEN", "telegram_token", str),
                                ("DOLPHIN_TELEGRAM_CHAT_ID", "telegram_chat_id", str),
                                ("DOLPHIN_TELEGRAM_API", "telegram_api", lambda s: s.rstrip("/")),
                                ("DOLPHIN_ALERT_MIN_INTERVAL_S", "min_interval_s", float),
                                ("DOLPHIN_ALERT_MAX_PER_MIN", "max_per_min", int)):
            raw = env.get(var)
            if raw:
                try:
                    kw[name] = conv(raw.strip())
                except ValueError as exc:
                    raise ValueError(f"{var}: {exc}") from exc
        return cls(**kw)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.telegram_token)

    def describe(self) -> str:
        """Channels and limits, without secrets (for the start-up log line)."""
        ch = [c for c, on in (("webhook", self.webhook_url), ("telegram", self.telegram_token)) if on]
        return f"channels={ch or 'none'} min_interval_s={self.min_interval_s} max_per_min={self.max_per_min}"


class AlertRules:
    """Turns map values into alerts (pure: no I/O, ``now`` passed in)."""

    def __init__(self) -> None:
        self.posture: str | None = None
        self.status: str | None = None
        self.restarts_seen: set[tuple[Any, str]] = set()
        self.position_id: Any = None
        self.closes_seen: set[tuple[Any, Any]] | None = None
        self.state_seen = False
        self.trader_state: str | None = None
        self.trader_pid: Any = None
        self.kill_engaged: bool | None = None
        self.mc_status: str | None = None
        self.outcomes_seen: set[tuple[str, Any]] | None = None
        self.frozen: bool | None = None
        self.margin_calls: int | None = None

    def on_value(self, map_name: str, key: str, payload: Mapping[str, Any], now: float) -> list[Alert]:
        """Return the alerts raised by the new ``map_name[key]`` payload (already validated)."""
        if map_name == maps.SAFETY and key == maps.KEY_LATEST:
            return self._safety(payload, now)
        if map_name == maps.SAFETY and key == maps.KEY_KILL_SWITCH:
            return self._kill_switch(payload, now)
        if map_name == maps.META_HEALTH and key == maps.KEY_LATEST:
            return self._meta(payload, now) + self._trader_state(payload, now) + self._restart_outcomes(payload, now)
        if map_name == maps.STATE_BLUE and key == maps.KEY_LATEST:
            return self._state(payload, now)
        if map_name == maps.FEATURES and key == maps.KEY_MC_FOREWARNER:
            return self._mc(payload, now)
        if map_name == maps.HEARTBEAT and key == TRADER_SERVICE:
            return self._trader_pid(payload, now)
        return []

    def _trader_state(self, p: Mapping[str, Any], now: float) -> list[Alert]:
        services = p.get("services") if isinstance(p.get("services"), Mapping) else {}
        progs = [k for k in services if str(k).rsplit(":", 1)[-1] == TRADER_SERVICE]
        if not progs:
            return []
        prog, state = progs[0], str(services[progs[0]])
        prev, self.trader_state = self.trader_state, state
        if prev is None or state == prev:
            return []
        det = {"program": prog, "from": prev, "to": state}
        if state == "FATAL":
            text = (f"DOLPHIN TRADER DOWN: {prog} is FATAL (was {prev}); supervisord gave up restarting it, "
                    "no trading until an operator starts it")
        elif prev == "RUNNING":
            text = f"DOLPHIN TRADER DOWN: {prog} is {state} (was RUNNING); it is not trading"
        elif state == "RUNNING":
            text = f"DOLPHIN trader running again: {prog} is RUNNING (was {prev})"
        else:
            return []                           # STARTING ↔ BACKOFF while it is down already: no new news
        return [Alert("trader", TRADER_SERVICE, text, now, det, urgent=True)]

    def _trader_pid(self, p: Mapping[str, Any], now: float) -> list[Alert]:
        pid = p.get("pid")
        if pid is None:
            return []
        prev, self.trader_pid = self.trader_pid, pid
        if prev is None or pid == prev:
            return []
        return [Alert("trader", TRADER_SERVICE, f"DOLPHIN trader process restarted (pid {prev} → {pid}): it exited "
                      "and was started again; check run_logs/supervisor/event_trader.log", now,
                      {"from_pid": prev, "to_pid": pid}, urgent=True)]

    def _kill_switch(self, p: Mapping[str, Any], now: float) -> list[Alert]:
        engaged = bool(p.get("engaged"))
        prev, self.kill_engaged = self.kill_engaged, engaged
        if engaged == bool(prev):               # never seen counts as "not engaged"
            return []
        by = f" by {p.get('by')}" if p.get("by") else ""
        if engaged:
            text = (f"DOLPHIN KILL SWITCH ENGAGED{by}: {p.get('reason') or 'no reason given'}; the trader cancels "
                    "open orders, flattens and takes no new entries until it is cleared")
        else:
            text = f"DOLPHIN kill switch cleared{by}: the trader may enter again"
        return [Alert("kill_switch", "kill_switch", text, now,
                      {"engaged": engaged, "reason": p.get("reason"), "by": p.get("by")}, urgent=True)]

    def _mc(self, p: Mapping[str, Any], now: float) -> list[Alert]:
        status = _MC_SAME.get(str(p.get("status")), str(p.get("status")))
        prev, self.mc_status = self.mc_status, status
        if prev is None or status == prev:
            return []
        return [Alert("mc_forewarner", "mc_forewarner",
                      f"DOLPHIN MC-Forewarner {prev} → {status} (catastrophic prob {_f(p.get('catastrophic_prob'), 3)}, "
                      f"envelope {_f(p.get('envelope_score'), 3)}): {_MC_EFFECT.get(status, 'see the trader log')}",
                      now, {"from": prev, "to": status, "catastrophic_prob": p.get("catastrophic_prob"),
                            "envelope_score": p.get("envelope_score"), "source": p.get("source")}, urgent=True)]

    def _restart_outcomes(self, p: Mapping[str, Any], now: float) -> list[Alert]:
        outcomes = p.get("restart_outcomes") if isinstance(p.get("restart_outcomes"), Mapping) else {}
        seen = {(str(prog), o.get("at")) for prog, o in outcomes.items() if isinstance(o, Mapping)}
        first, known = self.outcomes_seen is None, self.outcomes_seen or set()
        self.outcomes_seen = (known | seen) if len(known) < 1000 else seen
        if first:
            return []
        out = []
        for prog, o in sorted(outcomes.items()):
            if isinstance(o, Mapping) and o.get("ok") is False and (str(prog), o.get("at")) not in known:
                out.append(Alert("restart_failed", str(prog), f"DOLPHIN meta-health could not restart {prog}: "
                                 f"{o.get('detail') or 'no detail'}; it stays down until an operator looks",
                                 now, {"program": str(prog), **o}, urgent=True))
        return out

    def _safety(self, p: Mapping[str, Any], now: float) -> list[Alert]:
        posture, prev = p.get("posture"), self.posture
        self.posture = posture
        if prev is None or posture == prev:
            return []
        return [Alert("posture", "posture", f"DOLPHIN posture {prev} → {posture} (Rm {_f(p.get('Rm'), 3)})", now,
                      {"from": prev, "to": posture, "Rm": p.get("Rm")})]

    def _meta(self, p: Mapping[str, Any], now: float) -> list[Alert]:
        out: list[Alert] = []
        status, prev = p.get("status"), self.status
        self.status = status
        if prev is not None and status != prev and "GREEN" in (prev, status):
            verb = "recovered to" if status == "GREEN" else "left GREEN:"
            out.append(Alert("rm_meta", "rm_meta", f"DOLPHIN meta-health {verb} {status} "
                             f"(rm_meta {_f(p.get('rm_meta'), 3)}, was {prev})", now,
                             {"from": prev, "to": status, "rm_meta": p.get("rm_meta"),
                              "sensors": p.get("sensors")}))
        cycle = p.get("cycle", p.get("timestamp"))
        for action in p.get("actions") or []:
            m = _RESTART_RE.match(str(action))
            if m and (cycle, m.group(1)) not in self.restarts_seen:
                self.restarts_seen.add((cycle, m.group(1)))
                out.append(Alert("restart", m.group(1), f"DOLPHIN meta-health restarted {m.group(1)}: {action}", now,
                                 {"program": m.group(1), "action": str(action), "cycle": cycle}))
        if len(self.restarts_seen) > 1000:
            self.restarts_seen = set(list(self.restarts_seen)[-200:])
        return out

    def _state(self, p: Mapping[str, Any], now: float) -> list[Alert]:
        acct, err = AccountState.read(p, f"{maps.STATE_BLUE}[{maps.KEY_LATEST}]")
        if err is not None:
            log.error("account state unreadable: %s", err)
        pos, history = acct.position, acct.closed_trades
        closes = {(t.get("trade_id"), t.get("ts")) for t in history}
        out: list[Alert] = []
        first = not self.state_seen
        self.state_seen = True
        if not first:
            for t in history:
                if (t.get("trade_id"), t.get("ts")) not in (self.closes_seen or set()):
                    out.append(Alert("trade", "trade",
                                     f"DOLPHIN closed {t.get('symbol')} ({t.get('reason')}): net {_f(t.get('net'), 2)} "
                                     f"USDT, capital {_f(t.get('capital_after'), 2)}", now, dict(t)))
            pid = None if pos is None else pos.get("trade_id")
            if pos is not None and pid != self.position_id:
                side = "SHORT" if pos.get("direction") == -1 else "LONG" if pos.get("direction") == 1 else "?"
                out.append(Alert("trade", "trade", f"DOLPHIN opened {side} {pos.get('symbol')} @ "
                                 f"{pos.get('entry_price')} notional {_f(pos.get('notional'), 2)}", now, dict(pos)))
        self.position_id = None if pos is None else pos.get("trade_id")
        self.closes_seen = closes
        out += self._safety_state(acct.safety or {}, now)
        return out

    def _safety_state(self, sf: Mapping[str, Any], now: float) -> list[Alert]:
        """The venue account's ``safety`` block (prod/trading/venue_account.py): freezes and margin calls."""
        out: list[Alert] = []
        frozen = sf.get("frozen") if isinstance(sf.get("frozen"), bool) else None
        calls = sf.get("margin_calls") if isinstance(sf.get("margin_calls"), int) else None
        reasons = [str(x) for x in (sf.get("reasons") or [])]
        if frozen is not None and self.frozen is not None and frozen != self.frozen:
            text = ("DOLPHIN entries FROZEN (venue and journal disagree): " + "; ".join(reasons) if frozen
                    else "DOLPHIN entries unfrozen: the venue and the journal agree again")
            out.append(Alert("frozen", "frozen", text, now, {"frozen": frozen, "reasons": reasons}))
        if calls is not None and self.margin_calls is not None and calls > self.margin_calls:
            last = sf.get("last_margin_call") if isinstance(sf.get("last_margin_call"), Mapping) else {}
            out.append(Alert("margin_call", "margin_call", f"DOLPHIN MARGIN CALL from the venue ({calls} so far): "
                             f"{last.get('positions')}", now, dict(last)))
        if frozen is not None:
            self.frozen = frozen
        if calls is not None:
            self.margin_calls = calls
        return out


def _f(v: Any, digits: int) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "?"


class RateLimiter:
    """At most one alert per (kind, subject) per ``min_interval_s`` (urgent ones exempt) and ``max_per_min`` in all."""

    def __init__(self, min_interval_s: float, max_per_min: int):
        self.min_interval_s, self.max_per_min = min_interval_s, max_per_min
        self.last: dict[tuple[str, str], float] = {}
        self.sent: deque[float] = deque()
        self.suppressed: dict[tuple[str, str], int] = {}

    def admit(self, alert: Alert, now: float) -> Alert | None:
        """Return the alert to send (text notes earlier suppressions) or None when it is rate-limited."""
        k = (alert.kind, alert.subject)
        while self.sent and now - self.sent[0] >= 60.0:
            self.sent.popleft()
        last = self.last.get(k)
        too_soon = not alert.urgent and last is not None and now - last < self.min_interval_s
        if too_soon or len(self.sent) >= self.max_per_min:
            self.suppressed[k] = self.suppressed.get(k, 0) + 1
            return None
        self.last[k] = now
        self.sent.append(now)
        n = self.suppressed.pop(k, 0)
        if n:
            alert = Alert(alert.kind, alert.subject, f"{alert.text} (+{n} similar suppressed by the rate limit)",
                          alert.ts, {**alert.details, "suppressed": n}, alert.urgent)
        return alert


class Alerter:
    """Bus-hub consumer: rules → rate limit → webhook / Telegram, each send a task on the event loop."""

    def __init__(self, cfg: AlertConfig, clock=time.time):
        self.cfg, self.clock = cfg, clock
        self.rules = AlertRules()
        self.limiter = RateLimiter(cfg.min_interval_s, cfg.max_per_min)
        self.session: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task] = set()
        self.sent = 0
        self.failed = 0
        self.limited = 0

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s))

    async def close(self) -> None:
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=self.cfg.timeout_s * 2 + 2)
        if self.session is not None:
            await self.session.close()

    def on_change(self, map_name: str, key: str | None, msg: dict, payload: dict | None, now: float) -> None:
        """Hub consumer (event loop thread): evaluate the rules on a valid payload and send what passes."""
        if payload is None or key is None:
            return
        for alert in self.rules.on_value(map_name, key, payload, now):
            self.submit(alert)

    def submit(self, alert: Alert) -> None:
        out = self.limiter.admit(alert, self.clock())
        if out is None:
            self.limited += 1
            log.info("alert rate-limited: %s", alert.text)
            return
        task = asyncio.get_running_loop().create_task(self._send(out))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, alert: Alert) -> None:
        log.warning("ALERT %s: %s", alert.kind, alert.text)
        jobs = []
        if self.cfg.webhook_url:
            body = {"text": alert.text, "kind": alert.kind, "subject": alert.subject, "ts": alert.ts,
                    "urgent": alert.urgent, "details": dict(alert.details)}
            jobs.append(self._post("webhook", self.cfg.webhook_url, body))
        if self.cfg.telegram_token:
            url = f"{self.cfg.telegram_api}/bot{self.cfg.telegram_token}/sendMessage"
            jobs.append(self._post("telegram", url, {"chat_id": self.cfg.telegram_chat_id, "text": alert.text,
                                                     "disable_web_page_preview": True}))
        await asyncio.gather(*jobs)

    async def _post(self, channel: str, url: str, body: dict) -> None:
        assert self.session is not None, "Alerter.start() was not awaited"
        for attempt in (1, 2):
            try:
                async with self.session.post(url, json=body) as r:
                    if r.status < 300:
                        self.sent += 1
                        return
                    detail = f"HTTP {r.status}"
                    if r.status < 500 and r.status != 429:
                        break                           # a client error will not get better on retry
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                detail = type(exc).__name__
            if attempt == 1:
                await asyncio.sleep(1.0)
        self.failed += 1
        log.error("alert not delivered to %s (%s): %s", channel, detail, body.get("text"))


async def _run_standalone(settings, cfg: AlertConfig) -> None:
    from observability.web.hub import BusHub   # the hub owns the listeners; alerts only consume

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    alerter = Alerter(cfg)
    await alerter.start()
    hub = BusHub(settings, loop, client_name="dolphin-alerts")
    hub.consumers.append(alerter.on_change)
    hub.start()
    try:
        await stop.wait()
    finally:
        await loop.run_in_executor(None, hub.stop)
        await alerter.close()


def main(argv: list[str] | None = None) -> int:
    """Run the alert dispatcher on its own (the web console runs it in-process otherwise)."""
    from prod import metrics
    from prod.settings import load_settings

    ap = argparse.ArgumentParser(prog="python -m observability.alerts", description=__doc__.splitlines()[0])
    ap.add_argument("--members", help="comma-separated host:port (default DOLPHIN_HZ_MEMBERS)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = AlertConfig.from_env()
    except ValueError as exc:
        ap.error(str(exc))
    if not cfg.enabled:
        ap.error("no channel: set DOLPHIN_ALERT_WEBHOOK_URL and/or DOLPHIN_TELEGRAM_BOT_TOKEN + DOLPHIN_TELEGRAM_CHAT_ID")
    settings = load_settings(hz_members=tuple(m.strip() for m in a.members.split(",")) if a.members else None)
    log.info("alerts start: members=%s %s", settings.hz_members, cfg.describe())
    metrics.start_metrics("alerts", settings)
    asyncio.run(_run_standalone(settings, cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
