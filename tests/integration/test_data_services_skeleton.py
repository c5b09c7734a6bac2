"""The data services on the service skeleton: one-line config errors, working without a member, SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from tests.helpers import REPO_ROOT, Proc, free_port, wait_until


@pytest.mark.parametrize("module, env, message", [
    ("services.acb_processor", {"DOLPHIN_ACB_LOCK_TIMEOUT_S": "soon"},
     "acb_processor: configuration error: acb_processor: DOLPHIN_ACB_LOCK_TIMEOUT_S='soon': "
     "could not convert string to float: 'soon'"),
    ("services.exf_fetcher", {"DOLPHIN_EXF_RETRIES": "2.5"},
     "exf_fetcher: configuration error: exf_fetcher: DOLPHIN_EXF_RETRIES='2.5': "
     "invalid literal for int() with base 10: '2.5'"),
    ("services.obf_universe", {"DOLPHIN_OBF_WARMUP_S": "nan"},
     "obf_universe: configuration error: obf_universe: DOLPHIN_OBF_WARMUP_S='nan': not a finite number: 'nan'"),
    ("services.obf_universe", {"DOLPHIN_OBF_REFRESH_S": "9"},
     "obf_universe: configuration error: obf_universe: obf_universe config: out-of-range value for "
     "['refresh_s'] (refresh_s must be in (0, 5], cadences > 0)"),
])
def test_a_bad_variable_is_one_config_error_line_and_exit_2(module, env, message):
    r = subprocess.run([sys.executable, "-m", module], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env})
    assert r.returncode == 2
    assert r.stderr.strip() == message
    assert r.stdout == ""


def test_exf_fetcher_without_a_member_keeps_fetching_and_stops_on_sigterm(venue, tmp_path):
    """No member: pushes are skipped and counted, indicators and the Parquet history go on; SIGTERM → exit 0."""
    _, vport = venue
    proc = Proc("services.exf_fetcher",
                ["--venue-rest", f"http://127.0.0.1:{vport}", "--data-dir", str(tmp_path / "data"),
                 "--fng-url", f"http://127.0.0.1:{vport}", "--dvol-url", f"http://127.0.0.1:{vport}",
                 "--push-s", "0.5", "--history-s", "1"], tmp_path / "exf.log",
                env={"DOLPHIN_HZ_MEMBERS": f"127.0.0.1:{free_port()}", "DOLPHIN_EXF_HZ_CONNECT_TIMEOUT_S": "1"}).start()
    try:
        parts = wait_until(lambda: list((tmp_path / "data" / "exf").glob("date=*/part-*.parquet")), 30,
                           what="exf history written without a member")
        rows = pq.read_table(parts[0]).to_pylist()
        assert rows and rows[0]["funding_btc_status"] == "OK" and isinstance(rows[0]["funding_btc"], float)
        wait_until(lambda: "cannot reach Hazelcast" in proc.log_text(), 20, what="a failed connection attempt")
        assert "bus push skipped (not connected)" in proc.log_text()
        t0 = time.monotonic()
        proc.p.send_signal(signal.SIGTERM)
        assert proc.p.wait(10) == 0
        assert time.monotonic() - t0 < 3.0
    finally:
        proc.kill()
    text = proc.log_text()
    assert "Traceback" not in text and "stopped cleanly" in text
    start = next(line for line in text.splitlines() if "exf_fetcher starting" in line)
    cfg = json.loads(start.split(": ", 2)[2])               # the effective configuration, one JSON line
    assert cfg["push_s"] == 0.5 and cfg["hz_connect_timeout_s"] == 1.0


def test_obf_universe_without_a_member_fails_fast_into_file_only_mode_and_stops_on_sigterm(venue, tmp_path):
    """No member from the start: writes fail at once (BusUnavailable), the breaker opens, the file goes on."""
    _, vport = venue
    latest = tmp_path / "data" / "ob_cache" / "latest_ob_features.json"
    proc = Proc("services.obf_universe",
                ["--venue-ws", f"ws://127.0.0.1:{vport}", "--venue-rest", f"http://127.0.0.1:{vport}",
                 "--data-dir", str(tmp_path / "data"), "--max-symbols", "20", "--warmup-s", "1", "--file-s", "0.5",
                 "--bar-s", "0.5"], tmp_path / "obf.log",
                env={"DOLPHIN_HZ_MEMBERS": f"127.0.0.1:{free_port()}", "DOLPHIN_OBF_HZ_CONNECT_TIMEOUT_S": "1",
                     "DOLPHIN_OBF_BREAKER_BASE_S": "0.5", "DOLPHIN_OBF_BREAKER_MAX_S": "1"}).start()
    try:
        def file_only():
            body = json.loads(latest.read_text())
            st = body["_stats"]
            return body if body["_published"] and body["_n_assets"] == 20 and st["breaker"]["opened"] >= 1 \
                and st["breaker"]["probes"] >= 2 else None
        body = wait_until(file_only, 30, what="file-only mode with the breaker open and probing")
        assert body["_stats"]["bus_writes"] == 0 and body["_stats"]["books"] > 0
        assert "circuit breaker OPENED" in proc.log_text() and "cannot reach Hazelcast" in proc.log_text()
        t0 = time.monotonic()
        proc.p.send_signal(signal.SIGTERM)
        assert proc.p.wait(15) == 0
        assert time.monotonic() - t0 < 5.0
    finally:
        proc.kill()
    text = proc.log_text()
    assert "Traceback" not in text and "stopped cleanly" in text
