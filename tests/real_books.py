"""Real Binance USD-M order books, rebuilt from the shared recordings and sampled the way obf_universe sees them.

The recordings (``../shared/data/real/binance_futures_ws``, see its README) hold a REST depth snapshot and
the raw diff-depth stream. :func:`rebuild` applies the diffs to the snapshot by Binance's rule (drop diffs
with ``u`` < ``lastUpdateId``, then apply in order; the README's check found no ``pu`` break) and, every
500 ms of venue event time, cuts the top five levels of each side: the frame obf_universe would have
received on ``<symbol>@depth5@500ms``. Those frames go through the service's own pure feature functions
(:func:`services.obf_universe.features.book_features`, :class:`~services.obf_universe.features.AssetRolling`),
so every number here is what the live service would have published on that market.

``python -m tests.real_books`` prints the per-minute evidence table of docs/cat3.md (real minutes ranked by
volatility, real calm minutes, and the simulator's stress episode through the same functions).
"""
from __future__ import annotations

import argparse
import functools
import gzip
import json
import math
import statistics
from dataclasses import dataclass
from typing import Iterator

from services.obf_universe.features import AssetRolling, Book, FeatureParams, book_features
from tests.helpers import SHARED_REAL

WS = SHARED_REAL / "binance_futures_ws"
HFT = WS / "hftbacktest"
CF = WS / "cryptofeed"
# continuous sessions: a day's file and its continuation (the pu chain runs across them)
SESSIONS: dict[str, tuple[str, ...]] = {
    "BTCUSDT 2023-04-05": ("btcusdt_20230404.dat.gz", "btcusdt_20230405.dat.gz"),
    "BTCUSDT 2024-07-19": ("btcusdt_20240718.gz", "btcusdt_20240719.gz"),
    "ETHUSDT 2024-07-19": ("ethusdt_20240718.gz", "ethusdt_20240719.gz"),
    "BTCUSDT 2024-08-08": ("btcusdt_20240808.gz",),
    "ETHUSDT 2024-08-08": ("ethusdt_20240808.gz",),
}
SAMPLE_MS = 500
PARAMS = FeatureParams()


@dataclass
class Sample:
    """One depth5@500ms-equivalent frame and its features."""

    symbol: str
    t_ms: int
    book: Book
    feats: dict


def _hft_lines(names: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    for name in names:
        with gzip.open(HFT / name, "rt") as fh:
            for line in fh:
                _, _, raw = line.partition(" ")
                msg = json.loads(raw)
                if "lastUpdateId" in msg:
                    yield "snapshot", msg
                elif "@depth" in msg.get("stream", ""):
                    yield "diff", msg["data"]


# 2021 cryptofeed symbols: the file of their diffs and the file of their REST snapshot (CTK is in both days:
# the 2021-04-05 one is used)
CF_SYMBOLS: dict[str, tuple[str, str]] = {
    **{s: ("BINANCE_FUTURES-1125a2.0", "BINANCE_FUTURES-1125a2.0")
       for s in ("SANDUSDT", "CHRUSDT", "NEOUSDT", "CTKUSDT", "BATUSDT")},
    **{s: ("BINANCE_FUTURES.ws.1.0", "BINANCE_FUTURES.http.0.0") for s in ("SUSHIUSDT", "AKROUSDT", "KEEPUSDT")},
}


def _cf_lines(symbol: str) -> Iterator[tuple[str, dict]]:
    diffs, snaps = CF_SYMBOLS[symbol]
    with open(CF / snaps) as fh:
        for line in fh:
            if f"/fapi/v1/depth?symbol={symbol}&" in line:
                yield "snapshot", json.loads(line.split(" -> ", 1)[1].split(": ", 1)[1])
                break
    stream = f'"{symbol.lower()}@depth@'
    with open(CF / diffs) as fh:
        for line in fh:
            if stream in line and line[:1].isdigit():
                yield "diff", json.loads(line.split(": ", 1)[1])["data"]


def rebuild(events: Iterator[tuple[str, dict]], symbol: str, levels: int = 5,
            params: FeatureParams = PARAMS) -> list[Sample]:
    """Apply diffs to the first snapshot and return one top-``levels`` sample per 500 ms of event time."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    pending: list[dict] = []
    last_id: int | None = None
    out: list[Sample] = []
    next_ms: int | None = None

    def apply(d: dict) -> None:
        for side, book in (("b", bids), ("a", asks)):
            for p, q in d[side]:
                pf, qf = float(p), float(q)
                if qf == 0.0:
                    book.pop(pf, None)
                else:
                    book[pf] = qf

    def cut(t_ms: int) -> None:
        bb = sorted(bids.items(), key=lambda x: -x[0])[:levels]
        aa = sorted(asks.items())[:levels]
        if bb and aa and aa[0][0] > bb[0][0]:
            b = Book(symbol, t_ms, tuple(bb), tuple(aa))
            out.append(Sample(symbol, t_ms, b, book_features(b, params)))

    for kind, msg in events:
        if kind == "snapshot":
            if last_id is not None:
                continue
            last_id = int(msg["lastUpdateId"])
            bids = {float(p): float(q) for p, q in msg["bids"] if float(q) > 0}
            asks = {float(p): float(q) for p, q in msg["asks"] if float(q) > 0}
            todo, pending = pending, []
            for d in todo:
                if int(d["u"]) >= last_id:
                    apply(d)
            continue
        if last_id is None:
            pending.append(msg)
            continue
        if int(msg["u"]) < last_id:
            continue
        t = int(msg["E"])
        if next_ms is None:
            next_ms = t - t % SAMPLE_MS + SAMPLE_MS
        while t >= next_ms:          # the frame at next_ms shows the book before this diff
            cut(next_ms)
            next_ms += SAMPLE_MS
        apply(msg)
    return out


@functools.lru_cache(maxsize=None)
def session_samples(name: str) -> list[Sample]:
    """Samples of one hftbacktest session (``SESSIONS`` key) or one 2021 cryptofeed symbol (``CF <SYMBOL>``)."""
    if name.startswith("CF "):
        sym = name.split()[1]
        return rebuild(_cf_lines(sym), sym)
    return rebuild(_hft_lines(SESSIONS[name]), name.split()[0])


def all_sessions() -> list[str]:
    return [*SESSIONS, *(f"CF {s}" for s in CF_SYMBOLS)]


def bars(samples: list[Sample], bar_ms: int = 5000) -> list[Sample]:
    """The last sample of each ``bar_ms`` bar (what obf_universe's writer sees at each bar)."""
    out: dict[int, Sample] = {}
    for s in samples:
        out[s.t_ms // bar_ms] = s
    return [out[k] for k in sorted(out)]


@dataclass
class Minute:
    """Per-minute statistics of one asset's samples."""

    label: str
    minute: int
    range_bps: float          # (high − low) / open of the mid over the minute
    depth_med: float
    depth_min: float
    spread_med_bps: float
    dq_fixed_mean: float
    dq_fixed_min: float
    fill_mean: float
    fill_min: float
    dq_rel_mean: float = math.nan
    dq_rel_min: float = math.nan
    fill_rel_mean: float = math.nan
    fill_rel_min: float = math.nan


def minutes(label: str, samples: list[Sample], rel: list[dict] | None = None) -> list[Minute]:
    """Group samples by minute of event time; ``rel`` (same length, :func:`relative_scores`) adds Cat3's scores."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.t_ms // 60_000, []).append(i)
    out = []
    for m, idx in sorted(groups.items()):
        if len(idx) < 60:                       # partial minute (< 30 s of frames): left out
            continue
        mids = [samples[i].feats["mid"] for i in idx]
        dep = [samples[i].feats["depth_1pct_usd"] for i in idx]
        dq = [samples[i].feats["depth_quality"] for i in idx]
        fp = [samples[i].feats["fill_probability"] for i in idx]
        sp = [samples[i].feats["spread_bps"] for i in idx]
        mi = Minute(label, m, (max(mids) - min(mids)) / mids[0] * 1e4, statistics.median(dep), min(dep),
                    statistics.median(sp), statistics.fmean(dq), min(dq), statistics.fmean(fp), min(fp))
        if rel is not None:
            r = [rel[i]["depth_quality_rel"] for i in idx]
            f = [rel[i]["fill_probability_rel"] for i in idx]
            mi.dq_rel_mean, mi.dq_rel_min = statistics.fmean(r), min(r)
            mi.fill_rel_mean, mi.fill_rel_min = statistics.fmean(f), min(f)
        out.append(mi)
    return out


def relative_scores(samples: list[Sample], params: FeatureParams, bar_ms: int = 5000) -> list[dict]:
    """Cat3's relative scores of every sample against the asset's own rolling medians, as the service has them.

    The reference is advanced once per ``bar_ms`` bar by :class:`AssetRolling`; every sample in between is
    scored against the reference of the last completed bar (what the writer thread publishes).
    """
    roll = AssetRolling(params)
    out = []
    cur_bar = None
    last = None
    for s in samples:
        b = s.t_ms // bar_ms
        if cur_bar is not None and b != cur_bar and last is not None:
            roll.step(last.feats, True)
        cur_bar = b
        last = s
        out.append(roll.relative(s.feats))
    return out


def _fmt(m: Minute) -> str:
    return (f"| {m.label} | {m.minute % 1440 // 60:02d}:{m.minute % 60:02d} | {m.range_bps:6.1f} | "
            f"{m.depth_med / 1e3:8.0f} | {m.depth_min / 1e3:7.0f} | {m.spread_med_bps:5.2f} | "
            f"{m.dq_fixed_mean:.2f} / {m.dq_fixed_min:.2f} | {m.fill_mean:.2f} / {m.fill_min:.2f} | "
            f"{m.dq_rel_mean:.2f} / {m.dq_rel_min:.2f} | {m.fill_rel_mean:.2f} / {m.fill_rel_min:.2f} |")


HEADER = ("| asset, session | minute (UTC) | mid range bps | depth5 ±1 % median k$ | min k$ | spread bps | "
          "dq fixed $250k mean / min | fill_prob (10 bps) mean / min | dq rel mean / min | fill rel mean / min |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def sim_stress_minutes(params: FeatureParams, symbols: tuple[str, ...], calm_s: int = 600,
                       stress_s: int = 300, seed: int = 42) -> dict[str, list[Minute]]:
    """The simulator's books (``MarketModel``, normal ``LIQ_TAU_S``) through the same features: calm, then stress."""
    from standins.venue_sim import messages as M
    from standins.venue_sim.model import MarketModel
    from standins.venue_sim.universe import build_universe
    from services.obf_universe.features import parse_depth

    model = MarketModel(build_universe(seed, 560), seed, 1_700_000_000_000)
    model.force_regime("calm")
    idx = {s: model.index[s] for s in symbols}
    samples: dict[str, list[Sample]] = {s: [] for s in symbols}
    for tick in range((calm_s + stress_s) * 10):
        if tick == calm_s * 10:
            model.force_regime("stress")
        model.step()
        if tick % 5 == 4:
            for s, i in idx.items():
                b = parse_depth(M.depth_partial(model, i, 0, 0))
                samples[s].append(Sample(s, model.t_ms, b, book_features(b, params)))
    out = {}
    for s, ss in samples.items():
        rel = relative_scores(ss, params)
        out[s] = minutes(f"sim {s}", ss, rel)
    return out


def sim_posture(params: FeatureParams = PARAMS, seed: int = 42, calm_s: int = 600, stress_s: int = 420,
                snapshot_s: int = 60) -> list[dict]:
    """The simulator's 50 priority books, calm then stress (normal ``LIQ_TAU_S``), through obf_universe's features
    and the watchdog's Cat3 (mean over the priority symbols, one universe snapshot a minute, 5 s watchdog
    ticks through :class:`prod.alpha.survival.SurvivalStack`), under the fixed and the relative references."""
    from prod.alpha.survival import SensorReadings, SurvivalStack
    from prod.settings import PRIORITY_SYMBOLS
    from services.obf_universe.features import parse_depth
    from standins.venue_sim import messages as M
    from standins.venue_sim.model import MarketModel
    from standins.venue_sim.universe import build_universe

    model = MarketModel(build_universe(seed, 560), seed, 1_700_000_000_000)
    model.force_regime("calm")
    roll = {s: AssetRolling(params) for s in PRIORITY_SYMBOLS}
    stacks = {"fixed": SurvivalStack(), "relative": SurvivalStack()}
    rows = []
    for tick in range((calm_s + stress_s) * 10):
        if tick == calm_s * 10:
            model.force_regime("stress")
        model.step()
        if (tick + 1) % 50:
            continue                                    # 5 s bars
        feats = {s: book_features(parse_depth(M.depth_partial(model, model.index[s], 0, 0)), params)
                 for s in PRIORITY_SYMBOLS}
        for s in PRIORITY_SYMBOLS:
            roll[s].step(feats[s], True)
        if (tick + 1) % (snapshot_s * 10):
            continue
        rel = [roll[s].relative(feats[s]) for s in PRIORITY_SYMBOLS]
        reading = {"fixed": (statistics.fmean(f["depth_quality"] for f in feats.values()),
                             statistics.fmean(f["fill_probability"] for f in feats.values())),
                   "relative": (statistics.fmean(r["depth_quality_rel"] for r in rel),
                                statistics.fmean(r["fill_probability_rel"] for r in rel))}
        row: dict = {"t_s": (tick + 1) // 10 - calm_s}
        for k, (d, f) in reading.items():
            for _ in range(snapshot_s // 5):
                res = stacks[k].update(SensorReadings(depth_quality=d, fill_prob=f), 5 / 60)
            row[k] = (d, f, res.categories["cat3"], res.rm, res.posture.value)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.real_books",
                                 description="Per-minute depth_quality / fill_prob of the real recordings and of "
                                             "the simulator's stress episode (docs/cat3.md)")
    ap.add_argument("--top", type=int, default=8, help="most volatile real minutes shown")
    ap.add_argument("--no-sim", action="store_true", help="skip the simulator episode")
    a = ap.parse_args(argv)
    if not WS.exists():
        print(f"no recordings at {WS}")
        return 2
    params = FeatureParams()
    rows: list[Minute] = []
    for name in all_sessions():
        ss = session_samples(name)
        label = name.replace("CF ", "") + (" 2021" if name.startswith("CF ") else "")
        rows += minutes(label, ss, relative_scores(ss, params))
    rows.sort(key=lambda m: -m.range_bps)
    print(f"real minutes: {len(rows)}\n\nmost volatile real minutes\n{HEADER}")
    for m in rows[:a.top]:
        print(_fmt(m))
    print(f"\ncalmest real minutes\n{HEADER}")
    for m in rows[-a.top:]:
        print(_fmt(m))
    print(f"\nall real minutes, by session\n{HEADER}")
    for m in sorted(rows, key=lambda m: (m.label, m.minute)):
        print(_fmt(m))
    if not a.no_sim:
        print("\nsimulator, 50 priority symbols, watchdog Cat3 (t = seconds after the stress onset)\n"
              "| t s | fixed: depth / fill / Cat3 / Rm / posture | relative: depth / fill / Cat3 / Rm / posture |\n"
              "|---|---|---|")
        for row in sim_posture(params):
            if row["t_s"] >= -120:
                print(f"| {row['t_s']:+d} | " + " | ".join(
                    "{:.2f} / {:.2f} / {:.2f} / {:.2f} / {}".format(*row[k]) for k in ("fixed", "relative")) + " |")
        print(f"\nsimulator (seed 42, LIQ_TAU_S 90 s): 10 min calm, then stress at minute 10\n{HEADER}")
        for ms in sim_stress_minutes(params, ("BTCUSDT", "ETHUSDT", "SOLUSDT", "LINKUSDT", "SANDUSDT",
                                                  "ZECUSDT")).values():
            for m in ms[7:]:
                print(_fmt(m))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
