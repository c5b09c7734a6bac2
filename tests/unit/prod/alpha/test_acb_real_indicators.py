"""ACB v6 on real recorded daily indicators (shared/data/real/indicators); skipped when absent."""
from __future__ import annotations

import csv
import datetime as dt
import json
import math

import pytest

from prod.alpha.acb import compute_acb, daily_factors_by_date
from tests.helpers import REPO_ROOT

REAL = REPO_ROOT.parent / "shared" / "data" / "real" / "indicators"
pytestmark = pytest.mark.skipif(not (REAL / "fng.csv").is_file(), reason="real indicator data absent")


def _day(ts_ms: float) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.timezone.utc).date().isoformat()


@pytest.fixture(scope="module")
def factors():
    recs = []
    for ts, v in json.loads((REAL / "dvol_btc.json").read_text()):
        recs.append((_day(ts), ts, {"dvol_btc": v}))
    for ts, v in json.loads((REAL / "funding_rate_btc.json").read_text()):
        recs.append((_day(ts), ts, {"funding_btc": v / 100.0}))     # file is in percent
    with open(REAL / "fng.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            recs.append((row["date"], float(row["timestamp"]) * 1000, {"fng": float(row["value"])}))
    # each source gives its own records; the first-10-scans median aggregates them per date
    return daily_factors_by_date(recs)


def test_ftx_collapse_day_is_strongly_bearish(factors):
    f = factors["2022-11-10"]            # DVOL 93, Fear & Greed 22
    assert f.dvol_btc == pytest.approx(93.12) and f.fng == 22.0
    r = compute_acb(f)
    assert r.factor_weights["dvol_btc"] == 1.0 and r.factor_weights["fng"] == 1.0
    assert r.signals >= 2.0 and r.boost >= 1.549 - 1e-3


def test_every_real_day_gives_a_bounded_boost_and_some_days_boost(factors):
    days = [d for d, f in factors.items() if f.dvol_btc is not None and f.fng is not None]
    assert len(days) > 900
    boosts = [compute_acb(factors[d]).boost for d in days]
    assert all(1.0 <= b <= 1.0 + 0.5 * math.log1p(4.0) for b in boosts)
    share = sum(b > 1.0 for b in boosts) / len(boosts)
    assert 0.01 < share < 0.9            # bearish regimes are the exception, not the rule
