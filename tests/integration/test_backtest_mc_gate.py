"""The backtest applies the MC-forewarner gate (§12) every day at that day's ACB boost, and reports it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from prod.alpha.engine import classify_mc
from prod.backtest.runner import BacktestError, BacktestOptions, run_backtest
from prod.backtest.synth import generate
from prod.configs import BLUE_PATH, load_blue
from prod.mc.model import EnvelopeModel
from tests.helpers import REPO_ROOT
from tests.mc_fixture import fit_model

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    d = tmp_path_factory.mktemp("mcgate")
    generate(d / "days", 3, 7)          # with exf_daily.json: the three days have different ACB boosts
    return d


def _run(days, name, model=None):
    return run_backtest(BacktestOptions(config=BLUE_PATH, data=days / "days", summary=days / f"{name}.json",
                                        png=False, mc_model=model))


def test_without_a_model_the_gate_is_off_and_said_so(days):
    s = _run(days, "off").summary
    assert {(d["mc_status"], d["mc_source"], d["mc_prob"]) for d in s["per_day"]} == {("OK", "OFF", None)}
    assert s["mc"]["model"] is None and s["mc"]["days_by_status"] == {"OK": 3}


def test_each_day_is_assessed_at_its_own_boost_and_red_halts_orange_halves(days):
    model = days / "narrow.zip"
    fit_model(load_blue(), model, scale=0.5)     # blue sits on the edge of this envelope: ORANGE, RED at high boost
    m = EnvelopeModel.load(model)
    res = _run(days, "gated", model)
    off = {d["date"]: d for d in _run(days, "off2").summary["per_day"]}
    per_day = res.summary["per_day"]
    assert len({round(d["boost"], 6) for d in per_day}) == 3
    for d in per_day:
        rep = m.assess_config_dict({**m.base_config, "max_leverage": 5.0 * d["boost"]})
        assert d["mc_source"] == "REAL_MODEL"
        assert (d["mc_prob"], d["mc_envelope"]) == pytest.approx((rep.catastrophic_probability, rep.envelope_score))
        assert d["mc_status"] == classify_mc(d["mc_prob"], d["mc_envelope"])
        if d["mc_status"] == "RED":
            assert d["trades"] == 0 and off[d["date"]]["trades"] > 0      # no new entries that day
    statuses = [d["mc_status"] for d in per_day]
    assert "RED" in statuses and "ORANGE" in statuses, statuses
    orange = next(d for d in per_day if d["mc_status"] == "ORANGE")
    assert 0 < orange["pnl"] < off[orange["date"]]["pnl"]                # half size on a winning day
    assert res.summary["mc"]["days_by_status"] == {s: statuses.count(s) for s in sorted(set(statuses))}
    html = res.summary_path.with_suffix(".html").read_text()
    assert "<th>mc_source</th>" in html and "REAL_MODEL" in html and "<th>mc_envelope</th>" in html


def test_a_green_model_changes_nothing(days):
    model = days / "wide.zip"
    fit_model(load_blue(), model)
    gated, off = _run(days, "green", model).summary, _run(days, "off3").summary
    assert {d["mc_status"] for d in gated["per_day"]} == {"OK"}
    assert (gated["final_capital"], gated["trades"]) == (off["final_capital"], off["trades"])


def test_a_refused_model_stops_the_replay_with_the_reason(days):
    bad = days / "bad.zip"
    bad.write_bytes(b"garbage")
    with pytest.raises(BacktestError, match="--mc-model: .*bad.zip: corrupt"):
        _run(days, "bad", bad)
    r = subprocess.run([sys.executable, "-m", "prod.backtest", "--config", "prod/configs/blue.yml", "--data",
                        str(days / "days"), "--no-png", "--no-progress", "--summary", str(days / "x.json"),
                        "--mc-model", str(days / "absent.zip")], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "absent.zip: no such file" in r.stderr
