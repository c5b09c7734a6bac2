"""Unit tests of acb_processor's live input aggregation (pure; the engine's prod.alpha.acb does the math)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prod.alpha import acb
from prod.settings import load_settings
from services.acb_processor.main import AcbConfig, AcbInputs


def _cfg(**kw):
    return AcbConfig(settings=load_settings(env={}), **kw)


def test_window_of_exf_snapshots_is_the_same_median_rule_as_the_engine():
    inp = AcbInputs(_cfg(exf_window=3, min_scans=4))
    rows = [{"_pushed_at": float(i), "funding_btc": f, "dvol_btc": d, "fng": 30.0, "taker": 0.85}
            for i, (f, d) in enumerate([(-0.0003, 90.0), (0.0001, 50.0), (-0.0002, 85.0), (-0.0002, 81.0)])]
    for r in rows:
        assert inp.add_exf(r)
    assert not inp.add_exf(rows[-1])                    # same _pushed_at: not a new snapshot
    for n, v in enumerate([0.1, 0.2, None, 0.3, 0.4, 0.5]):
        inp.add_scan({"scan_number": n, "w750_velocity": v})
    assert not inp.add_scan({"scan_number": 5, "w750_velocity": 9.9})   # duplicate scan_number
    inp.add_obf({"_stats": {"regime_signal": 1}})
    res, inputs = inp.compute()
    exp = acb.compute_acb(acb.daily_factors(rows[1:]), acb.daily_w750([0.1, 0.2, 0.3, 0.4, 0.5]),
                          acb.w750_threshold([0.1, 0.2, 0.3, 0.4, 0.5]), 1.0)
    assert (res.boost, res.beta, res.signals) == (exp.boost, exp.beta, exp.signals)
    assert inputs["n_exf"] == 3 and inputs["n_scans"] == 5 and inputs["ob_stress"] == 1.0


def test_too_few_scans_means_no_threshold_and_beta_low():
    inp = AcbInputs(_cfg(min_scans=50))
    inp.add_scan({"scan_number": 1, "w750_velocity": 5.0})
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
