"""MC-forewarner service: its config, the cycle's payload (model, FALLBACK_NO_DATA, FALLBACK_ERROR) and its readers."""
from __future__ import annotations

import json

import pytest

from prod.bus import maps
from prod.configs import load_blue
from prod.settings import load_settings
from services.mc_forewarner import main as mf
from services.safety_watchdog import main as sw
from tests.mc_fixture import fit_model

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def blue():
    return load_blue()


def _fc(tmp_path, **kw):
    s = load_settings(env={}, data_dir=str(tmp_path / "data"), run_logs=str(tmp_path / "run_logs"))
    return mf.ForewarnerConfig(settings=s, **kw)


class TestConfig:
    def test_flags_and_variables_parse(self, tmp_path):
        from prod.runtime import build_config
        cfg, _ = build_config(mf.ForewarnerConfig, "mc_forewarner", [
            "--interval-s", "3600", "--once", "--config", str(tmp_path / "c.yml"), "--model", str(tmp_path / "m.zip")],
            env={"DOLPHIN_MC_FOREWARNER_HEARTBEAT_S": "2"})
        assert (cfg.interval_s, cfg.once, cfg.config_path, cfg.model_path, cfg.heartbeat_s) == \
            (3600.0, True, tmp_path / "c.yml", tmp_path / "m.zip", 2.0)

    def test_model_path_defaults_under_the_data_dir(self, tmp_path):
        assert _fc(tmp_path).model_for("blue") == tmp_path / "data" / "mc_models" / "blue_forewarner.zip"

    def test_bad_interval_is_one_config_error_line_and_exit_2(self, capsys):
        assert mf.main(["--interval-s", "0.5"]) == 2
        assert capsys.readouterr().err.strip() == \
            "mc_forewarner: configuration error: mc_forewarner: --interval-s 0.5: must be in [1, 604800] s"


class TestAssessment:
    def test_no_model_is_orange_fallback_no_data(self, tmp_path):
        p = mf.assessment(_fc(tmp_path), 1.0, NOW)
        assert (p["status"], p["source"], p["catastrophic_prob"], p["envelope_score"]) == \
            ("ORANGE", "FALLBACK_NO_DATA", 0.20, 0.80)
        assert "blue_forewarner.zip" in p["reason"]

    def test_model_in_the_default_place_is_used(self, tmp_path, blue):
        fit_model(blue, tmp_path / "data" / "mc_models" / "blue_forewarner.zip")
        p = mf.assessment(_fc(tmp_path), 1.0, NOW)
        assert (p["status"], p["source"]) == ("GREEN", "REAL_MODEL") and p["model"]["file"] == "blue_forewarner.zip"
        assert mf.assessment(_fc(tmp_path), 4.0, NOW)["status"] == "RED"     # §12: at max_leverage × boost

    def test_bad_config_is_fallback_error_naming_the_file(self, tmp_path):
        p = mf.assessment(_fc(tmp_path, config_path=tmp_path / "missing.yml"), 1.0, NOW)
        assert (p["status"], p["source"]) == ("ORANGE", "FALLBACK_ERROR") and "missing.yml" in p["reason"]

    def test_corrupt_model_is_fallback_error(self, tmp_path):
        bad = tmp_path / "m.zip"
        bad.write_bytes(b"PK\x03\x04 truncated")
        p = mf.assessment(_fc(tmp_path, model_path=bad), 1.0, NOW)
        assert (p["status"], p["source"]) == ("ORANGE", "FALLBACK_ERROR") and "ModelCorruptError" in p["reason"]


class TestPayload:
    @pytest.mark.parametrize("model", [False, True])
    def test_payload_decodes_and_every_reader_maps_the_status(self, tmp_path, blue, model):
        if model:
            fit_model(blue, tmp_path / "m.zip")
        p = mf.assessment(_fc(tmp_path, model_path=tmp_path / "m.zip"), 1.0, NOW)
        text = maps.MC_FOREWARNER.encode(p)
        back = maps.MC_FOREWARNER.decode(text)
        assert back.source == ("REAL_MODEL" if model else "FALLBACK_NO_DATA") and back.is_fallback is not model
        assert back.status == ("GREEN" if model else "ORANGE")
        assert maps.MC_FOREWARNER.written_at(back) == NOW
        assert sw.mc_reading(back, NOW + 3600) == ("OK" if model else "ORANGE", pytest.approx(1.0), back.source)
        assert json.loads(text)["timestamp"].startswith("2027-01-15")
