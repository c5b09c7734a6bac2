"""The mesh on a real 3-member Hazelcast cluster (``mesh up --profile cluster --hz-members 3``), one member killed.

Select with ``-m e2e``. Brings the mesh up on three real members under supervisord (no embedded member),
waits for GREEN, then ``kill -9`` one member's JVM: the services keep running, the ACB FencedLock and the
safety AtomicReference keep working on 2 of 3 CP members, acknowledged map writes survive (one backup),
MHS reports the member leaving and coming back, and the member supervisord restarts rejoins the cluster.
Before the kill, the trader (manual in this profile) is started and trades a stress episode published the
way scan_bridge does (tests/e2e/episodes.py: the deterministic episode of the embedded-member mesh test),
through the simulator's order API, on the real cluster's maps. The live scanner's random stress crossings
are traded on the embedded member by tests/e2e/test_mesh.py (minutes of waiting; three JVMs share two cores).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prod.bus import maps
from prod.bus.client import make_client
from prod.settings import load_settings
from tests.conftest import real_member_unavailable
from tests.e2e.episodes import BridgeScans, entries, journal_rows, publish_mc_green, push_until_entry, trading_posture
from tests.helpers import REPO_ROOT, free_port, free_port_block, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
BIN = Path(sys.executable).parent
DATA_PROGRAMS = ("dolphin_data:exf_fetcher", "dolphin_data:acb_processor", "dolphin_data:obf_universe",
                 "dolphin_data:scanner", "dolphin_data:safety_watchdog", "dolphin_data:meta_health")


@pytest.fixture(scope="module")
def cluster_mesh(tmp_path_factory):
    reason = real_member_unavailable()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("cluster_mesh")
    base = free_port_block(3)
    args = ["--profile", "cluster", "--hz-members", "3", "--instance-dir", str(root), "--hz-port", str(base),
            "--venue-port", str(free_port()), "--prefect-port", str(free_port()), "--mhs-interval", "3",
            "--env", f"DOLPHIN_WEB_PORT={free_port()}"]   # not the default mesh's 8088
    env = {**os.environ, "DOLPHIN_MESH_RECORD": str(root / "mesh_record.json")}   # not the repository's record
    res = subprocess.run([sys.executable, "-m", "ops.mesh", "up", *args, "--timeout", "360"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600, env=env)
    try:
        yield root, base, res
    finally:
        subprocess.run([sys.executable, "-m", "ops.mesh", "down", *args], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=180, env=env)


def _sv(root: Path, *args: str) -> str:
    return subprocess.run([str(BIN / "supervisorctl"), "-c", str(root / "dolphin-supervisord.conf"), *args],
                          capture_output=True, text=True, timeout=60).stdout


def _pids(root: Path) -> dict[str, int]:
    out = {}
    for line in _sv(root, "status").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "RUNNING":
            out[parts[0]] = int(parts[3].rstrip(","))
    return out


def _report(root: Path) -> dict:
    return json.loads((root / "run_logs" / "meta_health.json").read_text())


def _trade_a_stress_episode(root: Path, base: int, c) -> None:
    """Start the manual trader, give it MC GREEN, publish a stress episode: a SHORT entry is journaled."""
    publish_mc_green(base)
    assert "started" in _sv(root, "start", "dolphin:event_trader")
    hb = c.get_map(maps.HEARTBEAT).blocking()
    wait_until(lambda: trading_posture(c), 120, interval=0.5,
               what="the trader on the cluster in a trading posture (the watchdog warmed up)")
    journal = root / "data" / "trader" / "journal.sqlite"
    n0 = entries(journal)
    src = BridgeScans(c)
    for i in range(159):                 # in legs the trader reads before they go stale (episodes.py)
        src.push(0.0, 0.0, 0.001 + i * 0.00002)
        if i % 40 == 39:
            src.wait_consumed()
    src.wait_consumed()
    try:
        push_until_entry(c, src, journal, n0)
    except AssertionError as exc:        # say why the trader did not enter (posture, gates), not only that
        hb_now = hb.get("event_trader")
        rows = journal_rows(journal, "SELECT kind, scan_number, payload FROM events ORDER BY id DESC LIMIT 8")
        log = (root / "logs" / "event_trader.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"{exc}\nheartbeat: {hb_now}\nlast journal rows: {rows}\ntrader log tail:\n{log}") from exc
    fill = json.loads(journal_rows(journal, "SELECT payload FROM events WHERE kind='ENTRY' ORDER BY id DESC")[0][0])
    assert fill["side"] == "SELL", fill


def test_mesh_on_three_real_members_survives_a_killed_member(cluster_mesh):
    root, base, up = cluster_mesh
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "mesh is GREEN" in up.stdout and "serves with 3 member(s)" in up.stdout
    members = tuple(f"127.0.0.1:{base + i}" for i in range(3))
    before = _pids(root)
    assert all(p in before for p in DATA_PROGRAMS + ("hz_cluster:hz1", "hz_cluster:hz2", "hz_cluster:hz3"))
    assert "dolphin_core:hz_member" not in before                  # no embedded member in this profile
    assert sorted(_report(root)["control_plane"]["hz_cluster_members"]) == sorted(members)

    c = make_client(load_settings(env={}, hz_members=members), name="e2e-cluster", cluster_connect_timeout=30)
    try:
        _trade_a_stress_episode(root, base, c)
        acked = c.get_map("E2E_ACKED").blocking()
        acked.put_all({f"k{i}": str(i) for i in range(500)})       # acknowledged before the kill
        lock = c.cp_subsystem.get_lock(maps.ACB_LOCK).blocking()
        ref = c.cp_subsystem.get_atomic_reference(maps.SAFETY_ATOMIC_REF).blocking()
        posture_before = wait_until(ref.get, 60, what="safety_watchdog wrote the AtomicReference")

        victim = before["hz_cluster:hz2"]
        os.kill(victim, signal.SIGKILL)
        # the client and MHS see the member leave
        wait_until(lambda: len(c.cluster_service.get_members()) == 2 or _pids(root).get("hz_cluster:hz2") != victim,
                   60, what="member removed or restarted")
        wait_until(lambda: any(e["event"] == "removed" and e["member"] == members[1]
                               for e in _report(root)["control_plane"]["hz_member_events"]), 60,
                   what="MHS reports the member leaving")
        # CP on 2 of 3: the FencedLock hands out a fence, the watchdog keeps writing the AtomicReference
        fence = lock.try_lock(timeout=60)
        assert fence > 0
        lock.unlock()
        wait_until(lambda: ref.get() != posture_before, 90, interval=0.5,
                   what="safety_watchdog writes the AtomicReference on 2 of 3 CP members")
        assert acked.size() == 500 and acked.get("k499") == "499"   # nothing acknowledged is lost

        # supervisord restarts the JVM; the new member rejoins the cluster and MHS sees it
        wait_until(lambda: _pids(root).get("hz_cluster:hz2") not in (None, victim), 120, what="hz2 restarted")
        wait_until(lambda: len(c.cluster_service.get_members()) == 3, 180, interval=0.5, what="hz2 rejoined")
        wait_until(lambda: sorted(_report(root)["control_plane"]["hz_cluster_members"]) == sorted(members), 60,
                   what="MHS sees three members again")
        assert lock.try_lock(timeout=30) > fence                     # fences keep increasing
        lock.unlock()
    finally:
        c.shutdown()
    after = _pids(root)
    for prog in DATA_PROGRAMS:                                       # the services kept running throughout
        assert after.get(prog) == before[prog], (prog, _sv(root, "status"))
    wait_until(lambda: _report(root)["status"] == "GREEN", 120, interval=1, what="mesh GREEN after the rejoin")
