"""Where a scripted stress episode's vel_div crossings fall: how the stress e2e's ``EPISODE_SEED`` was chosen.

``python -m tests.e2e.episode_search --seeds 0-19`` runs the simulator's ``MarketModel`` (seed 42, held calm)
for ``--calm-s`` seconds, then for each episode seed forces stress with ``episode_seed`` (the same call the
test makes through ``/sim/admin/regime``) and feeds the 50 priority symbols' mark prices, one row a second
(the live scanner's 1 s ``markPrice@1s`` samples), through :class:`scanner.engine.EigenEngine`. It prints the
seconds after the onset at which vel_div is below the champion's −0.02. The calm length must exceed 750 s
(w750 warm, as the live scanner's backfill makes it); the crossings do not depend on it.
"""
from __future__ import annotations

import argparse
import copy

from prod.settings import PRIORITY_SYMBOLS
from scanner.engine import EigenEngine
from standins.venue_sim.model import MarketModel
from standins.venue_sim.universe import build_universe


def _seeds(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def crossings(episode_seeds: list[int], calm_s: int = 800, post_s: int = 120, threshold: float = -0.02,
              seed: int = 42) -> dict[int, list[tuple[int, float]]]:
    """Return {episode seed: [(seconds after the onset, vel_div), ...]} of the scans below ``threshold``."""
    m = MarketModel(build_universe(seed, 560), seed, 1_796_679_449_600)
    m.force_regime("calm")
    idx = [m.index[s] for s in PRIORITY_SYMBOLS]
    eng = EigenEngine(list(PRIORITY_SYMBOLS), precision_mode="float64")
    for _ in range(calm_s):
        for _ in range(10):
            m.step()
        eng.enhance(list(m.mark_price()[idx]), m.t_ms * 1_000_000)
    out = {}
    for es in episode_seeds:
        mm, ee = copy.deepcopy(m), copy.deepcopy(eng)
        mm.force_regime("stress", episode_seed=es)
        hits = []
        for sec in range(1, post_s + 1):
            for _ in range(10):
                mm.step()
            r = ee.enhance(list(mm.mark_price()[idx]), mm.t_ms * 1_000_000)
            if r.vel_div is not None and r.vel_div < threshold:
                hits.append((sec, round(float(r.vel_div), 3)))
        out[es] = hits
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.e2e.episode_search", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0-19", help="episode seeds, e.g. 0-19 or 3,10")
    ap.add_argument("--calm-s", type=int, default=800, help="calm seconds before the onset (> 750)")
    ap.add_argument("--post-s", type=int, default=120, help="seconds of stress scanned")
    a = ap.parse_args(argv)
    if a.calm_s <= 750:
        ap.error("--calm-s must exceed 750 (vel_div needs the w750 window warm)")
    for es, hits in crossings(_seeds(a.seeds), a.calm_s, a.post_s).items():
        print(f"episode_seed {es}: crossings (s after onset, vel_div) {hits}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
