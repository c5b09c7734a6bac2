"""prod.backtest.report: the drawdown curve and the HTML report on hand-made figures."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from prod.backtest.report import (SHARPE_MIN_DAYS, compute_metrics, drawdown_curve, equity_figure, max_drawdown,
                                  offsets_to_datetimes, sharpe_warning, write_equity_png, write_html_report)


def test_drawdown_curve_is_percent_of_the_running_peak_and_its_minimum_is_max_drawdown():
    eq = [100.0, 110.0, 99.0, 105.0, 121.0, 96.8]
    dd = drawdown_curve(eq)
    assert dd == pytest.approx([0.0, 0.0, -10.0, -100 * 5 / 110, 0.0, -20.0])
    assert -min(dd) == pytest.approx(100 * max_drawdown(eq))   # max_drawdown is a fraction


def test_html_report_escapes_values_and_says_when_a_chart_has_too_few_points(tmp_path):
    s = {"strategy": "<b>blue</b>", "per_day": [], "trade_list": [], "exit_reasons": {}}
    p = write_html_report(s, [0.0], [100.0], tmp_path / "x.html")
    text = p.read_text()
    assert "&lt;b&gt;blue&lt;/b&gt;" in text and "<b>blue</b>" not in text
    assert "not enough points to draw" in text and list(tmp_path.iterdir()) == [p]


def _tick_texts(fig) -> list[str]:
    fig.canvas.draw()                       # tick labels are only formatted at draw time
    return [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]


def test_equity_axis_shows_dates_of_the_replayed_days():
    dates = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-09"]      # 01-08 has no file
    fig = equity_figure([0.0, 0.5, 1.0, 2.0, 3.0, 4.0], [100.0, 101.0, 102.0, 99.0, 103.0, 104.0], dates)
    labels = _tick_texts(fig)
    assert labels, "no x tick labels drawn"
    parsed = [datetime.strptime(t, "%Y-%m-%d") for t in labels]            # every label is a date
    assert min(parsed) >= datetime(2026, 1, 5) and max(parsed) <= datetime(2026, 1, 10)
    assert fig.axes[0].get_xlabel() == "date (UTC)"


def test_offsets_map_to_dates_through_the_day_list_so_a_missing_day_is_a_jump():
    got = offsets_to_datetimes([0.0, 0.25, 1.0, 1.5, 2.0], ["2026-01-05", "2026-01-06"])
    utc = timezone.utc
    assert got == [datetime(2026, 1, 5, tzinfo=utc), datetime(2026, 1, 5, 6, tzinfo=utc),
                   datetime(2026, 1, 6, tzinfo=utc), datetime(2026, 1, 6, 12, tzinfo=utc),
                   datetime(2026, 1, 7, tzinfo=utc)]
    assert offsets_to_datetimes([1.0], ["2026-01-05", "2026-01-09"]) == [datetime(2026, 1, 9, tzinfo=utc)]
    with pytest.raises(ValueError, match="no dates"):
        offsets_to_datetimes([0.0], [])


def test_png_with_dates_is_written(tmp_path):
    p = write_equity_png([0.0, 1.0, 2.0], [100.0, 101.0, 99.0], tmp_path / "eq.png", dates=["2026-02-01", "2026-02-02"])
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and list(tmp_path.iterdir()) == [p]


def test_sharpe_from_few_days_carries_a_warning_and_a_month_does_not():
    rets = [0.01, -0.004, 0.006, 0.002, -0.001]
    few = compute_metrics(1000.0, 1013.0, [5.0, -2.0], rets, [1000.0, 1013.0])
    assert few.sharpe is not None and few.sharpe_warning is not None
    assert f"only {len(rets)} daily return" in few.sharpe_warning and str(SHARPE_MIN_DAYS) in few.sharpe_warning
    month = compute_metrics(1000.0, 1013.0, [5.0], rets * 6, [1000.0, 1013.0])       # 30 days
    assert month.sharpe is not None and month.sharpe_warning is None
    assert sharpe_warning(1, None) is None                                           # no Sharpe, nothing to warn


def test_html_report_shows_the_summary_warnings(tmp_path):
    s = {"strategy": "blue", "per_day": [], "trade_list": [], "exit_reasons": {},
         "warnings": ["Sharpe 9.10 is annualised from only 3 daily return(s) <30"]}
    text = write_html_report(s, [0.0, 1.0], [100.0, 101.0], tmp_path / "w.html").read_text()
    assert 'class="warning"' in text and "only 3 daily return(s) &lt;30" in text


def test_cli_prints_each_warning_between_the_headline_and_the_files():
    from pathlib import Path

    from prod.backtest.__main__ import result_lines
    s = {"profit_factor": 1.5, "sharpe": 9.1, "win_rate_pct": 60.0, "roi_pct": 2.0, "max_drawdown_pct": 1.0,
         "trades": 3, "days": 3, "config_hash": "abc", "warnings": [sharpe_warning(3, 9.1)]}
    lines = result_lines(s, Path("s.json"), Path("s.png"))
    assert lines[0].startswith("ROI +2.00% | PF 1.500 | Sharpe 9.10")
    assert lines[1].startswith("WARNING: Sharpe 9.10 is annualised") and "only 3 daily return(s)" in lines[1]
    assert lines[2:] == ["summary: s.json", "equity:  s.png"]
    assert [ln for ln in result_lines({**s, "warnings": []}, Path("s.json"), None) if "WARNING" in ln] == []
