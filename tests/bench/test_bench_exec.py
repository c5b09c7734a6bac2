"""Benchmark: decision -> order ack -> fill seen on the user stream, against the simulator over loopback.

Writes run_logs/bench_exec.json: per MARKET order, the time from the decision (just before
``ExecutionClient.submit``) to the REST ack and to the moment the order is final with all fills seen
(user-data stream), median and p99 over ``N`` orders (entries and reduceOnly exits alternate, so the
account stays flat); the same with the user stream muted (REST polling fallback, ``poll_interval_s``
0.1 s); and the trader's path, ``VenueAccount.open`` (decision → venue position check → order →
fill seen → journaled → protective stop placed) and ``close`` (reduceOnly, then the stop cancelled), over
``N_TRADER`` round trips; and the periodic reconcile (``VenueAccount.check``: open orders and algo orders of the
journal's symbols, positionRisk, account; issue 29), its time and REST weight per cycle (``X-MBX-USED-WEIGHT-1M``
before and after), flat and in a position, over ``N_RECONCILE`` cycles each. Goal: fill seen p99 < 50 ms
with the stream on a 2-core machine; the assertion guards at
100 ms because the shared machine's load (load average 5-7 on 2 cores) moves the tail.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time

import numpy as np
import psutil

from prod.execution import Credentials, ExecutionClient, OrderIntent, client_order_id
from prod.execution.rest import OrderRestClient
from tests.helpers import REPO_ROOT, Proc, free_port, port_open, wait_until

N = 300
N_FALLBACK = 40
N_TRADER = 100
N_RECONCILE = 10


def _p(xs, q):
    return float(np.percentile(np.asarray(xs, dtype=float), q))


async def _round_trips(port: int, n: int, tag: str) -> tuple[list[float], list[float]]:
    rest = OrderRestClient(f"http://127.0.0.1:{port}", Credentials("dolphin-sim-key", "dolphin-sim-secret"))
    c = ExecutionClient(rest, f"ws://127.0.0.1:{port}", stream_silence_s=0.2)
    await c.start()
    ack, fill = [], []
    try:
        qty = c.format_qty("ETHUSDT", 0.2)
        for k in range(n):
            side = "SELL" if k % 2 == 0 else "BUY"
            cid = client_order_id("bench", tag, k, side, f"{time.time_ns()}")
            t0 = time.perf_counter()
            o = await c.submit(OrderIntent(cid, "ETHUSDT", side, qty, reduce_only=side == "BUY"))
            t1 = time.perf_counter()
            o = await c.wait_final(cid, 5)
            t2 = time.perf_counter()
            assert o.status.value == "FILLED", (o.status, o.reason)
            ack.append((t1 - t0) * 1e3)
            fill.append((t2 - t0) * 1e3)
    finally:
        await c.stop()
        await rest.close()
    return ack, fill


def _trader_round_trips(port: int, tmp, n: int) -> tuple[list[float], list[float]]:
    """The trader's path: ``VenueAccount.open`` / ``close`` (venue position check, submit, fill seen, journal)."""
    from prod.execution import ExecConfig
    from prod.trading.journal import Journal
    from prod.trading.accounts import Book
    from prod.trading.venue_account import VenueAccount
    journal = Journal.open(tmp / "journal.sqlite", tmp / "audit.log")
    cfg = ExecConfig(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", fill_timeout_s=5.0,
                     stream_silence_s=0.2)
    acct = VenueAccount.connect(cfg, journal, 1_000_000.0,
                                creds=Credentials("dolphin-sim-key", "dolphin-sim-secret"))
    acct.roll_day("2026-12-02")
    opens, closes = [], []
    try:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/premiumIndex?symbol=ETHUSDT") as r:
            px = float(json.loads(r.read())["markPrice"])
        for k in range(n):
            book = Book(px * 0.9999, px * 1.0001, time.time())
            t0 = time.perf_counter()
            fill = acct.open(k + 1, "ETHUSDT", -1, 600.0, book, px, time.time(), 1000 + 2 * k)
            t1 = time.perf_counter()
            acct.close("FIXED_TP", book, px, time.time(), 1001 + 2 * k)
            t2 = time.perf_counter()
            assert fill["status"] == "FILLED" and acct.position is None
            assert fill["protective_stop"] is not None
            opens.append((t1 - t0) * 1e3)
            closes.append((t2 - t1) * 1e3)
            px = fill["price"]
        recon = {"flat": _reconcile_cycles(acct), "in_position": None}
        book = Book(px * 0.9999, px * 1.0001, time.time())
        acct.open(N_TRADER + 1, "ETHUSDT", -1, 600.0, book, px, time.time(), 5000)
        recon["in_position"] = _reconcile_cycles(acct)
        acct.close("FIXED_TP", book, px, time.time(), 5001)
    finally:
        acct.stop()
        journal.close()
    return opens, closes, recon


def _reconcile_cycles(acct) -> dict:
    """``N_RECONCILE`` reconcile cycles: ms p50/p99 and REST weight per cycle (all must agree: no mismatch)."""
    ms, weight = [], []
    for _ in range(N_RECONCILE):
        rep = acct.check()
        assert rep["mismatches"] == {}, rep
        ms.append(rep["ms"])
        weight.append(rep["weight"])
    return {"cycles": N_RECONCILE, "ms_p50": statistics.median(ms), "ms_p99": _p(ms, 99),
            "weight_per_cycle_median": statistics.median(weight), "weight_per_cycle_max": max(weight)}


def test_bench_exec_decision_to_fill(tmp_path):
    port = free_port()
    proc = Proc("standins.venue_sim", ["--port", str(port), "--seed", "42", "--symbols", "80", "--klines-1s", "0",
                                       "--log-level", "WARNING"], tmp_path / "sim.log").start()
    try:
        wait_until(lambda: port_open(port) or proc.p.poll() is not None, 60, what="venue_sim")
        assert proc.p.poll() is None, proc.log_text()
        ack, fill = asyncio.run(_round_trips(port, N, "stream"))
        t_open, t_close, recon = _trader_round_trips(port, tmp_path, N_TRADER)
        import urllib.request
        req = urllib.request.Request(f"http://127.0.0.1:{port}/sim/admin/fault", method="POST",
                                     data=json.dumps({"kind": "user_stream_drop", "mode": "mute",
                                                      "duration_s": 600}).encode())
        urllib.request.urlopen(req, timeout=5).read()
        fb_ack, fb_fill = asyncio.run(_round_trips(port, N_FALLBACK, "fallback"))
        result = {
            "benchmark": "decision -> ack -> fill seen, MARKET 0.2 ETHUSDT, simulator on loopback",
            "orders": N, "ack_ms_p50": statistics.median(ack), "ack_ms_p99": _p(ack, 99),
            "fill_seen_ms_p50": statistics.median(fill), "fill_seen_ms_p99": _p(fill, 99),
            "fallback_orders": N_FALLBACK, "fallback_fill_seen_ms_p50": statistics.median(fb_fill),
            "fallback_fill_seen_ms_p99": _p(fb_fill, 99), "goal_fill_seen_ms_p99": 50.0,
            "trader_round_trips": N_TRADER, "trader_open_ms_p50": statistics.median(t_open),
            "trader_open_ms_p99": _p(t_open, 99), "trader_close_ms_p50": statistics.median(t_close),
            "trader_close_ms_p99": _p(t_close, 99),
            "reconcile_flat": recon["flat"], "reconcile_in_position": recon["in_position"],
            "machine_cores": psutil.cpu_count(), "ts": time.time(),
        }
        out = REPO_ROOT / "run_logs" / "bench_exec.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        assert result["fill_seen_ms_p99"] < 100.0
        assert result["fallback_fill_seen_ms_p99"] < 1500.0
        assert result["trader_open_ms_p99"] < 250.0          # position check + order + fill seen + journal
    finally:
        proc.stop()
