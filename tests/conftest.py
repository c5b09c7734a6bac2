"""Fixtures that start the real embedded member, a real Hazelcast member and the venue simulator on free ports.

``bus_member`` (module scope) is parametrized over ``embedded`` (``standins.hz_member``) and ``real``
(one Hazelcast 5.3.8 JVM per test session, ``standins.hz_real``; CP in unsafe mode), so the bus-facing
integration tests run against both. The real half fetches the jar on first use (``mvn dependency:copy``
into ``.cache/hazelcast``) and is skipped, with the reason printed, only when ``java``/``mvn`` are absent.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Processes started by tests serve no /metrics unless a test asks for it (a developer's `make run`
# holds the default ports 9300+); tests that check metrics set DOLPHIN_METRICS_PORT_BASE themselves.
os.environ.setdefault("DOLPHIN_METRICS_PORT_BASE", "0")

from prod.settings import load_settings
from tests.helpers import free_port, running_venue, start_listening

# CP session settings of the session's real member: short enough for the session-expiry test,
# heartbeats every second keep live sessions far from it.
REAL_SESSION_TTL_S = 5
REAL_HEARTBEAT_S = 1


@dataclass
class BusMember:
    """A running member the bus tests talk to: which kind, its port, and how to read its log."""
    kind: str                      # "embedded" | "real"
    port: int
    proc: object                   # tests.helpers.Proc or standins.hz_real.runner.RealMember
    session_ttl_s: float | None = None

    @property
    def embedded(self) -> bool:
        return self.kind == "embedded"

    def log_text(self) -> str:
        if self.embedded:
            return self.proc.log_text()
        return Path(self.proc.log_path).read_text(errors="replace")


def real_member_unavailable() -> str | None:
    """Return why a real member cannot run here (java/mvn missing), or None."""
    from standins.hz_real.fetch import jar_path
    if shutil.which("java") is None:
        return "real Hazelcast half skipped: `java` not on PATH (install a Java 17+ runtime)"
    if shutil.which("mvn") is None and not jar_path().is_file():
        return "real Hazelcast half skipped: `mvn` not on PATH and no cached jar (install Apache Maven)"
    return None


def start_real_member(work_dir: Path, port: int | None = None, **cfg_kw):
    """Fetch the jar if needed and start one real member; returns the running RealMember."""
    from standins.hz_real.config import RealMemberConfig
    from standins.hz_real.runner import RealMember
    cfg = RealMemberConfig(port=port or free_port(), **{"session_ttl_s": REAL_SESSION_TTL_S,
                                                         "heartbeat_s": REAL_HEARTBEAT_S, **cfg_kw})
    return RealMember(cfg, work_dir).start(timeout=180)


@pytest.fixture(scope="session")
def real_hz(tmp_path_factory):
    """One real Hazelcast member for the whole session (JVM start is slow on 2 cores)."""
    reason = real_member_unavailable()
    if reason:
        print(f"\n{reason}", file=sys.stderr)
        pytest.skip(reason)
    member = start_real_member(tmp_path_factory.mktemp("hz_real"))
    try:
        yield BusMember("real", member.cfg.port, member, REAL_SESSION_TTL_S)
    finally:
        member.stop()


@pytest.fixture(scope="module", params=["embedded", "real"])
def bus_member(request, tmp_path_factory):
    """The member a bus test runs against: the embedded member (per module) or the session's real member."""
    if request.param == "real":
        yield request.getfixturevalue("real_hz")
        return
    port = free_port()
    proc = start_listening("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port),
                                                  "--cluster-name", "dolphin"],
                           tmp_path_factory.mktemp("hz") / "hz_member.log", port, 30)
    try:
        yield BusMember("embedded", port, proc)
    finally:
        proc.stop()


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
