"""Unit tests of acb_processor's live input aggregation (pure; the engine's prod.alpha.acb does the math)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prod.alpha import acb
from prod.bus import maps
from prod.runtime import ConfigError, build_config
from prod.settings import load_settings
from services.acb_processor.main import AcbConfig, AcbInputs


def _cfg(**kw):
    return AcbConfig(settings=load_settings(env={}), **kw)


def _scan(n, w750):
    return maps.EIGEN_SCAN.build(scan_number=n, timestamp_ns=n, timestamp="t", bridge_ts=float(n), vel_div=None,
                                 w50_velocity=None, w150_velocity=None, w300_velocity=None, w750_velocity=w750,
                                 instability_50=None, instability_150=None, assets=[], asset_prices=[])


def _obf(regime):
    return maps.OBF_UNIVERSE.build(_snapshot_utc=1.0, _n_assets=0, assets={}, _stats={"regime_signal": regime})


def test_window_of_exf_snapshots_is_the_same_median_rule_as_the_engine():
    inp = AcbInputs(_cfg(exf_window=3, min_scans=4))
    rows = [{"_pushed_at": float(i), "funding_btc": f, "dvol_btc": d, "fng": 30.0, "taker": 0.85}
            for i, (f, d) in enumerate([(-0.0003, 90.0), (0.0001, 50.0), (-0.0002, 85.0), (-0.0002, 81.0)])]
    for r in rows:
        assert inp.add_exf(maps.EXF.build(**r))
    assert not inp.add_exf(maps.EXF.build(**rows[-1]))  # same _pushed_at: not a new snapshot
    for n, v in enumerate([0.1, 0.2, None, 0.3, 0.4, 0.5]):
        inp.add_scan(_scan(n, v))
    assert not inp.add_scan(_scan(5, 9.9))              # duplicate scan_number
    assert inp.add_obf(_obf(1)) and not inp.add_obf(_obf(1))
    res, inputs = inp.compute()
    exp = acb.compute_acb(acb.daily_factors(rows[1:]), acb.daily_w750([0.1, 0.2, 0.3, 0.4, 0.5]),
                          acb.w750_threshold([0.1, 0.2, 0.3, 0.4, 0.5]), 1.0)
    assert (res.boost, res.beta, res.signals) == (exp.boost, exp.beta, exp.signals)
    assert inputs["n_exf"] == 3 and inputs["n_scans"] == 5 and inputs["ob_stress"] == 1.0


def test_too_few_scans_means_no_threshold_and_beta_low():
    inp = AcbInputs(_cfg(min_scans=50))
    inp.add_scan(_scan(1, 5.0))
    res, inputs = inp.compute()
    assert inputs["w750_threshold"] is None and res.beta == acb.DEFAULT_PARAMS.beta_low and res.boost == 1.0


def test_window_is_seeded_from_todays_exf_history(tmp_path):
    now = 1_800_000_000.0
    import time
    d = tmp_path / "exf" / f"date={time.strftime('%Y-%m-%d', time.gmtime(now))}"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"ts": [now - 2, now - 1], "funding_btc": [-0.0002, -0.0003], "dvol_btc": [None, 90.0],
                             "fng": [50.0, 50.0], "taker": [1.0, 1.0]}), d / "part-000.parquet")
    (d / "part-001.parquet").write_bytes(b"truncated")     # unreadable part is skipped, not fatal
    inp = AcbInputs(_cfg())
    assert inp.seed_exf_history(tmp_path / "exf", now) == 2
    res, _ = inp.compute()
    assert res.factor_weights["funding_btc"] == 1.0 and res.factor_weights["dvol_btc"] == 1.0


def test_config_rejects_bad_windows():
    with pytest.raises(ValueError):
        _cfg(exf_window=0)


def test_config_fields_are_flags_and_dolphin_acb_variables():
    cfg, _ = build_config(AcbConfig, "acb_processor", ["--min-scans", "5"],
                          env={"DOLPHIN_ACB_LOCK_TIMEOUT_S": "7.5", "DOLPHIN_ACB_MIN_SCANS": "9"})
    assert (cfg.min_scans, cfg.lock_timeout_s, cfg.exf_window) == (5, 7.5, 10)
    with pytest.raises(ConfigError, match="DOLPHIN_ACB_EXF_WINDOW='ten'"):
        build_config(AcbConfig, "acb_processor", [], env={"DOLPHIN_ACB_EXF_WINDOW": "ten"})
    with pytest.raises(ConfigError, match="acb_processor: acb_processor config: windows must be >= 1"):
        build_config(AcbConfig, "acb_processor", ["--exf-window", "0"], env={})
