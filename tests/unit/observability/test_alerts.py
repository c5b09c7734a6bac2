"""observability.alerts: the rules, the rate limiter and the configuration (pure; time passed in)."""
from __future__ import annotations

import pytest

from observability.alerts import Alert, AlertConfig, AlertRules, RateLimiter
from prod.bus import maps


def _safety(posture: str, rm: float = 0.9) -> tuple:
    return maps.SAFETY, maps.KEY_LATEST, {"posture": posture, "Rm": rm}


def _meta(status: str, cycle: int, actions=()) -> tuple:
    return maps.META_HEALTH, maps.KEY_LATEST, {"rm_meta": 0.9 if status == "GREEN" else 0.6, "status": status,
                                               "timestamp": 1.0, "cycle": cycle, "actions": list(actions)}


def _state(position=None, history=()) -> tuple:
    return maps.STATE_BLUE, maps.KEY_LATEST, {"strategy": "blue", "capital": 25000.0, "updated_at": 1.0,
                                              "account": {"position": position, "history": list(history)}}


def test_first_value_is_the_baseline_and_raises_nothing():
    r = AlertRules()
    assert r.on_value(*_safety("HIBERNATE"), now=1) == []
    assert r.on_value(*_meta("CRITICAL", 1), now=1) == []
    assert r.on_value(*_state({"trade_id": 1, "symbol": "BTCUSDT", "direction": -1, "entry_price": 1.0, "notional": 1.0},
                      [{"trade_id": 0, "ts": 1}]), now=1) == []
    assert r.on_value(maps.FEATURES, maps.KEY_ACB_BOOST, {"boost": 1.0, "beta": 0.2}, now=1) == []


def test_posture_change_alerts_once_per_change():
    r = AlertRules()
    r.on_value(*_safety("APEX"), now=1)
    assert r.on_value(*_safety("APEX"), now=2) == []
    (a,) = r.on_value(*_safety("STALKER", 0.62), now=3)
    assert a.kind == "posture" and a.text == "DOLPHIN posture APEX → STALKER (Rm 0.620)"
    assert a.details["from"] == "APEX" and a.details["to"] == "STALKER"


def test_rm_meta_leaving_and_regaining_green():
    r = AlertRules()
    r.on_value(*_meta("GREEN", 1), now=1)
    (a,) = r.on_value(*_meta("DEGRADED", 2), now=2)
    assert a.kind == "rm_meta" and "left GREEN: DEGRADED" in a.text and "was GREEN" in a.text
    assert r.on_value(*_meta("CRITICAL", 3), now=3) == []          # still not GREEN: no new alert
    (b,) = r.on_value(*_meta("GREEN", 4), now=4)
    assert "recovered to GREEN" in b.text


def test_mhs_restart_alerts_once_per_cycle_and_program():
    r = AlertRules()
    r.on_value(*_meta("GREEN", 1), now=1)
    acts = ["restart scanner (was STOPPED)", "info: event_trader is STOPPED (never auto-restarted)"]
    (a,) = r.on_value(*_meta("GREEN", 2, acts), now=2)
    assert a.kind == "restart" and a.subject == "scanner" and "restarted scanner" in a.text
    assert r.on_value(*_meta("GREEN", 2, acts), now=3) == []       # same report delivered twice
    (b,) = r.on_value(*_meta("GREEN", 3, acts[:1]), now=4)         # next cycle restarts again
    assert b.subject == "scanner"


def test_trade_open_and_close_alert():
    r = AlertRules()
    r.on_value(*_state(None, []), now=1)
    pos = {"trade_id": 1, "symbol": "BTCUSDT", "direction": -1, "entry_price": 65000.0, "notional": 5000.0}
    (a,) = r.on_value(*_state(pos, []), now=2)
    assert a.kind == "trade" and a.text == "DOLPHIN opened SHORT BTCUSDT @ 65000.0 notional 5000.00"
    assert r.on_value(*_state(pos, []), now=3) == []
    close = {"trade_id": 1, "symbol": "BTCUSDT", "reason": "FIXED_TP", "net": 40.5, "capital_after": 25040.5, "ts": 4}
    (b,) = r.on_value(*_state(None, [close]), now=4)
    assert "closed BTCUSDT (FIXED_TP): net 40.50 USDT, capital 25040.50" in b.text


def test_frozen_entries_and_margin_calls_of_the_venue_account_alert_on_change():
    def st(frozen, calls, reasons=()):
        m, k, p = _state(None, [])
        p["account"]["safety"] = {"frozen": frozen, "reasons": list(reasons), "margin_calls": calls,
                                "last_margin_call": {"positions": [{"symbol": "ETHUSDT"}]} if calls else None}
        return m, k, p
    r = AlertRules()
    assert r.on_value(*st(False, 0), now=1) == []                                  # the baseline
    (a,) = r.on_value(*st(True, 0, ["the venue holds 0.01 BTCUSDT"]), now=2)
    assert a.kind == "frozen" and "FROZEN" in a.text and "0.01 BTCUSDT" in a.text
    assert r.on_value(*st(True, 0, ["the venue holds 0.01 BTCUSDT"]), now=3) == []  # still frozen: once
    (b, c) = r.on_value(*st(False, 1), now=4)
    assert b.kind == "frozen" and "agree again" in b.text
    assert c.kind == "margin_call" and "ETHUSDT" in c.text
    assert r.on_value(*st(False, 1), now=5) == []


def test_rate_limit_per_subject_and_overall_and_reports_suppressed():
    lim = RateLimiter(min_interval_s=60, max_per_min=2)
    a = Alert("posture", "posture", "p1", 0)
    assert lim.admit(a, 0.0) is a
    assert lim.admit(Alert("posture", "posture", "p2", 10), 10.0) is None
    assert lim.admit(Alert("posture", "posture", "p3", 20), 20.0) is None
    out = lim.admit(Alert("posture", "posture", "p4", 61), 61.0)
    assert out.text == "p4 (+2 similar suppressed by the rate limit)" and out.details["suppressed"] == 2
    assert lim.admit(Alert("restart", "scanner", "r", 62), 62.0) is not None   # other subject: own interval
    assert lim.admit(Alert("restart", "acb", "r", 63), 63.0) is None            # 2 in the last minute
    assert lim.admit(Alert("restart", "acb", "r", 125), 125.0) is not None


def test_config_from_env_names_bad_variables_and_never_shows_the_token():
    cfg = AlertConfig.from_env({"DOLPHIN_TELEGRAM_BOT_TOKEN": "123:SECRET", "DOLPHIN_TELEGRAM_CHAT_ID": "42",
                                "DOLPHIN_ALERT_MIN_INTERVAL_S": "5"})
    assert cfg.enabled and cfg.min_interval_s == 5 and "SECRET" not in cfg.describe()
    assert not AlertConfig.from_env({}).enabled
    with pytest.raises(ValueError, match="DOLPHIN_ALERT_MIN_INTERVAL_S"):
        AlertConfig.from_env({"DOLPHIN_ALERT_MIN_INTERVAL_S": "soon"})
    with pytest.raises(ValueError, match="DOLPHIN_TELEGRAM_CHAT_ID"):
        AlertConfig.from_env({"DOLPHIN_TELEGRAM_BOT_TOKEN": "123:SECRET"})
    with pytest.raises(ValueError, match="DOLPHIN_ALERT_WEBHOOK_URL"):
        AlertConfig.from_env({"DOLPHIN_ALERT_WEBHOOK_URL": "ftp://x"})


# ── the alerts that matter most (issue 28) ───────────────────────────────────────────────────
def _mhs(trader: str, cycle: int = 1, outcomes=None) -> tuple:
    p = {"rm_meta": 0.98, "status": "GREEN", "timestamp": 1.0, "cycle": cycle, "actions": [],
         "services": {"dolphin_data:scanner": "RUNNING", "dolphin:event_trader": trader}}
    if outcomes is not None:
        p["restart_outcomes"] = outcomes
    return maps.META_HEALTH, maps.KEY_LATEST, p


def test_trader_leaving_running_going_fatal_and_coming_back_alert_once_each():
    r = AlertRules()
    assert r.on_value(*_mhs("RUNNING"), now=1) == []
    assert r.on_value(*_mhs("RUNNING", 2), now=2) == []
    (a,) = r.on_value(*_mhs("EXITED", 3), now=3)
    assert a.kind == "trader" and a.urgent and a.text.startswith("DOLPHIN TRADER DOWN: dolphin:event_trader is EXITED")
    assert r.on_value(*_mhs("EXITED", 4), now=4) == []                       # no repeat while it stays down
    assert r.on_value(*_mhs("STARTING", 5), now=5) == []                     # restart attempts: no news
    (b,) = r.on_value(*_mhs("FATAL", 6), now=6)
    assert "is FATAL (was STARTING)" in b.text and "gave up" in b.text
    (c,) = r.on_value(*_mhs("RUNNING", 7), now=7)
    assert c.text == "DOLPHIN trader running again: dolphin:event_trader is RUNNING (was FATAL)"


def test_trader_restarted_between_mhs_cycles_is_seen_by_its_heartbeat_pid():
    r = AlertRules()
    hb = maps.HEARTBEAT, "event_trader"
    assert r.on_value(*hb, {"service": "event_trader", "ts": 1.0, "pid": 100}, now=1) == []
    assert r.on_value(*hb, {"service": "event_trader", "ts": 2.0, "pid": 100}, now=2) == []
    (a,) = r.on_value(*hb, {"service": "event_trader", "ts": 9.0, "pid": 200}, now=9)
    assert a.kind == "trader" and "pid 100 → 200" in a.text and "exited" in a.text
    assert r.on_value(maps.HEARTBEAT, "scanner", {"service": "scanner", "ts": 9.0, "pid": 7}, now=9) == []


def test_kill_switch_engaged_and_cleared_alert_on_transitions_only():
    r = AlertRules()
    ks = maps.SAFETY, maps.KEY_KILL_SWITCH
    assert r.on_value(*ks, {"engaged": False, "reason": "cleared", "ts": 1.0}, now=1) == []
    (a,) = r.on_value(*ks, {"engaged": True, "reason": "venue outage", "ts": 2.0, "by": "ops"}, now=2)
    assert a.kind == "kill_switch" and a.urgent
    assert a.text.startswith("DOLPHIN KILL SWITCH ENGAGED by ops: venue outage; the trader cancels open orders")
    assert r.on_value(*ks, {"engaged": True, "reason": "venue outage", "ts": 3.0}, now=3) == []
    (b,) = r.on_value(*ks, {"engaged": False, "reason": "cleared", "ts": 4.0}, now=4)
    assert b.text == "DOLPHIN kill switch cleared: the trader may enter again"
    # an engaged switch is announced even when it is the first value seen (e.g. the key is new)
    (c,) = AlertRules().on_value(*ks, {"engaged": True, "reason": "drill", "ts": 5.0}, now=5)
    assert "ENGAGED" in c.text


def test_mc_forewarner_status_change_alerts_and_green_equals_ok():
    r = AlertRules()
    mc = maps.FEATURES, maps.KEY_MC_FOREWARNER
    assert r.on_value(*mc, {"status": "OK", "ts": 1.0}, now=1) == []
    assert r.on_value(*mc, {"status": "GREEN", "ts": 2.0}, now=2) == []          # same status, other name
    (a,) = r.on_value(*mc, {"status": "ORANGE", "ts": 3.0, "catastrophic_prob": 0.12, "envelope_score": 0.4}, now=3)
    assert a.kind == "mc_forewarner" and a.urgent
    assert a.text == ("DOLPHIN MC-Forewarner OK → ORANGE (catastrophic prob 0.120, envelope 0.400): "
                      "the trader halves its size from the next day roll")
    assert r.on_value(*mc, {"status": "ORANGE", "ts": 4.0}, now=4) == []
    (b,) = r.on_value(*mc, {"status": "RED", "ts": 5.0}, now=5)
    assert "ORANGE → RED" in b.text and "no new entries" in b.text


def test_failed_mhs_restart_alerts_once_per_outcome():
    r = AlertRules()
    old = {"dolphin_data:scanner": {"ok": False, "detail": "restart FAILED (old)", "at": 10.0}}
    assert r.on_value(*_mhs("RUNNING", 1, old), now=1) == []                  # already there: baseline
    ok = {**old, "dolphin_data:acb_processor": {"ok": True, "detail": "restarted", "at": 20.0}}
    assert r.on_value(*_mhs("RUNNING", 2, ok), now=2) == []                   # a success is not an alert
    bad = {**ok, "dolphin_data:scanner": {"ok": False, "detail": "restart FAILED (supervisorctl exit 7): "
                                                                 "dolphin_data:scanner: ERROR (spawn error)", "at": 30.0}}
    (a,) = r.on_value(*_mhs("RUNNING", 3, bad), now=3)
    assert a.kind == "restart_failed" and a.subject == "dolphin_data:scanner" and a.urgent
    assert a.text.startswith("DOLPHIN meta-health could not restart dolphin_data:scanner: restart FAILED "
                             "(supervisorctl exit 7): dolphin_data:scanner: ERROR (spawn error)")
    assert r.on_value(*_mhs("RUNNING", 4, bad), now=4) == []                  # the same outcome reported again


def test_urgent_alerts_skip_the_per_subject_interval_but_not_the_minute_cap():
    lim = RateLimiter(min_interval_s=60, max_per_min=3)
    on = Alert("kill_switch", "kill_switch", "engaged", 0, urgent=True)
    off = Alert("kill_switch", "kill_switch", "cleared", 1, urgent=True)
    assert lim.admit(on, 0.0) is on and lim.admit(off, 1.0) is off
    assert lim.admit(Alert("posture", "posture", "p", 2), 2.0) is not None
    assert lim.admit(Alert("kill_switch", "kill_switch", "engaged", 3, urgent=True), 3.0) is None   # cap of 3
