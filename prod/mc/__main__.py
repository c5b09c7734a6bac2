"""Command line of the MC-forewarner model.

    python -m prod.mc train --data DIR --out MODEL [--config prod/configs/blue.yml] [--samples 48]
                            [--window-days 1] [--seed 7] [--exf FILE]
    python -m prod.mc assess --model MODEL --config prod/configs/blue.yml [--boost B]

``train`` prints one JSON report (samples, training time, out-of-sample error); ``assess`` prints
``catastrophic_probability``, ``envelope_score`` and ``status`` (and ``source``), one per line. Exit 2 with
the reason on bad input: no day files, a refused model file (corrupt, another config hash, newer libraries).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from prod.configs import BLUE_PATH, ConfigError, load_config


def _boost(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: expected a number") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{s!r}: must be finite and > 0")
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.mc", description="DOLPHIN MC-forewarner model")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="Monte Carlo over the config's parameters, backtested; fit and save the model")
    t.add_argument("--data", required=True, type=Path, help="directory of YYYY-MM-DD.parquet day files")
    t.add_argument("--out", required=True, type=Path, help="model file to write")
    t.add_argument("--config", type=Path, default=BLUE_PATH, help="base strategy config (default blue)")
    t.add_argument("--samples", type=int, default=48, help="perturbed configs to backtest (>= 4)")
    t.add_argument("--window-days", type=int, default=1, help="days per random backtest window")
    t.add_argument("--seed", type=int, default=7)
    t.add_argument("--folds", type=int, default=5, help="K of the K-fold out-of-sample error")
    t.add_argument("--exf", type=Path, help="train under these ACB external factors (default: none, boost 1.0)")
    a = sub.add_parser("assess", help="assess a config with a model at a day boost")
    a.add_argument("--model", required=True, type=Path)
    a.add_argument("--config", type=Path, default=BLUE_PATH)
    a.add_argument("--boost", type=_boost, default=1.0, help="ACB day boost (assessed at max_leverage x boost)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.cmd == "train":
        from prod.mc.train import TrainError, TrainOptions, train
        logging.getLogger("dolphin.backtest").setLevel(logging.ERROR)   # per-sample Sharpe notes
        try:
            _, report = train(TrainOptions(config=args.config, data=args.data, out=args.out, samples=args.samples,
                                           window_days=args.window_days, seed=args.seed, folds=args.folds,
                                           exf=args.exf))
        except (TrainError, ConfigError) as exc:
            print(f"mc train: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(report, sort_keys=True))
        return 0
    from prod.mc.assess import FALLBACK_ERROR, FALLBACK_NO_DATA, assess
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"mc assess: {exc}", file=sys.stderr)
        return 2
    p = assess(cfg, args.model, args.boost)
    if p["source"] in (FALLBACK_NO_DATA, FALLBACK_ERROR):
        print(f"mc assess: model refused, {p['source']}: {p['reason']}", file=sys.stderr)
        return 2
    print(f"catastrophic_probability {p['catastrophic_prob']:.6f}")
    print(f"envelope_score {p['envelope_score']:.6f}")
    print(f"status {p['status']}")
    print(f"source {p['source']}")
    print(f"max_leverage {p['max_leverage']:.4g} (base {p['base_max_leverage']:.4g} x boost {p['day_boost']:.4g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
