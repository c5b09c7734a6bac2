"""A full disk under the journal (the chaos soak's ``journal_full`` fault, for real: RLIMIT_FSIZE → EFBIG).

Each case runs in a child process whose file-size limit is pinned just above the audit log's size, so
the kernel fails the journal's writes the way a full disk does (a torn append, then nothing); the
parent checks what was left on disk with the trader's own verifier.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from prod.trading.journal import Journal, parse_audit
from tests.helpers import REPO_ROOT

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from prod.trading.journal import Journal
    d = Path(sys.argv[1])
    j = Journal.open(d / "j.sqlite", d / "audit.log")
    j.append("ENTRY", {"trade_id": 1, "pad": "x" * 200}, 5)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, ((d / "audit.log").stat().st_size + 37, hard))
    errors = []
    for i in range(3):                      # torn first line, then nothing fits
        try:
            j.append("EXIT", {"trade_id": 1, "pad": "y" * 200, "i": i}, 6 + i)
        except OSError as exc:
            errors.append(exc.errno)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    j.append("EXIT", {"trade_id": 1, "after": True}, 9)
    j.close()
    print(json.dumps(errors))
""")


def test_failed_appends_leave_no_torn_or_uncommitted_line_and_the_journal_reopens_clean(tmp_path):
    res = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(REPO_ROOT)], capture_output=True,
                         text=True, timeout=60, cwd=REPO_ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    errors = json.loads(res.stdout.strip().splitlines()[-1])
    assert errors == [27, 27, 27]           # EFBIG every time, as a full disk would refuse
    lines = parse_audit(tmp_path / "audit.log")   # raises on a torn line or a reused sequence number
    assert [ln.event for ln in lines] == ["JOURNAL_CREATED", "ENTRY", "EXIT"]
    j = Journal.open(tmp_path / "j.sqlite", tmp_path / "audit.log")
    try:
        assert [e["kind"] for e in j.events()] == ["JOURNAL_CREATED", "ENTRY", "EXIT"]   # no UNCOMMITTED_TAIL
        assert j.events("EXIT")[0]["payload"] == {"trade_id": 1, "after": True}
    finally:
        j.close()


CORE_CHILD = textwrap.dedent("""
    import json, math, random, resource, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from prod.settings import load_settings
    from prod.trading.core import CoreLimits, TraderCore
    from prod.trading.journal import Journal
    from services.event_trader.main import load_engine_params
    d = Path(sys.argv[1])
    syms = tuple(load_settings(env={}, data_dir=str(d)).symbols)
    rng = random.Random(3)
    prices = {a: 100.0 + i for i, a in enumerate(syms)}
    clock = [time.time()]
    def scan(n, vd, drift=0.0, noise=0.001):
        for a in prices:
            prices[a] *= math.exp(drift + rng.gauss(0, noise))
        clock[0] += 5
        return {"scan_number": n, "timestamp_ns": int(clock[0] * 1e9), "timestamp": "", "bridge_ts": clock[0],
                "vel_div": vd, "w50_velocity": vd, "w150_velocity": 0.0, "w300_velocity": 0.0,
                "w750_velocity": 0.0, "instability_50": 0.0, "instability_150": 0.0,
                "assets": list(prices), "asset_prices": list(prices.values())}
    j = Journal.open(d / "j.sqlite", d / "audit.log")
    tr = TraderCore(CoreLimits(snapshot_every_s=1e9), j, load_engine_params(), syms, clock=lambda: clock[0])
    j.append("TRADER_START", {"capital": tr.account.capital})
    for n in range(1, 160):
        tr.process(scan(n, 0.0, 0, 0.001 + n * 0.00002))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, ((d / "audit.log").stat().st_size, hard))
    not_taken, entered = 0, 0
    for n in range(160, 260):                         # a stress leg while the disk is full
        r = tr.process(scan(n, -0.06, -0.002, 0.003)) or {}
        not_taken += bool(r.get("not_taken"))
        entered += bool(r.get("entered"))
    held = len(tr.journal_backlog)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    for n in range(260, 262):
        tr.process(scan(n, 0.0))
    print(json.dumps({"not_taken": not_taken, "entered": entered, "held": held, "left": len(tr.journal_backlog),
                      "capital": tr.account.capital, "position": tr.account.position is not None}))
""")


def test_the_trader_holds_unjournaled_events_refuses_entries_and_catches_up_when_the_disk_frees(tmp_path):
    from tests.soak import invariants as inv
    res = subprocess.run([sys.executable, "-c", CORE_CHILD, str(tmp_path), str(REPO_ROOT)], capture_output=True,
                         text=True, timeout=120, cwd=REPO_ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    # (paper fills in process: the entry decided as the disk filled happens and is held; none after it)
    assert out["entered"] <= 1 and out["not_taken"] >= 1, out
    assert out["held"] >= 1 and out["left"] == 0, out               # held, then written once the disk freed
    events = inv.read_events(tmp_path / "j.sqlite")
    kinds = [e["kind"] for e in events]
    assert kinds.count("ENTRY_NOT_TAKEN") == out["not_taken"] and kinds.count("ENTRY") == out["entered"]
    assert bool(inv.open_positions(events)) == out["position"]
    assert inv.check_chain(tmp_path / "j.sqlite", tmp_path / "audit.log") == []
    assert inv.check_capital(events, out["capital"]) == []


HELD_CHILD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from prod.trading.journal import HeldAppends, Journal
    d = Path(sys.argv[1])
    j = Journal.open(d / "j.sqlite", d / "audit.log")
    held = HeldAppends(j)
    held.order_event("SUBMIT", {"client_id": "a1", "status": "NEW"})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, ((d / "audit.log").stat().st_size + 37, hard))
    held.order_event("NEW", {"client_id": "a1", "status": "NEW"})      # the venue acknowledged it: held
    held.order_event("FILLED", {"client_id": "a1", "status": "FILLED"})
    ok_full = held.append("KILL_SWITCH", {"flatten_orders": []})
    n_held, retried = len(held.held), held.flush()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    flushed = held.flush()
    states = j.order_states()
    j.close()
    print(json.dumps({"ok_full": ok_full, "held": n_held, "retried": retried, "flushed": flushed,
                      "left": len(held.held), "failures": held.failures, "a1": states["a1"]["status"]}))
""")


def test_order_events_the_venue_acknowledged_are_held_through_a_full_disk_and_journaled_in_order(tmp_path):
    res = subprocess.run([sys.executable, "-c", HELD_CHILD, str(tmp_path), str(REPO_ROOT)], capture_output=True,
                         text=True, timeout=60, cwd=REPO_ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["ok_full"] is False and out["held"] == 3 and out["retried"] is False and out["failures"] >= 2, out
    assert out["flushed"] is True and out["left"] == 0 and out["a1"] == "FILLED", out
    assert "journal write failed" in res.stderr and "(ORDER_NEW first)" in res.stderr
    lines = parse_audit(tmp_path / "audit.log")           # the chain holds: no torn line, no reused sequence
    assert [ln.event for ln in lines] == ["JOURNAL_CREATED", "ORDER_SUBMIT", "ORDER_NEW", "ORDER_FILLED",
                                          "KILL_SWITCH"]
    j = Journal.open(tmp_path / "j.sqlite", tmp_path / "audit.log")
    try:
        assert [e["kind"] for e in j.events()][1:] == ["ORDER_SUBMIT", "ORDER_NEW", "ORDER_FILLED", "KILL_SWITCH"]
    finally:
        j.close()
