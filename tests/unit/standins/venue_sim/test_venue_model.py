"""Unit tests of the venue simulator's market model, universe, serialisers and replay driver (in-process)."""
from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from prod.settings import PRIORITY_SYMBOLS
from standins.venue_sim import messages as M
from standins.venue_sim.model import DVOL_TAU_S, PARAMS, MarketModel
from standins.venue_sim.replay import ReplayDriver, ReplayError
from standins.venue_sim.universe import build_universe
from tests.helpers import FIXTURES

START = 1_700_000_000_000
REPLAY_DIR = FIXTURES / "venue" / "replay"


@pytest.fixture(scope="module")
def universe():
    return build_universe(42)


def _render_tick(m: MarketModel) -> list[bytes]:
    out = [orjson.dumps(M.depth_partial(m, i, int(m.prev_update_id[i]) + 1, int(m.prev_update_id[i])))
           for i in range(0, m.n, 7)]
    out += [orjson.dumps(M.book_ticker(m, i)) for i in range(0, m.n, 11)]
    out += [orjson.dumps(M.agg_trade(m, j)[1]) for j in range(m.trade_sym.size)]
    return out


def test_universe_has_540_trading_perps_with_priority_symbols_and_filters(universe):
    syms = [s.symbol for s in universe]
    assert len(set(syms)) == len(syms) >= 540
    assert set(PRIORITY_SYMBOLS) <= set(syms)
    assert all(s.endswith("USDT") for s in syms)
    for s in universe:
        assert s.tick > 0 and s.step > 0
        rel_tick = s.tick / s.price
        assert 1e-7 <= rel_tick <= 1e-3, (s.symbol, s.price, s.tick)
    btc = next(s for s in universe if s.symbol == "BTCUSDT")
    assert 10_000 < btc.price < 200_000


def test_same_seed_gives_same_messages_and_other_seed_differs(universe):
    a, b = MarketModel(universe, 42, START), MarketModel(universe, 42, START)
    c = MarketModel(build_universe(43), 43, START)
    msgs_a, msgs_b, msgs_c = [], [], []
    for _ in range(40):
        for m, out in ((a, msgs_a), (b, msgs_b), (c, msgs_c)):
            m.step()
            out.extend(_render_tick(m))
    assert len(msgs_a) > 1000
    assert msgs_a == msgs_b
    assert msgs_a != msgs_c


def test_books_have_five_levels_and_are_never_crossed_in_any_regime(universe):
    m = MarketModel(universe, 7, START)
    for regime in ("calm", "trending", "stress"):
        m.force_regime(regime)
        for _ in range(200):
            m.step()
            assert (m.bid_idx[:, 0] < m.ask_idx[:, 0]).all()
            assert (np.diff(m.bid_idx, axis=1) < 0).all() and (np.diff(m.ask_idx, axis=1) > 0).all()
            assert (m.bid_qty > 0).all() and (m.ask_qty > 0).all()
    msg = M.depth_partial(m, 0, 1, 0)
    assert len(msg["b"]) == 5 and len(msg["a"]) == 5
    assert float(msg["b"][0][0]) < float(msg["a"][0][0])


def test_crossed_fault_swaps_sides_in_rendered_book(universe):
    m = MarketModel(universe, 7, START)
    m.step()
    m.set_crossed(0, True)
    msg = M.depth_partial(m, 0, 1, 0)
    assert float(msg["b"][0][0]) > float(msg["a"][0][0])
    m.set_crossed(0, False)
    assert float(M.book_ticker(m, 0)["b"]) < float(M.book_ticker(m, 0)["a"])


def _top_eig_share(m: MarketModel, regime: str, n_ticks: int) -> float:
    m.force_regime(regime)
    px = []
    for k in range(n_ticks):
        m.step()
        if k % 50 == 0:      # 5-second sampling (tick = 100 ms)
            px.append(np.log(m.mid[:50]))
    r = np.diff(np.array(px), axis=0)
    c = np.corrcoef(r.T)
    return float(np.linalg.eigvalsh(c)[-1] / 50)


def test_top_eigenvalue_share_of_50_assets_is_clearly_higher_in_stress(universe):
    m = MarketModel(universe, 11, START)
    idx = [m.index[s] for s in PRIORITY_SYMBOLS]
    assert idx == list(range(50))         # the scanner's 50 symbols are the first 50
    calm = _top_eig_share(m, "calm", 4000)       # 80 five-second returns
    stress = _top_eig_share(m, "stress", 4000)
    assert calm < 0.35, calm
    assert stress > 0.5, stress
    assert stress - calm > 0.25


def test_stress_turns_funding_negative_raises_dvol_lowers_fng_and_buy_share(universe):
    m = MarketModel(universe, 5, START)
    m.force_regime("calm")
    for _ in range(300):
        m.step()
    calm = (float(np.median(m.funding)), m.dvol["BTC"], m.fng)
    buys_calm = m.taker_buy_cur.sum() / (m.taker_buy_cur.sum() + m.taker_sell_cur.sum())
    m.taker_buy_cur[:] = 0
    m.taker_sell_cur[:] = 0
    depth_calm = float(m.bid_qty[:50].sum() * 0 + (m.bid_qty[:50] * m.mid[:50, None]).sum())
    spread_calm = float(((m.ask_idx[:, 0] - m.bid_idx[:, 0])).mean())
    m.force_regime("stress")
    for _ in range(300):    # 30 s of market time (slow variables relax with tau 5 s)
        m.step()
    # books thin with a lag (LIQ_TAU_S): after 30 s they have begun to thin, after 3 min they are thin
    assert 0.6 * depth_calm < (m.bid_qty[:50] * m.mid[:50, None]).sum() < 0.97 * depth_calm
    for _ in range(1500):
        m.step()
    buys_stress = m.taker_buy_cur.sum() / (m.taker_buy_cur.sum() + m.taker_sell_cur.sum())
    assert float(np.median(m.funding)) < -0.0001 < calm[0]
    STRESS_DVOL = PARAMS["stress"].dvol
    # DVOL lags (tau DVOL_TAU_S): after 30 s of stress it has started to rise toward its target
    expected = calm[1] + (STRESS_DVOL - calm[1]) * (1 - math.exp(-30.0 / DVOL_TAU_S))
    assert m.dvol["BTC"] > calm[1] + 0.5 * (expected - calm[1])
    assert m.dvol["BTC"] < 80 < STRESS_DVOL
    assert m.fng < 25 < calm[2]
    assert buys_stress < buys_calm - 0.1
    assert (m.bid_qty[:50] * m.mid[:50, None]).sum() < 0.6 * depth_calm
    assert float(((m.ask_idx[:, 0] - m.bid_idx[:, 0])).mean()) > 2 * spread_calm
    bid_usd, ask_usd = m.bid_qty.sum(axis=1), m.ask_qty.sum(axis=1)
    imbalance = (bid_usd - ask_usd) / (bid_usd + ask_usd)
    assert float(np.median(imbalance)) < -0.1            # order-book imbalance turns to the sell side
    tl = m.timeline
    assert [e["regime"] for e in tl[-2:]] == ["calm", "stress"] and tl[-1]["end_ms"] is None
    assert tl[-2]["end_ms"] == tl[-1]["start_ms"]


def test_regime_switches_by_itself_and_release_resumes_switching(universe):
    m = MarketModel(universe, 3, START)
    seen = []
    for _ in range(6):
        m._next_switch_ms = m.t_ms + 100     # due at the next tick (holding times are minutes)
        m.step()
        seen.append(m.regime)
    assert len(m.timeline) == 7
    assert all(a != b for a, b in zip(["calm"] + seen, seen))
    assert all(not e["forced"] for e in m.timeline)
    assert {e["regime"] for e in m.timeline} <= {"calm", "trending", "stress"}
    m.force_regime("stress", hold_s=1.0)
    for _ in range(11):
        m.step()
    assert not m.forced


def test_klines_and_taker_history_are_backfilled_and_consistent(universe):
    m = MarketModel(universe, 9, START)
    for _ in range(700):                 # crosses at least one minute boundary
        m.step()
    t, f = m.klines_1m(0)
    assert len(t) >= 500 and (np.diff(t) == 60_000).all()
    assert (f["h"] >= np.maximum(f["o"], f["c"]) - 1e-9).all() and (f["l"] <= np.minimum(f["o"], f["c"]) + 1e-9).all()
    bt, buy, sell = m.taker_buckets(0)
    assert len(bt) >= 100 and (buy >= 0).all() and (sell >= 0).all()


def test_replay_driver_walks_inside_each_recorded_minute():
    d = ReplayDriver(REPLAY_DIR)
    assert d.symbols == ["BTCUSDT"]
    arr = d.data[0]
    for row in arr[:5]:
        t0, o, h, lo, c = row
        vals = [d.mids(int(t0) + k * 1000)[0] for k in range(60)]
        assert vals[0] == pytest.approx(o)
        assert min(vals) >= lo - 1e-6 and max(vals) <= h + 1e-6


def test_replay_driver_rejects_missing_or_bad_files(tmp_path):
    with pytest.raises(ReplayError, match="does not exist"):
        ReplayDriver(tmp_path / "nope")
    with pytest.raises(ReplayError, match="no <SYMBOL>"):
        ReplayDriver(tmp_path)
    (tmp_path / "ETHUSDT.csv").write_text("1,2,3,4,5,6\n1621429200000,abc,1,1,1,1\n")
    with pytest.raises(ReplayError, match="ETHUSDT.csv:2"):
        ReplayDriver(tmp_path)


def test_replay_driver_reads_parquet_with_microsecond_times(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    t0 = 1_735_689_600_000_000            # 2025 archives carry µs
    tbl = pa.table({"open_time": [t0, t0 + 60_000_000], "open": [100.0, 101.0], "high": [102.0, 103.0],
                    "low": [99.0, 100.5], "close": [101.0, 100.8]})
    pq.write_table(tbl, tmp_path / "ETHUSDT.parquet")
    d = ReplayDriver(tmp_path)
    assert d.symbols == ["ETHUSDT"] and d.start_ms == t0 // 1000
    assert d.mids(d.start_ms)[0] == pytest.approx(100.0)
    assert d.mids(d.start_ms + 3_600_000)[0] == pytest.approx(100.8)   # holds the last close
    m = MarketModel(d.universe(), 1, d.start_ms, driver=d)
    for _ in range(20):
        m.step()
    assert 98.0 < m.mid[0] < 103.0 and m.bid_idx[0, 0] < m.ask_idx[0, 0]


def test_liq_tau_sets_how_fast_books_follow_a_stress_regime(universe):
    fast, slow = MarketModel(universe, 5, START), MarketModel(universe, 5, START, liq_tau_s=3600.0)
    for m in (fast, slow):
        m.force_regime("stress")
        for _ in range(900):    # 90 s of market time
            m.step()
    # 1 - exp(-90/90) ≈ 0.63 of the way to the stress book shape; with tau 1 h only ≈ 0.025
    assert 0.55 < fast.liq_stress < 0.7
    assert slow.liq_stress < 0.05
    assert fast._book_shape()[1] < slow._book_shape()[1]     # depth multiplier: fast books are thinner
    with pytest.raises(ValueError, match="liq_tau_s"):
        MarketModel(universe, 5, START, liq_tau_s=0.0)


def test_an_episode_seed_draws_the_same_shocks_whatever_the_onset_tick(universe):
    """A scripted episode (e2e): the same episode_seed gives the same returns after the onset, tick for tick,
    whether the onset comes after 30 or 47 calm ticks; without it the paths differ."""
    def episode(calm_ticks: int, seed: int | None) -> np.ndarray:
        m = MarketModel(universe, 5, START)
        for _ in range(calm_ticks):
            m.step()
        m.force_regime("stress", episode_seed=seed)
        start = m.log_mid.copy()
        path = []
        for _ in range(300):
            m.step()
            path.append(m.log_mid - start)
        return np.array(path)

    a, b = episode(30, 7), episode(47, 7)
    assert np.allclose(a, b, atol=1e-12)
    assert not np.allclose(episode(30, 8), a)
    assert not np.allclose(episode(30, None), episode(47, None))
    with pytest.raises(ValueError, match="episode_seed"):
        MarketModel(universe, 5, START).force_regime("stress", episode_seed=-1)
