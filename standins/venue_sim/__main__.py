"""Command line of the venue simulator: parse flags, log the effective config, call :func:`server.run`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

from standins.venue_sim.exchange import ExchangeConfig
from standins.venue_sim.server import SimConfig, run


def _key_pair(raw: str) -> tuple[str, str]:
    key, sep, secret = raw.partition(":")
    if not sep or not key or not secret:
        raise argparse.ArgumentTypeError("expected KEY:SECRET")
    return key, secret


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw not in ("", "0", "1", "true", "false", "yes", "no"):
        raise SystemExit(f"venue_sim: {name}={raw!r}: expected 1/0, true/false or yes/no")
    return raw in ("1", "true", "yes")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m standins.venue_sim",
                                 description="Binance-USDT-M-compatible venue simulator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--speed", type=float, default=1.0, help="market time / wall time")
    ap.add_argument("--replay", default=None, help="directory of recorded 1m klines (see docs/venue.md)")
    ap.add_argument("--stream-cap", type=int, default=200, help="max streams per websocket connection")
    ap.add_argument("--symbols", type=int, default=560, help="universe size (>= 540 by default)")
    ap.add_argument("--start-ms", type=int, default=None, help="market time origin (default: now)")
    ap.add_argument("--klines-1s", type=int, default=4096,
                    help="seconds of 1s klines served (simulator extension; 0 = off, as on USDT-M)")
    ap.add_argument("--liq-tau-s", type=float, default=float(os.environ.get("DOLPHIN_SIM_LIQ_TAU_S") or 90.0),
                    help="seconds of market time the books take to follow a regime (env DOLPHIN_SIM_LIQ_TAU_S)")
    ap.add_argument("--api-key", type=_key_pair, action="append", default=None, metavar="KEY:SECRET",
                    help="trading account credentials (repeatable; default DOLPHIN_VENUE_API_KEY/_SECRET from the "
                         "environment, else dolphin-sim-key:dolphin-sim-secret)")
    ap.add_argument("--start-balance", type=float, default=10_000.0, help="USDT wallet of each account")
    ap.add_argument("--leverage", type=int, default=10, help="leverage of every symbol (cross margin)")
    ap.add_argument("--taker-fee", type=float, default=0.0005, help="taker fee rate (Binance VIP 0: 0.0005)")
    ap.add_argument("--maker-fee", type=float, default=0.0002, help="maker fee rate (Binance VIP 0: 0.0002)")
    ap.add_argument("--hedge-mode", action="store_true", default=_env_flag("DOLPHIN_SIM_HEDGE_MODE"),
                    help="accounts start in hedge mode (dualSidePosition): orders without positionSide get -4061 "
                         "(env DOLPHIN_SIM_HEDGE_MODE=1)")
    ap.add_argument("--multi-assets", action="store_true", default=_env_flag("DOLPHIN_SIM_MULTI_ASSETS"),
                    help="accounts start in multi-assets margin mode (env DOLPHIN_SIM_MULTI_ASSETS=1)")
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    if not a.api_key and os.environ.get("DOLPHIN_VENUE_API_KEY") and os.environ.get("DOLPHIN_VENUE_API_SECRET"):
        # the mesh hands the simulator and the trader the same (generated) key through the environment
        a.api_key = [(os.environ["DOLPHIN_VENUE_API_KEY"], os.environ["DOLPHIN_VENUE_API_SECRET"])]
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = SimConfig(host=a.host, port=a.port, seed=a.seed, speed=a.speed, replay=a.replay,
                        stream_cap=a.stream_cap, n_symbols=a.symbols, start_ms=a.start_ms,
                        klines_1s=a.klines_1s, liq_tau_s=a.liq_tau_s,
                        exchange=ExchangeConfig(start_balance=a.start_balance, leverage=a.leverage,
                                                taker_fee=a.taker_fee, maker_fee=a.maker_fee,
                                                dual_side=a.hedge_mode, multi_assets=a.multi_assets),
                        **({"api_keys": tuple(a.api_key)} if a.api_key else {}))
    except ValueError as exc:
        logging.getLogger("venue_sim").error("bad configuration: %s", exc)
        return 2
    shown = dataclasses.asdict(cfg)
    shown["api_keys"] = [f"{k[:4]}… (secret hidden)" for k, _ in cfg.api_keys]     # never log credentials
    logging.getLogger("venue_sim").info("venue_sim starting with config %s", json.dumps(shown))
    try:
        run(cfg)
    except Exception as exc:  # noqa: BLE001 - e.g. bad replay dir: one clear line, non-zero exit
        logging.getLogger("venue_sim").error("venue_sim failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
