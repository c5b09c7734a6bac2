"""Test driver process for the kill -9 restart tests: one VenueAccount on a data dir, one command.

    python -m tests.integration.exec_driver DIR PORT open      # connect, open trade 1 at scan 500, snapshot, wait
    python -m tests.integration.exec_driver DIR PORT restart   # connect (reconcile), replay the same decision, report

Prints one JSON line per step (``CONNECTED``, ``OPENED``, ``REPORT``) so the test can kill it at a known step.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from prod.execution import Credentials, DuplicateDecision, ExecConfig
from prod.trading.journal import Journal
from prod.trading.venue_account import VenueAccount

TRADE, SCAN, NOTIONAL = 1, 500, 1500.0


def main(argv: list[str]) -> int:
    d, port, cmd = Path(argv[0]), int(argv[1]), argv[2]
    journal = Journal.open(d / "journal.sqlite", d / "audit.log")
    _scan, _eng, snap = journal.load_snapshot()
    cfg = ExecConfig(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", fill_timeout_s=10.0)
    acct = VenueAccount.connect(cfg, journal, 10_000.0, state=(snap or {}).get("account"),
                                creds=Credentials("dolphin-sim-key", "dolphin-sim-secret"))
    acct.roll_day("2026-12-02")
    print(json.dumps({"step": "CONNECTED", "actions": acct.reconcile_report["actions"]}), flush=True)
    held_at_start = acct.position is not None
    forced = list(acct.kill_exits)        # what the core books at its first scan (a position closed while down)
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/premiumIndex?symbol=ETHUSDT") as r:
        px = float(json.loads(r.read())["markPrice"])
    if cmd == "open":
        fill = acct.open(TRADE, "ETHUSDT", -1, NOTIONAL, None, px, time.time(), SCAN)
        journal.save_snapshot(SCAN, None, {"account": acct.to_dict()})
        print(json.dumps({"step": "OPENED", "fill": fill}), flush=True)
        time.sleep(600)                                    # the test kills us
        return 0
    outcome = "entered"
    try:
        acct.open(TRADE, "ETHUSDT", -1, NOTIONAL, None, px, time.time(), SCAN)
    except DuplicateDecision:
        outcome = "duplicate_refused"
    except RuntimeError as exc:
        outcome = f"refused: {exc}"
    pos = [{"symbol": p.symbol, "amount": p.amount} for p in acct._call(acct.client.positions)]
    algos = [{"client_id": a.client_id, "symbol": a.symbol, "type": a.type, "side": a.side}
             for a in acct._call(acct.client.open_algo_orders)]
    print(json.dumps({"step": "REPORT", "outcome": outcome, "position": acct.to_dict()["position"],
                      "venue_positions": pos, "report": acct.reconcile_report, "open_algos": algos,
                      "stop_cid": acct.stop_cid, "held_at_start": held_at_start, "forced_exits": forced,
                      "capital": acct.capital}), flush=True)
    acct.stop()
    journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
