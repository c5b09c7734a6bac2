"""prod.metrics: a real /metrics endpoint scraped over HTTP, ports from the settings, failure modes."""
from __future__ import annotations

import logging
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from prod import metrics as M
from prod.bus import maps
from prod.settings import ConfigError, load_settings
from tests.helpers import free_port


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def endpoint():
    M.stop_metrics()
    base = free_port() - M.SERVICE_PORT_OFFSETS["event_trader"]
    settings = load_settings(env={"DOLPHIN_METRICS_PORT_BASE": str(base)})
    ep = M.start_metrics("event_trader", settings)
    assert ep is not None and ep.port == base + 7 and ep.host == "127.0.0.1"
    yield ep
    M.stop_metrics()


def test_scrape_shows_every_recorded_metric(endpoint):
    before = _scrape(endpoint.url)
    trades0 = before.get(("dolphin_trades_total", (("side", "SELL"), ("strategy", "blue"))), 0.0)

    M.record_scan({"scan_number": 4242, "bridge_ts": 1000.0}, now=1002.5)
    M.SCAN_TO_DECISION.observe(0.004)
    with M.bus_op("set", maps.FEATURES):
        pass
    with pytest.raises(RuntimeError):
        with M.bus_op("get", maps.SHARD_MAPS[3]):
            raise RuntimeError("member gone")
    M.listener_lag(maps.FEATURES, 99.0, now=100.0)
    M.record_books([0.5, 3.0, float("nan")])
    M.record_safety({"posture": "STALKER", "Rm": 0.61, "sensors": {"cat1": 1.0, "dvol": 55.5, "note": "x"}})
    M.record_meta_health({"rm_meta": 0.975, "status": "GREEN", "sensors": {"m4_control_plane": 1.0},
                          "services": {"scanner": "RUNNING", "exf_fetcher": "STOPPED"},
                          "heartbeat_ages_s": {"scanner": 2.0}})
    M.record_restart("exf_fetcher")
    M.record_trade("blue", "SELL")
    M.record_pnl("blue", {"pnl": -12.5, "capital": 24987.5, "open_position": {"symbol": "BTCUSDT"}})
    M.bad_payload(M.payload_source(maps.FEATURES, maps.KEY_ACB_BOOST))
    M.bad_payload(M.payload_source(maps.SHARD_MAPS[1], "ETHUSDT"))

    got = _scrape(endpoint.url)
    assert got[("dolphin_service_info", (("profile", "embedded"), ("service", "event_trader")))] == 1.0
    assert got[("dolphin_scan_number", ())] == 4242
    assert got[("dolphin_scan_age_seconds", ())] == 2.5
    assert got[("dolphin_scans_total", ())] >= 1
    assert got[("dolphin_scan_to_decision_seconds_bucket", (("le", "0.005"),))] >= 1
    assert got[("dolphin_bus_op_seconds_count", (("map", "DOLPHIN_FEATURES"), ("op", "set")))] >= 1
    assert got[("dolphin_bus_op_errors_total", (("map", "DOLPHIN_FEATURES_SHARD"), ("op", "get")))] >= 1
    assert got[("dolphin_listener_lag_seconds_count", (("map", "DOLPHIN_FEATURES"),))] >= 1
    assert got[("dolphin_books", ())] == 2 and got[("dolphin_book_staleness_max_seconds", ())] == 3.0
    assert got[("dolphin_posture", (("dolphin_posture", "STALKER"),))] == 1.0
    assert got[("dolphin_posture", (("dolphin_posture", "APEX"),))] == 0.0
    assert got[("dolphin_rm", ())] == 0.61
    assert got[("dolphin_safety_sensor", (("sensor", "dvol"),))] == 55.5
    assert ("dolphin_safety_sensor", (("sensor", "note"),)) not in got
    assert got[("dolphin_rm_meta", ())] == 0.975
    assert got[("dolphin_meta_status", (("dolphin_meta_status", "GREEN"),))] == 1.0
    assert got[("dolphin_meta_sensor", (("sensor", "m4_control_plane"),))] == 1.0
    assert got[("dolphin_program_running", (("program", "exf_fetcher"),))] == 0.0
    assert got[("dolphin_heartbeat_age_seconds", (("service", "scanner"),))] == 2.0
    assert got[("dolphin_service_restarts_total", (("program", "exf_fetcher"),))] >= 1
    assert got[("dolphin_trades_total", (("side", "SELL"), ("strategy", "blue")))] == trades0 + 1
    assert got[("dolphin_pnl_day_usdt", (("strategy", "blue"),))] == -12.5
    assert got[("dolphin_capital_usdt", (("strategy", "blue"),))] == 24987.5
    assert got[("dolphin_position_open", (("strategy", "blue"),))] == 1.0
    assert got[("dolphin_bad_payloads_dropped_total", (("source", "DOLPHIN_FEATURES[acb_boost]"),))] >= 1
    assert got[("dolphin_bad_payloads_dropped_total", (("source", "DOLPHIN_FEATURES_SHARD_01"),))] >= 1
    assert got[("process_start_time_seconds", ())] > 0


def test_second_start_returns_the_same_endpoint(endpoint):
    settings = load_settings(env={}, metrics_port_base=endpoint.port - 7)
    assert M.start_metrics("event_trader", settings) is endpoint


def test_port_in_use_is_logged_and_the_service_runs_on(caplog):
    M.stop_metrics()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        busy = s.getsockname()[1]
        settings = load_settings(env={}, metrics_port_base=busy - M.SERVICE_PORT_OFFSETS["scanner"])
        with caplog.at_level(logging.ERROR, logger="prod.metrics"):
            assert M.start_metrics("scanner", settings) is None
    assert f"scanner cannot serve /metrics on 127.0.0.1:{busy}" in caplog.text


def test_zero_base_disables_and_config_errors_name_the_source():
    M.stop_metrics()
    assert M.start_metrics("scanner", load_settings(env={"DOLPHIN_METRICS_PORT_BASE": "0"})) is None
    with pytest.raises(ConfigError, match="DOLPHIN_METRICS_PORT_BASE"):
        load_settings(env={"DOLPHIN_METRICS_PORT_BASE": "80"})
    with pytest.raises(ConfigError, match="DOLPHIN_METRICS_PORT_BASE"):
        load_settings(env={"DOLPHIN_METRICS_PORT_BASE": "lots"})
    with pytest.raises(ConfigError, match="DOLPHIN_WEB_PORT"):
        load_settings(env={"DOLPHIN_WEB_PORT": "0"})
    assert load_settings(env={"DOLPHIN_WEB_PORT": "18088", "DOLPHIN_METRICS_HOST": "0.0.0.0"}).web_port == 18088
    with pytest.raises(ConfigError, match="no port offset for service 'nosuch'"):
        M.metrics_port("nosuch", load_settings(env={}))
    assert M.metrics_port("scanner", load_settings(env={})) == 9300


def test_free_form_sources_are_bounded():
    for i in range(200):
        M.bad_payload(f"venue:stream-{i}")
    assert len(M._free_sources) <= M._MAX_FREE_SOURCES
