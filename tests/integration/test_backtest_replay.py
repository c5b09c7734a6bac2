"""End-to-end replays of synthetic days through NDAlphaEngine (prod/backtest/runner.py, __main__)."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prod.backtest import synth
from prod.backtest.runner import BacktestError, BacktestOptions, run_backtest
from prod.configs import BLUE_PATH, ConfigDriftError
from tests.helpers import REPO_ROOT

NOW = dt.datetime(2026, 1, 10, 12, 0, 0, tzinfo=dt.timezone.utc)
_VOLATILE = {"created_utc", "timing", "equity_png", "html_report", "data_dir"}


@pytest.fixture(scope="module")
def two_days(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth2")
    synth.generate(d, 2, 42)          # two full days: 2 x 17,280 bars x 50 assets
    return d


def _stable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in _VOLATILE}


def test_replay_of_two_synthetic_days_writes_valid_summary_and_png(two_days, tmp_path):
    res = run_backtest(BacktestOptions(config=BLUE_PATH, data=two_days, summary=tmp_path / "s.json"), NOW)
    s = json.loads((tmp_path / "s.json").read_text())
    assert s == json.loads(json.dumps(res.summary))
    assert s["kind"] == "dolphin_backtest_summary" and s["strategy"] == "blue"
    assert s["days"] == 2 and s["bars"] == 2 * synth.BARS_PER_DAY
    assert s["champion_config"] is True and len(s["config_hash"]) == 16
    assert s["trades"] > 0 and s["trades"] == len(s["trade_list"])
    for key in ("roi_pct", "profit_factor", "sharpe", "max_drawdown_pct", "win_rate_pct"):
        assert key in s
    assert s["roi_pct"] == pytest.approx((s["final_capital"] / s["initial_capital"] - 1) * 100)
    assert s["per_day"][-1]["capital"] == pytest.approx(s["final_capital"])
    assert sum(r["trades"] for r in s["per_day"]) == s["trades"]
    assert all(r["posture"] == "APEX" for r in s["per_day"])
    assert {r["boost"] for r in s["per_day"]} <= {1.0} | {1 + 0.5 * __import__("math").log1p(x)
                                                          for x in (1, 1.5, 2, 2.5, 3, 3.5, 4)}
    assert s["acb"]["exf_dates"] == 2
    assert 0 <= s["max_drawdown_pct"] < 100 and 0 <= s["win_rate_pct"] <= 100
    assert set(s["exit_reasons"]) <= {"FIXED_TP", "MAX_HOLD", "STOP_LOSS", "END_OF_DATA"}
    assert s["trade_list"][-1]["capital_after"] == pytest.approx(s["final_capital"])
    png = Path(s["equity_png"])
    assert png == tmp_path / "s.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert s["sharpe"] is not None                            # two days with different returns
    assert "only 2 daily return(s), fewer than 30" in s["sharpe_warning"] and s["warnings"] == [s["sharpe_warning"]]



def test_replay_writes_an_html_report_with_metrics_charts_days_and_every_trade(two_days, tmp_path):
    import html.parser

    res = run_backtest(BacktestOptions(config=BLUE_PATH, data=two_days, summary=tmp_path / "r.json", png=False), NOW)
    s = res.summary
    page = Path(s["html_report"])
    assert page == tmp_path / "r.html"
    text = page.read_text()

    class Rows(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.table, self.rows, self.svgs = None, {}, 0

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.table = dict(attrs).get("id")
                self.rows[self.table] = 0
            elif tag == "tr" and self.table:
                self.rows[self.table] += 1
            elif tag == "svg":
                self.svgs += 1

    r = Rows()
    r.feed(text)
    assert r.rows["trades"] == s["trades"] + 1 and r.rows["per-day"] == s["days"] + 1   # + header rows
    assert r.svgs == 2                                                                    # equity and drawdown
    assert f"{s['roi_pct']:,.6g}" in text and f"{s['max_drawdown_pct']:,.6g}" in text
    assert "<script" not in text


def test_replay_is_deterministic(two_days, tmp_path):
    a = run_backtest(BacktestOptions(config=BLUE_PATH, data=two_days, summary=tmp_path / "a.json", png=False), NOW)
    b = run_backtest(BacktestOptions(config=BLUE_PATH, data=two_days, summary=tmp_path / "b.json", png=False), NOW)
    assert a.trades == b.trades and len(a.trades) > 0
    assert _stable(a.summary) == _stable(b.summary)


def test_missing_exf_falls_back_to_boost_one_and_date_filter(two_days, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for p in two_days.glob("*.parquet"):
        shutil.copy(p, d / p.name)
    res = run_backtest(BacktestOptions(config=BLUE_PATH, data=d, summary=tmp_path / "s.json", png=False,
                                       date_from=dt.date(2026, 1, 2), survival=True), NOW)
    s = res.summary
    assert [r["date"] for r in s["per_day"]] == ["2026-01-02"]
    assert s["per_day"][0]["boost"] == 1.0 and s["per_day"][0]["signals"] == 0.0
    assert s["acb"]["exf_file"] is None and s["survival"] is True
    assert s["per_day"][0]["posture"] in ("APEX", "STALKER", "TURTLE", "HIBERNATE")


def test_bad_day_file_is_skipped_and_named(two_days, tmp_path, caplog):
    d = tmp_path / "data"
    d.mkdir()
    shutil.copy(two_days / "2026-01-01.parquet", d / "2026-01-01.parquet")
    (d / "2026-01-02.parquet").write_bytes((two_days / "2026-01-02.parquet").read_bytes()[:4096])
    with caplog.at_level("ERROR", logger="dolphin.backtest"):
        res = run_backtest(BacktestOptions(config=BLUE_PATH, data=d, summary=tmp_path / "s.json", png=False), NOW)
    assert res.summary["days"] == 1
    assert [x["date"] for x in res.summary["skipped_days"]] == ["2026-01-02"]
    assert "2026-01-02.parquet" in caplog.text


def test_no_data_raises_clear_error(tmp_path):
    with pytest.raises(BacktestError, match="no YYYY-MM-DD.parquet files"):
        run_backtest(BacktestOptions(config=BLUE_PATH, data=tmp_path), NOW)


def test_drifted_blue_config_refuses_to_run(two_days, tmp_path):
    cfg = tmp_path / "blue.yml"
    cfg.write_text(BLUE_PATH.read_text().replace("fixed_tp_pct: 0.0095", "fixed_tp_pct: 0.02"))
    with pytest.raises(ConfigDriftError, match="fixed_tp_pct"):
        run_backtest(BacktestOptions(config=cfg, data=two_days), NOW)


def test_cli_runs_and_reports(two_days, tmp_path):
    out = tmp_path / "cli.json"
    p = subprocess.run([sys.executable, "-m", "prod.backtest", "--config", str(BLUE_PATH), "--data",
                        str(two_days), "--to", "2026-01-01", "--summary", str(out), "--no-progress"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "ROI" in p.stdout and str(out) in p.stdout
    s = json.loads(out.read_text())
    assert s["days"] == 1 and out.with_suffix(".png").is_file()
    assert s["sharpe"] is None and s["warnings"] == [] and "WARNING" not in p.stdout   # one day: no Sharpe to doubt
    bad = subprocess.run([sys.executable, "-m", "prod.backtest", "--config", str(BLUE_PATH), "--data",
                          str(tmp_path / "empty")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no YYYY-MM-DD.parquet files" in bad.stderr
