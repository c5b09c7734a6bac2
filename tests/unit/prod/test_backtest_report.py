"""prod.backtest.report: the drawdown curve and the HTML report on hand-made figures."""
from __future__ import annotations

import pytest

from prod.backtest.report import drawdown_curve, max_drawdown, write_html_report


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
