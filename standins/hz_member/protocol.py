"""Server-side framing helpers of the Hazelcast Open Binary Client Protocol (frames, responses, events, errors).

The hazelcast-python-client ships the client half of every codec (encode request, decode response);
this module holds the mirror image the member needs: build response/event initial frames with the
right header and flags, read fixed-size request fields, and encode error responses. Offsets follow
``hazelcast.protocol.client_message``: request fields start at content offset 16, response fields at
buffer offset 19, event fields at buffer offset 22.
"""
from __future__ import annotations

import struct
import uuid as _uuid
from pathlib import Path

from hazelcast.protocol import ErrorHolder
from hazelcast.protocol.builtin import CodecUtil, FixSizedTypesCodec, ListMultiFrameCodec, StringCodec
from hazelcast.protocol.client_message import (BEGIN_FRAME_BUF, END_FINAL_FRAME_BUF, END_FRAME_BUF, InboundMessage,
                                               OutboundMessage, _BEGIN_FRAGMENT_FLAG, _END_FRAGMENT_FLAG,
                                               _IS_EVENT_FLAG, _IS_FINAL_FLAG, _IS_NULL_FLAG)
from hazelcast.protocol.codec.custom.error_holder_codec import ErrorHolderCodec

HDR = 6                          # frame length (int32) + flags (uint16)
REQ_OFF = 16                     # first fixed request field, offset inside the initial frame *content*
RESP_OFF = HDR + 13              # first fixed response field, offset inside the outbound buffer
EVENT_OFF = HDR + 16             # first fixed event field, offset inside the outbound buffer
UNFRAGMENTED = _BEGIN_FRAGMENT_FLAG | _END_FRAGMENT_FLAG

_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_U16 = struct.Struct("<H")
_HEAD = struct.Struct("<iH")     # frame length, flags
_RESP_HEAD = struct.Struct("<iHiqB")     # len, flags, type, correlation id, backup acks
_EVENT_HEAD = struct.Struct("<iHiqi")    # len, flags, type, correlation id, partition id

UUID_SIZE = 17
BOOL_SIZE = 1
INT_SIZE = 4
LONG_SIZE = 8


def response(msg_type: int, extra: int = 0, final: bool = True) -> bytearray:
    """Return a response initial frame with ``extra`` bytes of fixed fields (offset RESP_OFF)."""
    size = RESP_OFF + extra
    buf = bytearray(size)
    _RESP_HEAD.pack_into(buf, 0, size, UNFRAGMENTED | (_IS_FINAL_FLAG if final else 0), msg_type, 0, 0)
    return buf


def event(msg_type: int, extra: int = 0, partition_id: int = -1, final: bool = True) -> bytearray:
    """Return an event initial frame with ``extra`` bytes of fixed fields (offset EVENT_OFF)."""
    size = EVENT_OFF + extra
    buf = bytearray(size)
    _EVENT_HEAD.pack_into(buf, 0, size, UNFRAGMENTED | _IS_EVENT_FLAG | (_IS_FINAL_FLAG if final else 0),
                          msg_type, 0, partition_id)
    return buf


def empty_response(msg_type: int) -> OutboundMessage:
    return OutboundMessage(response(msg_type), False)


def bool_response(msg_type: int, value: bool) -> OutboundMessage:
    buf = response(msg_type, BOOL_SIZE)
    buf[RESP_OFF] = 1 if value else 0
    return OutboundMessage(buf, False)


def int_response(msg_type: int, value: int) -> OutboundMessage:
    buf = response(msg_type, INT_SIZE)
    _I32.pack_into(buf, RESP_OFF, value)
    return OutboundMessage(buf, False)


def long_response(msg_type: int, value: int) -> OutboundMessage:
    buf = response(msg_type, LONG_SIZE)
    _I64.pack_into(buf, RESP_OFF, value)
    return OutboundMessage(buf, False)


def uuid_response(msg_type: int, value: _uuid.UUID | None) -> OutboundMessage:
    buf = response(msg_type, UUID_SIZE)
    FixSizedTypesCodec.encode_uuid(buf, RESP_OFF, value)
    return OutboundMessage(buf, False)


def nullable_data_response(msg_type: int, value: bytes | None) -> OutboundMessage:
    """Response whose only variable part is a nullable Data blob (get, put, remove, ...)."""
    buf = response(msg_type, final=False)
    if value is None:
        buf += NULL_FINAL
    else:
        buf += _HEAD.pack(HDR + len(value), _IS_FINAL_FLAG)
        buf += value
    return OutboundMessage(buf, False)


def _null_frame(final: bool) -> bytes:
    return _HEAD.pack(HDR, _IS_NULL_FLAG | (_IS_FINAL_FLAG if final else 0))


NULL = _null_frame(False)
NULL_FINAL = _null_frame(True)
BEGIN = bytes(BEGIN_FRAME_BUF)
END = bytes(END_FRAME_BUF)
END_FINAL = bytes(END_FINAL_FRAME_BUF)


def data_frame(buf: bytearray, value: bytes, final: bool = False) -> None:
    """Append one Data frame holding ``value`` (raw serialized bytes)."""
    buf += _HEAD.pack(HDR + len(value), _IS_FINAL_FLAG if final else 0)
    buf += value


def nullable_data_frame(buf: bytearray, value: bytes | None, final: bool = False) -> None:
    if value is None:
        buf += NULL_FINAL if final else NULL
    else:
        data_frame(buf, value, final)


# ---- request decoding -------------------------------------------------------------------------

def initial(msg: InboundMessage) -> bytes:
    """Consume and return the initial frame content of a request."""
    return msg.next_frame().buf


def req_long(frame: bytes, idx: int = 0) -> int:
    return _I64.unpack_from(frame, REQ_OFF + idx)[0]


def req_int(frame: bytes, idx: int = 0) -> int:
    return _I32.unpack_from(frame, REQ_OFF + idx)[0]


def req_bool(frame: bytes, idx: int = 0) -> bool:
    return frame[REQ_OFF + idx] == 1


def req_uuid(frame: bytes, idx: int = 0) -> _uuid.UUID | None:
    return FixSizedTypesCodec.decode_uuid(frame, REQ_OFF + idx)


def read_str(msg: InboundMessage) -> str:
    return StringCodec.decode(msg)


def read_data(msg: InboundMessage) -> bytes:
    """Read a Data frame as raw bytes (the member never deserializes values)."""
    return bytes(msg.next_frame().buf)


def read_nullable_data(msg: InboundMessage) -> bytes | None:
    if CodecUtil.next_frame_is_null_frame(msg):
        return None
    return bytes(msg.next_frame().buf)


def read_data_list(msg: InboundMessage) -> list[bytes]:
    return ListMultiFrameCodec.decode(msg, read_data)


def read_entry_list(msg: InboundMessage) -> list[tuple[bytes, bytes]]:
    out = []
    msg.next_frame()
    while not CodecUtil.next_frame_is_data_structure_end_frame(msg):
        k = read_data(msg)
        v = read_data(msg)
        out.append((k, v))
    msg.next_frame()
    return out


# ---- errors -----------------------------------------------------------------------------------

# Java class name → client protocol error code (hazelcast/errors.py)
ERROR_CODES = {
    "com.hazelcast.client.AuthenticationException": 3,
    "com.hazelcast.core.HazelcastException": 18,
    "java.lang.IllegalArgumentException": 23,
    "java.lang.IllegalMonitorStateException": 26,
    "java.lang.IllegalStateException": 27,
    "java.lang.NullPointerException": 37,
    "com.hazelcast.core.OperationTimeoutException": 38,
    "java.util.concurrent.TimeoutException": 54,
    "java.lang.UnsupportedOperationException": 61,
    "com.hazelcast.spi.exception.TargetNotMemberException": 53,
    "com.hazelcast.cp.internal.session.SessionExpiredException": 85,
    "com.hazelcast.cp.internal.datastructures.exception.WaitKeyCancelledException": 86,
    "com.hazelcast.cp.lock.exception.LockAcquireLimitReachedException": 87,
    "com.hazelcast.cp.lock.exception.LockOwnershipLostException": 88,
    "com.hazelcast.cp.exception.CPGroupDestroyedException": 89,
    "com.hazelcast.spi.exception.DistributedObjectDestroyedException": 14,
}


def error_response(class_name: str, message: str, code: int | None = None) -> OutboundMessage:
    """Build an exception response (message type 0) the client turns into a Python exception."""
    if code is None:
        code = ERROR_CODES.get(class_name, 0)
    buf = response(0, final=False)
    ListMultiFrameCodec.encode(buf, [ErrorHolder(code, class_name, message, [])], ErrorHolderCodec.encode, True)
    return OutboundMessage(buf, False)


_CODEC_NAMES: dict[int, str] | None = None


def codec_name(msg_type: int) -> str:
    """Return the hazelcast-python-client codec name of a request message type (for error messages)."""
    global _CODEC_NAMES
    if _CODEC_NAMES is None:
        import hazelcast.protocol.codec as pkg
        names: dict[int, str] = {}
        for path in Path(pkg.__file__).parent.glob("*_codec.py"):
            try:
                for line in path.read_text().splitlines():
                    if line.startswith("_REQUEST_MESSAGE_TYPE = "):
                        names[int(line.split("=")[1])] = path.stem.removesuffix("_codec")
                        break
            except (OSError, ValueError):
                continue
        _CODEC_NAMES = names
    return _CODEC_NAMES.get(msg_type, "unknown")

