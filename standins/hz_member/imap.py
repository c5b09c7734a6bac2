"""IMap service of the embedded member: map state, TTL/max-idle expiry, entry and near-cache listeners.

Keys and values are kept as the raw serialized Hazelcast ``Data`` bytes the client sent, so equality
(``contains_value``, ``replace_if_same``, ``remove_if_same``, per-key listeners) is byte equality,
exactly as on a Hazelcast member. Every mutation runs on the member's single event loop and emits its
entry events to all registered connections at once, so every client sees the events of one key in
write order.
"""
from __future__ import annotations

import heapq
import logging
import struct
import time
import uuid
from typing import Any, Callable

from hazelcast.hash import hash_to_index
from hazelcast.serialization.data import Data
from hazelcast.protocol.builtin import FixSizedTypesCodec, ListMultiFrameCodec, StringCodec
from hazelcast.protocol.client_message import OutboundMessage
from hazelcast.protocol.codec import (
    map_add_entry_listener_codec as c_listen, map_add_entry_listener_to_key_codec as c_listen_key,
    map_add_near_cache_invalidation_listener_codec as c_inval, map_clear_codec as c_clear,
    map_contains_key_codec as c_contains_key, map_contains_value_codec as c_contains_value,
    map_delete_codec as c_delete, map_entry_set_codec as c_entry_set, map_evict_all_codec as c_evict_all,
    map_evict_codec as c_evict, map_flush_codec as c_flush, map_get_all_codec as c_get_all,
    map_get_codec as c_get, map_is_empty_codec as c_is_empty, map_key_set_codec as c_key_set,
    map_put_all_codec as c_put_all, map_put_codec as c_put, map_put_if_absent_codec as c_pia,
    map_put_if_absent_with_max_idle_codec as c_pia_idle, map_put_transient_codec as c_put_transient,
    map_put_with_max_idle_codec as c_put_idle, map_remove_codec as c_remove,
    map_remove_entry_listener_codec as c_unlisten, map_remove_if_same_codec as c_remove_if_same,
    map_replace_codec as c_replace, map_replace_if_same_codec as c_replace_if_same,
    map_set_codec as c_set, map_set_ttl_codec as c_set_ttl, map_set_with_max_idle_codec as c_set_idle,
    map_size_codec as c_size, map_try_put_codec as c_try_put, map_try_remove_codec as c_try_remove,
    map_values_codec as c_values,
)

from standins.hz_member import protocol as P
from standins.hz_member.base import RequestContext

log = logging.getLogger("hz_member.imap")

PARTITION_COUNT = 271
# MapFetchNearCacheInvalidationMetadata (0x013D00): not in the Python client, sent by Java/.NET/Node
# clients whose near cache repairs itself from per-partition invalidation sequences.
FETCH_NC_METADATA_REQUEST = 0x013D00
FETCH_NC_METADATA_RESPONSE = 0x013D01

MAP_SERVICE_NAME = "hz:impl:mapService"

# EntryEventType (hazelcast/proxy/base.py)
ADDED, REMOVED, UPDATED, EVICTED, EXPIRED, EVICT_ALL, CLEAR_ALL = 1, 2, 4, 8, 16, 32, 64

_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_CORR_OFF = P.HDR + 4

Sender = Callable[[int, "bytes | bytearray"], None]


def _req(codec) -> int:
    return codec._REQUEST_MESSAGE_TYPE


def _resp(codec) -> int:
    return codec._RESPONSE_MESSAGE_TYPE


class Entry:
    """One map entry; times are wall-clock seconds so they survive a snapshot/restart."""

    __slots__ = ("value", "ttl", "idle", "updated", "last_access", "expire_at", "heap_at")

    def __init__(self, value: bytes, ttl: float, idle: float, now: float):
        self.value = value
        self.ttl = ttl            # seconds, 0 = never
        self.idle = idle          # seconds, 0 = never
        self.updated = now
        self.last_access = now
        self.expire_at: float | None = None
        self.heap_at: float | None = None
        self.recompute()

    def recompute(self) -> None:
        d = self.updated + self.ttl if self.ttl > 0 else None
        if self.idle > 0:
            d2 = self.last_access + self.idle
            d = d2 if d is None or d2 < d else d
        self.expire_at = d


class Listener:
    __slots__ = ("reg_id", "conn_id", "corr_id", "key", "include_value", "flags", "event_type")

    def __init__(self, reg_id, conn_id, corr_id, key, include_value, flags, event_type):
        self.reg_id = reg_id
        self.conn_id = conn_id
        self.corr_id = corr_id
        self.key = key
        self.include_value = include_value
        self.flags = flags
        self.event_type = event_type


class MapState:
    __slots__ = ("name", "entries", "listeners", "invalidation", "part_seq")

    def __init__(self, name: str):
        self.name = name
        self.entries: dict[bytes, Entry] = {}
        self.listeners: list[Listener] = []
        self.invalidation: list[Listener] = []
        self.part_seq: dict[int, int] = {}        # partition id → last invalidation sequence


def partition_of(key: bytes) -> int:
    """Partition id of a key's Data bytes, computed exactly as the client does."""
    return hash_to_index(Data(key).get_partition_hash(), PARTITION_COUNT)


def _ttl_seconds(ms: int) -> float:
    """Client TTL/max-idle in ms → seconds; -1 (map default) and 0 mean 'never'."""
    return ms / 1000.0 if ms > 0 else 0.0


class MapService:
    """All IMaps of the member (implements :class:`standins.hz_member.base.MemberService`)."""

    def __init__(self, member_uuid: uuid.UUID, sender: Sender, clock: Callable[[], float] = time.time):
        self.member_uuid = member_uuid
        self.partition_uuid = uuid.uuid4()
        self._send = sender
        self._clock = clock
        self.maps: dict[str, MapState] = {}
        self._heap: list[tuple[float, int, str, bytes]] = []
        self._heap_seq = 0
        self._by_reg: dict[uuid.UUID, tuple[str, Listener]] = {}
        # durability bookkeeping, drained by the snapshot store (group commit)
        self.dirty: set[tuple[str, bytes]] = set()
        self.cleared: set[str] = set()
        self.track_dirty = False
        self._uuid_bytes = bytearray(P.UUID_SIZE)
        FixSizedTypesCodec.encode_uuid(self._uuid_bytes, 0, member_uuid)

    # ---- contract ------------------------------------------------------------------------------

    def handlers(self) -> dict[int, Callable]:
        return {
            _req(c_put): self.h_put, _req(c_set): self.h_set, _req(c_get): self.h_get,
            _req(c_get_all): self.h_get_all, _req(c_put_all): self.h_put_all, _req(c_remove): self.h_remove,
            _req(c_delete): self.h_delete, _req(c_contains_key): self.h_contains_key,
            _req(c_contains_value): self.h_contains_value, _req(c_size): self.h_size,
            _req(c_is_empty): self.h_is_empty, _req(c_clear): self.h_clear, _req(c_key_set): self.h_key_set,
            _req(c_values): self.h_values, _req(c_entry_set): self.h_entry_set, _req(c_pia): self.h_put_if_absent,
            _req(c_pia_idle): self.h_put_if_absent_idle, _req(c_replace): self.h_replace,
            _req(c_replace_if_same): self.h_replace_if_same, _req(c_remove_if_same): self.h_remove_if_same,
            _req(c_set_ttl): self.h_set_ttl, _req(c_evict): self.h_evict, _req(c_evict_all): self.h_evict_all,
            _req(c_put_idle): self.h_put_idle, _req(c_set_idle): self.h_set_idle,
            _req(c_put_transient): self.h_put_transient, _req(c_try_put): self.h_try_put,
            _req(c_try_remove): self.h_try_remove, _req(c_flush): self.h_flush,
            _req(c_listen): self.h_add_listener, _req(c_listen_key): self.h_add_key_listener,
            _req(c_inval): self.h_add_invalidation_listener, _req(c_unlisten): self.h_remove_listener,
            FETCH_NC_METADATA_REQUEST: self.h_fetch_nc_metadata,
        }

    def tick(self, now: float) -> None:
        # ``now`` is the core's monotonic clock; TTLs are wall-clock (they survive a restart)
        now = self._clock()
        heap = self._heap
        while heap and heap[0][0] <= now:
            d, _, name, key = heapq.heappop(heap)
            m = self.maps.get(name)
            e = m.entries.get(key) if m is not None else None
            if e is None or e.heap_at != d:
                continue
            if e.expire_at is None:
                e.heap_at = None
            elif e.expire_at <= now:
                self._expire(m, key, e, None)
            else:
                self._schedule(name, key, e, force=True)

    def on_connection_closed(self, connection_id: int, client_uuid: uuid.UUID | None) -> None:
        for m in self.maps.values():
            if any(l.conn_id == connection_id for l in m.listeners):
                m.listeners = [l for l in m.listeners if l.conn_id != connection_id]
            if any(l.conn_id == connection_id for l in m.invalidation):
                m.invalidation = [l for l in m.invalidation if l.conn_id != connection_id]
        for reg_id in [r for r, (_, l) in self._by_reg.items() if l.conn_id == connection_id]:
            del self._by_reg[reg_id]

    def snapshot(self) -> dict[str, Any]:
        return {"maps": {name: [(k, e.value, e.ttl, e.idle, e.updated, e.last_access) for k, e in m.entries.items()]
                         for name, m in self.maps.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        now = self._clock()
        n = 0
        for name, rows in state.get("maps", {}).items():
            m = self._map(name)
            for k, value, ttl, idle, updated, last_access in rows:
                e = Entry(bytes(value), float(ttl), float(idle), now)
                e.updated, e.last_access = float(updated), float(last_access)
                e.recompute()
                if e.expire_at is not None and e.expire_at <= now:
                    self.dirty.add((name, bytes(k)))       # expired while down: drop it from the store too
                    continue
                m.entries[bytes(k)] = e
                self._schedule(name, bytes(k), e)
                n += 1
        log.info("restored %d entries in %d maps", n, len(state.get("maps", {})))

    # ---- helpers used by the core --------------------------------------------------------------

    def map_names(self) -> list[str]:
        return [n for n, m in self.maps.items() if m.entries]

    def destroy_map(self, name: str) -> None:
        m = self.maps.get(name)
        if m is not None:
            m.entries.clear()
            self._mark_cleared(name)
            if m.invalidation:
                self._invalidate(m, None, None)           # other near caches of this map drop everything

    def local_set(self, name: str, key: bytes, value: bytes) -> None:
        """Set an entry from inside the member (heartbeat), firing events like a client ``set``."""
        self._store(self._map(name), key, value, -1, -1, None)

    # ---- internals -----------------------------------------------------------------------------

    def _map(self, name: str) -> MapState:
        m = self.maps.get(name)
        if m is None:
            m = self.maps[name] = MapState(name)
        return m

    def _mark(self, name: str, key: bytes) -> None:
        if self.track_dirty:
            self.dirty.add((name, key))

    def _mark_cleared(self, name: str) -> None:
        if self.track_dirty:
            self.cleared.add(name)
            self.dirty = {(n, k) for n, k in self.dirty if n != name}

    def _schedule(self, name: str, key: bytes, e: Entry, force: bool = False) -> None:
        d = e.expire_at
        if d is None:
            return
        if force or e.heap_at is None or d < e.heap_at:
            self._heap_seq += 1
            heapq.heappush(self._heap, (d, self._heap_seq, name, key))
            e.heap_at = d

    def _live(self, m: MapState, key: bytes, now: float, touch: bool = True) -> Entry | None:
        e = m.entries.get(key)
        if e is None:
            return None
        if e.expire_at is not None:
            if e.expire_at <= now:
                self._expire(m, key, e, None)
                return None
            if touch and e.idle > 0:
                e.last_access = now
                e.recompute()
        return e

    def _purge_expired(self, m: MapState, now: float) -> None:
        dead = [(k, e) for k, e in m.entries.items() if e.expire_at is not None and e.expire_at <= now]
        for k, e in dead:
            self._expire(m, k, e, None)

    def _expire(self, m: MapState, key: bytes, e: Entry, source: uuid.UUID | None) -> None:
        del m.entries[key]
        self._mark(m.name, key)
        self._fire(m, EXPIRED, key, None, e.value, source)

    def _store(self, m: MapState, key: bytes, value: bytes, ttl_ms: int, idle_ms: int,
               source: uuid.UUID | None, now: float | None = None) -> bytes | None:
        """Insert or update; fire ADDED/UPDATED; return the previous value (or None)."""
        now = self._clock() if now is None else now
        e = self._live(m, key, now, touch=False)
        ttl, idle = _ttl_seconds(ttl_ms), _ttl_seconds(idle_ms)
        if e is None:
            e = m.entries[key] = Entry(value, ttl, idle, now)
            old = None
        else:
            old = e.value
            e.value, e.ttl, e.idle, e.updated, e.last_access = value, ttl, idle, now, now
            e.recompute()
        self._schedule(m.name, key, e)
        self._mark(m.name, key)
        self._fire(m, ADDED if old is None else UPDATED, key, value, old, source)
        return old

    def _delete(self, m: MapState, key: bytes, e: Entry, event_type: int, source: uuid.UUID | None) -> None:
        del m.entries[key]
        self._mark(m.name, key)
        self._fire(m, event_type, key, None, e.value, source)

    def _fire(self, m: MapState, event_type: int, key: bytes | None, value: bytes | None,
              old: bytes | None, source: uuid.UUID | None, affected: int = 1) -> None:
        if m.invalidation:
            self._invalidate(m, key, source)
        if not m.listeners:
            return
        cache: dict[tuple[int, bool], bytearray] = {}
        send = self._send
        for l in m.listeners:
            if not (l.flags & event_type) or (l.key is not None and key is not None and l.key != key):
                continue
            ck = (l.event_type, l.include_value)
            buf = cache.get(ck)
            if buf is None:
                buf = cache[ck] = self._entry_event(l.event_type, event_type, key,
                                                    value if l.include_value else None,
                                                    old if l.include_value else None, affected)
            out = bytearray(buf)
            _I64.pack_into(out, _CORR_OFF, l.corr_id)
            send(l.conn_id, out)

    def _entry_event(self, msg_type: int, event_type: int, key, value, old, affected: int) -> bytearray:
        buf = P.event(msg_type, P.INT_SIZE + P.UUID_SIZE + P.INT_SIZE, final=False)
        o = P.EVENT_OFF
        _I32.pack_into(buf, o, event_type)
        buf[o + 4:o + 4 + P.UUID_SIZE] = self._uuid_bytes
        _I32.pack_into(buf, o + 4 + P.UUID_SIZE, affected)
        P.nullable_data_frame(buf, key)
        P.nullable_data_frame(buf, value)
        P.nullable_data_frame(buf, old)
        buf += P.NULL_FINAL                                       # merging value
        return buf

    def _invalidate(self, m: MapState, key: bytes | None, source: uuid.UUID | None) -> None:
        if key is None:
            seq = 0                                   # "clear all": not tied to one partition
        else:
            pid = partition_of(key)
            seq = m.part_seq[pid] = m.part_seq.get(pid, 0) + 1
        buf = P.event(c_inval._EVENT_I_MAP_INVALIDATION_MESSAGE_TYPE, 2 * P.UUID_SIZE + P.LONG_SIZE, final=False)
        o = P.EVENT_OFF
        FixSizedTypesCodec.encode_uuid(buf, o, source)
        FixSizedTypesCodec.encode_uuid(buf, o + P.UUID_SIZE, self.partition_uuid)
        _I64.pack_into(buf, o + 2 * P.UUID_SIZE, seq)
        P.nullable_data_frame(buf, key, final=True)
        for l in m.invalidation:
            out = bytearray(buf)
            _I64.pack_into(out, _CORR_OFF, l.corr_id)
            self._send(l.conn_id, out)

    # ---- request handlers ----------------------------------------------------------------------

    def _name_key(self, msg) -> tuple[bytes, MapState, bytes]:
        f = P.initial(msg)
        name = P.read_str(msg)
        return f, self._map(name), P.read_data(msg)

    def h_put(self, ctx: RequestContext, msg) -> OutboundMessage:
        f, m, key = self._name_key(msg)
        value = P.read_data(msg)
        old = self._store(m, key, value, P.req_long(f, 8), -1, ctx.client_uuid)
        return P.nullable_data_response(_resp(c_put), old)

    def h_put_idle(self, ctx, msg):
        f, m, key = self._name_key(msg)
        value = P.read_data(msg)
        old = self._store(m, key, value, P.req_long(f, 8), P.req_long(f, 16), ctx.client_uuid)
        return P.nullable_data_response(_resp(c_put_idle), old)

    def h_set(self, ctx, msg):
        f, m, key = self._name_key(msg)
        self._store(m, key, P.read_data(msg), P.req_long(f, 8), -1, ctx.client_uuid)
        return P.empty_response(_resp(c_set))

    def h_set_idle(self, ctx, msg):
        f, m, key = self._name_key(msg)
        self._store(m, key, P.read_data(msg), P.req_long(f, 8), P.req_long(f, 16), ctx.client_uuid)
        return P.nullable_data_response(_resp(c_set_idle), None)

    def h_put_transient(self, ctx, msg):
        f, m, key = self._name_key(msg)
        self._store(m, key, P.read_data(msg), P.req_long(f, 8), -1, ctx.client_uuid)
        return P.empty_response(_resp(c_put_transient))

    def h_try_put(self, ctx, msg):
        f, m, key = self._name_key(msg)
        self._store(m, key, P.read_data(msg), -1, -1, ctx.client_uuid)
        return P.bool_response(_resp(c_try_put), True)

    def h_get(self, ctx, msg):
        _, m, key = self._name_key(msg)
        e = self._live(m, key, self._clock())
        return P.nullable_data_response(_resp(c_get), None if e is None else e.value)

    def h_get_all(self, ctx, msg):
        P.initial(msg)
        m = self._map(P.read_str(msg))
        keys = P.read_data_list(msg)
        now = self._clock()
        buf = P.response(_resp(c_get_all), final=False)
        buf += P.BEGIN
        for k in keys:
            e = self._live(m, k, now)
            if e is not None:
                P.data_frame(buf, k)
                P.data_frame(buf, e.value)
        buf += P.END_FINAL
        return OutboundMessage(buf, False)

    def h_put_all(self, ctx, msg):
        P.initial(msg)
        m = self._map(P.read_str(msg))
        now = self._clock()
        for k, v in P.read_entry_list(msg):
            self._store(m, k, v, -1, -1, ctx.client_uuid, now)
        return P.empty_response(_resp(c_put_all))

    def h_remove(self, ctx, msg):
        _, m, key = self._name_key(msg)
        e = self._live(m, key, self._clock(), touch=False)
        if e is not None:
            self._delete(m, key, e, REMOVED, ctx.client_uuid)
        return P.nullable_data_response(_resp(c_remove), None if e is None else e.value)

    def h_try_remove(self, ctx, msg):
        _, m, key = self._name_key(msg)
        e = self._live(m, key, self._clock(), touch=False)
        if e is not None:
            self._delete(m, key, e, REMOVED, ctx.client_uuid)
        return P.bool_response(_resp(c_try_remove), e is not None)

    def h_delete(self, ctx, msg):
        _, m, key = self._name_key(msg)
        e = self._live(m, key, self._clock(), touch=False)
        if e is not None:
            self._delete(m, key, e, REMOVED, ctx.client_uuid)
        return P.empty_response(_resp(c_delete))

    def h_remove_if_same(self, ctx, msg):
        _, m, key = self._name_key(msg)
        value = P.read_data(msg)
        e = self._live(m, key, self._clock(), touch=False)
        ok = e is not None and e.value == value
        if ok:
            self._delete(m, key, e, REMOVED, ctx.client_uuid)
        return P.bool_response(_resp(c_remove_if_same), ok)

    def h_evict(self, ctx, msg):
        _, m, key = self._name_key(msg)
        e = self._live(m, key, self._clock(), touch=False)
        if e is not None:
            self._delete(m, key, e, EVICTED, ctx.client_uuid)
        return P.bool_response(_resp(c_evict), e is not None)

    def h_contains_key(self, ctx, msg):
        _, m, key = self._name_key(msg)
        return P.bool_response(_resp(c_contains_key), self._live(m, key, self._clock()) is not None)

    def h_contains_value(self, ctx, msg):
        P.initial(msg)
        m = self._map(P.read_str(msg))
        value = P.read_data(msg)
        self._purge_expired(m, self._clock())
        return P.bool_response(_resp(c_contains_value), any(e.value == value for e in m.entries.values()))

    def h_size(self, ctx, msg):
        P.initial(msg)
        m = self._map(P.read_str(msg))
        self._purge_expired(m, self._clock())
        return P.int_response(_resp(c_size), len(m.entries))

    def h_is_empty(self, ctx, msg):
        P.initial(msg)
        m = self._map(P.read_str(msg))
        self._purge_expired(m, self._clock())
        return P.bool_response(_resp(c_is_empty), not m.entries)

    def _bulk_clear(self, ctx, msg, event_type: int, codec) -> OutboundMessage:
        P.initial(msg)
        m = self._map(P.read_str(msg))
        self._purge_expired(m, self._clock())
        n = len(m.entries)
        m.entries.clear()
        self._mark_cleared(m.name)
        if n or m.invalidation:
            self._fire(m, event_type, None, None, None, ctx.client_uuid, affected=n)
        return P.empty_response(_resp(codec))

    def h_clear(self, ctx, msg):
        return self._bulk_clear(ctx, msg, CLEAR_ALL, c_clear)

    def h_evict_all(self, ctx, msg):
        return self._bulk_clear(ctx, msg, EVICT_ALL, c_evict_all)

    def h_flush(self, ctx, msg):
        return P.empty_response(_resp(c_flush))

    def _listing(self, msg) -> MapState:
        P.initial(msg)
        m = self._map(P.read_str(msg))
        self._purge_expired(m, self._clock())
        return m

    def h_key_set(self, ctx, msg):
        m = self._listing(msg)
        buf = P.response(_resp(c_key_set), final=False)
        buf += P.BEGIN
        for k in m.entries:
            P.data_frame(buf, k)
        buf += P.END_FINAL
        return OutboundMessage(buf, False)

    def h_values(self, ctx, msg):
        m = self._listing(msg)
        buf = P.response(_resp(c_values), final=False)
        buf += P.BEGIN
        for e in m.entries.values():
            P.data_frame(buf, e.value)
        buf += P.END_FINAL
        return OutboundMessage(buf, False)

    def h_entry_set(self, ctx, msg):
        m = self._listing(msg)
        buf = P.response(_resp(c_entry_set), final=False)
        buf += P.BEGIN
        for k, e in m.entries.items():
            P.data_frame(buf, k)
            P.data_frame(buf, e.value)
        buf += P.END_FINAL
        return OutboundMessage(buf, False)

    def _put_if_absent(self, ctx, msg, idle: bool, codec) -> OutboundMessage:
        f, m, key = self._name_key(msg)
        value = P.read_data(msg)
        now = self._clock()
        e = self._live(m, key, now)
        if e is not None:
            return P.nullable_data_response(_resp(codec), e.value)
        self._store(m, key, value, P.req_long(f, 8), P.req_long(f, 16) if idle else -1, ctx.client_uuid, now)
        return P.nullable_data_response(_resp(codec), None)

    def h_put_if_absent(self, ctx, msg):
        return self._put_if_absent(ctx, msg, False, c_pia)

    def h_put_if_absent_idle(self, ctx, msg):
        return self._put_if_absent(ctx, msg, True, c_pia_idle)

    def _keep_expiry_store(self, m: MapState, key: bytes, e: Entry, value: bytes, source) -> None:
        # replace keeps the entry's TTL settings (like Hazelcast: the TTL restarts from the update)
        now = self._clock()
        old = e.value
        e.value, e.updated, e.last_access = value, now, now
        e.recompute()
        self._schedule(m.name, key, e)
        self._mark(m.name, key)
        self._fire(m, UPDATED, key, value, old, source)

    def h_replace(self, ctx, msg):
        _, m, key = self._name_key(msg)
        value = P.read_data(msg)
        e = self._live(m, key, self._clock(), touch=False)
        old = None if e is None else e.value
        if e is not None:
            self._keep_expiry_store(m, key, e, value, ctx.client_uuid)
        return P.nullable_data_response(_resp(c_replace), old)

    def h_replace_if_same(self, ctx, msg):
        _, m, key = self._name_key(msg)
        test = P.read_data(msg)
        value = P.read_data(msg)
        e = self._live(m, key, self._clock(), touch=False)
        ok = e is not None and e.value == test
        if ok:
            self._keep_expiry_store(m, key, e, value, ctx.client_uuid)
        return P.bool_response(_resp(c_replace_if_same), ok)

    def h_set_ttl(self, ctx, msg):
        f, m, key = self._name_key(msg)
        now = self._clock()
        e = self._live(m, key, now, touch=False)
        if e is not None:
            e.ttl = _ttl_seconds(P.req_long(f, 0))
            e.updated = now
            e.recompute()
            self._schedule(m.name, key, e)
            self._mark(m.name, key)
        return P.bool_response(_resp(c_set_ttl), e is not None)

    # ---- listeners -----------------------------------------------------------------------------

    def _register(self, ctx, m: MapState, lst: list, key, include_value, flags, event_type, codec):
        reg_id = uuid.uuid4()
        l = Listener(reg_id, ctx.connection_id, ctx.correlation_id, key, include_value, flags, event_type)
        lst.append(l)
        self._by_reg[reg_id] = (m.name, l)
        return P.uuid_response(_resp(codec), reg_id)

    def h_add_listener(self, ctx, msg):
        f = P.initial(msg)
        m = self._map(P.read_str(msg))
        return self._register(ctx, m, m.listeners, None, P.req_bool(f, 0), P.req_int(f, 1),
                              c_listen._EVENT_ENTRY_MESSAGE_TYPE, c_listen)

    def h_add_key_listener(self, ctx, msg):
        f = P.initial(msg)
        m = self._map(P.read_str(msg))
        key = P.read_data(msg)
        return self._register(ctx, m, m.listeners, key, P.req_bool(f, 0), P.req_int(f, 1),
                              c_listen_key._EVENT_ENTRY_MESSAGE_TYPE, c_listen_key)

    def h_add_invalidation_listener(self, ctx, msg):
        P.initial(msg)
        m = self._map(P.read_str(msg))
        return self._register(ctx, m, m.invalidation, None, False, 0,
                              c_inval._EVENT_I_MAP_INVALIDATION_MESSAGE_TYPE, c_inval)

    def h_remove_listener(self, ctx, msg):
        f = P.initial(msg)
        P.read_str(msg)
        reg_id = P.req_uuid(f, 0)
        found = self._by_reg.pop(reg_id, None)
        if found is not None:
            m = self.maps.get(found[0])
            if m is not None:
                m.listeners = [l for l in m.listeners if l.reg_id != reg_id]
                m.invalidation = [l for l in m.invalidation if l.reg_id != reg_id]
        return P.bool_response(_resp(c_unlisten), found is not None)

    def h_fetch_nc_metadata(self, ctx, msg):
        """Per-partition invalidation sequences of the named maps, and the (single) partition uuid."""
        P.initial(msg)
        names = ListMultiFrameCodec.decode(msg, StringCodec.decode)
        buf = P.response(FETCH_NC_METADATA_RESPONSE, final=False)
        buf += P.BEGIN
        for name in names:
            StringCodec.encode(buf, name)
            seqs = self.maps[name].part_seq if name in self.maps else {}
            items = sorted(seqs.items())
            frame = bytearray(P.HDR + 12 * len(items))
            struct.pack_into("<iH", frame, 0, len(frame), 0)
            for i, (pid, seq) in enumerate(items):
                struct.pack_into("<iq", frame, P.HDR + 12 * i, pid, seq)
            buf += frame
        buf += P.END
        frame = bytearray(P.HDR + (4 + P.UUID_SIZE) * PARTITION_COUNT)
        struct.pack_into("<iH", frame, 0, len(frame), 0x2000)        # IS_FINAL
        for pid in range(PARTITION_COUNT):
            o = P.HDR + (4 + P.UUID_SIZE) * pid
            _I32.pack_into(frame, o, pid)
            FixSizedTypesCodec.encode_uuid(frame, o + 4, self.partition_uuid)
        buf += frame
        return OutboundMessage(buf, False)
