"""MC-forewarner producer: §12 status thresholds, bootstrap envelope, trade sources, payload contract."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from prod.bus import maps
from prod.configs import load_blue
from prod.settings import load_settings
from services.mc_forewarner import main as mf
from services.safety_watchdog import main as sw
from services.event_trader.journal import Journal

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def blue():
    return load_blue()


def _fc(tmp_path, **kw):
    s = load_settings(env={}, data_dir=str(tmp_path / "data"), run_logs=str(tmp_path / "run_logs"))
    return mf.ForewarnerConfig(settings=s, **kw)


class TestStatusThresholds:
    @pytest.mark.parametrize("prob, env, want", [
        (0.0, 0.5, "OK"), (0.10, 0.0, "OK"),                       # boundaries are strict (> / <)
        (0.1001, 0.5, "ORANGE"), (0.0, -0.01, "ORANGE"), (0.25, -1.0, "ORANGE"),
        (0.2501, 3.0, "RED"), (0.0, -1.0001, "RED"), (0.3, -2.0, "RED"),
        (math.nan, 1.0, "RED"), (0.0, math.inf, "RED"),
    ])
    def test_golden_values(self, prob, env, want):
        assert mf.classify(prob, env) == want


class TestSimulation:
    def test_golden_envelope_of_a_constant_return(self):
        e = mf.simulate([0.01] * 5, 4, n_paths=2000)
        assert e.catastrophic_prob == 0.0 and e.iqr_return == pytest.approx(0.0, abs=1e-12)
        assert e.median_return == pytest.approx(1.01 ** 4 - 1) and e.envelope_score == mf.ENVELOPE_CLIP
        assert e.status == "OK" and e.trades_per_path == 4

    def test_catastrophic_losses_are_red(self):
        e = mf.simulate([-0.08, -0.06, 0.01], 6, n_paths=2000)
        assert e.catastrophic_prob > 0.25 and e.envelope_score < -1.0 and e.status == "RED"

    def test_day_boost_scales_returns(self):
        r = [-0.05, 0.02, 0.03, -0.01]
        calm = mf.simulate(r, 5, day_boost=1.0, n_paths=2000)
        boosted = mf.simulate(r, 5, day_boost=2.0, n_paths=2000)
        assert boosted.catastrophic_prob > calm.catastrophic_prob
        assert boosted.iqr_return > calm.iqr_return

    def test_deterministic_for_the_same_inputs(self):
        r = np.random.default_rng(1).normal(0.001, 0.01, 200)
        a, b = mf.simulate(r, 12, seed=7), mf.simulate(r, 12, seed=7)
        assert a == b
        assert mf.simulate(r, 12, seed=8) != a

    def test_bad_inputs(self):
        with pytest.raises(ValueError):
            mf.simulate([math.nan, math.inf, -1.5], 3)
        with pytest.raises(ValueError):
            mf.simulate([0.01], 3, day_boost=math.nan)
        e = mf.simulate([0.01, math.nan, 0.02], 2)          # non-finite returns are dropped
        assert math.isfinite(e.envelope_score)

    def test_config_refuses_too_few_paths(self, tmp_path):
        with pytest.raises(ValueError):
            _fc(tmp_path, n_paths=500)


class TestSources:
    def test_synthetic_prior_on_blue_is_finite_and_deterministic(self, tmp_path, blue):
        fc = _fc(tmp_path)
        s = mf.gather_returns(fc, blue)            # no journal, no klines → synthetic prior
        assert s.source == "SYNTHETIC_PRIOR" and s.returns.size > 0 and np.all(np.isfinite(s.returns))
        p1 = mf.assess(fc, blue, s, now=NOW)
        p2 = mf.assess(fc, blue, mf.synthetic_returns(blue), now=NOW)
        assert p1 == p2
        assert math.isfinite(p1["catastrophic_prob"]) and math.isfinite(p1["envelope_score"])
        assert p1["status"] in ("OK", "ORANGE", "RED") and p1["n_paths"] >= 2000
        assert p1["config_hash"] == blue.champion_hash and p1["source"] == "SYNTHETIC_PRIOR"

    def _journal(self, tmp_path, n: int, net: float = 5.0):
        tdir = tmp_path / "data" / "trader"
        j = Journal.open(tdir / "journal.sqlite", tdir / "audit.log")
        cap = 25_000.0
        for i in range(n):
            cap += net if i % 3 else -net / 2
            j.append("EXIT", {"trade_id": i, "net": net if i % 3 else -net / 2, "capital_after": cap,
                              "ts": NOW + i * 600})
        j.append("EXIT", {"trade_id": 999, "reason": "X", "engine_only": True})   # no PnL: skipped
        j.append("ENTRY", {"trade_id": 1000, "notional": 100.0})
        j.close()
        return tdir

    def test_journal_used_when_30_trades(self, tmp_path, blue):
        self._journal(tmp_path, 30)
        s = mf.gather_returns(_fc(tmp_path), blue)
        assert s.source == "JOURNAL" and s.returns.size == 30
        assert s.returns[1] == pytest.approx(5.0 / (25_000.0 - 2.5))
        p = mf.assess(_fc(tmp_path), blue, s, now=NOW)
        assert p["source"] == "JOURNAL" and p["n_trades"] == 30 and p["status"] == "OK"

    def test_journal_with_29_trades_falls_back(self, tmp_path, blue):
        self._journal(tmp_path, 29)
        assert mf.journal_returns(tmp_path / "data" / "trader").returns.size == 29
        assert mf.gather_returns(_fc(tmp_path), blue).source == "SYNTHETIC_PRIOR"

    def test_journal_is_read_only(self, tmp_path):
        tdir = self._journal(tmp_path, 3)
        before = ((tdir / "audit.log").read_bytes(), (tdir / "journal.sqlite").stat().st_mtime_ns)
        mf.journal_returns(tdir)
        assert ((tdir / "audit.log").read_bytes(), (tdir / "journal.sqlite").stat().st_mtime_ns) == before

    def test_backtest_source_over_klines(self, tmp_path, blue):
        from prod.backtest.synth import generate
        generate(tmp_path / "data" / "vbt_cache_klines", days=1, seed=5)
        s = mf.gather_returns(_fc(tmp_path, min_trades=1), blue)
        assert s.source == "BACKTEST" and s.returns.size >= 1 and s.detail["date_from"] == "2026-01-01"
        assert not any((tmp_path / "run_logs").glob("mcfw_bt_*"))      # scratch summary removed

    def test_garbage_klines_fall_back_to_the_prior(self, tmp_path, blue):
        d = tmp_path / "data" / "vbt_cache_klines"
        d.mkdir(parents=True)
        (d / "2026-01-01.parquet").write_bytes(b"not parquet")
        assert mf.gather_returns(_fc(tmp_path), blue).source == "SYNTHETIC_PRIOR"


class TestPayload:
    def test_payload_decodes_and_the_watchdog_reads_ok(self, tmp_path, blue):
        fc = _fc(tmp_path)
        p = mf.assess(fc, blue, mf.TradeSample("JOURNAL", np.array([0.002, 0.001, -0.0005] * 10), 8.0), now=NOW)
        text = maps.MC_FOREWARNER.encode(p)
        back = maps.MC_FOREWARNER.decode(text)
        d = back.to_dict()
        for k in ("catastrophic_prob", "envelope_score", "status", "source", "n_trades", "n_paths",
                  "config_hash", "ts"):
            assert k in d, k
        assert back.status == "OK" and back.status in sw.MC_STATUS_MAP
        assert maps.MC_FOREWARNER.written_at(back) == NOW
        assert sw.mc_reading(back, NOW + 3600) == ("OK", pytest.approx(1.0), "JOURNAL")
        assert json.loads(text)["timestamp"].startswith("2027-01-15")


class TestService:
    def test_bad_config_writes_nothing_and_reports_failure(self, tmp_path, caplog):
        fc = _fc(tmp_path, config_path=tmp_path / "missing.yml")
        assert mf.run_once(fc, None) is None          # fails at the config, before any bus write
        assert "assessment failed" in caplog.text and "missing.yml" in caplog.text

    def test_old_flags_still_parse(self, tmp_path):
        from prod.runtime import build_config
        cfg, _ = build_config(mf.ForewarnerConfig, "mc_forewarner", [
            "--interval-s", "3600", "--once", "--config", str(tmp_path / "c.yml"), "--paths", "3000", "--seed", "9"],
            env={"DOLPHIN_MC_FOREWARNER_HEARTBEAT_S": "2"})
        assert (cfg.interval_s, cfg.once, cfg.config_path, cfg.n_paths, cfg.seed, cfg.heartbeat_s) == \
            (3600.0, True, tmp_path / "c.yml", 3000, 9, 2.0)

    def test_too_few_paths_is_one_config_error_line_and_exit_2(self, capsys):
        assert mf.main(["--paths", "100"]) == 2
        assert capsys.readouterr().err.strip() == \
            "mc_forewarner: configuration error: mc_forewarner: n_paths 100: must be >= 2000"

    def test_prefect_flow_wraps_the_same_steps(self):
        f = mf.build_flow()
        assert f.name == "mc_forewarner_flow"
        assert "config_path" in f.parameters.properties
