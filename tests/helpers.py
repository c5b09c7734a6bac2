"""Shared test helpers: bounded condition waits, free ports, subprocess services."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
# real exchange data beside the repository, if present (DOLPHIN_SHARED_REAL points elsewhere, e.g. from a worktree)
SHARED_REAL = Path(os.environ.get("DOLPHIN_SHARED_REAL") or REPO_ROOT.parent / "shared" / "data" / "real")


def wait_until(pred: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> object:
    """Poll ``pred`` until it returns a truthy value (returned) or raise AssertionError at timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as exc:  # noqa: BLE001
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


def free_port() -> int:
    """A port that can be bound now, below the ephemeral range (see :func:`free_port_block`)."""
    return free_port_block(1)


_HANDED_OUT: set[int] = set()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; the IANA range elsewhere)."""
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 49152, 65535


def _port_range() -> tuple[int, int]:
    """This process's slice of [20000, ephemeral start): under pytest-xdist each worker has its own.

    A port a test picked is free for a moment only (until its service binds; while a killed member restarts
    on it): two workers drawing from one range could both pick it. Child processes inherit the worker's
    slice through ``PYTEST_XDIST_WORKER``.
    """
    lo, hi = 20000, min(ephemeral_range()[0], 65536)
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1:
        span = (hi - lo) // int(count)
        lo += int(worker[2:]) * span
        hi = lo + span
    return lo, hi


def free_port_block(n: int, tries: int = 200) -> int:
    """First of ``n`` consecutive ports that can all be bound now, chosen below the ephemeral range.

    Members that listen on ``base + i`` must not be picked from the ephemeral range: between the pick and
    the member's bind, any process's outgoing connection can be given one of those ports as its local
    port (a cluster member bind then fails with "Address already in use").
    """
    import random
    lo, hi = _port_range()
    hi -= n
    for _ in range(tries):
        base = random.randrange(lo, hi)
        if any(base + i in _HANDED_OUT for i in range(n)):
            continue                     # this process gave it out already (maybe not bound yet)
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            _HANDED_OUT.update(range(base, base + n))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError(f"no {n} consecutive free ports in [{lo}, {hi})")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Proc:
    """A service started as ``python -m module args`` from the repository root, logs to a file."""

    def __init__(self, module: str, args: list[str], log_path: Path, env: dict | None = None):
        self.module, self.args, self.log_path = module, args, log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.p: subprocess.Popen | None = None

    def start(self) -> "Proc":
        self._log = open(self.log_path, "ab")
        self.p = subprocess.Popen([sys.executable, "-m", self.module, *self.args], cwd=REPO_ROOT,
                                  stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def kill(self) -> None:
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)

    def stop(self) -> None:
        if self.p and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def start_listening(module: str, args: list[str], log_path: Path, port: int, timeout: float = 60.0,
                    env: dict | None = None) -> Proc:
    """Start ``python -m module args`` and wait until it listens on ``port`` (fail with its log if it dies)."""
    proc = Proc(module, args, log_path, env=env).start()
    try:
        wait_until(lambda: port_open(port) or proc.p.poll() is not None, timeout, what=f"{module} port {port}")
        assert proc.p.poll() is None, proc.log_text()
    except BaseException:
        proc.stop()
        raise
    return proc


def start_venue(tmp_dir: Path, *extra: str, name: str = "venue_sim", seed: int | None = 42) -> tuple[Proc, int]:
    """Start the venue simulator on a free loopback port; returns (Proc, port). Extra flags are appended;
    ``seed=None`` passes no ``--seed`` (the simulator's own default)."""
    port = free_port()
    seed_args = ["--seed", str(seed)] if seed is not None else []
    proc = start_listening("standins.venue_sim", ["--host", "127.0.0.1", "--port", str(port), *seed_args, *extra],
                           tmp_dir / f"{name}.log", port)
    return proc, port


@contextlib.contextmanager
def running_venue(tmp_dir: Path, *extra: str, name: str = "venue_sim", seed: int | None = 42):
    """Context manager around :func:`start_venue` that stops the simulator on exit."""
    proc, port = start_venue(tmp_dir, *extra, name=name, seed=seed)
    try:
        yield proc, port
    finally:
        proc.stop()


def venue_admin(port: int, path: str, body: dict | None = None):
    """GET (no body) or POST a JSON body to the simulator on ``port``; returns the decoded JSON reply."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())
