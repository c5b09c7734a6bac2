"""Configuration and bus-contract behaviour."""
import json
import math

import pytest
from hypothesis import given, strategies as st

from prod.bus import maps
from prod.settings import ConfigError, PRIORITY_SYMBOLS, load_settings


def test_env_overrides_defaults_and_flags_override_env():
    s = load_settings(env={"DOLPHIN_HZ_MEMBERS": "10.0.0.1:5701, 10.0.0.2:5701", "DOLPHIN_SCAN_INTERVAL_S": "0.5"})
    assert s.hz_members == ("10.0.0.1:5701", "10.0.0.2:5701")
    assert s.scan_interval_s == 0.5
    s2 = load_settings(env={"DOLPHIN_SCAN_INTERVAL_S": "0.5"}, scan_interval_s=2.0)
    assert s2.scan_interval_s == 2.0


@pytest.mark.parametrize("var,value", [("DOLPHIN_PROFILE", "prod"), ("DOLPHIN_HZ_MEMBERS", "nohost"),
                                       ("DOLPHIN_SCAN_INTERVAL_S", "fast"), ("DOLPHIN_VENUE_WS", "http://x")])
def test_bad_config_names_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        load_settings(env={var: value})


def test_shard_routing_is_sum_of_ord_mod_10():
    assert maps.shard_index("BTCUSDT") == sum(map(ord, "BTCUSDT")) % 10
    assert maps.shard_map("BTCUSDT") == f"DOLPHIN_FEATURES_SHARD_{sum(map(ord, 'BTCUSDT')) % 10:02d}"
    counts = [0] * 10
    for s in PRIORITY_SYMBOLS:
        counts[maps.shard_index(s)] += 1
    assert max(counts) <= 12


def test_decode_rejects_garbage_nan_and_missing_fields():
    with pytest.raises(maps.PayloadError, match="malformed JSON"):
        maps.decode(maps.FEATURES, maps.KEY_ACB_BOOST, "{not json")
    with pytest.raises(maps.PayloadError, match="non-finite|not finite"):
        maps.decode(maps.FEATURES, maps.KEY_ACB_BOOST, '{"boost": NaN, "beta": 0.2, "computed_at": 1}')
    with pytest.raises(maps.PayloadError, match="missing field 'beta'"):
        maps.decode(maps.FEATURES, maps.KEY_ACB_BOOST, '{"boost": 1.2, "computed_at": 1}')
    with pytest.raises(maps.PayloadError, match="boost must be"):
        maps.decode(maps.FEATURES, maps.KEY_ACB_BOOST, '{"boost": "1.2", "beta": 0.2, "computed_at": 1}')
    assert maps.decode(maps.FEATURES, maps.KEY_ACB_BOOST, '{"boost": 1.2, "beta": 0.2, "computed_at": 1}').boost == 1.2


def test_encode_refuses_nan():
    with pytest.raises(maps.PayloadError):
        maps.encode(maps.FEATURES, maps.KEY_ACB_BOOST, {"boost": math.nan, "beta": 0.0, "computed_at": 1.0})


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=1e-9),
       st.floats(allow_nan=False, allow_infinity=False, min_value=0))
def test_acb_payload_round_trips(boost, beta):
    raw = maps.encode(maps.FEATURES, maps.KEY_ACB_BOOST, {"boost": boost, "beta": beta, "computed_at": 2.0})
    obj = json.loads(raw)
    assert obj.pop("_v") == maps.ACB_BOOST.version
    assert maps.decode(maps.FEATURES, maps.KEY_ACB_BOOST, raw).to_dict() == obj
