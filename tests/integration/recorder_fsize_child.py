"""Child process of test_recorder_parity: a Recorder whose writes fail in the kernel for a while.

``RLIMIT_FSIZE`` (this process only; CPython ignores SIGXFSZ) set just above the files' sizes makes the next
appends fail with ``EFBIG`` part-way, as a full disk does; lifting it is the disk freeing again. Prints one JSON
line with what the recorder and the files showed.  Usage: ``python -m tests.integration.recorder_fsize_child
DIR {transient|persistent}``.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from prod.trading.recording import EVENTS_FILE, SCANS_FILE, Recorder


def until(cond, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise SystemExit("timed out waiting for the recorder")
        time.sleep(0.005)


def main() -> None:
    parent, mode = Path(sys.argv[1]), sys.argv[2]
    rec = Recorder.start(parent, time.time, {"execution": "paper"}, max_held=8 if mode == "persistent" else 100_000)
    n = 0

    def burst(k: int) -> None:
        nonlocal n
        for _ in range(k):
            n += 1
            rec.event("acb", {"boost": 1.0 + n / 1000, "beta": float("nan") if n == 3 else 0.2})
            rec.begin_scan({"scan_number": n, "pad": "x" * 200}, float(n))
            rec.end_scan()

    burst(10)
    until(lambda: rec.scans == 10 and rec.events == 10)
    ev, sc = rec.dir / EVENTS_FILE, rec.dir / SCANS_FILE
    before = {"events": ev.stat().st_size, "scans": sc.stat().st_size}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (before["events"] + 30, hard))   # the next event line fits 30 bytes
    try:
        burst(20)                      # the decision thread goes on: nothing raises here
        until(lambda: rec.write_errors >= 2 or rec.failed is not None)
        during = {"events": ev.stat().st_size, "scans": sc.stat().st_size, "written": rec.events + rec.scans}
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    burst(5)
    rec.close({"capital": 1.0}, drain_s=60.0)
    print(json.dumps({"dir": str(rec.dir), "before": before, "during": during, "scans": rec.scans,
                      "events": rec.events, "write_errors": rec.write_errors, "held_max": rec.held_max,
                      "failed": rec.failed, "end": (rec.dir / "end.json").exists(), "pid": os.getpid()}))


if __name__ == "__main__":
    main()
