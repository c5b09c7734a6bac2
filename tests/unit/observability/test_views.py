"""observability.views: one row per service, the posture warm-up, readable values (pure)."""
from __future__ import annotations

from observability.views import join_services, posture_view, readable, service_name

WARMUP = {"posture": "HIBERNATE", "Rm": 0.0, "ts": 1.0, "warming_up": True,
          "sensors": {"hz_nodes": 1, "heartbeat_age_s": None, "n_heartbeats": 0, "mc_status": "OK",
                      "staleness_hours": 0.0, "mc_source": "FALLBACK_NO_DATA", "obf_present": False,
                      "ob_stale": True, "depth_quality": 0.0, "dvol_btc": None, "kept_readings": {}}}


def test_program_and_heartbeat_of_one_service_make_one_row():
    # regression (issue 28): "dolphin_data:acb_processor" and "acb_processor" were two rows
    rows = join_services({"dolphin_data:acb_processor": "RUNNING", "dolphin:event_trader": "FATAL"},
                         {"acb_processor": 100.0, "web_console": 101.0},
                         {"dolphin_data:acb_processor": {"reason": "upgrade", "until": 500.0}})
    assert [r.name for r in rows] == ["acb_processor", "event_trader", "web_console"]
    acb, trader, web = rows
    assert (acb.program, acb.supervisor, acb.heartbeat_ts, acb.hold) == \
        ("dolphin_data:acb_processor", "RUNNING", 100.0, {"reason": "upgrade", "until": 500.0})
    assert (trader.supervisor, trader.heartbeat_ts) == ("FATAL", None)
    assert (web.program, web.supervisor, web.heartbeat_ts) == (None, None, 101.0)


def test_same_name_in_two_groups_keeps_full_names_and_bad_inputs_give_no_rows():
    rows = join_services({"a:x": "RUNNING", "b:x": "STOPPED"}, {"x": 5.0})
    assert [r.name for r in rows] == ["a:x", "b:x", "x"]
    assert join_services(None, "garbage", []) == []
    assert service_name("dolphin_data:scanner") == "scanner" and service_name("scanner") == "scanner"
    (r,) = join_services({}, {"svc": float("nan")})
    assert r.heartbeat_ts is None


def test_warm_up_placeholder_is_named_with_what_it_waits_for():
    v = posture_view(WARMUP)
    assert v.warming_up
    assert v.awaiting == ("heartbeats of the other services (Cat1)", "MC-Forewarner (Cat2)",
                          "order books, obf_universe_latest (Cat3)", "DVOL, exf_latest (Cat4)")
    assert v.pending["obf_present"] == v.pending["depth_quality"] == "order books, obf_universe_latest (Cat3)"
    assert "kept_readings" not in v.pending and "hz_nodes" not in v.pending


def test_computed_posture_with_every_reading_awaits_nothing():
    p = {"posture": "APEX", "Rm": 0.97, "ts": 2.0,
         "sensors": {"hz_nodes": 1, "heartbeat_age_s": 1.2, "n_heartbeats": 5, "mc_source": "SYNTHETIC_PRIOR",
                     "obf_present": True, "dvol_btc": 55.0}}
    v = posture_view(p)
    assert not v.warming_up and v.awaiting == () and v.pending == {}
    assert posture_view(None) is None


def test_readable_writes_nested_values_as_key_value():
    assert readable({"obf": 3, "mc": 1}) == "mc 1, obf 3"
    assert readable({}) == "none" and readable([]) == "none" and readable(None) == "—"
    assert readable({"a": {"b": 1, "c": [1, 2]}, "d": True}) == "a (b 1, c (1, 2)), d yes"
    assert readable(0.123456) == "0.1235" and readable(float("inf")) == "—"


def test_web_rows_take_every_programs_state_with_the_scored_services_winning():
    from observability.web.model import _programs
    meta = {"programs": {"dolphin_core:hz_member": "RUNNING", "dolphin_data:scanner": "STARTING"},
            "services": {"dolphin_data:scanner": "RUNNING"}}
    rows = {r.name: r for r in join_services(_programs(meta), {"hz_member": 1.0, "scanner": 2.0})}
    assert rows["hz_member"].supervisor == "RUNNING" and rows["hz_member"].heartbeat_ts == 1.0
    assert rows["scanner"].supervisor == "RUNNING"
    assert _programs({"programs": "garbage", "services": None}) == {}
