"""The TUI state model: stale heartbeat colours, garbage payloads as error lines, panel rendering."""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings, strategies as st

from observability import state as S
from observability.state import Decoded, TuiConfig, TuiState
from prod.bus import maps
from prod.bus.payloads import Safety

NOW = 1_790_000_000.0


def _hb(state: TuiState, name: str, ts: float) -> None:
    state.ingest(maps.HEARTBEAT, name, json.dumps({"service": name, "ts": ts}), NOW)


def _styles(state: TuiState, panel: str, now: float = NOW) -> dict[str, str]:
    return {ln.text.split()[0]: ln.style for ln in state.lines(panel, now)}


def test_heartbeat_colour_goes_ok_warn_bad_with_age():
    s = TuiState(TuiConfig(hb_warn_s=15, hb_stale_s=60))
    _hb(s, "fresh", NOW - 2)
    _hb(s, "late", NOW - 30)
    _hb(s, "dead", NOW - 600)
    assert _styles(s, S.HEARTBEAT) == {"dead": S.BAD, "fresh": S.OK, "late": S.WARN}
    # the same heartbeat turns stale as time passes, without any new event
    assert _styles(s, S.HEARTBEAT, NOW + 100)["fresh"] == S.BAD


def test_heartbeat_thresholds_are_inclusive_and_unknown_age_is_bad():
    s = TuiState(TuiConfig(hb_warn_s=10, hb_stale_s=20))
    assert [s.heartbeat_style(a) for a in (0, 10, 10.01, 20, 20.01, None)] == \
        [S.OK, S.OK, S.WARN, S.WARN, S.BAD, S.BAD]


def test_heartbeat_age_text_uses_writer_timestamp():
    s = TuiState()
    _hb(s, "scanner", NOW - 300)
    assert "age 5m" in s.text(S.HEARTBEAT, NOW)


def test_garbage_payload_becomes_an_error_line_naming_the_source_and_keeps_last_good():
    s = TuiState()
    good = maps.ACB_BOOST.encode({"boost": 1.25, "beta": 0.5, "computed_at": NOW})
    assert s.ingest(maps.FEATURES, maps.KEY_ACB_BOOST, good, NOW) == S.ACB
    assert s.ingest(maps.FEATURES, maps.KEY_ACB_BOOST, "{garbage", NOW + 1) == S.ACB
    lines = s.lines(S.ACB, NOW + 1)
    assert lines[0].style == S.BAD
    assert lines[0].text.startswith("ERROR DOLPHIN_FEATURES['acb_boost']: malformed JSON")
    assert "boost 1.2500" in s.text(S.ACB, NOW + 1)
    assert s.errors == 1
    s.ingest(maps.FEATURES, maps.KEY_ACB_BOOST, good, NOW + 2)
    assert "ERROR" not in s.text(S.ACB, NOW + 2)


@pytest.mark.parametrize("raw, needle", [
    ('{"posture": "APEX", "Rm": NaN}', "non-finite"),
    ('["a", "list"]', "expected a JSON object"),
    ('{"posture": "APEX"}', "missing field 'Rm'"),
    (b"\xff\xfe", "not UTF-8"),
    (12345, "expected a JSON string"),
])
def test_each_kind_of_bad_safety_payload_is_reported_not_raised(raw, needle):
    s = TuiState()
    s.ingest(maps.SAFETY, maps.KEY_LATEST, raw, NOW)
    text = s.text(S.SAFETY, NOW)
    assert "ERROR DOLPHIN_SAFETY['latest']" in text and needle in text
    assert "waiting for DOLPHIN_SAFETY latest" in text


def test_odd_shapes_inside_a_payload_are_shown_or_reported_never_raised():
    s = TuiState()
    # assets without a spread are shown as "no spreads"; assets that are not objects are refused by the topic
    s.ingest(maps.FEATURES, maps.KEY_OBF_UNIVERSE,
             json.dumps({"_snapshot_utc": NOW, "_n_assets": 2, "assets": {"A": {}, "B": {"spread_bps": None}}}), NOW)
    assert "assets 2" in s.text(S.OBF, NOW) and "no spreads yet" in s.text(S.OBF, NOW)
    s.ingest(maps.FEATURES, maps.KEY_OBF_UNIVERSE,
             json.dumps({"_snapshot_utc": NOW, "_n_assets": 2, "assets": {"A": 3, "B": [1]}}), NOW)
    assert "obf_universe.assets.A must be an object, got int" in s.text(S.OBF, NOW)
    s.ingest(maps.SAFETY, maps.KEY_LATEST, json.dumps({"posture": "APEX", "Rm": 1.0, "ts": NOW, "sensors": [1, 2]}),
             NOW)
    assert "safety.sensors must be an object, got list" in s.text(S.SAFETY, NOW)
    s.ingest(maps.FEATURES, maps.KEY_EXF, json.dumps({"_pushed_at": NOW, "indicators": {"dvol": {"value": 5},
                                                                                      "fng": {"status": None}}}), NOW)
    assert "dvol" in s.text(S.EXF, NOW) and "fng" in s.text(S.EXF, NOW)
    s.ingest(maps.FEATURES, maps.KEY_EXF, json.dumps({"_pushed_at": NOW, "indicators": {"dvol": 5}}), NOW)
    assert "exf_latest.indicators.dvol must be an object, got int" in s.text(S.EXF, NOW)


def test_keys_the_tui_does_not_show_are_ignored():
    s = TuiState()
    assert s.ingest(maps.FEATURES, "something_else", "{garbage", NOW) is None
    assert s.ingest(maps.SHARD_MAPS[0], "BTCUSDT", "{}", NOW) is None
    assert s.updates == 0 and s.errors == 0


def test_removed_entry_disappears_from_its_panel():
    s = TuiState()
    _hb(s, "scanner", NOW)
    s.apply(Decoded(maps.HEARTBEAT, "scanner", None, None), NOW)
    assert "no heartbeats yet" in s.text(S.HEARTBEAT, NOW)


def test_scan_panel_shows_number_vel_div_lambdas_warm_windows_and_age():
    s = TuiState()
    mwr = {"w50": {"lambda_max": 0.5}, "w150": {"lambda_max": 0.25}, "w300": {"lambda_max": None}, "w750": {}}
    payload = {"scan_number": 77, "timestamp_ns": int((NOW - 7) * 1e9), "timestamp": "t", "bridge_ts": NOW - 7,
               "vel_div": -0.025, "w50_velocity": 0.01, "w150_velocity": None, "w300_velocity": None,
               "w750_velocity": None, "instability_50": None, "instability_150": None,
               "assets": ["A", "B"], "asset_prices": [1, 2], "warm_windows": [50, 150], "multi_window_results": mwr}
    s.ingest(maps.FEATURES, maps.KEY_EIGEN_SCAN, json.dumps(payload), NOW)
    lines = s.lines(S.SCAN, NOW)
    text = "\n".join(ln.text for ln in lines)
    assert "scan #77" in text and "age 7s" in text
    assert "vel_div -0.025000" in text and lines[1].style == S.BAD   # below the -0.02 entry threshold
    assert "w50 0.5000" in text and "w150 0.2500" in text and "w300 —" in text
    assert "warm windows 50,150 (2/4)" in text and lines[4].style == S.WARN


def test_scan_panel_reads_ng7_nested_results():
    s = TuiState()
    payload = {"scan_number": 1, "timestamp_ns": 1, "timestamp": "t", "bridge_ts": NOW, "vel_div": 0.0,
               "w50_velocity": 0, "w150_velocity": 0, "w300_velocity": 0, "w750_velocity": 0,
               "instability_50": 0, "instability_150": 0, "assets": [], "asset_prices": [],
               "result": {"multi_window_results": {"50": {"lambda_max": 0.125}}}}
    s.ingest(maps.FEATURES, maps.KEY_EIGEN_SCAN, json.dumps(payload), NOW)
    assert "w50 0.1250" in s.text(S.SCAN, NOW)


def test_stale_panel_payload_is_flagged():
    s = TuiState(TuiConfig(panel_stale_s=120))
    s.ingest(maps.META_HEALTH, maps.KEY_LATEST,
             json.dumps({"rm_meta": 0.9, "status": "GREEN", "timestamp": NOW - 600}), NOW)
    assert "meta health report is stale" in s.text(S.META, NOW)
    assert "stale" not in s.text(S.META, NOW - 590)


def test_pnl_shows_today_and_falls_back_to_latest_day():
    s = TuiState()
    today = time.strftime("%Y-%m-%d", time.gmtime(NOW))
    day = {"strategy": "blue", "updated_at": NOW}
    s.ingest(maps.PNL_BLUE, "2020-01-01", json.dumps({**day, "date": "2020-01-01", "capital": 100.0, "pnl": -5.0,
                                                      "trades": 2}), NOW)
    assert f"no entry for {today} yet" in s.text(S.PNL, NOW)
    s.ingest(maps.PNL_BLUE, today, json.dumps({**day, "date": today, "capital": 110.0, "pnl": 10.0, "trades": 3}), NOW)
    text = s.text(S.PNL, NOW)
    assert text.startswith(today) and "pnl +10.00" in text and "trades 3" in text


def test_open_position_and_flat_state():
    s = TuiState()
    base = {"strategy": "blue", "capital": 1000.0, "updated_at": NOW}
    s.ingest(maps.STATE_BLUE, maps.KEY_LATEST, json.dumps({**base, "account": {"position": None}}), NOW)
    assert "position: flat" in s.text(S.POSITION, NOW)
    pos = {"symbol": "SOLUSDT", "direction": -1, "entry_price": 150.5, "notional": 250.0, "entry_ts": NOW - 90}
    s.ingest(maps.STATE_BLUE, maps.KEY_LATEST, json.dumps({**base, "account": {"position": pos}}), NOW)
    assert "position: SHORT SOLUSDT @ 150.5  notional 250.00  held 90s" in s.text(S.POSITION, NOW)


def test_bus_header_reports_disconnection_and_its_duration():
    s = TuiState()
    s.set_bus(True, "127.0.0.1:5701", NOW)
    assert s.header(NOW).text.startswith("bus: connected") and s.header(NOW).style == S.OK
    s.set_bus(False, "lost 127.0.0.1:5701", NOW + 1)
    s.set_bus(False, "connecting to 127.0.0.1:5701", NOW + 2)   # still down: duration counts from the loss
    h = s.header(NOW + 11)
    assert h.text.startswith("bus: disconnected for 10s") and h.style == S.BAD


def test_config_rejects_inverted_thresholds():
    with pytest.raises(ValueError, match="hb_warn_s"):
        TuiConfig(hb_warn_s=60, hb_stale_s=15)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=12)
_sources = st.sampled_from(sorted(S.KEY_ROUTES) + [(maps.HEARTBEAT, "svc"), (maps.PNL_BLUE, "2026-01-01")])


@settings(max_examples=150, deadline=None)
@given(src=_sources, value=st.one_of(_json.map(json.dumps), st.binary(max_size=20), st.text(max_size=20)))
def test_any_value_on_any_source_never_crashes_the_model(src, value):
    s = TuiState()
    s.ingest(src[0], src[1], value, NOW)
    for p in S.PANELS:
        assert isinstance(s.text(p, NOW), str)
    assert all(isinstance(seg.text, str) for row in s.overview(NOW) for seg in row)
    assert isinstance(s.trade_rows(), list)


def test_a_payload_that_bypassed_the_schema_renders_as_an_error_line():
    s = TuiState()
    s.apply(Decoded(maps.SAFETY, maps.KEY_LATEST, Safety(posture="APEX", Rm=1.0, ts=NOW, sensors=[1, 2, 3]), None),
            NOW)
    lines = s.lines(S.SAFETY, NOW)
    assert lines[-1].style == S.BAD and lines[-1].text.startswith("ERROR cannot render safety")


def test_mc_forewarner_line_sits_in_the_safety_panel():
    s = TuiState()
    s.ingest(maps.SAFETY, maps.KEY_LATEST, json.dumps({"posture": "APEX", "Rm": 1.0, "ts": NOW}), NOW)
    assert "MC-Forewarner: awaiting HZ data" in s.text(S.SAFETY, NOW)
    s.ingest(maps.FEATURES, maps.KEY_MC_FOREWARNER, json.dumps(
        {"status": "ORANGE", "catastrophic_prob": 0.2, "envelope_score": 0.8, "source": "FALLBACK_NO_DATA",
         "ts": NOW}), NOW)
    lines = s.lines(S.SAFETY, NOW)
    assert lines[0].text == "posture APEX  Rm 1.000" and lines[0].style == S.OK
    mc = [ln for ln in lines if ln.text.startswith("MC-Forewarner")]
    assert mc == [S.Line("MC-Forewarner: ORANGE  prob 0.20  envelope 0.80  FALLBACK_NO_DATA", S.WARN)]


def test_every_panel_ages_from_its_topic_writer_timestamp():
    """The scan is aged from maps.EIGEN_SCAN.ts_field (bridge_ts), the field MHS reads too."""
    s = TuiState()
    payload = {"scan_number": 5, "timestamp_ns": int((NOW - 3600) * 1e9), "timestamp": "2020-01-01T00:00:00+00:00",
               "bridge_ts": NOW - 4, "vel_div": None, "w50_velocity": None, "w150_velocity": None,
               "w300_velocity": None, "w750_velocity": None, "instability_50": None, "instability_150": None,
               "assets": [], "asset_prices": []}
    s.ingest(maps.FEATURES, maps.KEY_EIGEN_SCAN, json.dumps(payload), NOW + 100)
    assert maps.EIGEN_SCAN.ts_field == "bridge_ts" and s.age(S.SCAN, maps.KEY_EIGEN_SCAN, NOW) == 4.0
    s.ingest(maps.FEATURES, maps.KEY_MC_FOREWARNER, json.dumps({"status": "OK", "ts": (NOW - 7) * 1e9}), NOW)
    assert s.age(S.SAFETY, maps.KEY_MC_FOREWARNER, NOW) == pytest.approx(7.0, abs=1e-3)   # ns normalised
    mc = [ln for ln in s.lines(S.SAFETY, NOW) if ln.text.startswith("MC-Forewarner")]
    assert mc[0].style == S.OK                    # OK is the forewarner's GREEN (§12)


# ── overview (issue 20) ──────────────────────────────────────────────────────────────────────
def _scan_json(n: int, vel_div: float | None, prices: dict[str, float], ts: float | None = None) -> str:
    ts = NOW + 5 * n if ts is None else ts
    return json.dumps({"scan_number": n, "timestamp_ns": int(ts * 1e9), "timestamp": "t", "bridge_ts": NOW,
                       "vel_div": vel_div, "w50_velocity": 0.0, "w150_velocity": 0.0, "w300_velocity": 0.0,
                       "w750_velocity": 0.0, "instability_50": 0.0, "instability_150": 0.0,
                       "assets": list(prices), "asset_prices": list(prices.values())})


def _state_json(position: dict | None, history: list | None = None) -> str:
    return json.dumps({"strategy": "blue", "capital": 1000.0, "updated_at": NOW,
                       "account": {"position": position, "history": history or []}})


def _plain_rows(s: TuiState, now: float = NOW) -> list[str]:
    return ["  ".join(seg.text for seg in row) for row in s.overview(now)]


def test_unrealised_pnl_of_a_short_uses_the_latest_scan_price():
    s = TuiState()
    pos = {"symbol": "SOLUSDT", "direction": -1, "entry_price": 150.0, "notional": 300.0, "entry_ts": NOW - 5}
    s.ingest(maps.STATE_BLUE, maps.KEY_LATEST, _state_json(pos), NOW)
    assert s.unrealised() == (None, None)                       # no scan yet: unknown, not zero
    assert "uPnL ?" in _plain_rows(s)[2]
    s.ingest(maps.FEATURES, maps.KEY_EIGEN_SCAN, _scan_json(1, -0.01, {"BTCUSDT": 1.0, "SOLUSDT": 147.0}), NOW)
    last, upnl = s.unrealised()
    assert last == 147.0 and upnl == pytest.approx(-1 * (147.0 - 150.0) / 150.0 * 300.0)   # +6.00
    assert _plain_rows(s)[2] == "SHORT SOLUSDT @ 150  last 147  uPnL +6.00 (+2.00%)"
    assert "unrealised +6.00" in s.text(S.POSITION, NOW)
    s.ingest(maps.FEATURES, maps.KEY_EIGEN_SCAN, _scan_json(2, -0.01, {"SOLUSDT": 153.0}), NOW)
    assert s.unrealised()[1] == pytest.approx(-6.0)
    assert s.overview(NOW)[2][-1].style == S.BAD


def test_overview_rows_fit_80_columns_and_say_flat_when_flat():
    s = TuiState()
    assert _plain_rows(s) == ["posture ?  MHS ?  scan ?", "capital ?", "position ?"]
    s.ingest(maps.SAFETY, maps.KEY_LATEST, json.dumps({"posture": "HIBERNATE", "Rm": 0.0, "ts": NOW}), NOW)
    s.ingest(maps.META_HEALTH, maps.KEY_LATEST, json.dumps({"rm_meta": 0.123, "status": "ORANGE",
                                                           "timestamp": NOW}), NOW)
    s.ingest(maps.FEATURES, maps.KEY_EIGEN_SCAN, _scan_json(12345678, -0.05, {"BTCUSDT": 1.0}), NOW)
    s.ingest(maps.STATE_BLUE, maps.KEY_LATEST, _state_json(None), NOW)
    rows = _plain_rows(s, NOW + 7)
    assert rows[0] == "HIBERNATE Rm 0.000  MHS ORANGE 0.123  scan #12345678 age 7s"
    assert rows[1] == "capital 1,000.00" and rows[2] == "position flat"
    assert all(len(r) <= 78 for r in rows)
    assert s.overview(NOW + 60)[0][2].style == S.WARN            # an old scan is flagged in the overview


def test_trades_come_newest_first_from_the_trader_history_with_the_position_side():
    s = TuiState(TuiConfig(trades_n=2))
    hist = [{"side": "BUY", "symbol": "AAAUSDT", "price": 9.0, "entry_price": 10.0, "net": 1.5, "reason": "FIXED_TP",
             "ts": NOW - 120},
            "garbage row",
            {"side": "SELL", "symbol": "BBBUSDT", "price": 21.0, "entry_price": 20.0, "net": -0.25,
             "reason": "STOP_LOSS", "ts": NOW - 60},
            {"side": "BUY", "symbol": "CCCUSDT", "price": None, "entry_price": 5.0, "net": 0.0, "reason": "X",
             "ts": NOW}]                                          # no exit price: skipped, never drawn half
    s.ingest(maps.STATE_BLUE, maps.KEY_LATEST, _state_json(None, hist), NOW)
    t = time.gmtime(NOW - 60)
    assert s.trade_rows() == [
        (time.strftime("%m-%d %H:%M", t), "BBBUSDT", "LONG", "20", "21", "-0.25", "STOP_LOSS"),
        (time.strftime("%m-%d %H:%M", time.gmtime(NOW - 120)), "AAAUSDT", "SHORT", "10", "9", "+1.50", "FIXED_TP")]


def test_trades_fall_back_to_the_pnl_last_trades():
    s = TuiState()
    today = time.strftime("%Y-%m-%d", time.gmtime(NOW))
    s.ingest(maps.PNL_BLUE, today, json.dumps({"date": today, "strategy": "blue", "capital": 1.0, "pnl": 0.0,
                                               "trades": 1, "updated_at": NOW, "last_trades": [
                                                   {"side": "BUY", "symbol": "XUSDT", "price": 1.0,
                                                    "entry_price": 2.0, "net": 0.5, "reason": "MAX_HOLD",
                                                    "ts": NOW}]}), NOW)
    assert [r[1:] for r in s.trade_rows()] == [("XUSDT", "SHORT", "2", "1", "+0.50", "MAX_HOLD")]


def test_vel_div_history_is_bounded_and_counts_each_scan_once():
    s = TuiState(TuiConfig(spark_n=3))
    for n, vd in [(1, -0.01), (1, -0.01), (2, None), (3, 0.02), (4, -0.03), (5, 0.005)]:
        s.ingest(maps.FEATURES, maps.KEY_EIGEN_SCAN, _scan_json(n, vd, {"BTCUSDT": 1.0}), NOW)
    assert list(s.vel_divs) == [0.02, -0.03, 0.005]
    s.ingest(maps.FEATURES, maps.KEY_EIGEN_SCAN, _scan_json(4, -0.03, {"BTCUSDT": 1.0}), NOW)   # late re-read
    assert list(s.vel_divs) == [0.02, -0.03, 0.005]
    s.ingest(maps.FEATURES, maps.KEY_EIGEN_SCAN, _scan_json(1, 0.01, {"BTCUSDT": 1.0}, ts=NOW - 3600), NOW)
    assert list(s.vel_divs) == [0.01]                                  # clock went back an hour: a replay


def test_mhs_holds_render_when_present_and_nothing_when_absent():
    s = TuiState()
    base = {"rm_meta": 1.0, "status": "GREEN", "timestamp": NOW}
    s.ingest(maps.META_HEALTH, maps.KEY_LATEST, json.dumps(base), NOW)
    assert s.holds() == {} and s.hold_lines(NOW) == [] and "HOLD" not in s.text(S.META, NOW)
    assert len(s.overview(NOW)) == 3
    held = {**base, "holds": {"scanner": {"reason": "maintenance", "since": NOW - 300, "until": NOW + 60}}}
    s.ingest(maps.META_HEALTH, maps.KEY_LATEST, json.dumps(held), NOW)
    assert "HOLD scanner: maintenance 5m, 60s left" in s.text(S.META, NOW)
    assert _plain_rows(s)[-1] == "HOLD  scanner: maintenance 5m, 60s left"
    assert s.overview(NOW)[-1][0].style == S.WARN


def test_config_rejects_a_too_small_sparkline_or_trades_table():
    with pytest.raises(ValueError, match="spark_n"):
        TuiConfig(spark_n=1)
    with pytest.raises(ValueError, match="trades_n"):
        TuiConfig(trades_n=0)


def test_safety_warm_up_placeholder_reads_as_warming_up_not_hibernate():
    """Issue 28: the watchdog's warm-up payload (HIBERNATE, Rm 0) was shown as a real posture."""
    s = TuiState()
    warm = {"posture": "HIBERNATE", "Rm": 0.0, "ts": NOW, "warming_up": True,
            "sensors": {"hz_nodes": 1, "n_heartbeats": 2, "heartbeat_age_s": 1.0, "mc_source": "FALLBACK_NO_DATA",
                        "obf_present": False, "dvol_btc": 50.0, "kept_readings": {"mc": 1, "obf": 3}}}
    s.ingest(maps.SAFETY, maps.KEY_LATEST, json.dumps(warm), NOW)
    text = s.text(S.SAFETY, NOW)
    assert "warming up: no posture computed yet, waiting for MC-Forewarner (Cat2), order books" in text
    assert "HIBERNATE" not in text and "Rm 0.000" not in text
    assert "obf_present            no reading yet" in text and "kept_readings          mc 1, obf 3" in text
    assert s.overview(NOW)[0][0].text == "warming up"
    s.ingest(maps.SAFETY, maps.KEY_LATEST, json.dumps({**warm, "warming_up": False, "posture": "APEX", "Rm": 0.96,
                                                       "sensors": {**warm["sensors"], "obf_present": True}}), NOW)
    text = s.text(S.SAFETY, NOW)
    assert "posture APEX  Rm 0.960  (no reading yet: MC-Forewarner (Cat2))" in text and "warming up" not in text
    assert s.overview(NOW)[0][0].text == "APEX Rm 0.960"
