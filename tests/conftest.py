"""Fixtures that start the real embedded member and venue simulator on free loopback ports."""
from __future__ import annotations

import pytest

from prod.settings import load_settings
from tests.helpers import free_port, running_venue, start_listening


@pytest.fixture
def hz_member(tmp_path):
    """Start ``python -m standins.hz_member`` on a free port; yields (Proc, port)."""
    port = free_port()
    proc = start_listening("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port),
                                                  "--cluster-name", "dolphin"], tmp_path / "hz_member.log", port, 30)
    try:
        yield proc, port
    finally:
        proc.stop()


@pytest.fixture
def venue(tmp_path):
    """Start ``python -m standins.venue_sim`` on a free port (seed 42, speed 1); yields (Proc, port)."""
    with running_venue(tmp_path, "--speed", "1") as pv:
        yield pv


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
