"""Fuzz the embedded member's client-message frame reader (standins.hz_member.framing).

Well-formed request streams, encoded by the real hazelcast-python-client codecs and cut into random
chunks, come out as the same messages in order; random and mutated bytes make the reader either ask
for more bytes or raise :class:`ProtocolError` — never another exception, never a message the
dispatcher cannot read (initial frame under 16 bytes).
"""
from __future__ import annotations

from hazelcast.protocol.codec import client_ping_codec, map_get_codec, map_put_codec
from hazelcast.serialization.data import Data
from hypothesis import given
from hypothesis import strategies as st

from standins.hz_member.framing import INITIAL_MIN, FrameReader, ProtocolError
from tests.unit.fuzz.strategies import FUZZ

MAX_FRAME, MAX_MESSAGE = 1 << 16, 1 << 17


@st.composite
def request(draw) -> tuple[int, bytes]:
    """One client request as the real client encodes it; returns (correlation id, bytes)."""
    corr = draw(st.integers(1, 2**62))
    kind = draw(st.sampled_from(["ping", "get", "put"]))
    name = draw(st.text(max_size=8))
    key = Data(bytes(8) + draw(st.binary(max_size=40)))        # (partition hash, type id) + payload
    value = Data(bytes(8) + draw(st.binary(max_size=300)))
    if kind == "ping":
        out = client_ping_codec.encode_request()
    elif kind == "get":
        out = map_get_codec.encode_request(name, key, 1)
    else:
        out = map_put_codec.encode_request(name, key, value, 1, -1)
    out.set_correlation_id(corr)
    return corr, bytes(out.buf)


def _feed(reader: FrameReader, chunks: list[bytes]) -> list:
    """Feed ``chunks`` as a connection does (keep the unread tail); return the messages read."""
    buf, got = bytearray(), []
    for c in chunks:
        buf += c
        pos = 0
        while True:
            msg, new = reader.next_message(buf, pos)
            assert pos <= new <= len(buf)
            pos = new
            if msg is None:
                break
            assert len(msg.start_frame.buf) >= INITIAL_MIN
            got.append(msg)
        del buf[:pos]
    return got


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@FUZZ
@given(reqs=st.lists(request(), min_size=1, max_size=6), cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_well_formed_requests_come_out_whole_and_in_order_at_any_chunking(reqs, cuts):
    stream = b"CP2" + b"".join(r for _, r in reqs)
    reader = FrameReader(MAX_FRAME, MAX_MESSAGE)
    got = _feed(reader, _chunks(stream, cuts))
    assert [m.get_correlation_id() for m in got] == [c for c, _ in reqs]
    assert not reader.mid_message


@st.composite
def hostile_stream(draw) -> bytes:
    """Random bytes, or a valid stream with bytes flipped, cut, inserted, or the header damaged."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200)) if draw(st.booleans()) else b"CP2" + draw(st.binary(max_size=200))
    data = bytearray(b"CP2" + b"".join(r for _, r in draw(st.lists(request(), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        if how == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif how == "cut":
            del data[i:i + draw(st.integers(1, 16))]
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:               # a frame-length-sized field overwritten with an extreme value
            data[i:i + 4] = draw(st.sampled_from([b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f", b"\x05\x00\x00\x00",
                                                  b"\xff\xff\xff\xff", b"\x16\x00\x00\x00"]))
        if not data:
            break
    return bytes(data)


@FUZZ
@given(data=hostile_stream(), cuts=st.lists(st.integers(0, 10**6), max_size=8))
def test_hostile_bytes_ask_for_more_or_raise_protocol_error(data, cuts):
    reader = FrameReader(MAX_FRAME, MAX_MESSAGE)
    try:
        _feed(reader, _chunks(data, cuts))
    except ProtocolError as exc:
        assert str(exc)


def test_bad_header_short_initial_frame_and_oversized_frame_are_named():
    def err(data: bytes) -> str:
        try:
            FrameReader(MAX_FRAME, MAX_MESSAGE).next_message(data)
        except ProtocolError as exc:
            return str(exc)
        raise AssertionError(f"{data!r} accepted")

    assert "protocol header" in err(b"GET / HTTP/1.1")
    assert "protocol header" in err(b"C\x00")
    assert "initial frame of 4 bytes" in err(b"CP2" + (10).to_bytes(4, "little") + b"\x00\xc0" + b"abcd")
    assert "length" in err(b"CP2" + (MAX_FRAME + 1).to_bytes(4, "little") + b"\x00\xc0")
    assert "length 5" in err(b"CP2" + (5).to_bytes(4, "little") + b"\x00\xc0")
    assert "fragmented" in err(b"CP2" + (22).to_bytes(4, "little") + b"\x00\x00" + bytes(16))
