"""prod/mc: §12 status, the fallbacks, the model file's refusals, and training on synthetic days end to end."""
from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import zipfile

import pytest

from prod.alpha.engine import NDAlphaEngine
from prod.backtest.synth import generate
from prod.configs import load_blue, load_green
from prod.mc import assess as A
from prod.mc.model import (FEATURES, EnvelopeModel, ModelConfigError, ModelCorruptError, ModelVersionError,
                           library_versions)
from prod.mc.train import TrainError, TrainOptions, sample_config, train
from prod.settings import PRIORITY_SYMBOLS
from tests.helpers import REPO_ROOT
from tests.mc_fixture import fit_model

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def blue():
    return load_blue()


@pytest.fixture(scope="module")
def law_model(blue, tmp_path_factory):
    path = tmp_path_factory.mktemp("mc") / "law.zip"
    fit_model(blue, path)
    return path


class TestStatus:
    @pytest.mark.parametrize("prob, env, want", [
        (0.0, 0.5, "GREEN"), (0.10, 0.0, "GREEN"),                    # §12's boundaries are strict (> / <)
        (0.1001, 0.5, "ORANGE"), (0.0, -0.01, "ORANGE"), (0.25, -1.0, "ORANGE"),
        (0.2501, 3.0, "RED"), (0.0, -1.0001, "RED"), (0.3, -2.0, "RED"),
        (math.nan, 1.0, "RED"), (0.0, math.inf, "RED"),
    ])
    def test_golden_values(self, prob, env, want):
        assert A.bus_status(prob, env) == want


class TestFallbacks:
    def test_no_model_configured_is_orange_fallback_no_data(self, blue):
        p = A.assess(blue, None, 1.0, NOW)
        assert (p["status"], p["source"], p["catastrophic_prob"], p["envelope_score"]) == \
            ("ORANGE", "FALLBACK_NO_DATA", 0.20, 0.80)
        assert p["reason"] == "no model configured" and p["ts"] == NOW

    def test_missing_model_file_is_fallback_no_data_naming_the_path(self, blue, tmp_path):
        p = A.assess(blue, tmp_path / "absent.zip", 1.3, NOW)
        assert (p["status"], p["source"]) == ("ORANGE", "FALLBACK_NO_DATA")
        assert "absent.zip" in p["reason"] and p["max_leverage"] == pytest.approx(5.0 * 1.3)

    def test_error_payload_is_orange_fallback_error(self):
        p = A.assess_error("ConfigError: x.yml: cannot read config", NOW)
        assert (p["status"], p["source"], p["catastrophic_prob"]) == ("ORANGE", "FALLBACK_ERROR", None)


class TestModel:
    def test_real_model_status_follows_section_12_and_rises_with_the_boost(self, blue, law_model):
        ps = [A.assess(blue, law_model, b, NOW) for b in (1.0, 1.5, 2.0, 4.0)]
        assert all(p["source"] == "REAL_MODEL" for p in ps)
        for p in ps:
            assert p["status"] == A.bus_status(p["catastrophic_prob"], p["envelope_score"])
        probs = [p["catastrophic_prob"] for p in ps]
        envs = [p["envelope_score"] for p in ps]
        assert probs == sorted(probs) and probs[0] < 0.10 < probs[-1]
        assert envs[0] > 0 > envs[-1]
        assert ps[0]["status"] == "GREEN" and ps[-1]["status"] == "RED"

    def test_the_model_is_the_engines_section_12_port(self, blue, law_model):
        m = EnvelopeModel.load(law_model, blue.champion_hash)
        eng = NDAlphaEngine(blue.engine, PRIORITY_SYMBOLS)
        eng.set_mc_forewarner(m, m.base_config)
        eng.begin_day("2026-01-01", boost=4.0, beta=0.0)        # assessed at max_leverage × 4 → RED
        assert eng.mc_status == "RED" and not eng.mc_gate_open
        eng.end_day()
        eng.begin_day("2026-01-02", boost=1.0, beta=0.0)
        assert eng.mc_status == "OK"

    def test_file_carries_data_range_hash_versions_and_oos_error(self, blue, law_model):
        with zipfile.ZipFile(law_model) as z:
            meta = json.loads(z.read("meta.json"))
        assert meta["config_hash"] == blue.champion_hash and meta["libraries"] == library_versions()
        assert set(meta["data"]) >= {"date_from", "date_to", "days"}
        oos = meta["out_of_sample"]
        assert oos["folds"] == 5 and 0 < oos["log_dd_rmse"] < 0.5 and 0 <= oos["catastrophe_brier"] < 0.25
        assert meta["features"] == list(FEATURES)


def _rewrite(src, dst, meta_edit=None, blob_edit=None):
    with zipfile.ZipFile(src) as z:
        meta, blob = json.loads(z.read("meta.json")), z.read("model.joblib")
    if meta_edit:
        meta_edit(meta)
    if blob_edit:
        blob = blob_edit(blob)
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("meta.json", json.dumps(meta))
        z.writestr("model.joblib", blob)
    return dst


class TestRefusals:
    def test_truncated_file_is_refused_as_corrupt(self, blue, law_model, tmp_path):
        bad = tmp_path / "trunc.zip"
        bad.write_bytes(law_model.read_bytes()[:200])
        with pytest.raises(ModelCorruptError, match="trunc.zip: corrupt"):
            EnvelopeModel.load(bad, blue.champion_hash)
        p = A.assess(blue, bad, 1.0, NOW)
        assert (p["status"], p["source"]) == ("ORANGE", "FALLBACK_ERROR") and "ModelCorruptError" in p["reason"]

    def test_altered_estimator_is_refused_by_its_checksum(self, blue, law_model, tmp_path):
        bad = _rewrite(law_model, tmp_path / "flip.zip", blob_edit=lambda b: b[:-1] + bytes([b[-1] ^ 1]))
        with pytest.raises(ModelCorruptError, match="checksum"):
            EnvelopeModel.load(bad, blue.champion_hash)

    def test_other_config_hash_is_refused(self, law_model):
        green = load_green()
        with pytest.raises(ModelConfigError, match=f"config assessed has '{green.champion_hash}'"):
            EnvelopeModel.load(law_model, green.champion_hash)
        p = A.assess(green, law_model, 1.0, NOW)
        assert (p["status"], p["source"]) == ("ORANGE", "FALLBACK_ERROR") and "ModelConfigError" in p["reason"]

    def test_newer_library_versions_are_refused_by_name(self, blue, law_model, tmp_path):
        bad = _rewrite(law_model, tmp_path / "newer.zip",
                       meta_edit=lambda m: m["libraries"].update({"scikit-learn": "99.0"}))
        with pytest.raises(ModelVersionError, match=r"scikit-learn 99.0 > installed"):
            EnvelopeModel.load(bad, blue.champion_hash)
        assert A.assess(blue, bad, 1.0, NOW)["source"] == "FALLBACK_ERROR"

    def test_older_library_versions_are_accepted(self, blue, law_model, tmp_path):
        ok = _rewrite(law_model, tmp_path / "older.zip", meta_edit=lambda m: m["libraries"].update({"numpy": "1.0"}))
        assert EnvelopeModel.load(ok, blue.champion_hash).config_hash == blue.champion_hash


class TestTraining:
    def test_sampled_configs_are_valid_engine_params(self, blue):
        import numpy as np

        from prod.alpha.params import EngineParams
        rng = np.random.default_rng(0)
        for _ in range(200):
            eng = sample_config(blue.engine.to_dict(), rng)
            EngineParams.from_dict(eng)                       # raises on an invalid combination
            assert eng["max_leverage"] <= eng["abs_max_leverage"]

    def test_train_on_synthetic_days_then_assess(self, blue, tmp_path):
        generate(tmp_path / "days", 2, seed=5, start=dt.date(2026, 2, 1))
        model, report = train(TrainOptions(config=REPO_ROOT / "prod/configs/blue.yml",
                                           data=tmp_path / "days", out=tmp_path / "m.zip", samples=6, folds=3))
        assert report["samples"] == 6 and report["training_time_s"]["monte_carlo"] > 0
        assert report["data"] == {"dir": "days", "date_from": "2026-02-01", "date_to": "2026-02-02", "days": 2,
                                  "window_days": 1}
        assert report["out_of_sample"]["folds"] == 3 and math.isfinite(report["out_of_sample"]["dd_mae_pct"])
        p = A.assess(blue, tmp_path / "m.zip", 1.0, NOW)
        assert p["source"] == "REAL_MODEL" and p["status"] in ("GREEN", "ORANGE", "RED")
        assert p["model"]["data"]["date_from"] == "2026-02-01"

    def test_train_without_day_files_is_refused(self, tmp_path):
        with pytest.raises(TrainError, match="no YYYY-MM-DD.parquet day files"):
            train(TrainOptions(config=REPO_ROOT / "prod/configs/blue.yml", data=tmp_path, out=tmp_path / "m.zip"))


class TestCli:
    def _run(self, *args):
        return subprocess.run([sys.executable, "-m", "prod.mc", *args], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=60)

    def test_assess_prints_probability_envelope_and_status(self, law_model):
        r = self._run("assess", "--model", str(law_model), "--config", "prod/configs/blue.yml", "--boost", "4")
        assert r.returncode == 0, r.stderr
        lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
        assert float(lines["catastrophic_probability"]) > 0.25 and lines["status"] == "RED"
        assert float(lines["envelope_score"]) < -1.0 and lines["source"] == "REAL_MODEL"

    def test_refused_model_and_empty_data_exit_2_with_the_reason(self, tmp_path):
        bad = tmp_path / "bad.zip"
        bad.write_text("not a model")
        r = self._run("assess", "--model", str(bad))
        assert r.returncode == 2 and "FALLBACK_ERROR" in r.stderr and "bad.zip: corrupt" in r.stderr
        r = self._run("train", "--data", str(tmp_path), "--out", str(tmp_path / "m.zip"))
        assert r.returncode == 2 and "no YYYY-MM-DD.parquet day files in" in r.stderr


def test_prod_mc_imports_no_service_scanner_observability_or_standin():
    code = ("import sys, prod.mc.__main__, prod.mc.train, prod.mc.assess, prod.mc.model\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('services', 'scanner', 'observability', 'standins')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
