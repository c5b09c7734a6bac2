"""Command line of the backtest: parse flags, then call :func:`prod.backtest.runner.run_backtest`.

    python -m prod.backtest --config prod/configs/blue.yml --data data/vbt_cache_klines \\
        [--from 2026-01-01] [--to 2026-01-31] [--summary PATH] [--exf FILE] [--exf-history data/exf] [--survival]
        [--ob-dir data/ob_universe]
        [--mc-model data/mc_models/blue_forewarner.zip] [--engine native|nautilus]

``--engine nautilus`` replays through a NautilusTrader BacktestEngine (prod.nautilus.backtest; the
``.[nautilus]`` extra); the native engine never imports it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path

from prod.backtest.runner import BacktestError, BacktestOptions, run_backtest
from prod.configs import ConfigError


def _date(s: str) -> dt.date:
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: expected YYYY-MM-DD") from None


def result_lines(s: dict, summary_path: Path, png_path: Path | None) -> list[str]:
    """Return what the CLI prints after a run: the headline line, one ``WARNING:`` line per warning, the files."""
    pf = "n/a" if s["profit_factor"] is None else f"{s['profit_factor']:.3f}"
    sh = "n/a" if s["sharpe"] is None else f"{s['sharpe']:.2f}"
    wr = "n/a" if s["win_rate_pct"] is None else f"{s['win_rate_pct']:.1f}%"
    out = [f"ROI {s['roi_pct']:+.2f}% | PF {pf} | Sharpe {sh} | Max DD {s['max_drawdown_pct']:.2f}% | "
           f"WR {wr} | Trades {s['trades']} | days {s['days']} | hash {s['config_hash']}"]
    out.extend(f"WARNING: {w}" for w in s.get("warnings") or [])
    out.append(f"summary: {summary_path}")
    if png_path:
        out.append(f"equity:  {png_path}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.backtest",
                                 description="Replay daily Parquet files through NDAlphaEngine.")
    ap.add_argument("--config", required=True, type=Path, help="strategy YAML (prod/configs/blue.yml)")
    ap.add_argument("--data", required=True, type=Path, help="directory of YYYY-MM-DD.parquet files")
    ap.add_argument("--from", dest="date_from", type=_date, help="first date (inclusive)")
    ap.add_argument("--to", dest="date_to", type=_date, help="last date (inclusive)")
    ap.add_argument("--summary", type=Path, help="summary JSON path (default run_logs/summary_<ts>.json)")
    ap.add_argument("--out-dir", type=Path, default=Path("run_logs"), help="where default outputs go")
    ap.add_argument("--exf", type=Path, help="external factors JSON (default <data>/exf_daily.json)")
    ap.add_argument("--exf-history", type=Path,
                    help="exf_fetcher's history (data/exf): sub-day ACB updates as the live acb_processor wrote them")
    ap.add_argument("--ob-dir", type=Path, help="obf_universe Parquet (data/ob_universe): OB layers see the books")
    ap.add_argument("--survival", action="store_true", help="drive posture from the drawdown survival stack")
    ap.add_argument("--mc-model", type=Path, help="MC-forewarner model (python -m prod.mc train): §12 gate every day")
    ap.add_argument("--no-png", action="store_true", help="skip the equity-curve PNG")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ap.add_argument("--engine", choices=("native", "nautilus"), default="native",
                    help="native (default) or nautilus: the same replay through a Nautilus BacktestEngine")
    ap.add_argument("--allow-drift", action="store_true", help="research only: run a drifted blue config")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    opts = BacktestOptions(config=args.config, data=args.data, date_from=args.date_from,
                           date_to=args.date_to, summary=args.summary, out_dir=args.out_dir,
                           exf=args.exf, png=not args.no_png, progress=not args.no_progress,
                           survival=args.survival, allow_drift=args.allow_drift, ob_dir=args.ob_dir,
                           mc_model=args.mc_model, exf_history=args.exf_history)
    if opts.date_from and opts.date_to and opts.date_from > opts.date_to:
        print(f"backtest: --from {opts.date_from} is after --to {opts.date_to}", file=sys.stderr)
        return 2
    if args.engine == "nautilus" and args.exf_history is not None:
        print("backtest: --exf-history (sub-day ACB) runs with the native engine only", file=sys.stderr)
        return 2
    try:
        if args.engine == "nautilus":
            from prod.nautilus import NautilusUnavailable
            try:
                from prod.nautilus.backtest import run_nautilus_backtest
            except NautilusUnavailable as exc:
                print(f"backtest: {exc}", file=sys.stderr)
                return 2
            res = run_nautilus_backtest(opts)
        else:
            res = run_backtest(opts)
    except (BacktestError, ConfigError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    for line in result_lines(res.summary, res.summary_path, res.png_path):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
