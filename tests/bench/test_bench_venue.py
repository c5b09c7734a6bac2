"""Benchmark: the simulator serving all symbols' depth5@500ms + bookTicker to three connections.

Writes run_logs/bench_venue.json: messages/s delivered (sum over the 3 connections) and the simulator
process's CPU share of one core, each as median and p99 over 1-second windows, plus the parse rate
of prod.venue's routing/parsing path. Goal: CPU share < 30 % of one core at speed 1.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time

import numpy as np
import orjson
import psutil
from websockets.asyncio.client import connect

from prod.venue.schemas import parse_stream_payload
from tests.helpers import REPO_ROOT, Proc, free_port, port_open, wait_until

WINDOWS = 20
CONNS = 3


def _p99(xs):
    return float(np.percentile(np.asarray(xs, dtype=float), 99))


def test_bench_venue_full_universe(tmp_path):
    port = free_port()
    proc = Proc("standins.venue_sim", ["--port", str(port), "--seed", "42", "--speed", "1", "--stream-cap", "400",
                                       "--log-level", "WARNING"], tmp_path / "sim.log").start()
    try:
        wait_until(lambda: port_open(port) or proc.p.poll() is not None, 60, what="venue_sim")
        assert proc.p.poll() is None, proc.log_text()
        info = json.loads(__import__("urllib.request").request.urlopen(
            f"http://127.0.0.1:{port}/fapi/v1/exchangeInfo").read())
        syms = [s["symbol"].lower() for s in info["symbols"]]
        assert len(syms) >= 540
        groups = [syms[k::CONNS] for k in range(CONNS)]
        counts = [0] * CONNS
        samples: list[str] = []

        async def reader(k: int, stop: asyncio.Event) -> None:
            streams = [f"{s}@depth5@500ms" for s in groups[k]] + [f"{s}@bookTicker" for s in groups[k]]
            async with connect(f"ws://127.0.0.1:{port}/stream?streams=" + "/".join(streams[:100]),
                               max_size=1 << 24) as ws:
                for j in range(100, len(streams), 100):
                    await ws.send(json.dumps({"method": "SUBSCRIBE", "params": streams[j:j + 100], "id": j}))
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 1.0)
                    except asyncio.TimeoutError:
                        continue
                    counts[k] += 1
                    if len(samples) < 5000:
                        samples.append(raw)

        async def body():
            stop = asyncio.Event()
            tasks = [asyncio.create_task(reader(k, stop)) for k in range(CONNS)]
            ps = psutil.Process(proc.p.pid)
            await asyncio.sleep(3.0)            # warm-up: subscriptions settle
            cpu, rate = [], []
            for _ in range(WINDOWS):
                c0, n0, t0 = ps.cpu_times(), sum(counts), time.monotonic()
                await asyncio.sleep(1.0)
                c1, n1, t1 = ps.cpu_times(), sum(counts), time.monotonic()
                cpu.append(((c1.user - c0.user) + (c1.system - c0.system)) / (t1 - t0) * 100)
                rate.append((n1 - n0) / (t1 - t0))
            stop.set()
            await asyncio.gather(*tasks)
            return cpu, rate

        cpu, rate = asyncio.run(body())
        # parse cost of the client path (envelope decode + routing + typed event)
        samples = [r for r in samples if r.startswith('{"stream"')]
        t0 = time.perf_counter()
        for raw in samples:
            env = orjson.loads(raw)
            parse_stream_payload(env["stream"], env["data"])
        parse_us = (time.perf_counter() - t0) / max(1, len(samples)) * 1e6
        result = {
            "benchmark": "venue_sim full universe: depth5@500ms + bookTicker for every symbol, 3 connections, speed 1",
            "n_symbols": len(syms), "connections": CONNS, "streams": 2 * len(syms), "windows_s": WINDOWS,
            "messages_per_s_median": statistics.median(rate), "messages_per_s_p99": _p99(rate),
            "sim_cpu_pct_of_one_core_median": statistics.median(cpu), "sim_cpu_pct_of_one_core_p99": _p99(cpu),
            "client_parse_us_per_msg": parse_us, "goal_cpu_pct": 30.0,
            "machine_cores": psutil.cpu_count(), "ts": time.time(),
        }
        out = REPO_ROOT / "run_logs" / "bench_venue.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        assert result["messages_per_s_median"] > 1000       # 2 depth msgs/s x >= 540 symbols alone
        assert result["sim_cpu_pct_of_one_core_median"] < 30.0
    finally:
        proc.stop()
