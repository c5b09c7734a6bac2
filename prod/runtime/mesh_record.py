"""The record of the running meshes: ``run/active.json``, written by ``ops.mesh up``.

Design notes: ``docs/design/prod.runtime.md``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from prod.runtime import atomic_write_json
from prod.settings import REPO_ROOT

RECORD_ENV = "DOLPHIN_MESH_RECORD"
FIELDS = ("instance", "conf", "socket", "pidfile", "logdir", "run_logs", "ports", "pid", "profile", "started_at")


def record_path() -> Path:
    """Return the record file (``run/active.json`` of the repository, or ``$DOLPHIN_MESH_RECORD``)."""
    env = os.environ.get(RECORD_ENV)
    return Path(env) if env else REPO_ROOT / "run" / "active.json"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read(path: Path) -> dict[str, dict]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        print(f"mesh: the mesh record {path} is unreadable ({exc}); ignoring it", file=sys.stderr)
        return {}
    meshes = obj.get("meshes") if isinstance(obj, dict) else None
    if not isinstance(meshes, dict):
        print(f"mesh: the mesh record {path} has no \"meshes\" object; ignoring it", file=sys.stderr)
        return {}
    return {k: v for k, v in meshes.items() if isinstance(v, dict) and all(f in v for f in FIELDS)}


def _write(path: Path, meshes: dict[str, dict]) -> None:
    atomic_write_json(path, {"meshes": meshes})


def add(entry: dict[str, Any], path: Path | None = None) -> None:
    """Record one running mesh (replacing an entry with the same config)."""
    missing = [f for f in FIELDS if f not in entry]
    if missing:
        raise ValueError(f"mesh record entry lacks {missing}")
    path = path or record_path()
    with _locked(path):
        meshes = _read(path)
        meshes[str(entry["conf"])] = dict(entry)
        _write(path, meshes)


def remove(conf: str | Path, path: Path | None = None) -> bool:
    """Drop the entry of ``conf``; return True when there was one."""
    path = path or record_path()
    with _locked(path):
        meshes = _read(path)
        gone = meshes.pop(str(conf), None) is not None
        if gone:
            _write(path, meshes)
    return gone


def supervisord_alive(pid: Any, conf: str) -> bool:
    """True when ``pid`` is a live supervisord started with ``conf`` (not a recycled pid)."""
    import psutil
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmd = proc.cmdline()
    except psutil.Error:
        return False
    return any("supervisord" in os.path.basename(c) for c in cmd) and str(conf) in cmd


def live_records(path: Path | None = None, *, quiet: bool = False) -> list[dict]:
    """Return the recorded meshes whose supervisord runs; report and remove the stale ones."""
    path = path or record_path()
    with _locked(path):
        meshes = _read(path)
        stale = {k: v for k, v in meshes.items() if not supervisord_alive(v.get("pid"), v["conf"])}
        if stale:
            for v in stale.values():
                if not quiet:
                    print(f"mesh: stale record cleared: {v['instance']} (supervisord pid {v['pid']} is gone; "
                          f"started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(v['started_at']))})",
                          file=sys.stderr)
            _write(path, {k: v for k, v in meshes.items() if k not in stale})
    return [v for k, v in sorted(meshes.items()) if k not in stale]
