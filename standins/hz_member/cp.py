"""CP subsystem of the embedded member: CP groups, sessions, AtomicLong, AtomicReference, FencedLock.

Design notes: ``docs/design/standins.hz_member.md``.
"""
from __future__ import annotations

import base64
import logging
import os
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hazelcast.protocol import RaftGroupId
from hazelcast.protocol.client_message import InboundMessage, OutboundMessage

from standins.hz_member import cp_codec as C
from standins.hz_member.base import Handler, HandlerError, RequestContext

log = logging.getLogger("hz_member.cp")

ATOMIC_LONG_SERVICE = "hz:raft:atomicLongService"
ATOMIC_REF_SERVICE = "hz:raft:atomicRefService"
LOCK_SERVICE = "hz:raft:lockService"
KNOWN_SERVICES = (ATOMIC_LONG_SERVICE, ATOMIC_REF_SERVICE, LOCK_SERVICE)

SESSION_EXPIRED = "com.hazelcast.cp.internal.session.SessionExpiredException"
WAIT_KEY_CANCELLED = "com.hazelcast.cp.internal.datastructures.exception.WaitKeyCancelledException"
GROUP_DESTROYED = "com.hazelcast.cp.exception.CPGroupDestroyedException"
OBJECT_DESTROYED = "com.hazelcast.spi.exception.DistributedObjectDestroyedException"
ILLEGAL_MONITOR = "java.lang.IllegalMonitorStateException"
ILLEGAL_ARGUMENT = "java.lang.IllegalArgumentException"
UNSUPPORTED = "java.lang.UnsupportedOperationException"

DEFAULT_GROUP = "default"
METADATA_GROUP = "metadata"
INVALID_FENCE = 0
NO_SESSION_ID = -1
_SNAPSHOT_VERSION = 1
_I64 = 1 << 64


def _wrap64(v: int) -> int:
    v %= _I64
    return v - _I64 if v >= (1 << 63) else v


def group_id_for(name: str) -> int:
    """Stable CP group id for a group name: ``default`` → 1, others a 31-bit hash + 2."""
    if name.lower() == DEFAULT_GROUP:
        return 1
    return 2 + zlib.crc32(name.encode("utf-8"))


def _clock_seed() -> int:
    return int(time.time() * 1_000_000)


@dataclass(frozen=True)
class CPConfig:
    """CP session timing. ``heartbeat_s`` must be well below ``session_ttl_s``."""
    session_ttl_s: float = 10.0
    heartbeat_s: float = 2.0

    def __post_init__(self) -> None:
        if not (self.session_ttl_s > 0 and 0 < self.heartbeat_s < self.session_ttl_s):
            raise ValueError(f"CPConfig: need 0 < heartbeat_s ({self.heartbeat_s}) < "
                             f"session_ttl_s ({self.session_ttl_s})")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "CPConfig":
        env = os.environ if env is None else env
        kw: dict[str, float] = {}
        for var, key in (("DOLPHIN_HZ_CP_SESSION_TTL_S", "session_ttl_s"),
                         ("DOLPHIN_HZ_CP_HEARTBEAT_S", "heartbeat_s")):
            if env.get(var):
                try:
                    kw[key] = float(env[var])
                except ValueError as exc:
                    raise ValueError(f"{var}={env[var]!r} is not a number") from exc
        return cls(**kw)


@dataclass
class _Session:
    id: int
    group_id: int
    endpoint: str
    expires_at: float


@dataclass
class _Waiter:
    session_id: int
    thread_id: int
    invocation_uid: uuid.UUID | None
    ctx: RequestContext
    request_type: int
    deadline: float | None          # None: blocking lock(); else tryLock deadline (monotonic)


@dataclass
class _Lock:
    owner_session: int = NO_SESSION_ID
    owner_thread: int = 0
    count: int = 0
    fence: int = INVALID_FENCE
    acquire_uid: uuid.UUID | None = None
    # (session, thread, uid) of the last unlock and whether the caller still held it after.
    last_release: tuple[int, int, uuid.UUID | None, bool] | None = None
    waiters: deque = field(default_factory=deque)

    def held(self) -> bool:
        return self.count > 0

    def owned_by(self, session_id: int, thread_id: int) -> bool:
        return self.count > 0 and self.owner_session == session_id and self.owner_thread == thread_id


ObjKey = tuple[int, str]


class CPService:
    """Single-member CP subsystem; plugs into the network core through ``base.MemberService``."""

    def __init__(self, config: CPConfig | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config or CPConfig.from_env()
        self._clock = clock
        self._longs: dict[ObjKey, int] = {}
        self._refs: dict[ObjKey, bytes | None] = {}
        self._locks: dict[ObjKey, _Lock] = {}
        self._sessions: dict[int, _Session] = {}
        self._destroyed: set[tuple[str, int, str]] = set()
        # Session/thread ids start from wall-clock µs so a restart without snapshot never reuses an id
        # a client still caches; fences start at 0 like a fresh Raft log and persist in the snapshot.
        self._next_session = self._next_thread = _clock_seed()
        self._next_fence = INVALID_FENCE
        log.info("CP subsystem (unsafe mode, 1 member): session TTL %.1fs, heartbeat %.1fs",
                 self.config.session_ttl_s, self.config.heartbeat_s)

    # ------------------------------------------------------------------ contract
    def handlers(self) -> dict[int, Handler]:
        table = {
            C.CREATE_CP_GROUP: self._create_group,
            C.DESTROY_CP_OBJECT: self._destroy_object,
            C.CREATE_SESSION: self._create_session,
            C.CLOSE_SESSION: self._close_session,
            C.HEARTBEAT_SESSION: self._heartbeat_session,
            C.GENERATE_THREAD_ID: self._generate_thread_id,
            C.AL_APPLY: self._al_function,
            C.AL_ALTER: self._al_function,
            C.AL_ADD_AND_GET: self._al_add_and_get,
            C.AL_COMPARE_AND_SET: self._al_compare_and_set,
            C.AL_GET: self._al_get,
            C.AL_GET_AND_ADD: self._al_get_and_add,
            C.AL_GET_AND_SET: self._al_get_and_set,
            C.AR_APPLY: self._ar_apply,
            C.AR_COMPARE_AND_SET: self._ar_compare_and_set,
            C.AR_CONTAINS: self._ar_contains,
            C.AR_GET: self._ar_get,
            C.AR_SET: self._ar_set,
            C.FL_LOCK: self._fl_lock,
            C.FL_TRY_LOCK: self._fl_try_lock,
            C.FL_UNLOCK: self._fl_unlock,
            C.FL_GET_OWNERSHIP: self._fl_ownership,
        }
        return {t: self._guard(t, h) for t, h in table.items()}

    def tick(self, now: float) -> None:
        # Deadlines are kept on this service's own clock (the one handlers use), whatever time base
        # the core passes in ``now``: mixing wall-clock and monotonic time would expire every session.
        now = self._clock()
        for s in [s for s in self._sessions.values() if s.expires_at <= now]:
            log.info("CP session %d (%s) expired: releasing its locks", s.id, s.endpoint)
            self._end_session(s.id)
        for _key, lk in self._locks.items():
            if not any(w.deadline is not None and w.deadline <= now for w in lk.waiters):
                continue
            keep: deque = deque()
            for w in lk.waiters:
                if w.deadline is not None and w.deadline <= now:
                    self._reply(w, C.encode_long_response(w.request_type, INVALID_FENCE))
                else:
                    keep.append(w)
            lk.waiters = keep

    def on_connection_closed(self, connection_id: int, client_uuid: uuid.UUID | None) -> None:
        for lk in self._locks.values():
            if any(w.ctx.connection_id == connection_id for w in lk.waiters):
                lk.waiters = deque(w for w in lk.waiters if w.ctx.connection_id != connection_id)

    def snapshot(self) -> dict[str, Any]:
        b64 = lambda v: None if v is None else base64.b64encode(v).decode("ascii")  # noqa: E731
        return {
            "version": _SNAPSHOT_VERSION,
            "longs": [[g, n, v] for (g, n), v in self._longs.items()],
            "refs": [[g, n, b64(v)] for (g, n), v in self._refs.items()],
            "locks": [[g, n, lk.owner_session, lk.owner_thread, lk.count, lk.fence,
                       str(lk.acquire_uid) if lk.acquire_uid else None]
                      for (g, n), lk in self._locks.items() if lk.held()],
            "sessions": [[s.id, s.group_id, s.endpoint] for s in self._sessions.values()],
            "destroyed": [list(d) for d in sorted(self._destroyed)],
            "next_session": self._next_session,
            "next_thread": self._next_thread,
            "next_fence": self._next_fence,
        }

    def restore(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if state.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"CP snapshot version {state.get('version')!r} is not {_SNAPSHOT_VERSION}")
        now = self._clock()
        self._longs = {(int(g), str(n)): _wrap64(int(v)) for g, n, v in state.get("longs", [])}
        self._refs = {(int(g), str(n)): (None if v is None else base64.b64decode(v))
                      for g, n, v in state.get("refs", [])}
        # Restored sessions get a fresh TTL: a live client heartbeats it, a dead one lets it expire.
        self._sessions = {int(i): _Session(int(i), int(g), str(e), now + self.config.session_ttl_s)
                          for i, g, e in state.get("sessions", [])}
        self._locks = {}
        for g, n, sess, thread, count, fence, uid in state.get("locks", []):
            if int(sess) in self._sessions and int(count) > 0:
                self._locks[(int(g), str(n))] = _Lock(int(sess), int(thread), int(count), int(fence),
                                                      uuid.UUID(uid) if uid else None)
        self._destroyed = {(str(s), int(g), str(n)) for s, g, n in state.get("destroyed", [])}
        self._next_session = max(self._next_session, int(state.get("next_session", 0)))
        self._next_thread = max(self._next_thread, int(state.get("next_thread", 0)))
        self._next_fence = max(self._next_fence, int(state.get("next_fence", 0)))
        log.info("CP state restored: %d atomic longs, %d atomic refs, %d held locks, %d sessions",
                 len(self._longs), len(self._refs), len(self._locks), len(self._sessions))

    # ------------------------------------------------------------------ helpers
    def _guard(self, msg_type: int, fn: Callable[[RequestContext, InboundMessage], OutboundMessage | None]
               ) -> Handler:
        def handler(ctx: RequestContext, msg: InboundMessage) -> OutboundMessage | None:
            try:
                return fn(ctx, msg)
            except HandlerError:
                raise
            except Exception as exc:  # malformed frame: answer with an error, never crash the member
                log.warning("CP: malformed request type 0x%06x from connection %s dropped: %r",
                            msg_type, getattr(ctx, "connection_id", "?"), exc)
                raise HandlerError(ILLEGAL_ARGUMENT,
                                   f"malformed CP request (type 0x{msg_type:06x}): {exc}") from exc
        handler.__name__ = f"cp_{fn.__name__.lstrip('_')}"
        return handler

    def _check_group(self, group: RaftGroupId) -> int:
        if group.seed != 0 or group.id != group_id_for(group.name) or group.name.lower() == METADATA_GROUP:
            raise HandlerError(GROUP_DESTROYED, f"CP group {group!r} does not exist")
        return group.id

    def _key(self, service: str, req: C.ObjectRequest, kind: str) -> ObjKey:
        gid = self._check_group(req.group)
        if (service, gid, req.name) in self._destroyed:
            raise HandlerError(OBJECT_DESTROYED, f"{kind}[{req.name}] is already destroyed!")
        return gid, req.name

    def _touch(self, session_id: int, gid: int) -> _Session:
        s = self._sessions.get(session_id)
        if s is None or s.group_id != gid:
            raise HandlerError(SESSION_EXPIRED, f"CP session {session_id} does not exist or expired")
        s.expires_at = self._clock() + self.config.session_ttl_s
        return s

    def _reply(self, w: _Waiter, resp: OutboundMessage) -> None:
        resp.set_correlation_id(w.ctx.correlation_id)
        try:
            w.ctx.send_event(resp)
        except Exception as exc:  # noqa: BLE001 - a dead connection must not break the state machine
            log.info("CP: could not answer lock waiter on connection %s: %r", w.ctx.connection_id, exc)

    def _reply_error(self, w: _Waiter, class_name: str, message: str) -> None:
        self._reply(w, C.encode_error(class_name, message))

    # ------------------------------------------------------------------ groups & sessions
    def _create_group(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        proxy_name = C.decode_group_name_request(msg).strip()
        group_name = DEFAULT_GROUP
        if "@" in proxy_name:
            obj, _, group_name = proxy_name.partition("@")
            group_name = group_name.strip()
            if "@" in group_name or not obj.strip() or not group_name:
                raise HandlerError(ILLEGAL_ARGUMENT, f"invalid CP proxy name {proxy_name!r}")
        if group_name.lower() == METADATA_GROUP:
            raise HandlerError(ILLEGAL_ARGUMENT, "CP data structures cannot run on the METADATA CP group!")
        if group_name.lower() == DEFAULT_GROUP:
            group_name = DEFAULT_GROUP
        return C.encode_group_id_response(RaftGroupId(group_name, 0, group_id_for(group_name)))

    def _destroy_object(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        group, service, name = C.decode_destroy_object(msg)
        gid = self._check_group(group)
        if service not in KNOWN_SERVICES:
            raise HandlerError(UNSUPPORTED, f"CP service {service!r} is not supported by the embedded member")
        self._destroyed.add((service, gid, name))
        key = (gid, name)
        if service == ATOMIC_LONG_SERVICE:
            self._longs.pop(key, None)
        elif service == ATOMIC_REF_SERVICE:
            self._refs.pop(key, None)
        else:
            lk = self._locks.pop(key, None)
            for w in (lk.waiters if lk else ()):
                self._reply_error(w, OBJECT_DESTROYED, f"FencedLock[{name}] is destroyed")
        log.info("CP object %s %s@%s destroyed", service, name, group.name)
        return C.encode_empty_response(C.DESTROY_CP_OBJECT)

    def _create_session(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        group, endpoint = C.decode_create_session(msg)
        gid = self._check_group(group)
        self._next_session += 1
        sid = self._next_session
        self._sessions[sid] = _Session(sid, gid, endpoint, self._clock() + self.config.session_ttl_s)
        log.info("CP session %d created for %s in group %s", sid, endpoint, group.name)
        return C.encode_create_session_response(sid, int(self.config.session_ttl_s * 1000),
                                                int(self.config.heartbeat_s * 1000))

    def _heartbeat_session(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        group, sid = C.decode_session_op(msg)
        self._touch(sid, self._check_group(group))
        return C.encode_empty_response(C.HEARTBEAT_SESSION)

    def _close_session(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        group, sid = C.decode_session_op(msg)
        gid = self._check_group(group)
        s = self._sessions.get(sid)
        existed = s is not None and s.group_id == gid
        if existed:
            log.info("CP session %d (%s) closed by client", sid, s.endpoint)
            self._end_session(sid)
        return C.encode_bool_response(C.CLOSE_SESSION, existed)

    def _generate_thread_id(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        self._check_group(C.decode_group_only(msg))
        self._next_thread += 1
        return C.encode_long_response(C.GENERATE_THREAD_ID, self._next_thread)

    def _end_session(self, sid: int) -> None:
        """Close or expire a session: cancel its waiters, release its locks, wake the next waiters."""
        self._sessions.pop(sid, None)
        for key, lk in self._locks.items():
            if any(w.session_id == sid for w in lk.waiters):
                keep: deque = deque()
                for w in lk.waiters:
                    if w.session_id == sid:
                        self._reply_error(w, SESSION_EXPIRED, f"CP session {sid} expired")
                    else:
                        keep.append(w)
                lk.waiters = keep
            if lk.held() and lk.owner_session == sid:
                log.info("CP lock %s released: owner session %d ended", key[1], sid)
                lk.count = 0
                self._grant_next(lk)

    # ------------------------------------------------------------------ AtomicLong
    def _al_key(self, req: C.ObjectRequest) -> ObjKey:
        return self._key(ATOMIC_LONG_SERVICE, req, "AtomicLong")

    def _al_get(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        key = self._al_key(C.decode_object(msg))
        return C.encode_long_response(C.AL_GET, self._longs.get(key, 0))

    def _al_add_and_get(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        req, delta = C.decode_object_long(msg)
        key = self._al_key(req)
        self._longs[key] = v = _wrap64(self._longs.get(key, 0) + delta)
        return C.encode_long_response(C.AL_ADD_AND_GET, v)

    def _al_get_and_add(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        req, delta = C.decode_object_long(msg)
        key = self._al_key(req)
        old = self._longs.get(key, 0)
        self._longs[key] = _wrap64(old + delta)
        return C.encode_long_response(C.AL_GET_AND_ADD, old)

    def _al_get_and_set(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        req, new = C.decode_object_long(msg)
        key = self._al_key(req)
        old = self._longs.get(key, 0)
        self._longs[key] = new
        return C.encode_long_response(C.AL_GET_AND_SET, old)

    def _al_compare_and_set(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        req, expected, updated = C.decode_object_two_longs(msg)
        key = self._al_key(req)
        ok = self._longs.get(key, 0) == expected
        if ok:
            self._longs[key] = updated
        return C.encode_bool_response(C.AL_COMPARE_AND_SET, ok)

    def _al_function(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        req = C.decode_object_function(msg)
        self._al_key(req)
        op = "alter" if msg.get_message_type() == C.AL_ALTER else "apply"
        raise HandlerError(UNSUPPORTED, f"AtomicLong[{req.name}].{op}: the embedded member cannot run "
                                        "client-side functions; use get/compare_and_set instead")

    # ------------------------------------------------------------------ AtomicReference
    def _ar_key(self, req: C.ObjectRequest) -> ObjKey:
        return self._key(ATOMIC_REF_SERVICE, req, "AtomicReference")

    def _ar_get(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        key = self._ar_key(C.decode_object(msg))
        return C.encode_nullable_data_response(C.AR_GET, self._refs.get(key))

    def _ar_set(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        req, value, return_old = C.decode_ref_set(msg)
        key = self._ar_key(req)
        old = self._refs.get(key)
        self._refs[key] = value
        return C.encode_nullable_data_response(C.AR_SET, old if return_old else None)

    def _ar_compare_and_set(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        req, expected, new = C.decode_ref_compare_and_set(msg)
        key = self._ar_key(req)
        ok = self._refs.get(key) == expected
        if ok:
            self._refs[key] = new
        return C.encode_bool_response(C.AR_COMPARE_AND_SET, ok)

    def _ar_contains(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        req, value = C.decode_ref_contains(msg)
        key = self._ar_key(req)
        return C.encode_bool_response(C.AR_CONTAINS, self._refs.get(key) == value)

    def _ar_apply(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        req = C.decode_object_function(msg)
        self._ar_key(req)
        raise HandlerError(UNSUPPORTED, f"AtomicReference[{req.name}].alter/apply: the embedded member "
                                        "cannot run client-side functions; use get/compare_and_set instead")

    # ------------------------------------------------------------------ FencedLock
    def _fl_key(self, req: C.LockRequest | C.ObjectRequest) -> ObjKey:
        return self._key(LOCK_SERVICE, C.ObjectRequest(req.group, req.name), "FencedLock")

    def _acquire(self, ctx: RequestContext, req: C.LockRequest, request_type: int,
                 deadline: float | None, wait: bool) -> OutboundMessage | None:
        key = self._fl_key(req)
        self._touch(req.session_id, key[0])
        lk = self._locks.setdefault(key, _Lock())
        if not lk.held():
            self._next_fence += 1
            lk.owner_session, lk.owner_thread, lk.count = req.session_id, req.thread_id, 1
            lk.fence, lk.acquire_uid = self._next_fence, req.invocation_uid
            return C.encode_long_response(request_type, lk.fence)
        if lk.owned_by(req.session_id, req.thread_id):
            if req.invocation_uid is not None and req.invocation_uid == lk.acquire_uid:
                return C.encode_long_response(request_type, lk.fence)   # retried invocation
            lk.count += 1
            lk.acquire_uid = req.invocation_uid
            return C.encode_long_response(request_type, lk.fence)
        # Held by someone else: the same caller may have an older wait key (retry or a new call).
        for w in list(lk.waiters):
            if w.session_id == req.session_id and w.thread_id == req.thread_id:
                if w.invocation_uid == req.invocation_uid:
                    w.ctx, w.deadline, w.request_type = ctx, deadline, request_type  # retried call
                    return None
                lk.waiters.remove(w)
                self._reply_error(w, WAIT_KEY_CANCELLED,
                                  f"Lock[{req.name}] wait key cancelled by a newer call of the same thread")
        if not wait:
            return C.encode_long_response(request_type, INVALID_FENCE)
        lk.waiters.append(_Waiter(req.session_id, req.thread_id, req.invocation_uid, ctx,
                                  request_type, deadline))
        return None

    def _grant_next(self, lk: _Lock) -> None:
        while lk.waiters:
            w = lk.waiters.popleft()
            if w.session_id not in self._sessions:
                self._reply_error(w, SESSION_EXPIRED, f"CP session {w.session_id} expired")
                continue
            self._next_fence += 1
            lk.owner_session, lk.owner_thread, lk.count = w.session_id, w.thread_id, 1
            lk.fence, lk.acquire_uid = self._next_fence, w.invocation_uid
            self._reply(w, C.encode_long_response(w.request_type, lk.fence))
            return
        lk.owner_session, lk.owner_thread, lk.fence, lk.acquire_uid = NO_SESSION_ID, 0, INVALID_FENCE, None

    def _fl_lock(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage | None:
        req = C.decode_lock(msg)
        return self._acquire(ctx, req, C.FL_LOCK, None, wait=True)

    def _fl_try_lock(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage | None:
        req = C.decode_lock(msg, with_timeout=True)
        if req.timeout_ms <= 0:
            return self._acquire(ctx, req, C.FL_TRY_LOCK, None, wait=False)
        return self._acquire(ctx, req, C.FL_TRY_LOCK, self._clock() + req.timeout_ms / 1000.0, wait=True)

    def _fl_unlock(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        req = C.decode_lock(msg)
        key = self._fl_key(req)
        self._touch(req.session_id, key[0])
        lk = self._locks.get(key)
        if lk is not None and lk.last_release is not None and req.invocation_uid is not None \
                and lk.last_release[:3] == (req.session_id, req.thread_id, req.invocation_uid):
            return C.encode_bool_response(C.FL_UNLOCK, lk.last_release[3])   # retried unlock
        if lk is None or not lk.owned_by(req.session_id, req.thread_id):
            raise HandlerError(ILLEGAL_MONITOR, f"Current thread is not owner of the Lock[{req.name}]")
        lk.count -= 1
        still_held = lk.count > 0
        lk.last_release = (req.session_id, req.thread_id, req.invocation_uid, still_held)
        if not still_held:
            self._grant_next(lk)
        return C.encode_bool_response(C.FL_UNLOCK, still_held)

    def _fl_ownership(self, ctx: RequestContext, msg: InboundMessage) -> OutboundMessage:
        key = self._fl_key(C.decode_object(msg))
        lk = self._locks.get(key)
        if lk is None or not lk.held():
            return C.encode_ownership_response(INVALID_FENCE, 0, NO_SESSION_ID, 0)
        return C.encode_ownership_response(lk.fence, lk.count, lk.owner_session, lk.owner_thread)
