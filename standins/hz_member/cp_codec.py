"""Wire codecs of the CP subsystem: decode CP requests and encode their responses.

Request layouts come from the client's ``protocol/codec/{cp_*,atomic_*,fenced_lock_*}_codec.py``;
every ``encode_*_response`` here is the exact inverse of the client's ``decode_response``.
Nothing here keeps state; :mod:`standins.hz_member.cp` holds the CP state machine.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from hazelcast.protocol import ErrorHolder, RaftGroupId
from hazelcast.protocol.builtin import CodecUtil, DataCodec, FixSizedTypesCodec, ListMultiFrameCodec, StringCodec
from hazelcast.protocol.codec.custom.error_holder_codec import ErrorHolderCodec
from hazelcast.protocol.client_message import NULL_FINAL_FRAME_BUF, InboundMessage, OutboundMessage
from hazelcast.protocol.codec.custom.raft_group_id_codec import RaftGroupIdCodec
from hazelcast.serialization.bits import LE_INT, LE_UINT16
from hazelcast.serialization.data import Data

# ---- message type ids (request; the response id is request + 1) ----
CREATE_CP_GROUP = 0x1E0100
DESTROY_CP_OBJECT = 0x1E0200
CREATE_SESSION = 0x1F0100
CLOSE_SESSION = 0x1F0200
HEARTBEAT_SESSION = 0x1F0300
GENERATE_THREAD_ID = 0x1F0400

AL_APPLY = 0x090100
AL_ALTER = 0x090200
AL_ADD_AND_GET = 0x090300
AL_COMPARE_AND_SET = 0x090400
AL_GET = 0x090500
AL_GET_AND_ADD = 0x090600
AL_GET_AND_SET = 0x090700

AR_APPLY = 0x0A0100
AR_COMPARE_AND_SET = 0x0A0200
AR_CONTAINS = 0x0A0300
AR_GET = 0x0A0400
AR_SET = 0x0A0500

FL_LOCK = 0x070100
FL_TRY_LOCK = 0x070200
FL_UNLOCK = 0x070300
FL_GET_OWNERSHIP = 0x070400

# Offsets inside the *decoded* initial frame (the 6-byte frame header is not part of frame.buf).
_REQ = 16          # message type (4) + correlation id (8) + partition id (4)
_LONG, _INT, _UUID = 8, 4, 17
_RESP_HEADER = 6 + 4 + 8 + 1   # frame header + type + correlation id + backup acks
_FLAGS_UNFRAGMENTED = (1 << 15) | (1 << 14)
_FLAG_FINAL = 1 << 13


class MalformedRequest(ValueError):
    """A CP request frame could not be decoded."""


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class ObjectRequest:
    """A request addressing one CP object: group, object name and optional extras."""
    group: RaftGroupId
    name: str


@dataclass(frozen=True)
class LockRequest:
    group: RaftGroupId
    name: str
    session_id: int
    thread_id: int
    invocation_uid: uuid.UUID | None
    timeout_ms: int = -1


def _initial(msg: InboundMessage) -> bytes:
    msg.reset_next_frame()
    frame = msg.next_frame()
    if frame is None:
        raise MalformedRequest("empty message")
    return frame.buf


def _need(buf: bytes, size: int) -> None:
    if len(buf) < size:
        raise MalformedRequest(f"initial frame too short ({len(buf)} < {size} bytes)")


def decode_group_name_request(msg: InboundMessage) -> str:
    """createCPGroup: proxy name."""
    _initial(msg)
    return StringCodec.decode(msg)


def decode_destroy_object(msg: InboundMessage) -> tuple[RaftGroupId, str, str]:
    _initial(msg)
    group = RaftGroupIdCodec.decode(msg)
    return group, StringCodec.decode(msg), StringCodec.decode(msg)


def decode_create_session(msg: InboundMessage) -> tuple[RaftGroupId, str]:
    _initial(msg)
    group = RaftGroupIdCodec.decode(msg)
    return group, StringCodec.decode(msg)


def decode_session_op(msg: InboundMessage) -> tuple[RaftGroupId, int]:
    """closeSession / heartbeatSession: (group, session id)."""
    buf = _initial(msg)
    _need(buf, _REQ + _LONG)
    session_id = FixSizedTypesCodec.decode_long(buf, _REQ)
    return RaftGroupIdCodec.decode(msg), session_id


def decode_group_only(msg: InboundMessage) -> RaftGroupId:
    _initial(msg)
    return RaftGroupIdCodec.decode(msg)


def decode_object(msg: InboundMessage) -> ObjectRequest:
    """Requests with no fixed fields: group + name (AtomicLong.get, AtomicRef.get, ownership)."""
    _initial(msg)
    group = RaftGroupIdCodec.decode(msg)
    return ObjectRequest(group, StringCodec.decode(msg))


def decode_object_long(msg: InboundMessage) -> tuple[ObjectRequest, int]:
    """AtomicLong addAndGet / getAndAdd / getAndSet: one long then group + name."""
    buf = _initial(msg)
    _need(buf, _REQ + _LONG)
    value = FixSizedTypesCodec.decode_long(buf, _REQ)
    group = RaftGroupIdCodec.decode(msg)
    return ObjectRequest(group, StringCodec.decode(msg)), value


def decode_object_two_longs(msg: InboundMessage) -> tuple[ObjectRequest, int, int]:
    """AtomicLong compareAndSet: expected, updated."""
    buf = _initial(msg)
    _need(buf, _REQ + 2 * _LONG)
    expected = FixSizedTypesCodec.decode_long(buf, _REQ)
    updated = FixSizedTypesCodec.decode_long(buf, _REQ + _LONG)
    group = RaftGroupIdCodec.decode(msg)
    return ObjectRequest(group, StringCodec.decode(msg)), expected, updated


def decode_object_function(msg: InboundMessage) -> ObjectRequest:
    """AtomicLong apply/alter and AtomicRef apply: group + name (+ function Data, ignored)."""
    _initial(msg)
    group = RaftGroupIdCodec.decode(msg)
    return ObjectRequest(group, StringCodec.decode(msg))


def _nullable_bytes(msg: InboundMessage) -> bytes | None:
    data = CodecUtil.decode_nullable(msg, DataCodec.decode)
    return None if data is None else bytes(data.buffer)


def decode_ref_compare_and_set(msg: InboundMessage) -> tuple[ObjectRequest, bytes | None, bytes | None]:
    _initial(msg)
    group = RaftGroupIdCodec.decode(msg)
    name = StringCodec.decode(msg)
    return ObjectRequest(group, name), _nullable_bytes(msg), _nullable_bytes(msg)


def decode_ref_contains(msg: InboundMessage) -> tuple[ObjectRequest, bytes | None]:
    _initial(msg)
    group = RaftGroupIdCodec.decode(msg)
    name = StringCodec.decode(msg)
    return ObjectRequest(group, name), _nullable_bytes(msg)


def decode_ref_set(msg: InboundMessage) -> tuple[ObjectRequest, bytes | None, bool]:
    buf = _initial(msg)
    _need(buf, _REQ + 1)
    return_old = FixSizedTypesCodec.decode_boolean(buf, _REQ)
    group = RaftGroupIdCodec.decode(msg)
    name = StringCodec.decode(msg)
    return ObjectRequest(group, name), _nullable_bytes(msg), return_old


def decode_lock(msg: InboundMessage, with_timeout: bool = False) -> LockRequest:
    """FencedLock lock / tryLock / unlock: session, thread, invocation uid (, timeout ms)."""
    buf = _initial(msg)
    _need(buf, _REQ + 2 * _LONG + _UUID + (_LONG if with_timeout else 0))
    session_id = FixSizedTypesCodec.decode_long(buf, _REQ)
    thread_id = FixSizedTypesCodec.decode_long(buf, _REQ + _LONG)
    inv_uid = FixSizedTypesCodec.decode_uuid(buf, _REQ + 2 * _LONG)
    timeout_ms = FixSizedTypesCodec.decode_long(buf, _REQ + 2 * _LONG + _UUID) if with_timeout else -1
    group = RaftGroupIdCodec.decode(msg)
    name = StringCodec.decode(msg)
    return LockRequest(group, name, session_id, thread_id, inv_uid, timeout_ms)


# --------------------------------------------------------------------------- responses
def _response(request_type: int, payload_size: int = 0, final: bool = True,
              response_type: int | None = None) -> bytearray:
    """Initial response frame: header with backup-acks 0, then ``payload_size`` zero bytes."""
    size = _RESP_HEADER + payload_size
    buf = bytearray(size)
    LE_INT.pack_into(buf, 0, size)
    LE_UINT16.pack_into(buf, 4, _FLAGS_UNFRAGMENTED | (_FLAG_FINAL if final else 0))
    LE_INT.pack_into(buf, 6, request_type + 1 if response_type is None else response_type)
    # correlation id (set by the core) and backup acks stay zero
    return buf


def encode_empty_response(request_type: int) -> OutboundMessage:
    return OutboundMessage(_response(request_type), False)


def encode_long_response(request_type: int, value: int) -> OutboundMessage:
    buf = _response(request_type, _LONG)
    FixSizedTypesCodec.encode_long(buf, _RESP_HEADER, value)
    return OutboundMessage(buf, False)


def encode_bool_response(request_type: int, value: bool) -> OutboundMessage:
    buf = _response(request_type, 1)
    FixSizedTypesCodec.encode_boolean(buf, _RESP_HEADER, value)
    return OutboundMessage(buf, False)


def encode_nullable_data_response(request_type: int, value: bytes | None) -> OutboundMessage:
    buf = _response(request_type, 0, final=False)
    if value is None:
        buf.extend(NULL_FINAL_FRAME_BUF)
    else:
        DataCodec.encode(buf, Data(value), True)
    return OutboundMessage(buf, False)


def encode_group_id_response(group: RaftGroupId) -> OutboundMessage:
    buf = _response(CREATE_CP_GROUP, 0, final=False)
    RaftGroupIdCodec.encode(buf, group, True)
    return OutboundMessage(buf, False)


def encode_create_session_response(session_id: int, ttl_ms: int, heartbeat_ms: int) -> OutboundMessage:
    buf = _response(CREATE_SESSION, 3 * _LONG)
    FixSizedTypesCodec.encode_long(buf, _RESP_HEADER, session_id)
    FixSizedTypesCodec.encode_long(buf, _RESP_HEADER + _LONG, ttl_ms)
    FixSizedTypesCodec.encode_long(buf, _RESP_HEADER + 2 * _LONG, heartbeat_ms)
    return OutboundMessage(buf, False)


def encode_ownership_response(fence: int, lock_count: int, session_id: int, thread_id: int) -> OutboundMessage:
    buf = _response(FL_GET_OWNERSHIP, _LONG + _INT + 2 * _LONG)
    FixSizedTypesCodec.encode_long(buf, _RESP_HEADER, fence)
    FixSizedTypesCodec.encode_int(buf, _RESP_HEADER + _LONG, lock_count)
    FixSizedTypesCodec.encode_long(buf, _RESP_HEADER + _LONG + _INT, session_id)
    FixSizedTypesCodec.encode_long(buf, _RESP_HEADER + 2 * _LONG + _INT, thread_id)
    return OutboundMessage(buf, False)



# Java exception class → client error code (hazelcast/errors.py) for the errors the CP service raises.
ERROR_CODES = {
    "java.lang.IllegalArgumentException": 23,
    "java.lang.IllegalMonitorStateException": 26,
    "java.lang.UnsupportedOperationException": 61,
    "com.hazelcast.spi.exception.DistributedObjectDestroyedException": 14,
    "com.hazelcast.cp.internal.session.SessionExpiredException": 85,
    "com.hazelcast.cp.internal.datastructures.exception.WaitKeyCancelledException": 86,
    "com.hazelcast.cp.exception.CPGroupDestroyedException": 89,
}


def encode_error(class_name: str, message: str) -> OutboundMessage:
    """Exception response (message type 0) for a deferred answer sent through the request context."""
    buf = _response(0, 0, final=False, response_type=0)
    ListMultiFrameCodec.encode(buf, [ErrorHolder(ERROR_CODES.get(class_name, 0), class_name, message, [])],
                               ErrorHolderCodec.encode, True)
    return OutboundMessage(buf, False)
