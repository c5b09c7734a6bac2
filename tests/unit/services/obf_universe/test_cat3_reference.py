"""Cat3's book scores against each asset's own rolling medians (docs/cat3.md), on hand books and real recordings.

The real-recording tests rebuild Binance USD-M books from ``../shared/data/real`` (tests/real_books.py) into
the depth5@500ms frames obf_universe would have received, and run them through the service's own feature
functions and the survival stack. They skip when the recordings are absent (a user's clone).
"""
from __future__ import annotations

import math
import statistics

import pytest

from prod.alpha.survival import Posture, SensorReadings, SurvivalStack
from services.obf_universe.features import AssetRolling, Book, FeatureParams, book_features
from tests import real_books as rb

P = FeatureParams()


def _book(depth_each: float, spread_ticks: int, mid: float = 100.0, tick: float = 0.01) -> dict:
    """Features of a 5-level book with ``depth_each`` USD per level and a spread of ``spread_ticks`` ticks."""
    bb = round(mid - spread_ticks * tick / 2, 6)
    ba = round(bb + spread_ticks * tick, 6)
    bids = tuple((bb - k * tick, depth_each / (bb - k * tick)) for k in range(5))
    asks = tuple((ba + k * tick, depth_each / (ba + k * tick)) for k in range(5))
    return book_features(Book("XUSDT", 0, bids, asks), P)


def test_relative_scores_follow_the_assets_own_medians():
    r = AssetRolling(P)
    calm = _book(2_000.0, 2)                       # a thin alt: $20k within 1 %, 2 bps spread
    assert calm["depth_quality"] == pytest.approx(20_000.0 / 250_000.0, rel=1e-3)   # fixed: 0.08 in calm
    assert r.relative(calm)["depth_quality_rel"] == 1.0          # before any bar: the book is its own reference
    for _ in range(50):
        r.step(calm, True)
    rel = r.relative(calm)
    assert rel["depth_quality_rel"] == 1.0 and rel["fill_probability_rel"] == 1.0
    assert rel["depth_ref_usd"] == pytest.approx(calm["depth_1pct_usd"])
    assert r.relative(_book(1_000.0, 2))["depth_quality_rel"] == pytest.approx(1.0, rel=1e-3)   # half: still 1
    assert r.relative(_book(500.0, 2))["depth_quality_rel"] == pytest.approx(0.5, rel=1e-3)     # a quarter: 0.5
    wide = _book(2_000.0, 10)                      # spread 5x its median: 10 bps over 2x the median of 2 bps
    excess = wide["spread_bps"] - 2 * calm["spread_bps"]
    assert r.relative(wide)["fill_probability_rel"] == pytest.approx(math.exp(-excess / 10.0))
    assert r.relative(_book(2_000.0, 4))["fill_probability_rel"] == pytest.approx(1.0)      # 2x: tolerated


def test_a_dark_bar_does_not_enter_the_reference():
    r = AssetRolling(P)
    calm = _book(2_000.0, 2)
    for _ in range(10):
        r.step(calm, True)
    ref = r.depth_ref
    for _ in range(20):
        r.step(_book(100.0, 2), False)             # not fresh: a dark bar repeats an old book
    assert r.depth_ref == ref


def test_the_reference_window_is_bounded():
    r = AssetRolling(FeatureParams(rel_window_bars=10))
    for _ in range(10):
        r.step(_book(2_000.0, 2), True)
    for _ in range(6):                             # a collapse outlasting half the window becomes the new normal
        r.step(_book(200.0, 2), True)
    assert r.depth_ref == pytest.approx(_book(200.0, 2)["depth_1pct_usd"])
    assert len(r.depth_hist) == 10


# ------------------------------------------------------------------ real recordings
needs_real = pytest.mark.skipif(not rb.WS.exists(), reason="shared real recordings absent (user clone)")

# simultaneous real universes: BTC + ETH on 2024-08-08 (the recordings' most volatile BTC/ETH minutes) and the
# five 2021-04-05 alts (the most volatile minutes of all, NEO 30 bps in a minute)
GROUPS = {"2024-08-08": ("BTCUSDT 2024-08-08", "ETHUSDT 2024-08-08"),
          "2021-04-05": ("CF SANDUSDT", "CF CHRUSDT", "CF NEOUSDT", "CF CTKUSDT", "CF BATUSDT")}


def _group_bars(names: tuple[str, ...]) -> list[list[rb.Sample]]:
    """5 s bars of each asset, cut to the bars all assets share."""
    per = [{s.t_ms // 5000: s for s in rb.session_samples(n)} for n in names]
    common = sorted(set.intersection(*(set(p) for p in per)))
    return [[p[b] for p in per] for b in common]


def _run(bars: list[list[rb.Sample]], relative: bool, damage=None) -> tuple[list[Posture], list[float]]:
    """The watchdog on every 5 s bar of a real universe: mean scores over its assets → SurvivalStack.

    ``damage(bar_index, feats)`` may replace an asset's features (the synthetic collapse below). Stricter than
    the service, which publishes one snapshot a minute: every bar, with its dips, reaches the stack.
    """
    rolls = [AssetRolling(P) for _ in bars[0]]
    stack = SurvivalStack()
    postures, cat3 = [], []
    for i, row in enumerate(bars):
        feats = [s.feats if damage is None else damage(i, s) for s in row]
        for r, f in zip(rolls, feats):
            r.step(f, True)
        if relative:
            rel = [r.relative(f) for r, f in zip(rolls, feats)]
            d = statistics.fmean(x["depth_quality_rel"] for x in rel)
            fp = statistics.fmean(x["fill_probability_rel"] for x in rel)
        else:
            d = statistics.fmean(f["depth_quality"] for f in feats)
            fp = statistics.fmean(f["fill_probability"] for f in feats)
        res = stack.update(SensorReadings(depth_quality=d, fill_prob=fp), 5 / 60)
        postures.append(res.posture)
        cat3.append(res.categories["cat3"])
    return postures, cat3


@needs_real
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_real_volatile_minutes_stay_out_of_turtle_when_the_books_were_tradable(group):
    bars = _group_bars(GROUPS[group])
    assert len(bars) >= 20, len(bars)
    # the books were tradable throughout: never crossed (rebuild guarantees), every spread under the bible's
    # 10 bps fill reference and at least $1k within 1 % on each book of every bar
    for row in bars:
        for s in row:
            assert s.feats["spread_bps"] < 10.0 and s.feats["depth_1pct_usd"] > 1_000.0, (s.symbol, s.feats)
    # and these are the recordings' volatile minutes: some minute moved >= 15 bps
    ranges = [m.range_bps for n in GROUPS[group] for m in rb.minutes(n, rb.session_samples(n))]
    assert max(ranges) >= 15.0, ranges
    postures, cat3 = _run(bars, relative=True)
    assert all(p in (Posture.APEX, Posture.STALKER) for p in postures), sorted(set(postures))
    assert min(cat3) >= 0.75, min(cat3)
    # the fixed $250k reference reads the same tradable books as a liquidity crisis (thin alts, ETH's $140k)
    fixed, _ = _run(bars, relative=False)
    assert Posture.TURTLE in fixed or Posture.HIBERNATE in fixed, sorted(set(fixed))


def _collapse(start: int):
    """From bar ``start`` on, each real book keeps 20 % of its size and its spread widens to 4x + 10 bps."""
    def damage(i: int, s: rb.Sample) -> dict:
        if i < start:
            return s.feats
        b = s.book
        mid = (b.bids[0][0] + b.asks[0][0]) / 2
        half = (b.asks[0][0] - b.bids[0][0]) * 2 + mid * 5e-4          # half-spread: 4x the spread + 10 bps total
        bids = tuple((mid - half - (b.bids[0][0] - p), q * 0.2) for p, q in b.bids)
        asks = tuple((mid + half + (p - b.asks[0][0]), q * 0.2) for p, q in b.asks)
        return book_features(Book(s.symbol, s.t_ms, bids, asks), P)
    return damage


@needs_real
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_a_genuine_liquidity_collapse_of_the_same_real_books_still_trips(group):
    bars = _group_bars(GROUPS[group])
    start = len(bars) * 2 // 3         # the collapse is shorter than the calm history: the median is still calm
    postures, cat3 = _run(bars, relative=True, damage=_collapse(start))
    assert all(p in (Posture.APEX, Posture.STALKER) for p in postures[:start])
    assert postures[start + 1] in (Posture.TURTLE, Posture.HIBERNATE), postures[start - 1:start + 3]
    assert max(cat3[start:]) < 0.6, max(cat3[start:])
