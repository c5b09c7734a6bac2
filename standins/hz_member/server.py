"""Network core of the embedded Hazelcast member: sockets, framing, authentication, cluster view, dispatch.

One asyncio TCP server speaks the Hazelcast Open Binary Client Protocol well enough for the unmodified
hazelcast-python-client (smart routing on) to treat it as a one-member cluster owning all 271
partitions. Data services (IMap, CP) plug in through :mod:`standins.hz_member.base`. Responses and
events are queued per connection and written once per event-loop iteration, so a burst of pipelined
requests costs one ``write`` per socket. With ``--snapshot-dir`` the responses of a batch are written
once its group commit is done; the commit runs on a snapshot thread, so the loop keeps serving (and
entry events, which need no commit, go out at once) while SQLite writes.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import signal
import struct
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hazelcast.core import Address, DistributedObjectInfo, MemberInfo, MemberVersion
from hazelcast.protocol.builtin import (EntryListUUIDListIntegerCodec, FixSizedTypesCodec, ListMultiFrameCodec,
                                        SetUUIDCodec, StringCodec)
from hazelcast.protocol.client_message import InboundMessage, OutboundMessage
from hazelcast.protocol.codec import (
    client_add_cluster_view_listener_codec as c_view, client_add_distributed_object_listener_codec as c_dol,
    client_authentication_codec as c_auth, client_create_proxy_codec as c_create,
    client_destroy_proxy_codec as c_destroy, client_get_distributed_objects_codec as c_objects,
    client_local_backup_listener_codec as c_backup, client_ping_codec as c_ping,
    client_remove_distributed_object_listener_codec as c_rdol, client_send_all_schemas_codec as c_all_schemas,
    client_send_schema_codec as c_schema, client_statistics_codec as c_stats,
)
from hazelcast.protocol.codec.custom.address_codec import AddressCodec
from hazelcast.protocol.codec.custom.distributed_object_info_codec import DistributedObjectInfoCodec
from hazelcast.protocol.codec.custom.member_info_codec import MemberInfoCodec

from standins.hz_member import protocol as P
from standins.hz_member.base import HandlerError
from standins.hz_member.framing import FrameReader, ProtocolError
from standins.hz_member.imap import MAP_SERVICE_NAME, MapService
from standins.hz_member.snapshot import SnapshotStore

log = logging.getLogger("hz_member")

PARTITION_COUNT = 271
SERVER_VERSION = "5.3.0"
MAX_FRAME = 64 * 1024 * 1024          # a bigger frame is garbage, not a value
MAX_MESSAGE = 128 * 1024 * 1024
MAX_OUT_BUFFER = 64 * 1024 * 1024     # a client that stops reading is disconnected beyond this much queued output
OUT_HIGH = 4 * 1024 * 1024            # above this much unsent output a connection's requests wait (backpressure)
OUT_LOW = 1024 * 1024
HEARTBEAT_S = 5.0
SWITCH_INTERVAL_S = 0.0005
PARSE_BATCH = 32                      # requests handled per read callback before the other sockets get a turn
_REQ_HEAD = struct.Struct("<iqi")      # message type, correlation id, partition id
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_AUTH = c_auth._REQUEST_MESSAGE_TYPE


@dataclass(frozen=True)
class MemberConfig:
    """Effective configuration of the member process."""

    host: str = "127.0.0.1"
    port: int = 5701
    cluster_name: str = "dolphin"
    snapshot_dir: Path | None = None
    tick_interval_s: float = 0.1
    heartbeat_map: str | None = None
    auth_timeout_s: float = 30.0          # a connection not authenticated by then is closed

    @property
    def advertised_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host


class _Ctx:
    """RequestContext handed to service handlers."""

    __slots__ = ("correlation_id", "partition_id", "client_uuid", "connection_id", "_conn", "_member")

    def __init__(self, conn: "Connection", correlation_id: int, partition_id: int):
        self.correlation_id = correlation_id
        self.partition_id = partition_id
        self.client_uuid = conn.client_uuid
        self.connection_id = conn.id
        self._conn = conn
        self._member = conn.member

    def send_event(self, msg: OutboundMessage) -> None:
        self._conn.send(msg.buf)

    def send_to_connection(self, connection_id: int, msg: OutboundMessage) -> None:
        self._member.send_to(connection_id, msg.buf)


class Connection(asyncio.Protocol):
    """One client socket: incremental frame parser and batched writer."""

    def __init__(self, member: "Member", conn_id: int):
        self.member = member
        self.id = conn_id
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.buf = bytearray()
        self.reader = FrameReader(MAX_FRAME, MAX_MESSAGE)
        self.out: list = []               # responses (after the group commit that covers them)
        self.sealed: list = []            # responses covered by the commit in flight
        self.events: list = []            # entry events: written at once, never held for a commit
        self.out_bytes = 0
        self.write_paused = False         # transport above OUT_HIGH: stop reading requests
        self.parse_held = False           # requests left in buf until the output drains
        self.pending = False
        self.closed = False
        self.authenticated = False
        self.client_uuid: uuid.UUID | None = None
        self.client_name = ""

    # asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.member.connections[self.id] = self
        transport.set_write_buffer_limits(high=OUT_HIGH, low=OUT_LOW)
        if self.member.loop is not None and self.member.cfg.auth_timeout_s > 0:
            self.member.loop.call_later(self.member.cfg.auth_timeout_s, self._auth_deadline)
        log.debug("connection %d from %s", self.id, self.peer)

    def _auth_deadline(self) -> None:
        if not self.closed and not self.authenticated:
            self.abort(f"not authenticated within {self.member.cfg.auth_timeout_s:g}s")

    def connection_lost(self, exc) -> None:
        if not self.closed and (self.buf or self.reader.mid_message):
            log.warning("connection %d from %s (client %s) closed mid-message: %d bytes of a truncated frame "
                        "dropped", self.id, self.peer, self.client_name or "unauthenticated", len(self.buf))
        self.closed = True
        self.buf = bytearray()
        self.out.clear()
        self.sealed.clear()
        self.events.clear()
        self.member.on_connection_lost(self, exc)

    # backpressure: asyncio calls these when the socket's unsent output crosses OUT_HIGH / OUT_LOW
    def pause_writing(self) -> None:
        self.write_paused = True
        if not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.closed:
            self.transport.resume_reading()
            if self.parse_held:
                self.member.loop.call_soon(self._resume_parse)

    def _resume_parse(self) -> None:
        if self.parse_held and not self.closed and not self.write_paused:
            self.parse_held = False
            self.data_received(b"")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buf = self.buf
        buf += data
        if self.parse_held or self.write_paused:
            self.parse_held = True            # parsed once the output drains (resume_writing)
            if len(buf) > MAX_MESSAGE:
                self.abort(f"more than {MAX_MESSAGE} bytes of requests sent without reading the responses")
            return
        pos = 0
        reader = self.reader
        on_message = self.member.on_message
        n = 0
        try:
            while True:
                msg, pos = reader.next_message(buf, pos)
                if msg is None:
                    break
                on_message(self, msg)
                if self.closed:
                    return
                if self.out_bytes > OUT_HIGH:     # the rest waits until this output has been written
                    self.parse_held = True
                    break
                n += 1
                if n >= PARSE_BATCH:
                    # a burst (a put_all split per partition is hundreds of requests) yields to the other
                    # connections after each batch, so one client's request does not wait for another's burst
                    self.parse_held = True
                    self.member.loop.call_soon(self._resume_parse)
                    break
        except ProtocolError as exc:
            self.abort(str(exc))
            return
        if pos:
            del buf[:pos]

    # writing
    def send(self, data) -> None:
        """Queue a response (written after the group commit of the writes before it)."""
        self._queue(self.out, data)

    def send_event(self, data) -> None:
        """Queue an entry event (written at the end of this loop iteration, commit or not)."""
        self._queue(self.events, data)

    def _queue(self, q: list, data) -> None:
        if self.closed:
            return
        q.append(data)
        self.out_bytes += len(data)
        if self.out_bytes > MAX_OUT_BUFFER:
            self.abort("client is not reading its socket (output buffer overflow)")
            return
        if not self.pending:
            self.pending = True
            self.member.mark_pending(self)

    def seal(self) -> None:
        """The queued responses are covered by the commit starting now."""
        if self.out:
            self.sealed.extend(self.out)
            self.out.clear()

    def flush(self) -> None:
        """Write everything queued (events, sealed and open responses)."""
        self._write(self.events, self.sealed, self.out)

    def flush_events(self) -> None:
        self._write(self.events)

    def flush_sealed(self) -> None:
        self._write(self.events, self.sealed)

    def _write(self, *queues: list) -> None:
        if self.closed:
            for q in queues:
                q.clear()
            return
        parts = [d for q in queues for d in q]
        if not parts:
            return
        for q in queues:
            q.clear()
        self.transport.write(parts[0] if len(parts) == 1 else b"".join(parts))
        self.out_bytes = self.transport.get_write_buffer_size() + sum(len(d) for d in self.out) + \
            sum(len(d) for d in self.sealed)
        if self.out_bytes > MAX_OUT_BUFFER:
            self.abort("client is not reading its socket (output buffer overflow)")
        elif self.parse_held and not self.write_paused:
            self.member.loop.call_soon(self._resume_parse)

    def abort(self, reason: str, graceful: bool = False) -> None:
        """Drop this connection with a log line (``graceful``: after writing what is queued)."""
        if self.closed:
            return
        log.warning("closing connection %d from %s (client %s): %s", self.id, self.peer,
                    self.client_name or "unauthenticated", reason)
        self.closed = True
        self.out.clear()
        self.sealed.clear()
        self.events.clear()
        self.buf = bytearray()
        if self.transport is not None:
            if graceful:
                self.transport.close()
            else:
                self.transport.abort()


class Member:
    """The member: connection registry, dispatch table, services, tick loop and durability."""

    def __init__(self, cfg: MemberConfig):
        self.cfg = cfg
        self.member_uuid = uuid.uuid4()
        self.cluster_id = uuid.uuid4()
        self.address = Address(cfg.advertised_host, cfg.port)
        self.connections: dict[int, Connection] = {}
        self._next_conn_id = 0
        self._pending: list[Connection] = []
        self._flush_scheduled = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.proxies: set[tuple[str, str]] = set()
        self.map_service = MapService(self.member_uuid, self._send_event)
        self.services: list[Any] = [self.map_service]
        try:
            from standins.hz_member.cp import CPService  # noqa: WPS433 - optional sibling service
            self.services.append(CPService())
        except ImportError as exc:
            log.warning("CP subsystem not available (%s); CP requests will be refused", exc)
        except Exception:  # noqa: BLE001 - a broken CP module must not take the IMap down with it
            log.exception("CP subsystem failed to load; CP requests will be refused")
        self.handlers: dict[int, Callable] = {}
        self._handler_owner: dict[int, Any] = {}
        for svc in self.services:
            for t, h in svc.handlers().items():
                self.handlers[t] = h
                self._handler_owner[t] = svc
        core = {
            _AUTH: self.h_auth, c_view._REQUEST_MESSAGE_TYPE: self.h_cluster_view,
            c_ping._REQUEST_MESSAGE_TYPE: self.h_empty(c_ping), c_stats._REQUEST_MESSAGE_TYPE: self.h_empty(c_stats),
            c_create._REQUEST_MESSAGE_TYPE: self.h_create_proxy, c_destroy._REQUEST_MESSAGE_TYPE: self.h_destroy_proxy,
            c_objects._REQUEST_MESSAGE_TYPE: self.h_objects, c_backup._REQUEST_MESSAGE_TYPE: self.h_uuid(c_backup),
            c_dol._REQUEST_MESSAGE_TYPE: self.h_uuid(c_dol), c_rdol._REQUEST_MESSAGE_TYPE: self.h_true(c_rdol),
            c_all_schemas._REQUEST_MESSAGE_TYPE: self.h_empty(c_all_schemas),
            c_schema._REQUEST_MESSAGE_TYPE: self.h_send_schema,
        }
        self.handlers.update(core)
        self._dirty_services: set[int] = set()
        self.store: SnapshotStore | None = None
        self._committer: concurrent.futures.ThreadPoolExecutor | None = None
        self._commit_inflight: asyncio.Future | None = None
        self._held: set[Connection] = set()   # responses waiting while a commit is in flight
        if cfg.snapshot_dir is not None:
            self.store = SnapshotStore(Path(cfg.snapshot_dir))
            self._restore()
            self.map_service.track_dirty = True
        self._server: asyncio.AbstractServer | None = None
        self.stats = {"messages": 0, "connections": 0, "unsupported": 0}

    # ---- durability ----------------------------------------------------------------------------

    def _restore(self) -> None:
        assert self.store is not None
        map_state, svc_states = self.store.load()
        self.map_service.restore(map_state)
        for svc in self.services[1:]:
            name = type(svc).__name__
            if name in svc_states:
                try:
                    svc.restore(svc_states[name])
                    log.info("restored state of %s", name)
                except Exception:  # noqa: BLE001
                    log.exception("restore of %s from %s failed; starting it empty", name, self.store.path)

    def _prepare(self):
        """The next group commit's batch (taken on the loop), or None when nothing changed."""
        if self.store is None:
            return None
        dirty = {type(s).__name__: s for s in self.services[1:] if id(s) in self._dirty_services}
        self._dirty_services.clear()
        if not (dirty or self.map_service.dirty or self.map_service.cleared):
            return None
        return self.store.prepare(self.map_service, dirty)

    def _commit(self) -> None:
        """Commit now, on the calling thread (shutdown)."""
        batch = self._prepare()
        if batch is not None:
            self._write_batch(batch)

    def _write_batch(self, batch) -> None:
        store = self.store
        if store is None:
            return
        try:
            store.write(batch)
        except Exception:  # noqa: BLE001
            log.exception("snapshot commit to %s failed", store.path)
            if self.loop is not None and self.loop.is_running():
                self.loop.call_soon_threadsafe(store.restore_dirty, self.map_service, batch)
            else:
                store.restore_dirty(self.map_service, batch)

    # ---- output --------------------------------------------------------------------------------

    def _send_raw(self, conn_id: int, data) -> None:
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.send(data)

    def _send_event(self, conn_id: int, data) -> None:
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.send_event(data)

    def send_to(self, conn_id: int, data) -> None:
        self._send_raw(conn_id, data)

    def mark_pending(self, conn: Connection) -> None:
        self._pending.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """End of a loop iteration: write the events; the responses once the writes before them are committed.

        Without a snapshot store, or when nothing changed since the last commit, everything is written
        at once. Otherwise the responses are sealed into a batch committed on the snapshot thread and
        written when it is done; responses queued meanwhile wait for the next batch (one commit in flight).
        """
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for conn in pending:
            conn.pending = False
        if self._commit_inflight is not None:
            for conn in pending:
                conn.flush_events()
            self._held.update(pending)
            return
        batch = self._prepare()
        if batch is None:
            for conn in pending:
                conn.flush()
            return
        for conn in pending:
            conn.flush_events()
            conn.seal()
        if self._committer is None:
            self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hz-snapshot")
        fut = self.loop.run_in_executor(self._committer, self._write_batch, batch)
        self._commit_inflight = fut
        fut.add_done_callback(lambda _f: self._committed(pending))

    def _committed(self, sealed: list[Connection]) -> None:
        self._commit_inflight = None
        for conn in sealed:
            conn.flush_sealed()
        held, self._held = self._held, set()
        for conn in held:
            if not conn.closed and not conn.pending:
                conn.pending = True
                self._pending.append(conn)
        self.schedule_flush()

    # ---- connections ---------------------------------------------------------------------------

    def new_connection(self) -> Connection:
        self._next_conn_id += 1
        self.stats["connections"] += 1
        return Connection(self, self._next_conn_id)

    def on_connection_lost(self, conn: Connection, exc) -> None:
        self.connections.pop(conn.id, None)
        if conn.authenticated:
            log.info("client %s (%s) disconnected from %s%s", conn.client_name, conn.client_uuid, conn.peer,
                     f": {exc}" if exc else "")
        for svc in self.services:
            try:
                svc.on_connection_closed(conn.id, conn.client_uuid)
            except Exception:  # noqa: BLE001
                log.exception("%s.on_connection_closed failed", type(svc).__name__)
        self._dirty_services.update(id(s) for s in self.services[1:])
        self.schedule_flush()

    def schedule_flush(self) -> None:
        if not self._flush_scheduled and self.loop is not None:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    # ---- dispatch ------------------------------------------------------------------------------

    def on_message(self, conn: Connection, msg: InboundMessage) -> None:
        start = msg.start_frame          # (length and fragmentation checked by the FrameReader)
        mtype, corr, pid = _REQ_HEAD.unpack_from(start.buf, 0)
        self.stats["messages"] += 1
        if not conn.authenticated and mtype != _AUTH:
            # as a real member: an error response, then the connection is closed
            out = P.error_response("com.hazelcast.client.AuthenticationException",
                                   "hz_member: authenticate first (message type 0x%06X)" % mtype)
            out.set_correlation_id(corr)
            conn.send(out.buf)
            conn.flush()
            conn.abort("request 0x%06X before authentication" % mtype, graceful=True)
            return
        else:
            handler = self.handlers.get(mtype)
            if handler is None:
                self.stats["unsupported"] += 1
                name = P.codec_name(mtype)
                log.warning("unsupported request %s (0x%06X) from %s", name, mtype, conn.client_name)
                out = P.error_response("java.lang.UnsupportedOperationException",
                                       "hz_member does not support %s (message type 0x%06X)" % (name, mtype))
            else:
                ctx = _Ctx(conn, corr, pid)
                try:
                    out = handler(ctx, msg)
                except HandlerError as e:
                    out = P.error_response(e.class_name, e.message)
                except Exception as e:  # noqa: BLE001 - a bad request must not kill the member
                    log.exception("handler for %s (0x%06X) failed on a request from %s",
                                  P.codec_name(mtype), mtype, conn.client_name)
                    out = P.error_response("com.hazelcast.core.HazelcastException",
                                           "hz_member: %s failed: %s: %s" % (P.codec_name(mtype), type(e).__name__, e))
                owner = self._handler_owner.get(mtype)
                if owner is not None and owner is not self.map_service:
                    self._dirty_services.add(id(owner))
        if out is not None:
            out.set_correlation_id(corr)
            conn.send(out.buf)

    # ---- core handlers -------------------------------------------------------------------------

    def h_empty(self, codec):
        t = codec._RESPONSE_MESSAGE_TYPE
        return lambda ctx, msg: P.empty_response(t)

    def h_uuid(self, codec):
        t = codec._RESPONSE_MESSAGE_TYPE
        return lambda ctx, msg: P.uuid_response(t, uuid.uuid4())

    def h_true(self, codec):
        t = codec._RESPONSE_MESSAGE_TYPE
        return lambda ctx, msg: P.bool_response(t, True)

    def h_auth(self, ctx: _Ctx, msg: InboundMessage) -> OutboundMessage:
        f = P.initial(msg)
        client_uuid = P.req_uuid(f, 0)
        cluster_name = P.read_str(msg)
        for _ in range(2):                      # username, password (nullable)
            if not P.CodecUtil.next_frame_is_null_frame(msg):
                msg.next_frame()
        client_type = P.read_str(msg)
        client_version = P.read_str(msg)
        client_name = P.read_str(msg)
        conn = ctx._conn
        ok = cluster_name == self.cfg.cluster_name
        buf = P.response(c_auth._RESPONSE_MESSAGE_TYPE, 1 + P.UUID_SIZE + 1 + 4 + P.UUID_SIZE + 1, final=False)
        o = P.RESP_OFF
        # AUTHENTICATED, or CREDENTIALS_FAILED as a real 5.3 member answers a wrong cluster name (the
        # client retries until its cluster-connect timeout, then raises IllegalStateError)
        buf[o] = 0 if ok else 1
        FixSizedTypesCodec.encode_uuid(buf, o + 1, self.member_uuid if ok else None)
        buf[o + 1 + P.UUID_SIZE] = 1             # serialization version
        _I32.pack_into(buf, o + 2 + P.UUID_SIZE, PARTITION_COUNT if ok else -1)
        FixSizedTypesCodec.encode_uuid(buf, o + 6 + P.UUID_SIZE, self.cluster_id if ok else None)
        buf[o + 6 + 2 * P.UUID_SIZE] = 0         # failover not supported
        if ok:
            AddressCodec.encode(buf, self.address)
        else:
            buf += P.NULL
        StringCodec.encode(buf, SERVER_VERSION, True)
        if ok:
            conn.authenticated = True
            conn.client_uuid = client_uuid
            conn.client_name = client_name
            ctx.client_uuid = client_uuid
            log.info("client %s (%s %s, uuid %s) authenticated from %s", client_name, client_type,
                     client_version, client_uuid, conn.peer)
        else:
            log.warning("authentication refused for client %s from %s: cluster name %r != %r",
                        client_name, conn.peer, cluster_name, self.cfg.cluster_name)
        return OutboundMessage(buf, False)

    def h_cluster_view(self, ctx: _Ctx, msg) -> None:
        conn = ctx._conn
        resp = P.empty_response(c_view._RESPONSE_MESSAGE_TYPE)
        resp.set_correlation_id(ctx.correlation_id)
        conn.send(resp.buf)
        member = MemberInfo(self.address, self.member_uuid, {}, False, MemberVersion(5, 3, 0), False, {})
        ev = P.event(c_view._EVENT_MEMBERS_VIEW_MESSAGE_TYPE, 4, final=False)
        _I32.pack_into(ev, P.EVENT_OFF, 1)
        ListMultiFrameCodec.encode(ev, [member], MemberInfoCodec.encode, True)
        _I64.pack_into(ev, P.HDR + 4, ctx.correlation_id)
        conn.send(ev)
        ev = P.event(c_view._EVENT_PARTITIONS_VIEW_MESSAGE_TYPE, 4, final=False)
        _I32.pack_into(ev, P.EVENT_OFF, 1)
        EntryListUUIDListIntegerCodec.encode(ev, [(self.member_uuid, list(range(PARTITION_COUNT)))], True)
        _I64.pack_into(ev, P.HDR + 4, ctx.correlation_id)
        conn.send(ev)
        return None

    def h_create_proxy(self, ctx, msg):
        P.initial(msg)
        name = P.read_str(msg)
        service = P.read_str(msg)
        self.proxies.add((service, name))
        return P.empty_response(c_create._RESPONSE_MESSAGE_TYPE)

    def h_destroy_proxy(self, ctx, msg):
        P.initial(msg)
        name = P.read_str(msg)
        service = P.read_str(msg)
        self.proxies.discard((service, name))
        if service == MAP_SERVICE_NAME:
            self.map_service.destroy_map(name)
        return P.empty_response(c_destroy._RESPONSE_MESSAGE_TYPE)

    def h_objects(self, ctx, msg):
        objs = set(self.proxies) | {(MAP_SERVICE_NAME, n) for n in self.map_service.map_names()}
        buf = P.response(c_objects._RESPONSE_MESSAGE_TYPE, final=False)
        ListMultiFrameCodec.encode(buf, [DistributedObjectInfo(s, n) for s, n in sorted(objs)],
                                   DistributedObjectInfoCodec.encode, True)
        return OutboundMessage(buf, False)

    def h_send_schema(self, ctx, msg):
        buf = P.response(c_schema._RESPONSE_MESSAGE_TYPE, final=False)
        SetUUIDCodec.encode(buf, {self.member_uuid}, True)
        return OutboundMessage(buf, False)

    # ---- time-driven work ----------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()      # services keep their own wall-clock needs (MapService TTLs use time.time)
        for svc in self.services:
            try:
                svc.tick(now)
            except Exception:  # noqa: BLE001
                log.exception("%s.tick failed", type(svc).__name__)
        self._dirty_services.update(id(s) for s in self.services[1:])
        self.schedule_flush()

    def write_heartbeat(self) -> None:
        if not self.cfg.heartbeat_map:
            return
        from standins.hz_member.values import string_data
        payload = json.dumps({"service": "hz_member", "ts": time.time(), "pid": os.getpid(),
                              "clients": sum(1 for c in self.connections.values() if c.authenticated)})
        self.map_service.local_set(self.cfg.heartbeat_map, string_data("hz_member"), string_data(payload))
        self.schedule_flush()

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(self.new_connection, self.cfg.host, self.cfg.port,
                                                     reuse_address=True)

    async def serve(self, stop: asyncio.Event) -> None:
        """Run the tick loop until ``stop`` is set, then close sockets and the snapshot store."""
        next_hb = 0.0
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), self.cfg.tick_interval_s)
                except asyncio.TimeoutError:
                    pass
                self.tick()
                if time.monotonic() >= next_hb:
                    next_hb = time.monotonic() + HEARTBEAT_S
                    self.write_heartbeat()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._commit_inflight is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._commit_inflight), 10)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                pass
        self._commit()
        for conn in list(self.connections.values()):
            conn.flush()
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                pass
        if self.store is not None:
            self._dirty_services.update(id(s) for s in self.services[1:])
            self._commit()
            self.store.close()
            self.store = None              # late callbacks (connection_lost) must not touch the closed file
        if self._committer is not None:
            self._committer.shutdown(wait=True)


async def run(cfg: MemberConfig, stop: asyncio.Event | None = None,
              ready: Callable[[Member], None] | None = None) -> None:
    """Serve the member until SIGTERM/SIGINT (or ``stop`` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    # the snapshot thread binds its rows holding the GIL: a short switch interval hands the GIL back to the
    # loop (a request, an event) within a millisecond instead of the default 5 ms
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    member = Member(cfg)
    await member.start()
    log.info("hz_member listening on %s:%d cluster=%s member=%s services=%s snapshot=%s",
             cfg.host, cfg.port, cfg.cluster_name, member.member_uuid,
             [type(s).__name__ for s in member.services], cfg.snapshot_dir)
    if ready is not None:
        ready(member)
    await member.serve(stop)
    log.info("hz_member stopped (messages=%d connections=%d)", member.stats["messages"],
             member.stats["connections"])
