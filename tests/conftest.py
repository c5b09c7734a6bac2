"""Fixtures that start the real embedded member, a real Hazelcast member and the venue simulator on free ports.

``bus_member`` (module scope) is parametrized over ``embedded`` (``standins.hz_member``) and ``real``
(one Hazelcast 5.3.8 JVM per test session, ``standins.hz_real``; CP in unsafe mode), so the bus-facing
integration tests run against both. The real half fetches the jar on first use (``mvn dependency:copy``
into ``.cache/hazelcast``) and is skipped, with the reason printed, only when ``java``/``mvn`` are absent.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# Processes started by tests serve no /metrics unless a test asks for it (a developer's `make run`
# holds the default ports 9300+); tests that check metrics set DOLPHIN_METRICS_PORT_BASE themselves.
os.environ.setdefault("DOLPHIN_METRICS_PORT_BASE", "0")

from prod.settings import load_settings
from tests.helpers import free_port, running_venue, start_listening, wait_until

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


# ---- one local Prefect server per run ------------------------------------------------------------
@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """Start ``prefect server start`` (UI on) on a free port with its own PREFECT_HOME; yield its API URL.

    One per run: the modules that use it are one xdist group (``PREFECT_GROUP``), on one worker."""
    home = tmp_path_factory.mktemp("prefect_home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_ENABLED": "true", "PREFECT_UI_API_URL": api,
           "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false"}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                             str(port), "--analytics-off", "--ui"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        import httpx
        wait_until(lambda: proc.poll() is not None or httpx.get(api + "/health", timeout=2).status_code == 200,
                   120, interval=0.5, what="prefect server health")
        assert proc.poll() is None, (home / "server.log").read_text()
        yield {"api": api, "port": port, "home": home}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def prefect_api(prefect_server):
    """Point this process's Prefect at the session's server for the module's in-process flow runs."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings
    with temporary_settings(updates={PREFECT_API_URL: prefect_server["api"],
                                     PREFECT_HOME: str(prefect_server["home"] / "client")}):
        yield prefect_server["api"]



# ---- the suite in parallel (`make test`: pytest-xdist, ``-n 3 --dist loadgroup``) ----------------------
# Every test gets one group; a group runs whole on one worker, its tests in file order. Without xdist the
# groups do nothing (a plain ``pytest`` run is serial, in the same order).
#   "mesh"     every test that brings up a whole mesh: tests/e2e/ and anything marked ``serial``. One test
#              of the group at a time, so two meshes (or `make run` on the default ports) never overlap.
#   "hz_real"  the modules whose tests use the session's real Hazelcast member: one JVM per run.
#   "prefect"  the modules whose tests use the session's Prefect server: one server per run.
#   otherwise  the test's module, so a module-scoped fixture starts once.
# Groups are handed out in that order (the mesh group first, then the real member's, integration, unit):
# the long ones start at once and the short ones fill the other worker.
#
# xdist's own loadgroup reads ``xdist_group`` marks through node ids it rewrites on the workers, which
# pytest >= 9.2 no longer allows (pytest-xdist issue #1386: the groups are silently ignored). So the
# workers write each test's group to a file the controller names (``workerinput``), and the controller's
# scheduler (:class:`_GroupScheduling`) reads it when it splits the collection into work units.
MESH_GROUP, REAL_HZ_GROUP, PREFECT_GROUP = "mesh", "hz_real", "prefect"
REAL_MEMBER_FIXTURES = frozenset({"real_hz", "bus_member", "ttl_member"})
PREFECT_FIXTURES = frozenset({"prefect_server", "prefect_api"})
_GROUPS_FILE = "dolphin_xdist_groups"


def _test_id(nodeid: str) -> str:
    """The node id without an ``@group`` suffix (older pytest + xdist add one; an ``@`` in ``[...]`` stays)."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") else nodeid


def _group_of(item: pytest.Item, real_modules: set[str], prefect_modules: set[str] = frozenset()) -> tuple[int, str]:
    path = item.nodeid.split("::", 1)[0]
    if item.get_closest_marker("serial") or path.startswith("tests/e2e/"):
        return 0, MESH_GROUP
    if path in real_modules:
        return 1, REAL_HZ_GROUP
    if path in prefect_modules:
        return 1, PREFECT_GROUP
    return (2 if path.startswith("tests/integration/") else 3), path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    real_modules = {it.nodeid.split("::", 1)[0] for it in items
                    if REAL_MEMBER_FIXTURES & set(getattr(it, "fixturenames", ()))}
    prefect_modules = {it.nodeid.split("::", 1)[0] for it in items
                       if PREFECT_FIXTURES & set(getattr(it, "fixturenames", ()))} - real_modules
    keyed, groups = [], {}
    for i, item in enumerate(items):
        rank, group = _group_of(item, real_modules, prefect_modules)
        marks = [m for m in item.iter_markers("xdist_group")]
        if marks:
            group = str(marks[0].args[0] if marks[0].args else marks[0].kwargs.get("name", "default"))
        groups[item.nodeid] = group
        keyed.append((rank, i, item))
    items[:] = [it for _, _, it in sorted(keyed, key=lambda k: k[:2])]
    target = getattr(config, "workerinput", {}).get(_GROUPS_FILE)
    if target:                                   # an xdist worker: tell the controller's scheduler
        tmp = Path(f"{target}.{config.workerinput['workerid']}")
        tmp.write_text(json.dumps(groups))
        os.replace(tmp, target)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    node.workerinput[_GROUPS_FILE] = str(node.config.stash[_groups_path_key])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class _GroupScheduling(LoadScopeScheduling):
        """``LoadScopeScheduling`` whose scope is the test's group (read from the workers' file)."""

        def __init__(self, config, log=None):
            super().__init__(config, log)
            self._groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:
                self._groups = json.loads(Path(self.config.stash[_groups_path_key]).read_text())
            tid = _test_id(nodeid)
            return self._groups.get(tid, tid)

    config.option.loadscopereorder = False       # keep the collection order: longest groups first
    return _GroupScheduling(config, log)


_groups_path_key = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        d = Path(tempfile.mkdtemp(prefix="dolphin-xdist-"))
        config.stash[_groups_path_key] = d / "groups.json"


def pytest_unconfigure(config: pytest.Config) -> None:
    path = config.stash.get(_groups_path_key, None)
    if path is not None:
        shutil.rmtree(path.parent, ignore_errors=True)


# ---- where the suite's time went: seconds of tests per xdist worker, printed after the slowest tests ----------
_worker_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    node = getattr(report, "node", None)         # set on the controller for a worker's report
    gw = getattr(getattr(node, "gateway", None), "id", None)
    if gw is not None:
        _worker_seconds[gw] = _worker_seconds.get(gw, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    if _worker_seconds:
        terminalreporter.write_line("seconds of tests per worker: " + ", ".join(
            f"{gw} {s:.0f}s" for gw, s in sorted(_worker_seconds.items())))
