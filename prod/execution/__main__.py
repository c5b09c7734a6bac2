"""Command line of the execution client: ``kill`` (flag + cancel all + flatten), ``clear-kill``, ``status``,
``preflight`` (checks the account before trading, see ``prod/execution/preflight.py``).

    python -m prod.execution kill [--reason TEXT] [--no-flatten]
    python -m prod.execution clear-kill
    python -m prod.execution status
    python -m prod.execution preflight [--json]

Endpoints from the configuration (``DOLPHIN_VENUE_REST`` / ``DOLPHIN_VENUE_WS``), keys from
``DOLPHIN_VENUE_API_KEY`` / ``DOLPHIN_VENUE_API_SECRET``, the flag at ``<DOLPHIN_DATA_DIR>/trader/KILL``
unless ``--flag`` says otherwise. Prints one JSON report; exit 0 when done (flat for ``kill``), 1 if not.
``preflight`` prints one line per check (``PASS``/``FAIL`` and what to change; ``--json`` adds the report
as a last line) and exits 1 when any check failed, 2 without keys.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from prod.execution import schemas as X
from prod.execution.client import ExecutionClient
from prod.execution.killswitch import KillSwitch
from prod.execution.rest import OrderRestClient
from prod.execution.signing import Credentials, MissingCredentials


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
    ap = argparse.ArgumentParser(prog="python -m prod.execution", description="DOLPHIN execution: kill switch, status")
    ap.add_argument("command", choices=("kill", "clear-kill", "status", "preflight"))
    ap.add_argument("--flag", default=None, help="kill flag file (default <data_dir>/trader/KILL)")
    ap.add_argument("--rest", default=None, help="venue REST base (default DOLPHIN_VENUE_REST)")
    ap.add_argument("--reason", default="operator kill (CLI)")
    ap.add_argument("--no-flatten", action="store_true", help="cancel open orders only; keep positions")
    ap.add_argument("--json", action="store_true", help="preflight: also print the report as one JSON line")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        logging.getLogger("prod.execution").error("configuration error: %s", exc)
        return 2
    flag = KillSwitch(a.flag or Path(settings.data_dir) / "trader" / "KILL")
    rest_base = a.rest or settings.venue_rest
    if a.command == "clear-kill":
        print(json.dumps({"cleared": flag.clear(), "flag": str(flag.path)}))
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
    flag.engage(a.reason)                       # first: the trader halts entries before we touch the venue
    report = asyncio.run(_kill(rest_base, creds, not a.no_flatten))
    print(json.dumps({"flag": str(flag.path), **report}))
    return 0 if report.get("flat") in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
