"""The README's first command as a new user types it: ``make run`` with no options on the default ports.

The test runs it in a temporary copy of the repository (its own ``run/``, ``run_logs/`` and ``data/``; the
``.venv`` is this one's), waits for ``dolphin:event_trader`` RUNNING with a fresh heartbeat on the bus, checks
that a second ``make run`` says so and changes nothing, then ``make stop``. A taken port is refused by name.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prod.bus import maps
from prod.bus.client import make_client
from prod.settings import load_settings
from tests.helpers import REPO_ROOT, port_open, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
DEFAULT_PORTS = {5701: "hz_member", 8765: "venue_sim", 4200: "prefect", 8088: "web_console"}
SKIP_DIRS = {".venv", ".git", "run", "run_logs", "data", ".cache", "__pycache__", ".pytest_cache", ".hypothesis",
             "build", "node_modules"}


def copy_repo(dst: Path) -> Path:
    """Copy the working tree (mtimes kept, so make sees the shared venv's install as current) and link .venv."""
    def ignore(_d, names):
        return [n for n in names if n in SKIP_DIRS or n.endswith(".egg-info")]
    shutil.copytree(REPO_ROOT, dst, ignore=ignore, symlinks=True)
    (dst / "run_logs").mkdir()
    (dst / ".venv").symlink_to(REPO_ROOT / ".venv")
    return dst


def user_env() -> dict:
    """The environment a user's shell would have: none of the test process's DOLPHIN_* overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOLPHIN_")}
    env["DOLPHIN_METRICS_PORT_BASE"] = "0"     # the suite never binds the metrics ports a developer's mesh holds
    return env


def make(repo: Path, target: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", target], cwd=repo, capture_output=True, text=True,
                          timeout=timeout, env=user_env())


def sv_status(repo: Path) -> dict[str, str]:
    out = subprocess.run([str(repo / ".venv" / "bin" / "supervisorctl"), "-c", str(repo / "supervisor" /
                          "dolphin-supervisord.conf"), "status"], capture_output=True, text=True, timeout=30).stdout
    return {p[0]: p[1] for p in (line.split() for line in out.splitlines()) if len(p) >= 2}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    busy = {p: name for p, name in DEFAULT_PORTS.items() if port_open(p)}
    assert not busy, f"the default ports must be free for the README's `make run`: {busy} in use"
    r = copy_repo(tmp_path_factory.mktemp("fresh") / "dolphin")
    # `make run` in the copy must not reinstall: that would repoint the shared venv's editable install at the
    # copy, deleted after the test (`make test` refreshes the stamp first; a bare pytest run may not have)
    stale = subprocess.run(["make", "-q", ".venv/.installed-stamp"], cwd=r, capture_output=True, env=user_env())
    assert stale.returncode == 0, (f"{REPO_ROOT}/.venv is older than pyproject.toml: run `make venv` there before "
                                   "this test (`make test` does)")
    yield r
    if (r / "run" / "supervisor.sock").exists():
        make(r, "stop", timeout=120)


def test_make_run_trades_on_the_committed_config_then_make_stop(repo):
    t0 = time.time()
    up = make(repo, "run", timeout=420)
    out = up.stdout + up.stderr
    assert up.returncode == 0, out
    assert "mesh is GREEN" in out and "trader started" in out, out
    st = sv_status(repo)
    assert st.get("dolphin:event_trader") == "RUNNING", st
    assert st.get("dolphin:scan_bridge") == "STOPPED", st
    # the trader trades through the simulator's order API with the key `make run` generated for both
    key_file = repo / "run" / "venue_api_key"
    assert key_file.is_file() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    client = make_client(load_settings(env={}, hz_members=("127.0.0.1:5701",)), name="make-run-test")
    try:
        hb = client.get_map(maps.HEARTBEAT).blocking()

        def trader_beat():
            raw = hb.get("event_trader")
            return raw is not None and json.loads(raw)["ts"] > t0
        wait_until(trader_beat, 60, interval=0.5, what="a fresh event_trader heartbeat on DOLPHIN_HEARTBEAT")
        state = client.get_map(maps.STATE_BLUE).blocking()
        wait_until(lambda: state.get("latest") is not None, 60, interval=0.5, what="DOLPHIN_STATE_BLUE[latest]")
    finally:
        client.shutdown()
    log = (repo / "run_logs" / "supervisor" / "event_trader.log").read_text(errors="replace")
    assert "execution: venue via http://127.0.0.1:8765" in log, log[-3000:]

    # a second `make run` says so and changes nothing
    pids_before = subprocess.run([str(repo / ".venv" / "bin" / "supervisorctl"), "-c",
                                  str(repo / "supervisor" / "dolphin-supervisord.conf"), "pid", "all"],
                                 capture_output=True, text=True, timeout=30).stdout
    again = make(repo, "run", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "mesh already running" in again.stdout, again.stdout
    pids_after = subprocess.run([str(repo / ".venv" / "bin" / "supervisorctl"), "-c",
                                 str(repo / "supervisor" / "dolphin-supervisord.conf"), "pid", "all"],
                                capture_output=True, text=True, timeout=30).stdout
    assert pids_after == pids_before

    stop = make(repo, "stop", timeout=180)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "mesh stopped" in stop.stdout, stop.stdout
    wait_until(lambda: not any(port_open(p) for p in DEFAULT_PORTS), 30, what="default ports released")


@pytest.mark.parametrize("port", [8088, 4200, 5701])
def test_make_run_on_a_taken_port_names_it_and_starts_nothing(repo, port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        res = make(repo, "run", timeout=120)
    err = res.stderr
    assert res.returncode != 0, res.stdout + err
    assert f"port {port} (needed by {DEFAULT_PORTS[port]})" in err, err
    assert f"pid {os.getpid()}" in err and Path(sys.executable).name in err, err   # who holds it
    assert "nothing started" in err
    assert not (repo / "run" / "supervisor.sock").exists()
    assert not any(port_open(p) for p in DEFAULT_PORTS if p != port)
