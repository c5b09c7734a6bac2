"""CP subsystem of the embedded member through the real hazelcast-python-client over TCP.

Covers AtomicLong / AtomicReference, FencedLock mutual exclusion across processes with strictly
increasing fencing tokens, reentrancy, try_lock timeouts, session expiry releasing the lock of a
process killed with SIGKILL, and CP state surviving a member restart with ``--snapshot-dir``.
Tests taking ``bus_member``/``ttl_member`` run on the embedded member and on a real Hazelcast member
(CP unsafe mode, one member); the ``--snapshot-dir`` tests are embedded only (OSS Hazelcast has no
persistence); ``test_real_member_restart_*`` restarts a real member of its own.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from hazelcast.errors import DistributedObjectDestroyedError, IllegalMonitorStateError

from prod.bus.client import make_client
from tests.helpers import REPO_ROOT, Proc, free_port, port_open, wait_until

SHORT_TTL_S = 3.0
SHORT_TTL_ENV = {"DOLPHIN_HZ_CP_SESSION_TTL_S": str(SHORT_TTL_S), "DOLPHIN_HZ_CP_HEARTBEAT_S": "1"}

# A client process: either increments a lock-protected, non-atomic counter ("count") or takes the
# lock and holds it until killed ("hold"). Prints one line per event for the test to read.
WORKER = textwrap.dedent("""
    import sys, time
    from prod.settings import load_settings
    from prod.bus.client import make_client
    mode, port, n, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[5]
    client = make_client(load_settings(env={}, hz_members=("127.0.0.1:" + port,)), name="cp-worker")
    lock = client.cp_subsystem.get_lock("it-mutex" + tag).blocking()
    if mode == "hold":
        print("LOCKED", lock.lock(), flush=True)
        time.sleep(600)
    log = client.cp_subsystem.get_atomic_reference("it-fence-log" + tag).blocking()
    ready = client.cp_subsystem.get_atomic_long("it-ready" + tag).blocking()
    me, workers = ready.increment_and_get(), int(sys.argv[4])
    deadline = time.monotonic() + 30
    while ready.get() < workers and time.monotonic() < deadline:   # start together: real contention
        time.sleep(0.01)
    for _ in range(n):
        fence = lock.lock()
        try:
            seen = log.get() or []          # read-modify-write that loses updates without the lock
            time.sleep(0.002)
            log.set(seen + ["%d:%d" % (me, fence)])
        finally:
            lock.unlock()
    print("DONE", flush=True)
    client.shutdown()
""")


def start_worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, *args], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_member(tmp_path, port: int, *extra: str, env: dict | None = None, tag: str = "m") -> Proc:
    proc = Proc("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port), "--cluster-name", "dolphin",
                                       *extra], tmp_path / f"hz_member_{tag}.log", env=env).start()
    wait_until(lambda: port_open(port) or proc.p.poll() is not None, 30, what="hz_member port")
    assert proc.p.poll() is None, proc.log_text()
    return proc


def _tag() -> str:
    return "-" + uuid.uuid4().hex[:8]


@pytest.fixture(params=["embedded", "real"])
def ttl_member(request, tmp_path):
    """(port, session TTL): a member whose CP sessions expire after the TTL without heartbeats."""
    if request.param == "real":
        real = request.getfixturevalue("real_hz")
        yield real.port, real.session_ttl_s
        return
    port = free_port()
    proc = start_member(tmp_path, port, env=SHORT_TTL_ENV, tag="short_ttl")
    try:
        yield port, SHORT_TTL_S
    finally:
        proc.stop()


@pytest.fixture
def client_for(settings_for):
    made = []

    def _make(port: int, name: str = "cp-test"):
        c = make_client(settings_for(hz_port=port), name=name)
        made.append(c)
        return c
    yield _make
    for c in made:
        c.shutdown()


def test_atomic_long_and_reference_round_trip(bus_member, client_for):
    port, t = bus_member.port, _tag()
    cp = client_for(port).cp_subsystem
    al = cp.get_atomic_long("it-long" + t).blocking()
    assert al.get() == 0
    assert al.add_and_get(5) == 5
    assert al.get_and_add(2) == 5
    assert al.increment_and_get() == 8
    assert al.decrement_and_get() == 7
    assert al.get_and_set(40) == 7
    assert al.compare_and_set(39, 0) is False
    assert al.compare_and_set(40, 41) is True
    assert al.get() == 41
    other = cp.get_atomic_long("it-long" + t + "@grp-a").blocking()
    assert other.get() == 0                   # same name in another CP group is another object

    ref = cp.get_atomic_reference("it-ref" + t).blocking()
    assert ref.get() is None and ref.is_none() is True
    ref.set({"state": "ok", "n": 1})
    assert ref.get() == {"state": "ok", "n": 1}
    assert ref.contains({"state": "ok", "n": 1}) and not ref.contains({"state": "halt"})
    assert ref.get_and_set("halt") == {"state": "ok", "n": 1}
    assert ref.compare_and_set("other", "x") is False
    assert ref.compare_and_set("halt", "resume") is True
    ref.clear()
    assert ref.is_none() is True

    al.destroy()
    with pytest.raises(DistributedObjectDestroyedError):
        cp.get_atomic_long("it-long" + t).blocking().get()


def test_lock_reentrancy_try_lock_timeout_and_non_owner_unlock(bus_member, client_for):
    port, t = bus_member.port, _tag()
    a = client_for(port, "cp-a").cp_subsystem.get_lock("it-reentrant" + t).blocking()
    b = client_for(port, "cp-b").cp_subsystem.get_lock("it-reentrant" + t).blocking()
    f1 = a.lock()
    assert a.lock() == f1 and a.get_lock_count() == 2 and a.is_locked_by_current_thread()
    assert b.is_locked() and not b.is_locked_by_current_thread()
    with pytest.raises(IllegalMonitorStateError):
        b.unlock()
    assert b.try_lock() == 0
    t0 = time.monotonic()
    assert b.try_lock(timeout=0.5) == 0
    assert time.monotonic() - t0 >= 0.45

    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(b.try_lock(timeout=10)))
    waiter.start()
    a.unlock()
    assert a.is_locked()                      # still held once (reentrant count 2 → 1)
    a.unlock()
    waiter.join(10)
    assert got and got[0] > f1               # handed over with a strictly larger fence
    assert not a.is_locked_by_current_thread()


def test_lock_gives_mutual_exclusion_across_processes(bus_member, client_for):
    port, t = bus_member.port, _tag()
    per_worker, workers = 30, 3
    procs = [start_worker("count", str(port), str(per_worker), str(workers), t) for _ in range(workers)]
    try:
        outs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0 and "DONE" in out, out
    entries = client_for(port).cp_subsystem.get_atomic_reference("it-fence-log" + t).blocking().get()
    owners = [int(e.split(":")[0]) for e in entries]
    fences = [int(e.split(":")[1]) for e in entries]
    assert len(entries) == per_worker * workers                  # no lost update
    assert all(x < y for x, y in zip(fences, fences[1:]))        # fences strictly increase
    switches = sum(a != b for a, b in zip(owners, owners[1:]))
    assert switches >= workers, owners                           # the workers really contended


def test_session_expiry_releases_the_lock_of_a_killed_process(ttl_member, client_for):
    (port, ttl), t = ttl_member, _tag()
    holder = start_worker("hold", str(port), "0", "1", t)
    try:
        line = holder.stdout.readline()
        assert line.startswith("LOCKED"), line + holder.stdout.read()
        held_fence = int(line.split()[1])
        lock = client_for(port).cp_subsystem.get_lock("it-mutex" + t).blocking()
        # A live holder heartbeats its session, so waiting longer than the TTL does not get the lock.
        assert lock.try_lock(timeout=ttl + 1) == 0
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        t0 = time.monotonic()
        fence = lock.try_lock(timeout=ttl + 5)
        waited = time.monotonic() - t0
        assert fence > held_fence
        assert waited <= ttl + 2.0, waited
        lock.unlock()
    finally:
        holder.kill()
        holder.wait(10)


def test_member_restart_with_snapshot_keeps_cp_values(tmp_path, client_for):
    port, snap = free_port(), tmp_path / "snap"
    member = start_member(tmp_path, port, "--snapshot-dir", str(snap), tag="first")
    try:
        c = client_for(port, "cp-before")
        c.cp_subsystem.get_atomic_long("it-durable@grp-d").blocking().set(123456789)
        c.cp_subsystem.get_atomic_reference("it-durable-ref").blocking().set({"mode": "halt"})
        lock = c.cp_subsystem.get_lock("it-durable-lock").blocking()
        fence_before = lock.lock()
        lock.unlock()
        c.shutdown()
    finally:
        member.stop()
    assert member.p.returncode == 0, member.log_text()

    member = start_member(tmp_path, port, "--snapshot-dir", str(snap), tag="second")
    try:
        c = client_for(port, "cp-after")
        assert c.cp_subsystem.get_atomic_long("it-durable@grp-d").blocking().get() == 123456789
        assert c.cp_subsystem.get_atomic_reference("it-durable-ref").blocking().get() == {"mode": "halt"}
        assert c.cp_subsystem.get_lock("it-durable-lock").blocking().lock() > fence_before
    finally:
        member.stop()


def test_client_keeps_using_cp_after_member_restart_without_snapshot(tmp_path, client_for):
    port = free_port()
    member = start_member(tmp_path, port, tag="first")
    try:
        c = client_for(port, "cp-survivor")
        lock = c.cp_subsystem.get_lock("it-restart-lock").blocking()
        counter = c.cp_subsystem.get_atomic_long("it-restart-long").blocking()
        assert lock.lock() > 0
        lock.unlock()
        counter.set(5)
    finally:
        member.stop()
    member = start_member(tmp_path, port, tag="second")
    try:
        # Same client and proxies: it reconnects, its old CP session is unknown to the new member,
        # and it transparently opens a new one. Unsafe mode without snapshot starts from empty state.
        assert wait_until(lambda: lock.try_lock(timeout=1) > 0, 30, what="lock after member restart")
        assert lock.is_locked_by_current_thread()
        lock.unlock()
        assert counter.get() == 0
    finally:
        member.stop()


def test_real_member_restart_clients_reconnect_relisten_and_reopen_cp_sessions(tmp_path, client_for):
    """A real member restarted on its port: the same client and proxies carry on (maps start empty)."""
    from tests.conftest import real_member_unavailable, start_real_member
    reason = real_member_unavailable()
    if reason:
        pytest.skip(reason)
    member = start_real_member(tmp_path / "first")
    port = member.cfg.port
    try:
        c = client_for(port, "real-survivor")
        m = c.get_map("it-restart-map").blocking()
        added: list[str] = []
        m.add_entry_listener(include_value=True, added_func=lambda e: added.append(e.key))
        m.set("before", "1")
        lock = c.cp_subsystem.get_lock("it-restart-lock").blocking()
        assert lock.lock() > 0
        lock.unlock()
    finally:
        member.kill()                              # SIGKILL
    member = start_real_member(tmp_path / "second", port=port)
    try:
        assert wait_until(lambda: lock.try_lock(timeout=1) > 0, 60, what="lock after member restart")
        lock.unlock()
        assert m.get("before") is None             # no persistence in OSS Hazelcast
        tries = iter(range(10**6))

        def write_and_check() -> bool:             # listener re-registration is asynchronous
            m.set(f"after{next(tries)}", "1")
            return any(k.startswith("after") for k in added)
        wait_until(write_and_check, 30, interval=0.2, what="listener re-registered on the new member")
    finally:
        member.stop()
