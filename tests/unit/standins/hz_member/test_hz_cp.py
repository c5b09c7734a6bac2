"""CP service handlers driven with the client's own request encoders and response decoders.

No network: each request is built with ``hazelcast.protocol.codec.*.encode_request``, its bytes
are re-framed into an ``InboundMessage`` exactly as the member's reader does, the handler runs,
and its response is decoded with the client's ``decode_response`` (or its error decoder).
"""
from __future__ import annotations

import json
import uuid

import pytest
from hazelcast import errors
from hazelcast.protocol import RaftGroupId
from hazelcast.protocol.client_message import Frame, InboundMessage, OutboundMessage
from hazelcast.protocol.codec import (
    atomic_long_add_and_get_codec, atomic_long_alter_codec, atomic_long_apply_codec,
    atomic_long_compare_and_set_codec, atomic_long_get_and_add_codec, atomic_long_get_and_set_codec,
    atomic_long_get_codec, atomic_ref_apply_codec, atomic_ref_compare_and_set_codec,
    atomic_ref_contains_codec, atomic_ref_get_codec, atomic_ref_set_codec, cp_group_create_cp_group_codec,
    cp_group_destroy_cp_object_codec, cp_session_close_session_codec, cp_session_create_session_codec,
    cp_session_generate_thread_id_codec, cp_session_heartbeat_session_codec,
    fenced_lock_get_lock_ownership_codec, fenced_lock_lock_codec, fenced_lock_try_lock_codec,
    fenced_lock_unlock_codec,
)
from hazelcast.serialization.bits import LE_INT, LE_UINT16
from hazelcast.serialization.data import Data

from standins.hz_member import cp_codec
from standins.hz_member.base import HandlerError
from standins.hz_member.cp import CPConfig, CPService, LOCK_SERVICE, ATOMIC_LONG_SERVICE


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Ctx:
    """A request context that records deferred answers (what the network core would send)."""
    _next = 0

    def __init__(self, connection_id: int = 1) -> None:
        Ctx._next += 1
        self.correlation_id = Ctx._next
        self.partition_id = -1
        self.client_uuid = uuid.uuid4()
        self.connection_id = connection_id
        self.sent: list[OutboundMessage] = []

    def send_event(self, msg: OutboundMessage) -> None:
        self.sent.append(msg)

    def send_to_connection(self, connection_id: int, msg: OutboundMessage) -> None:
        self.sent.append(msg)


def to_inbound(buf: bytes) -> InboundMessage:
    off, msg = 0, None
    while off < len(buf):
        size = LE_INT.unpack_from(buf, off)[0]
        flags = LE_UINT16.unpack_from(buf, off + 4)[0]
        frame = Frame(bytes(buf[off + 6: off + size]), flags)
        if msg is None:
            msg = InboundMessage(frame)
        else:
            msg.add_frame(frame)
        off += size
    assert msg is not None and msg.end_frame.is_final_frame()
    return msg


def decode(out: OutboundMessage, codec):
    resp = to_inbound(out.buf)
    if resp.get_message_type() == 0:
        raise errors.create_error_from_message(resp)
    assert resp.get_number_of_backup_acks() == 0
    return codec.decode_response(resp) if hasattr(codec, "decode_response") else None


class CP:
    """Thin driver: call(codec, *args) → decoded response, or None when the handler defers."""

    def __init__(self, svc: CPService | None = None, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.svc = svc or CPService(CPConfig(session_ttl_s=10.0, heartbeat_s=2.0), clock=self.clock)
        self.h = self.svc.handlers()

    def raw(self, codec, *args, ctx: Ctx | None = None):
        ctx = ctx or Ctx()
        req = codec.encode_request(*args)
        resp = self.h[codec._REQUEST_MESSAGE_TYPE](ctx, to_inbound(req.buf))
        return resp

    def call(self, codec, *args, ctx: Ctx | None = None):
        try:
            resp = self.raw(codec, *args, ctx=ctx)
        except HandlerError as e:  # the core turns this into an error response: do the same here
            raise errors.create_error_from_message(to_inbound(cp_codec.encode_error(e.class_name, e.message).buf)) from e
        return None if resp is None else decode(resp, codec)

    def group(self, proxy_name: str = "x") -> RaftGroupId:
        return self.call(cp_group_create_cp_group_codec, proxy_name)

    def session(self, g: RaftGroupId) -> int:
        return self.call(cp_session_create_session_codec, g, "client-1")["session_id"]


def deferred(ctx: Ctx, codec):
    assert len(ctx.sent) == 1, ctx.sent
    out = ctx.sent.pop()
    assert out.get_correlation_id() == ctx.correlation_id
    return decode(out, codec)


@pytest.fixture
def cp() -> CP:
    return CP()


def test_message_type_ids_match_client_codecs(cp):
    codecs = [atomic_long_add_and_get_codec, atomic_long_alter_codec, atomic_long_apply_codec,
              atomic_long_compare_and_set_codec, atomic_long_get_and_add_codec, atomic_long_get_and_set_codec,
              atomic_long_get_codec, atomic_ref_apply_codec, atomic_ref_compare_and_set_codec,
              atomic_ref_contains_codec, atomic_ref_get_codec, atomic_ref_set_codec,
              cp_group_create_cp_group_codec, cp_group_destroy_cp_object_codec, cp_session_close_session_codec,
              cp_session_create_session_codec, cp_session_generate_thread_id_codec,
              cp_session_heartbeat_session_codec, fenced_lock_get_lock_ownership_codec, fenced_lock_lock_codec,
              fenced_lock_try_lock_codec, fenced_lock_unlock_codec]
    assert {c._REQUEST_MESSAGE_TYPE for c in codecs} == set(cp.h)


def test_cp_group_ids_are_stable_and_default_is_shared(cp):
    d = cp.group("a")
    assert (d.name, d.id) == ("default", 1)
    assert cp.group("b@DEFAULT") == d
    g1 = cp.group("a@grp1")
    assert g1.name == "grp1" and g1.id != d.id
    assert CP().group("z@grp1") == g1          # a fresh member gives the same id
    with pytest.raises(errors.IllegalArgumentError):
        cp.group("a@metadata")
    bogus = RaftGroupId("grp1", 0, 12345)
    with pytest.raises(errors.CPGroupDestroyedError):
        cp.call(atomic_long_get_codec, bogus, "n")


def test_atomic_long_operations_and_64_bit_wraparound(cp):
    g = cp.group()
    assert cp.call(atomic_long_get_codec, g, "n") == 0
    assert cp.call(atomic_long_add_and_get_codec, g, "n", 5) == 5
    assert cp.call(atomic_long_get_and_add_codec, g, "n", 3) == 5
    assert cp.call(atomic_long_get_and_set_codec, g, "n", 100) == 8
    assert cp.call(atomic_long_compare_and_set_codec, g, "n", 99, 1) is False
    assert cp.call(atomic_long_compare_and_set_codec, g, "n", 100, 1) is True
    assert cp.call(atomic_long_get_codec, g, "n") == 1
    assert cp.call(atomic_long_get_codec, g, "other") == 0
    cp.call(atomic_long_get_and_set_codec, g, "w", 2**63 - 1)
    assert cp.call(atomic_long_add_and_get_codec, g, "w", 1) == -2**63
    g2 = cp.group("n@other")
    assert cp.call(atomic_long_get_codec, g2, "n") == 0   # a named group is a separate namespace


def test_atomic_long_functions_are_rejected_with_a_clear_error(cp):
    g = cp.group()
    fn = Data(b"\x00" * 12)
    with pytest.raises(errors.UnsupportedOperationError, match="alter"):
        cp.call(atomic_long_alter_codec, g, "n", fn, 1)
    with pytest.raises(errors.UnsupportedOperationError, match="apply"):
        cp.call(atomic_long_apply_codec, g, "n", fn)
    with pytest.raises(errors.UnsupportedOperationError):
        cp.call(atomic_ref_apply_codec, g, "r", fn, 2, True)


def test_atomic_reference_operations_compare_serialized_bytes(cp):
    g = cp.group()
    a, b = Data(b"\x00\x00\x00\x00\xff\xff\xff\xf5aa"), Data(b"\x00\x00\x00\x00\xff\xff\xff\xf5bb")
    assert cp.call(atomic_ref_get_codec, g, "r") is None
    assert cp.call(atomic_ref_contains_codec, g, "r", None) is True           # is_none
    assert cp.call(atomic_ref_set_codec, g, "r", a, False) is None            # set
    assert cp.call(atomic_ref_get_codec, g, "r").buffer == a.buffer
    assert cp.call(atomic_ref_contains_codec, g, "r", a) is True
    assert cp.call(atomic_ref_contains_codec, g, "r", b) is False
    assert cp.call(atomic_ref_set_codec, g, "r", b, True).buffer == a.buffer  # get_and_set
    assert cp.call(atomic_ref_compare_and_set_codec, g, "r", a, a) is False
    assert cp.call(atomic_ref_compare_and_set_codec, g, "r", b, None) is True
    assert cp.call(atomic_ref_compare_and_set_codec, g, "r", None, a) is True
    assert cp.call(atomic_ref_set_codec, g, "r", None, False) is None         # clear
    assert cp.call(atomic_ref_get_codec, g, "r") is None


def test_sessions_create_heartbeat_close_and_thread_ids(cp):
    g = cp.group()
    resp = cp.call(cp_session_create_session_codec, g, "c")
    assert resp["ttl_millis"] == 10_000 and resp["heartbeat_millis"] == 2_000
    sid = resp["session_id"]
    assert cp.session(g) > sid
    cp.call(cp_session_heartbeat_session_codec, g, sid)
    t1 = cp.call(cp_session_generate_thread_id_codec, g)
    assert cp.call(cp_session_generate_thread_id_codec, g) > t1
    assert cp.call(cp_session_close_session_codec, g, sid) is True
    assert cp.call(cp_session_close_session_codec, g, sid) is False
    with pytest.raises(errors.SessionExpiredError):
        cp.call(cp_session_heartbeat_session_codec, g, sid)


def lock(cp, g, name, sid, tid, ctx=None, uid=None):
    return cp.call(fenced_lock_lock_codec, g, name, sid, tid, uid or uuid.uuid4(), ctx=ctx)


def try_lock(cp, g, name, sid, tid, timeout_ms, ctx=None):
    return cp.call(fenced_lock_try_lock_codec, g, name, sid, tid, uuid.uuid4(), timeout_ms, ctx=ctx)


def unlock(cp, g, name, sid, tid):
    return cp.call(fenced_lock_unlock_codec, g, name, sid, tid, uuid.uuid4())


def owner(cp, g, name):
    return cp.call(fenced_lock_get_lock_ownership_codec, g, name)


def test_lock_is_reentrant_and_unlock_by_non_owner_fails(cp):
    g = cp.group()
    s1, s2 = cp.session(g), cp.session(g)
    f = lock(cp, g, "L", s1, 7)
    assert f > 0
    assert lock(cp, g, "L", s1, 7) == f
    st = owner(cp, g, "L")
    assert (st["fence"], st["lock_count"], st["session_id"], st["thread_id"]) == (f, 2, s1, 7)
    with pytest.raises(errors.IllegalMonitorStateError):
        unlock(cp, g, "L", s2, 7)
    with pytest.raises(errors.IllegalMonitorStateError):
        unlock(cp, g, "L", s1, 8)
    assert unlock(cp, g, "L", s1, 7) is True
    assert unlock(cp, g, "L", s1, 7) is False
    assert owner(cp, g, "L")["fence"] == 0
    with pytest.raises(errors.IllegalMonitorStateError):
        unlock(cp, g, "L", s1, 7)
    assert lock(cp, g, "L", s2, 1) > f      # new acquisition → strictly larger fence


def test_retried_lock_invocation_is_idempotent(cp):
    g = cp.group()
    s = cp.session(g)
    uid = uuid.uuid4()
    f = lock(cp, g, "L", s, 1, uid=uid)
    assert lock(cp, g, "L", s, 1, uid=uid) == f
    assert owner(cp, g, "L")["lock_count"] == 1


def test_blocked_lock_waiters_are_served_fifo_with_increasing_fences(cp):
    g = cp.group()
    sessions = [cp.session(g) for _ in range(4)]
    f0 = lock(cp, g, "L", sessions[0], 1)
    ctxs = [Ctx(connection_id=10 + i) for i in range(3)]
    for s, c in zip(sessions[1:], ctxs):
        assert lock(cp, g, "L", s, 1, ctx=c) is None
    assert all(not c.sent for c in ctxs)
    fences = [f0]
    for i, c in enumerate(ctxs):
        assert unlock(cp, g, "L", sessions[i], 1) is False
        fences.append(deferred(c, fenced_lock_lock_codec))
        assert all(not other.sent for other in ctxs[i + 1:])    # only the head of the queue wakes
        assert owner(cp, g, "L")["session_id"] == sessions[i + 1]
    assert fences == sorted(set(fences))


def test_try_lock_without_timeout_fails_at_once_and_with_timeout_expires(cp):
    g = cp.group()
    s1, s2 = cp.session(g), cp.session(g)
    lock(cp, g, "L", s1, 1)
    assert try_lock(cp, g, "L", s2, 1, 0) == 0
    c = Ctx()
    assert try_lock(cp, g, "L", s2, 1, 500, ctx=c) is None
    cp.clock.t += 0.4
    cp.svc.tick(cp.clock.t)
    assert not c.sent
    cp.clock.t += 0.2
    cp.svc.tick(cp.clock.t)
    assert deferred(c, fenced_lock_try_lock_codec) == 0
    assert unlock(cp, g, "L", s1, 1) is False
    assert owner(cp, g, "L")["fence"] == 0          # the timed-out waiter was not granted


def test_try_lock_waiter_is_granted_before_its_timeout(cp):
    g = cp.group()
    s1, s2 = cp.session(g), cp.session(g)
    f1 = lock(cp, g, "L", s1, 1)
    c = Ctx()
    assert try_lock(cp, g, "L", s2, 1, 5000, ctx=c) is None
    unlock(cp, g, "L", s1, 1)
    assert deferred(c, fenced_lock_try_lock_codec) > f1


def test_session_expiry_releases_lock_and_wakes_next_waiter(cp):
    g = cp.group()
    dead, live = cp.session(g), cp.session(g)
    lock(cp, g, "L", dead, 1)
    c = Ctx()
    assert lock(cp, g, "L", live, 1, ctx=c) is None
    for _ in range(6):                       # 12 s pass; only the live session heartbeats
        cp.clock.t += 2.0
        cp.call(cp_session_heartbeat_session_codec, g, live)
        cp.svc.tick(cp.clock.t)
    assert deferred(c, fenced_lock_lock_codec) > 0
    assert owner(cp, g, "L")["session_id"] == live
    with pytest.raises(errors.SessionExpiredError):
        unlock(cp, g, "L", dead, 1)
    with pytest.raises(errors.SessionExpiredError):
        lock(cp, g, "L2", dead, 1)


def test_closing_a_session_cancels_its_waiters(cp):
    g = cp.group()
    s1, s2 = cp.session(g), cp.session(g)
    lock(cp, g, "L", s1, 1)
    c = Ctx()
    assert lock(cp, g, "L", s2, 1, ctx=c) is None
    assert cp.call(cp_session_close_session_codec, g, s2) is True
    with pytest.raises(errors.SessionExpiredError):
        deferred(c, fenced_lock_lock_codec)


def test_waiter_of_a_closed_connection_is_dropped(cp):
    g = cp.group()
    s1, s2, s3 = cp.session(g), cp.session(g), cp.session(g)
    lock(cp, g, "L", s1, 1)
    gone, alive = Ctx(connection_id=5), Ctx(connection_id=6)
    assert lock(cp, g, "L", s2, 1, ctx=gone) is None
    assert lock(cp, g, "L", s3, 1, ctx=alive) is None
    cp.svc.on_connection_closed(5, None)
    unlock(cp, g, "L", s1, 1)
    assert not gone.sent
    assert deferred(alive, fenced_lock_lock_codec) > 0
    assert owner(cp, g, "L")["session_id"] == s3


def test_snapshot_restore_keeps_values_locks_and_fence_order(cp):
    g, g2 = cp.group(), cp.group("x@grp")
    cp.call(atomic_long_get_and_set_codec, g, "n", 42)
    cp.call(atomic_ref_set_codec, g2, "r", Data(b"\x00\x00\x00\x00\xff\xff\xff\xf5zz"), False)
    s = cp.session(g)
    f = lock(cp, g, "L", s, 1)
    lock(cp, g, "L", s, 1)
    cp.call(cp_group_destroy_cp_object_codec, g, ATOMIC_LONG_SERVICE, "gone")
    state = json.loads(json.dumps(cp.svc.snapshot()))       # must survive a JSON round trip

    cp2 = CP()
    cp2.svc.restore(state)
    assert cp2.call(atomic_long_get_codec, g, "n") == 42
    assert cp2.call(atomic_ref_get_codec, g2, "r").buffer.endswith(b"zz")
    st = owner(cp2, g, "L")
    assert (st["fence"], st["lock_count"], st["session_id"]) == (f, 2, s)
    with pytest.raises(errors.DistributedObjectDestroyedError):
        cp2.call(atomic_long_get_codec, g, "gone")
    s2 = cp2.session(g)
    assert s2 > s
    assert lock(cp2, g, "L2", s2, 1) > f


def test_destroy_fails_waiters_and_blocks_reuse_of_the_name(cp):
    g = cp.group()
    s1, s2 = cp.session(g), cp.session(g)
    lock(cp, g, "L", s1, 1)
    c = Ctx()
    assert lock(cp, g, "L", s2, 1, ctx=c) is None
    cp.call(cp_group_destroy_cp_object_codec, g, LOCK_SERVICE, "L")
    with pytest.raises(errors.DistributedObjectDestroyedError):
        deferred(c, fenced_lock_lock_codec)
    with pytest.raises(errors.DistributedObjectDestroyedError):
        lock(cp, g, "L", s1, 1)
    cp.call(atomic_long_add_and_get_codec, g, "L", 1)     # other services' namespaces are untouched


def test_malformed_request_is_answered_with_an_error_not_a_crash(cp):
    g = cp.group()
    req = atomic_long_add_and_get_codec.encode_request(g, "n", 1)
    size = LE_INT.unpack_from(req.buf, 0)[0]
    truncated = InboundMessage(Frame(bytes(req.buf[6:size]), 1 << 13))   # no group id / name frames
    with pytest.raises(HandlerError) as ei:
        cp.h[atomic_long_add_and_get_codec._REQUEST_MESSAGE_TYPE](Ctx(), truncated)
    assert ei.value.class_name == "java.lang.IllegalArgumentException"
    assert cp.call(atomic_long_get_codec, g, "n") == 0


def test_config_from_env_validates():
    assert CPConfig.from_env({"DOLPHIN_HZ_CP_SESSION_TTL_S": "3", "DOLPHIN_HZ_CP_HEARTBEAT_S": "1"}) \
        == CPConfig(3.0, 1.0)
    with pytest.raises(ValueError):
        CPConfig.from_env({"DOLPHIN_HZ_CP_SESSION_TTL_S": "1", "DOLPHIN_HZ_CP_HEARTBEAT_S": "2"})
    with pytest.raises(ValueError, match="DOLPHIN_HZ_CP_SESSION_TTL_S"):
        CPConfig.from_env({"DOLPHIN_HZ_CP_SESSION_TTL_S": "abc"})


def test_tick_uses_the_service_clock_whatever_time_base_the_core_passes(cp):
    g = cp.group()
    s = cp.session(g)
    f = lock(cp, g, "L", s, 1)
    cp.svc.tick(cp.clock.t + 1e9)            # e.g. wall-clock seconds instead of monotonic
    assert owner(cp, g, "L")["fence"] == f
    cp.clock.t += 10.5
    cp.svc.tick(0.0)
    assert owner(cp, g, "L")["fence"] == 0   # expired by the service's own clock
