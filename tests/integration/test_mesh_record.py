"""The mesh record (``run/active.json``) with a real supervisord: ``status``/``logs``/``down`` without options
find the recorded mesh, ``down`` clears the entry, a stale entry is reported and cleared, not trusted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from prod.runtime import mesh_record
from ops import mesh
from tests.helpers import REPO_ROOT
from tests.integration.tiny_supervisor import TinySupervisor


def _entry(sv: TinySupervisor, pid: int) -> dict:
    return {"instance": str(sv.root), "conf": str(sv.conf), "socket": str(sv.socket), "pidfile": str(sv.pidfile),
            "logdir": str(sv.logdir), "run_logs": str(sv.root / "run_logs"), "ports": [], "pid": pid,
            "profile": "embedded", "started_at": time.time()}


def _mesh(cmd: str, record, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, mesh_record.RECORD_ENV: str(record)}
    env.pop("DOLPHIN_PROFILE", None)
    return subprocess.run([sys.executable, "-m", "ops.mesh", cmd, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.fixture
def sv(tmp_path):
    s = TinySupervisor(tmp_path / "inst").start()
    yield s
    s.shutdown()


def test_status_logs_and_down_find_the_recorded_mesh_without_options(sv, tmp_path):
    record = tmp_path / "active.json"
    pid = sv.pid()
    mesh_record.add(_entry(sv, pid), record)

    st = _mesh("status", record)
    assert st.returncode == 0, st.stdout + st.stderr
    assert f"== mesh {sv.root}" in st.stdout and "dolphin_data:exf_fetcher" in st.stdout and "RUNNING" in st.stdout
    assert f"logs: {sv.logdir}/<program>.log" in st.stdout

    lg = _mesh("logs", record)
    assert lg.returncode == 0 and f"logs in {sv.logdir}" in lg.stdout and "supervisord.log" in lg.stdout
    tail = _mesh("logs", record, "dolphin_data:scanner")
    assert tail.returncode == 0 and f"-- {sv.logdir}/scanner.log" in tail.stdout
    assert _mesh("logs", record, "nope").returncode == 2

    dn = _mesh("down", record)
    assert dn.returncode == 0, dn.stdout + dn.stderr
    assert f"mesh stopped ({sv.root})" in dn.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert json.loads(record.read_text()) == {"meshes": {}}
    assert _mesh("status", record).returncode == 3


def test_a_stale_record_is_reported_cleared_and_not_trusted(sv, tmp_path):
    record = tmp_path / "active.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    stale = {**_entry(sv, dead.pid), "conf": str(tmp_path / "gone.conf"), "instance": str(tmp_path / "gone")}
    mesh_record.add(stale, record)
    mesh_record.add({**_entry(sv, os.getpid()), "conf": str(tmp_path / "recycled.conf")}, record)  # live pid, not ours
    mesh_record.add(_entry(sv, sv.pid()), record)

    live = mesh_record.live_records(record, quiet=True)
    assert [e["conf"] for e in live] == [str(sv.conf)]
    assert list(json.loads(record.read_text())["meshes"]) == [str(sv.conf)]

    mesh_record.add(stale, record)
    st = _mesh("status", record)
    assert st.returncode == 0 and f"stale record cleared: {tmp_path / 'gone'}" in st.stderr
    assert str(tmp_path / "gone") not in st.stdout


def test_concurrent_adds_keep_every_entry(tmp_path):
    record = tmp_path / "active.json"
    code = ("import sys; from pathlib import Path; from prod.runtime import mesh_record as r; "
            "e = dict(instance='i', conf=sys.argv[1], socket='s', pidfile='p', logdir='l', run_logs='r', ports=[], "
            "pid=1, profile='embedded', started_at=0.0); r.add(e, Path(sys.argv[2]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, f"c{i}", str(record)], cwd=REPO_ROOT) for i in range(6)]
    assert all(p.wait(60) == 0 for p in procs)
    assert sorted(json.loads(record.read_text())["meshes"]) == [f"c{i}" for i in range(6)]


def test_paths_from_record_round_trips_what_up_records(tmp_path):
    paths = mesh.MeshPaths(conf=tmp_path / "c.conf", socket=tmp_path / "s.sock", pidfile=tmp_path / "p.pid",
                           logdir=tmp_path / "logs", run_logs=tmp_path / "rl", ports=(1, 2, 3), instance=tmp_path,
                           profile="cluster", env={"DOLPHIN_VENUE_API_SECRET": "s3cret"})
    entry = mesh.record_entry(paths, 42, 1.5)
    assert "s3cret" not in json.dumps(entry)                  # no secrets in the record
    back = mesh.paths_from_record(entry)
    assert (back.conf, back.socket, back.logdir, back.run_logs, back.ports, back.profile, back.instance) == \
        (paths.conf, paths.socket, paths.logdir, paths.run_logs, paths.ports, "cluster", tmp_path)
