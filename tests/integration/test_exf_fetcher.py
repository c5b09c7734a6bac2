"""exf_fetcher against the venue simulator and the embedded member: per-indicator failure handling."""
from __future__ import annotations

import time

import pyarrow.parquet as pq

from prod.bus import maps
from prod.runtime import Bus
from tests.helpers import Proc, free_port, wait_until


def test_failing_endpoints_degrade_only_their_indicator(hz_member, venue, tmp_path, settings_for):
    _, hz_port = hz_member
    _, vport = venue
    dead = free_port()                                 # nothing listens here: connection refused
    t_start = time.time()
    proc = Proc("services.exf_fetcher",
                ["--hz-members", f"127.0.0.1:{hz_port}", "--venue-rest", f"http://127.0.0.1:{vport}",
                 "--data-dir", str(tmp_path / "data"), "--fng-url", f"http://127.0.0.1:{dead}",
                 "--dvol-url", f"http://127.0.0.1:{hz_port}",   # not HTTP at all: a garbage answer
                 "--push-s", "0.5", "--history-s", "1", "--retries", "1", "--timeout-s", "2",
                 "--funding-interval-s", "1", "--warmup", "3"], tmp_path / "exf.log").start()
    bus = Bus(settings_for(hz_port=hz_port), "t_exf").start()
    try:
        assert bus.wait_connected(30)
        p = wait_until(lambda: bus.get(maps.EXF), 30, what="exf_latest")
        assert maps.EXF.written_at(p) >= t_start + 3    # --warmup held back the partial first payload
        p = wait_until(lambda: (x := bus.get(maps.EXF)).indicators["fng"]["failures"]
                       >= 1 and x.indicators["dvol_btc"]["failures"] >= 1 and x, 20, what="both failures")
        ind = p.indicators
        assert ind["funding_btc"]["status"] == "OK" and ind["taker"]["status"] == "OK"
        assert ind["fng"]["status"] == "MISSING" and ind["dvol_btc"]["status"] == "MISSING"
        assert p.value("fng") is None and p.value("dvol_btc") is None
        assert isinstance(p.value("funding_btc"), float) and isinstance(p.value("taker"), float)
        assert 0 <= p.value("taker") < 100 and p.n_ok == 2
        assert "Cannot connect" in ind["fng"]["error"] or "Connect" in ind["fng"]["error"]
        # funding keeps refreshing on its own schedule while the others fail
        ts0 = ind["funding_btc"]["fetched_at"]
        wait_until(lambda: bus.get(maps.EXF).indicators["funding_btc"]["fetched_at"] > ts0, 10,
                   what="funding refetched")
        parts = wait_until(lambda: list((tmp_path / "data" / "exf").glob("date=*/part-*.parquet")), 10,
                           what="exf history")
        t = pq.read_table(parts[0]).to_pylist()
        assert t and t[0]["fng"] is None and t[0]["funding_btc"] == t[0]["funding_btc"] and t[0]["fng_status"] == "MISSING"
        hb = bus.get(maps.HEARTBEATS, "exf_fetcher")
        assert hb.pid == proc.p.pid and hb.extra["statuses"]["taker"] == "OK" and hb.extra["bus_failures"] == 0
    finally:
        proc.stop()
        bus.close()
    assert "stopped cleanly" in proc.log_text()
    assert "fng: fetch" in proc.log_text()
