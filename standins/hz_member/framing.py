"""Incremental reader of the Hazelcast client protocol: socket bytes in, complete client messages out.

Pure and socket-free, so it can be fed anything (tests/unit/fuzz feeds it random and mutated bytes):
:meth:`FrameReader.next_message` returns the next complete :class:`InboundMessage` with the position
after it, or ``None`` when more bytes are needed, and raises :class:`ProtocolError` — and nothing
else — when the bytes are not the protocol (wrong ``CP2`` header, a frame length below the 6-byte
header or above ``max_frame``, a message above ``max_message``, an initial frame too short to hold
message type, correlation id and partition id, a fragmented message). The connection closes the
socket on a :class:`ProtocolError`; split out of ``server.Connection`` so the parser has
one named error instead of inline aborts.
"""
from __future__ import annotations

import struct

from hazelcast.protocol.client_message import (Frame, InboundMessage, _BEGIN_FRAGMENT_FLAG, _END_FRAGMENT_FLAG,
                                               _IS_FINAL_FLAG)

PROTOCOL_HEADER = b"CP2"
FRAME_HEADER = 6                     # int32 frame length (header included) + uint16 flags
INITIAL_MIN = 16                     # message type int32 + correlation id int64 + partition id int32
_HEAD = struct.Struct("<iH")
_UNFRAGMENTED = _BEGIN_FRAGMENT_FLAG | _END_FRAGMENT_FLAG


class ProtocolError(ValueError):
    """The peer's bytes are not the Hazelcast client protocol; the message says why. Close the connection."""


class FrameReader:
    """State of one connection's inbound byte stream (header seen, the message being assembled)."""

    __slots__ = ("max_frame", "max_message", "started", "msg", "msg_size")

    def __init__(self, max_frame: int, max_message: int):
        self.max_frame, self.max_message = max_frame, max_message
        self.started = False
        self.msg: InboundMessage | None = None
        self.msg_size = 0

    @property
    def mid_message(self) -> bool:
        """True when frames of an unfinished message have been read."""
        return self.msg is not None

    def next_message(self, buf: bytes | bytearray, pos: int = 0) -> tuple[InboundMessage | None, int]:
        """Read from ``buf[pos:]``; return ``(message, pos after it)`` or ``(None, pos)`` when more bytes are needed.

        Frames of an unfinished message are consumed (the returned position is past them). Raises
        :class:`ProtocolError` when the bytes are not the protocol.
        """
        n = len(buf)
        if not self.started:
            head = bytes(buf[pos:pos + 3])
            if not PROTOCOL_HEADER.startswith(head):
                raise ProtocolError(f"bad protocol header {head!r} (expected {PROTOCOL_HEADER!r})")
            if len(head) < 3:
                return None, pos
            self.started = True
            pos += 3
        while n - pos >= FRAME_HEADER:
            length, flags = _HEAD.unpack_from(buf, pos)
            if length < FRAME_HEADER or length > self.max_frame:
                raise ProtocolError(f"malformed frame: length {length}")
            if n - pos < length:
                break
            if self.msg is None and length - FRAME_HEADER < INITIAL_MIN:
                raise ProtocolError(f"malformed message: initial frame of {length - FRAME_HEADER} bytes")
            if self.msg is None and flags & _UNFRAGMENTED != _UNFRAGMENTED:
                raise ProtocolError("fragmented client messages are not supported")
            if self.msg_size + length > self.max_message:
                raise ProtocolError(f"message larger than {self.max_message} bytes")
            with memoryview(buf) as mv:
                frame = Frame(bytes(mv[pos + FRAME_HEADER:pos + length]), flags)
            pos += length
            self.msg_size += length
            if self.msg is None:
                self.msg = InboundMessage(frame)
            else:
                self.msg.add_frame(frame)
            if flags & _IS_FINAL_FLAG:
                msg, self.msg, self.msg_size = self.msg, None, 0
                return msg, pos
        return None, pos
