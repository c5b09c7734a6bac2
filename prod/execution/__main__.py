"""The operator's one kill command, and the execution client's ``status`` and ``preflight``.

    python -m prod.execution kill [--reason TEXT] [--no-flatten] [--bus-timeout S] | clear-kill | status | preflight

Endpoints and keys from the configuration (``DOLPHIN_VENUE_*``); flag ``<DOLPHIN_DATA_DIR>/trader/KILL`` or ``--flag``.
``kill`` writes the flag, publishes ``DOLPHIN_SAFETY[kill_switch]`` (if the bus answers within ``--bus-timeout``;
0 skips it) so a trader anywhere on the mesh halts, then cancels and flattens on the venue; ``clear-kill`` clears
both. One JSON report; exit 0 when done (flat for ``kill``), 1 if not. ``preflight``: one PASS/FAIL line per
check (``--json`` adds the report), exit 1 on a failure, 2 without keys.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from prod.execution import schemas as X
from prod.execution.client import ExecutionClient
from prod.execution.killswitch import KillSwitch
from prod.execution.rest import OrderRestClient
from prod.binance.signing import Credentials, MissingCredentials


async def _kill(rest_base: str, creds: Credentials, flatten: bool) -> dict:
    async with OrderRestClient(rest_base, creds) as rest:
        c = ExecutionClient(rest, None)
        await c.start()
        try:
            if flatten:
                return await c.kill()
            c.halted = True
            syms = sorted({X.parse_rest_order(x).symbol for x in await rest.open_orders()})
            for s in syms:
                await rest.cancel_all(s)
            return {"canceled_symbols": syms, "flat": None}
        finally:
            await c.stop()


def _publish_kill(settings, engaged: bool, reason: str, by: str, timeout_s: float) -> bool:
    """Set ``DOLPHIN_SAFETY[kill_switch]``; return whether the bus answered within ``timeout_s``."""
    if timeout_s <= 0:
        return False
    from prod.bus import maps
    from prod.runtime import Bus
    bus = Bus(settings, "execution-cli", connect_timeout_s=timeout_s).start()
    try:
        if not bus.wait_connected(timeout_s):
            logging.getLogger("prod.execution").warning("kill switch: no bus within %.1fs; flag file only", timeout_s)
            return False
        bus.publish(maps.KILL_SWITCH, maps.KILL_SWITCH.build(engaged=engaged, reason=reason, ts=time.time(), by=by))
        return True
    finally:
        bus.close()


async def _status(rest_base: str, creds: Credentials) -> dict:
    async with OrderRestClient(rest_base, creds) as rest:
        acct = await rest.account()
        opens = [X.parse_rest_order(x) for x in await rest.open_orders()]
        poss = X.parse_position_risk(await rest.position_risk())
        return {"wallet": acct.get("totalWalletBalance"), "available": acct.get("availableBalance"),
                "open_orders": [{"client_id": o.client_id, "symbol": o.symbol, "side": o.side,
                                 "status": o.status.value} for o in opens],
                "positions": [{"symbol": p.symbol, "amount": p.amount, "entry_price": p.entry_price} for p in poss]}


async def _preflight(settings, creds: Credentials, rest_base: str):
    from prod.execution.preflight import PreflightConfig, run_preflight
    from prod.configs import load_blue
    cfg = PreflightConfig.from_settings(settings, load_blue().engine, rest_base=rest_base)
    async with OrderRestClient(rest_base, creds, recv_window_ms=cfg.recv_window_ms) as rest:
        return await run_preflight(rest, cfg)


def main(argv: list[str] | None = None) -> int:
    from prod.settings import ConfigError, load_settings
    ap = argparse.ArgumentParser(prog="python -m prod.execution",
                                 description="DOLPHIN execution: the kill switch, status, preflight")
    ap.add_argument("command", choices=("kill", "clear-kill", "status", "preflight"))
    ap.add_argument("--flag", default=None, help="kill flag file (default <data_dir>/trader/KILL)")
    ap.add_argument("--rest", default=None, help="venue REST base (default DOLPHIN_VENUE_REST)")
    ap.add_argument("--reason", default="operator kill (CLI)")
    ap.add_argument("--no-flatten", action="store_true", help="cancel open orders only; keep positions")
    ap.add_argument("--json", action="store_true", help="preflight: also print the report as one JSON line")
    ap.add_argument("--bus-timeout", type=float, default=3.0,
                    help="kill/clear-kill: seconds to wait for the bus to publish the kill switch (0: flag only)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        logging.getLogger("prod.execution").error("configuration error: %s", exc)
        return 2
    flag = KillSwitch(a.flag or Path(settings.data_dir) / "trader" / "KILL")
    rest_base = a.rest or settings.venue_rest
    by = f"{socket.gethostname()}:{os.getpid()}"
    if a.command == "clear-kill":
        cleared = flag.clear()
        bus = _publish_kill(settings, False, "cleared", by, a.bus_timeout)
        print(json.dumps({"cleared": cleared, "flag": str(flag.path), "bus": bus}))
        return 0
    try:
        creds = Credentials.from_env()
    except MissingCredentials as exc:
        logging.getLogger("prod.execution").error("%s", exc)
        return 2
    if a.command == "preflight":
        report = asyncio.run(_preflight(settings, creds, rest_base))
        for line in report.lines():
            print(line)
        if a.json:
            print(json.dumps(report.to_dict()))
        return 0 if report.ok else 1
    if a.command == "status":
        print(json.dumps({"kill_flag": flag.read(), **asyncio.run(_status(rest_base, creds))}))
        return 0
    flag.engage(a.reason, by)                   # first: the trader halts entries before we touch the venue
    bus = _publish_kill(settings, True, a.reason, by, a.bus_timeout)    # and a trader elsewhere on the mesh
    report = asyncio.run(_kill(rest_base, creds, not a.no_flatten))
    print(json.dumps({"flag": str(flag.path), "bus": bus, **report}))
    return 0 if report.get("flat") in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
