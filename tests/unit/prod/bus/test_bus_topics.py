"""prod.bus.maps topics and prod.bus.payloads types: full validation, one writer timestamp, versions."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from prod.bus import maps
from prod.bus.payloads import EigenScan, PayloadError, Safety


def _scan(**over):
    d = dict(scan_number=7, timestamp_ns=1_700_000_000_000_000_000, timestamp="2023-11-14T22:13:20+00:00",
             bridge_ts=1_700_000_000.5, vel_div=-0.021, w50_velocity=0.01, w150_velocity=None,
             w300_velocity=None, w750_velocity=0.031, instability_50=0.1, instability_150=None,
             assets=["BTCUSDT", "ETHUSDT"], asset_prices=[65000.0, None], warm_windows=[50, 750])
    d.update(over)
    return d


def test_a_scan_round_trips_through_its_topic_with_extras_kept():
    raw = maps.EIGEN_SCAN.encode({**_scan(), "from_the_future": {"x": 1}})
    back = maps.EIGEN_SCAN.decode(raw)
    assert isinstance(back, EigenScan) and back.vel_div == -0.021 and back.asset_prices == [65000.0, None]
    assert back.extra == {"from_the_future": {"x": 1}}
    assert json.loads(raw)["_v"] == maps.SCHEMA_VERSION
    assert maps.EIGEN_SCAN.written_at(back) == 1_700_000_000.5


@pytest.mark.parametrize("field, value, msg", [
    ("scan_number", "7", "scan_number must be an integer"),
    ("scan_number", True, "scan_number must be an integer"),
    ("vel_div", "x", "vel_div must be a number"),
    ("bridge_ts", None, "bridge_ts is null"),
    ("assets", ["BTCUSDT", 3], r"assets\[1\] must be str"),
    ("asset_prices", [1.0, "2"], r"asset_prices\[1\] must be a number"),
    ("asset_prices", [1.0], "2 assets but 1 prices"),
    ("warm_windows", [50.5], r"warm_windows\[0\] must be an integer"),
])
def test_every_declared_scan_field_is_checked(field, value, msg):
    with pytest.raises(PayloadError, match=msg):
        maps.EIGEN_SCAN.coerce(_scan(**{field: value}))


def test_a_missing_required_field_is_named_with_map_and_key():
    d = _scan()
    del d["timestamp_ns"]
    msg = r"DOLPHIN_FEATURES\['latest_eigen_scan'\]: eigen_scan is missing field 'timestamp_ns'"
    with pytest.raises(PayloadError, match=msg):
        maps.EIGEN_SCAN.decode(json.dumps(d))


@pytest.mark.parametrize("raw, msg", [
    ("{not json", "malformed JSON"), ('{"boost": NaN, "beta": 0.1, "computed_at": 1}', "non-finite"),
    (b"\xff\xfe", "not UTF-8"), ("[1, 2]", "expected a JSON object"), (None, "no value"), (17, "expected a JSON string"),
])
def test_garbage_is_a_payload_error(raw, msg):
    with pytest.raises(PayloadError, match=msg):
        maps.ACB_BOOST.decode(raw)


def test_nan_hidden_in_an_extra_field_is_refused_on_encode():
    with pytest.raises(PayloadError):
        maps.EIGEN_SCAN.encode({**_scan(), "deep": {"x": [1.0, float("inf")]}})


def test_an_incompatible_major_version_is_refused_and_an_unversioned_payload_is_read():
    d = {"boost": 1.2, "beta": 0.3, "computed_at": 5.0}
    assert maps.ACB_BOOST.decode(json.dumps(d)).boost == 1.2
    assert maps.ACB_BOOST.decode(json.dumps({**d, "_v": "1.7"})).boost == 1.2
    with pytest.raises(PayloadError, match="schema version '2.0'"):
        maps.ACB_BOOST.decode(json.dumps({**d, "_v": "2.0"}))


def test_range_checks_of_boost_posture_and_mc_status():
    with pytest.raises(PayloadError, match="out of range"):
        maps.ACB_BOOST.build(boost=0.0, beta=0.1, computed_at=1.0)
    with pytest.raises(PayloadError, match="posture 'PANIC'"):
        maps.SAFETY_LATEST.build(posture="PANIC", Rm=0.5, ts=1.0)
    with pytest.raises(PayloadError, match="status 'BLUE'"):
        maps.MC_FOREWARNER.build(status="BLUE", ts=1.0)


def test_every_topic_declares_a_writer_timestamp_its_type_has():
    topics = [maps.EIGEN_SCAN, maps.ACB_BOOST, maps.ACB_STATE, maps.EXF, maps.OBF_UNIVERSE, maps.MC_FOREWARNER,
              maps.SAFETY_LATEST, maps.META_HEALTH_LATEST, maps.STATE_LATEST, maps.STATE_DAY, maps.PNL_BLUE_DAY,
              maps.HEARTBEATS, *maps.OB_SHARDS]
    for t in topics:
        assert t.ts_field in t.type._hints(), t


def test_topic_lookup_covers_fixed_keys_per_map_keys_and_shards():
    assert maps.topic_for(maps.FEATURES, maps.KEY_EIGEN_SCAN) is maps.EIGEN_SCAN
    assert maps.topic_for(maps.HEARTBEAT, "scanner") is maps.HEARTBEATS
    assert maps.topic_for(maps.shard_map("BTCUSDT"), "BTCUSDT") is maps.ob_topic("BTCUSDT")
    assert maps.topic_for(maps.FEATURES, "something_free_form") is None
    assert maps.decode(maps.FEATURES, "something_free_form", '{"a": 1}') == {"a": 1}


def test_a_fixed_key_topic_refuses_another_key():
    with pytest.raises(ValueError, match="topic key is 'latest'"):
        maps.SAFETY_LATEST.key_for("other")
    with pytest.raises(ValueError, match="needs a key"):
        maps.HEARTBEATS.key_for(None)


def test_a_payload_of_the_wrong_type_is_refused():
    s = Safety(posture="APEX", Rm=1.0, ts=1.0)
    with pytest.raises(PayloadError, match="expected EigenScan, got Safety"):
        maps.EIGEN_SCAN.encode(s)


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=0.01, max_value=10),
       st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1),
       st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=4e9))
def test_acb_boost_round_trips_exactly(boost, beta, at):
    p = maps.ACB_BOOST.build(boost=boost, beta=beta, computed_at=at)
    assert maps.ACB_BOOST.decode(maps.ACB_BOOST.encode(p)) == p
