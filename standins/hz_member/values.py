"""Hazelcast ``Data`` encoding of plain strings, for values the member itself writes (heartbeat) and tools.

A Data blob is: 4-byte big-endian partition hash (0), 4-byte big-endian type id (-11 = string), then the
string as a 4-byte big-endian UTF-8 byte length and the bytes — what hazelcast-python-client produces
for a ``str``.
"""
from __future__ import annotations

import struct

STRING_TYPE_ID = -11
_HEAD = struct.Struct(">iii")


def string_data(s: str) -> bytes:
    """Return the Data bytes the Python client would send for ``s``."""
    raw = s.encode("utf-8")
    return _HEAD.pack(0, STRING_TYPE_ID, len(raw)) + raw


def data_string(blob: bytes) -> str | None:
    """Return the string inside a string Data blob, or None if it holds another type."""
    if len(blob) < 12:
        return None
    _, type_id, n = _HEAD.unpack_from(blob, 0)
    if type_id != STRING_TYPE_ID or n != len(blob) - 12:
        return None
    return blob[12:].decode("utf-8", errors="replace")
