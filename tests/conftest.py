"""Fixtures that start the real embedded member and venue simulator on free loopback ports."""
from __future__ import annotations

import pytest

from prod.settings import load_settings
from tests.helpers import Proc, free_port, port_open, wait_until


@pytest.fixture
def hz_member(tmp_path):
    """Start ``python -m services.hz_member`` on a free port; yields (Proc, port)."""
    port = free_port()
    proc = Proc("services.hz_member", ["--host", "127.0.0.1", "--port", str(port),
                                       "--cluster-name", "dolphin"], tmp_path / "hz_member.log").start()
    try:
        wait_until(lambda: port_open(port) or proc.p.poll() is not None, 30, what="hz_member port")
        assert proc.p.poll() is None, proc.log_text()
        yield proc, port
    finally:
        proc.stop()


@pytest.fixture
def venue(tmp_path):
    """Start ``python -m services.venue_sim`` on a free port (seed 42); yields (Proc, port)."""
    port = free_port()
    proc = Proc("services.venue_sim", ["--host", "127.0.0.1", "--port", str(port), "--seed", "42",
                                       "--speed", "1"], tmp_path / "venue_sim.log").start()
    try:
        wait_until(lambda: port_open(port) or proc.p.poll() is not None, 60, what="venue_sim port")
        assert proc.p.poll() is None, proc.log_text()
        yield proc, port
    finally:
        proc.stop()


@pytest.fixture
def settings_for(tmp_path):
    """Build Settings pointing at the given member/venue ports and a temp data dir."""
    def _make(hz_port: int | None = None, venue_port: int | None = None, **kw):
        over = dict(data_dir=str(tmp_path / "data"), run_logs=str(tmp_path / "run_logs"))
        if hz_port:
            over["hz_members"] = (f"127.0.0.1:{hz_port}",)
        if venue_port:
            over["venue_ws"] = f"ws://127.0.0.1:{venue_port}"
            over["venue_rest"] = f"http://127.0.0.1:{venue_port}"
        over.update(kw)
        return load_settings(env={}, **over)
    return _make
