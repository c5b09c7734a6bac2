"""Strategy configs: blue (champion, frozen, drift-checked) and green (LONG) load into typed objects."""
from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from prod.alpha.params import CHAMPION_ACB, CHAMPION_ENGINE, AcbParams, EngineParams
from prod.configs import (BLUE_PATH, CHAMPION_HASH, GREEN_PATH, ConfigDriftError, ConfigError,
                          load_blue, load_config, load_green, parse_config)


def test_blue_loads_as_the_champion_of_section_19():
    cfg = load_blue()
    e, a = cfg.engine, cfg.acb
    assert cfg.strategy == "blue" and cfg.direction == -1
    assert (e.vel_div_threshold, e.vel_div_extreme) == (-0.02, -0.05)
    assert (e.min_leverage, e.max_leverage, e.abs_max_leverage, e.leverage_convexity) == (0.5, 5.0, 6.0, 3.0)
    assert (e.fraction, e.fixed_tp_pct, e.stop_pct, e.max_hold_bars) == (0.20, 0.0095, 1.0, 120)
    assert (e.dc_lookback_bars, e.dc_min_magnitude_bps, e.dc_skip_contradicts) == (7, 0.75, True)
    assert (e.min_irp_alignment, e.sp_maker_entry_rate, e.sp_maker_exit_rate) == (0.45, 0.62, 0.50)
    assert (e.ob_edge_bps, e.ob_confirm_rate, e.lookback, e.seed) == (5.0, 0.40, 100, 42)
    assert (e.vd_enabled, e.tf_enabled) == (False, False)
    assert (a.beta_high, a.beta_low, a.w750_threshold_pct) == (0.8, 0.2, 60.0)
    assert (a.funding_very_bearish, a.dvol_extreme, a.fng_extreme_fear, a.taker_selling) == (-0.0001, 80.0, 25.0, 0.8)


def test_champion_hash_is_sha256_of_sorted_json_prefix_16():
    cfg = load_blue()
    want = hashlib.sha256(json.dumps({"engine": cfg.engine.to_dict(), "acb": cfg.acb.to_dict()},
                                     sort_keys=True).encode()).hexdigest()[:16]
    assert cfg.champion_hash == want == CHAMPION_HASH and len(want) == 16


def test_green_is_long_with_todo7_thresholds_and_a_different_hash():
    cfg = load_green()
    assert cfg.direction == 1 and cfg.engine.long_threshold == 0.01 and cfg.engine.long_extreme == 0.04
    assert cfg.champion_hash != CHAMPION_HASH


def _blue_raw():
    return yaml.safe_load(BLUE_PATH.read_text())


def test_drifted_blue_refuses_to_run_and_names_the_keys():
    raw = _blue_raw()
    raw["engine"]["fixed_tp_pct"] = 0.01
    raw["acb"]["beta_high"] = 0.9
    with pytest.raises(ConfigDriftError) as ei:
        parse_config(raw, "blue-test.yml")
    msg = str(ei.value)
    assert "engine.fixed_tp_pct" in msg and "acb.beta_high" in msg and "blue-test.yml" in msg
    assert set(ei.value.drifted) == {"engine.fixed_tp_pct", "acb.beta_high"}
    assert parse_config(raw, "x", allow_drift=True).engine.fixed_tp_pct == 0.01


def test_blue_with_a_missing_key_still_matches_by_default_and_type_drift_is_caught():
    raw = _blue_raw()
    del raw["engine"]["seed"]
    assert parse_config(raw).champion_hash == CHAMPION_HASH
    raw["engine"]["dc_skip_contradicts"] = False
    with pytest.raises(ConfigDriftError, match="dc_skip_contradicts"):
        parse_config(raw)


@pytest.mark.parametrize("mutate,match", [
    (lambda r: r["engine"].update(bogus=1), "unknown engine parameter"),
    (lambda r: r.update(extra=1), "unknown top-level"),
    (lambda r: r["engine"].update(fraction="lots"), "fraction"),
    (lambda r: r["engine"].update(max_leverage=9.0), "max_leverage"),
    (lambda r: r.update(direction="SIDEWAYS"), "direction"),
    (lambda r: r.update(strategy="red"), "strategy"),
    (lambda r: r["acb"].update(beta_low=0.9), "beta_low"),
])
def test_bad_configs_are_rejected_with_the_key_named(mutate, match):
    raw = _blue_raw()
    mutate(raw)
    with pytest.raises(ConfigError, match=match):
        parse_config(raw, "bad.yml")


def test_unreadable_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("engine: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_frozen_champion_values_are_the_dataclass_defaults():
    assert CHAMPION_ENGINE == EngineParams().to_dict() and CHAMPION_ACB == AcbParams().to_dict()
    assert GREEN_PATH.exists()
