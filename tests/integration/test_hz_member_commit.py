"""The embedded member's group commit runs off its event loop (issue 31: the scan's bus delivery).

With ``--snapshot-dir`` an acknowledged write must be in a committed SQLite transaction, but the commit
must not hold up the entry events nor the requests that arrive meanwhile. The member
runs in this process (its own thread and loop) with its snapshot store's write held on an Event, and a
real hazelcast-python-client talks to it over TCP.
"""
from __future__ import annotations

import asyncio
import threading

import pytest

from prod.bus.client import make_client
from prod.settings import load_settings
from standins.hz_member.server import Member, MemberConfig, run
from standins.hz_member.snapshot import SnapshotStore
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.timeout(120)


class HeldStore(SnapshotStore):
    """A SnapshotStore whose writes wait until ``release`` is set (a slow disk)."""

    def __init__(self, directory):
        super().__init__(directory)
        self.release = threading.Event()
        self.writing = threading.Event()

    def write(self, batch) -> None:
        self.writing.set()
        assert self.release.wait(30), "test never released the store"
        super().write(batch)


@pytest.fixture
def held_member(tmp_path):
    port = free_port()
    cfg = MemberConfig(host="127.0.0.1", port=port, snapshot_dir=tmp_path / "snap")
    box: dict = {}
    started = threading.Event()

    def ready(member: Member) -> None:
        box["member"] = member
        member.store.close()
        member.store = HeldStore(tmp_path / "snap")
        started.set()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        box["stop"] = stop = asyncio.Event()
        loop.run_until_complete(run(cfg, stop, ready))
        loop.close()

    t = threading.Thread(target=serve, name="test-hz-member", daemon=True)
    t.start()
    assert started.wait(30)
    store = box["member"].store
    try:
        yield port, store, box["member"]
    finally:
        store.release.set()
        box["loop"].call_soon_threadsafe(box["stop"].set)
        t.join(30)
        assert not t.is_alive()


def _client(port: int):
    return make_client(load_settings(env={}, hz_members=(f"127.0.0.1:{port}",)), cluster_connect_timeout=15.0)


def test_events_go_out_while_a_commit_waits_on_the_disk_and_acks_wait_for_it(held_member, tmp_path):
    port, store, member = held_member
    writer, reader = _client(port), _client(port)
    try:
        seen: list[str] = []
        reader.get_map("m").add_entry_listener(include_value=True, added_func=lambda e: seen.append(e.value),
                                               updated_func=lambda e: seen.append(e.value)).result()
        wait_until(lambda: store.commits == 0 and not member.map_service.dirty, 10, what="quiet member")
        store.release.clear()
        fut = writer.get_map("m").put("k", "v1")
        wait_until(store.writing.is_set, 10, what="the commit of the put started")
        # the event reaches the other client although the commit is still held ...
        wait_until(lambda: seen == ["v1"], 10, what="entry event while the commit is held")
        # ... the loop keeps serving: a second write (next batch) is handled and its event goes out too
        fut2 = reader.get_map("m").put("k2", "v2")
        wait_until(lambda: seen == ["v1", "v2"], 10, what="second event while the first commit is held")
        # ... but no writer is acknowledged before its write is committed
        assert not fut.done() and not fut2.done()
        store.release.set()
        wait_until(lambda: fut.done() and fut2.done(), 10, what="both writes acknowledged after the commit")
        assert fut.result() is None and fut2.result() is None
        assert store.commits >= 2
    finally:
        writer.shutdown()
        reader.shutdown()
    # what was acknowledged is on disk
    rows = SnapshotStore(tmp_path / "snap").load()[0]["maps"].get("m", [])
    assert sorted(r[1][-2:] for r in rows) == [b"v1", b"v2"]
