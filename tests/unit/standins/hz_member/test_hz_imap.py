"""MapService and framing helpers, driven by the real client codecs (encode request → handler → decode response)."""
from __future__ import annotations

import struct
import uuid

import pytest
from hazelcast.protocol.client_message import Frame, InboundMessage, _IS_FINAL_FLAG
from hazelcast.protocol.codec import (map_add_entry_listener_codec, map_add_entry_listener_to_key_codec,
                                      map_add_near_cache_invalidation_listener_codec, map_clear_codec,
                                      map_contains_value_codec, map_get_all_codec, map_get_codec, map_put_codec,
                                      map_put_with_max_idle_codec, map_remove_if_same_codec, map_replace_if_same_codec,
                                      map_set_ttl_codec, map_size_codec)
from hazelcast.serialization.data import Data

from standins.hz_member import protocol as P
from standins.hz_member.imap import MapService
from standins.hz_member.snapshot import SnapshotStore
from standins.hz_member.values import data_string, string_data


def frames(buf: bytes) -> list[InboundMessage]:
    """Split a byte stream into messages exactly like the client/server readers do."""
    out, pos, msg = [], 0, None
    while pos < len(buf):
        length, flags = struct.unpack_from("<iH", buf, pos)
        f = Frame(bytes(buf[pos + 6:pos + length]), flags)
        pos += length
        if msg is None:
            msg = InboundMessage(f)
        else:
            msg.add_frame(f)
        if flags & _IS_FINAL_FLAG:
            out.append(msg)
            msg = None
    assert msg is None, "stream ended inside a message"
    return out


class Ctx:
    def __init__(self, conn_id=1, corr=7):
        self.correlation_id, self.partition_id, self.connection_id = corr, 0, conn_id
        self.client_uuid = uuid.uuid4()


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def svc():
    sent: list[tuple[int, bytes]] = []
    clock = Clock()
    s = MapService(uuid.uuid4(), lambda cid, b: sent.append((cid, bytes(b))), clock=clock)
    s.sent, s.clock = sent, clock
    return s


def call(svc, request, ctx=None):
    ctx = ctx or Ctx()
    req = frames(request.buf)[0]
    mtype = struct.unpack_from("<i", req.start_frame.buf, 0)[0]
    out = svc.handlers()[mtype](ctx, req)
    return frames(out.buf)[0]


def d(s: str) -> Data:
    return Data(string_data(s))


def test_string_data_matches_client_serialization():
    from hazelcast.config import Config
    from hazelcast.serialization.service import SerializationServiceV1
    ser = SerializationServiceV1(Config())
    assert string_data("héllo {}") == bytes(ser.to_data("héllo {}").buffer)
    assert data_string(string_data("x")) == "x"
    assert data_string(b"\x00" * 3) is None


def test_put_get_decode_with_client_codecs(svc):
    r = call(svc, map_put_codec.encode_request("m", d("k"), d("v1"), 1, -1))
    assert map_put_codec.decode_response(r) is None
    r = call(svc, map_put_codec.encode_request("m", d("k"), d("v2"), 1, -1))
    assert bytes(map_put_codec.decode_response(r).buffer) == string_data("v1")
    r = call(svc, map_get_codec.encode_request("m", d("k"), 1))
    assert bytes(map_get_codec.decode_response(r).buffer) == string_data("v2")
    r = call(svc, map_get_all_codec.encode_request("m", [d("k"), d("nope")]))
    got = map_get_all_codec.decode_response(r)
    assert [(bytes(k.buffer), bytes(v.buffer)) for k, v in got] == [(string_data("k"), string_data("v2"))]
    assert map_size_codec.decode_response(call(svc, map_size_codec.encode_request("m"))) == 1


def test_value_comparisons_are_on_data_bytes(svc):
    call(svc, map_put_codec.encode_request("m", d("k"), d("a"), 1, -1))
    assert map_contains_value_codec.decode_response(call(svc, map_contains_value_codec.encode_request("m", d("a"))))
    assert not map_replace_if_same_codec.decode_response(
        call(svc, map_replace_if_same_codec.encode_request("m", d("k"), d("b"), d("c"), 1)))
    assert map_replace_if_same_codec.decode_response(
        call(svc, map_replace_if_same_codec.encode_request("m", d("k"), d("a"), d("c"), 1)))
    assert map_remove_if_same_codec.decode_response(
        call(svc, map_remove_if_same_codec.encode_request("m", d("k"), d("c"), 1)))
    assert map_size_codec.decode_response(call(svc, map_size_codec.encode_request("m"))) == 0


def _events(svc, codec):
    out = []
    for _cid, raw in svc.sent:
        for msg in frames(raw):
            codec.handle(msg, lambda *a: out.append(a))
    return out


def test_listener_flags_key_filter_and_include_value(svc):
    call(svc, map_add_entry_listener_codec.encode_request("m", True, 1 | 4, False), Ctx(conn_id=1, corr=11))
    call(svc, map_add_entry_listener_to_key_codec.encode_request("m", d("k2"), False, 2, False), Ctx(conn_id=2, corr=12))
    call(svc, map_put_codec.encode_request("m", d("k1"), d("a"), 1, -1))
    call(svc, map_put_codec.encode_request("m", d("k1"), d("b"), 1, -1))
    call(svc, map_put_codec.encode_request("m", d("k2"), d("c"), 1, -1))
    from hazelcast.protocol.codec import map_remove_codec
    call(svc, map_remove_codec.encode_request("m", d("k2"), 1))
    call(svc, map_remove_codec.encode_request("m", d("k1"), 1))
    wide = [e for e in _events(svc, map_add_entry_listener_codec)]
    keyed = [e for e in _events(svc, map_add_entry_listener_to_key_codec)]
    # (key, value, old, merging, type, uuid, n)
    assert [(data_string(bytes(e[0].buffer)), e[4]) for e in wide] == [("k1", 1), ("k1", 4), ("k2", 1)]
    assert data_string(bytes(wide[1][2].buffer)) == "a" and data_string(bytes(wide[1][1].buffer)) == "b"
    assert [(data_string(bytes(e[0].buffer)), e[1], e[2], e[4]) for e in keyed] == [("k2", None, None, 2)]
    corr = {cid: struct.unpack_from("<q", raw, 10)[0] for cid, raw in svc.sent}
    assert corr == {1: 11, 2: 12}


def test_ttl_and_max_idle_expire_with_events(svc):
    call(svc, map_add_entry_listener_codec.encode_request("m", True, 16, False))
    call(svc, map_put_codec.encode_request("m", d("t"), d("x"), 1, 2000))
    call(svc, map_put_with_max_idle_codec.encode_request("m", d("i"), d("y"), 1, -1, 1000))
    svc.clock.t += 0.9
    assert map_get_codec.decode_response(call(svc, map_get_codec.encode_request("m", d("i"), 1))) is not None
    svc.clock.t += 0.9           # idle entry was touched 0.9 s ago: still alive
    svc.tick(0)
    assert _events(svc, map_add_entry_listener_codec) == []
    svc.clock.t += 0.3           # ttl entry is now 2.1 s old, idle one idle for 1.2 s
    svc.tick(0)
    got = sorted((data_string(bytes(e[0].buffer)), e[4], data_string(bytes(e[2].buffer)))
                 for e in _events(svc, map_add_entry_listener_codec))
    assert got == [("i", 16, "y"), ("t", 16, "x")]
    assert map_size_codec.decode_response(call(svc, map_size_codec.encode_request("m"))) == 0


def test_set_ttl_on_existing_and_missing_key(svc):
    call(svc, map_put_codec.encode_request("m", d("k"), d("x"), 1, -1))
    assert map_set_ttl_codec.decode_response(call(svc, map_set_ttl_codec.encode_request("m", d("k"), 500)))
    assert not map_set_ttl_codec.decode_response(call(svc, map_set_ttl_codec.encode_request("m", d("zz"), 500)))
    svc.clock.t += 0.6
    assert map_get_codec.decode_response(call(svc, map_get_codec.encode_request("m", d("k"), 1))) is None


def test_near_cache_invalidation_events_carry_key_or_null_on_clear(svc):
    codec = map_add_near_cache_invalidation_listener_codec
    call(svc, codec.encode_request("m", 256, True))
    call(svc, map_put_codec.encode_request("m", d("k"), d("x"), 1, -1))
    call(svc, map_clear_codec.encode_request("m"))
    got = []
    for _cid, raw in svc.sent:
        for msg in frames(raw):
            codec.handle(msg, lambda key, src, puuid, seq: got.append((key, seq)))
    assert [(None if k is None else data_string(bytes(k.buffer)), s) for k, s in got] == [("k", 1), (None, 0)]


def test_fetch_near_cache_metadata_reports_per_partition_sequences(svc):
    from hazelcast.protocol.builtin import EntryListCodec, FixSizedTypesCodec, ListMultiFrameCodec, StringCodec
    from hazelcast.protocol.client_message import OutboundMessage, REQUEST_HEADER_SIZE, create_initial_buffer
    from hazelcast.protocol.codec import map_add_near_cache_invalidation_listener_codec as inval
    from standins.hz_member.imap import FETCH_NC_METADATA_REQUEST, partition_of
    call(svc, inval.encode_request("m", 256, True))
    for _ in range(3):
        call(svc, map_put_codec.encode_request("m", d("k"), d("x"), 1, -1))
    buf = create_initial_buffer(REQUEST_HEADER_SIZE + 17, FETCH_NC_METADATA_REQUEST)
    FixSizedTypesCodec.encode_uuid(buf, REQUEST_HEADER_SIZE, svc.member_uuid)
    ListMultiFrameCodec.encode(buf, ["m", "unknown"], StringCodec.encode, True)
    resp = call(svc, OutboundMessage(buf, False))
    resp.next_frame()

    def int_long_list(msg):
        b = msg.next_frame().buf
        return [struct.unpack_from("<iq", b, i) for i in range(0, len(b), 12)]
    seqs = EntryListCodec.decode(resp, StringCodec.decode, int_long_list)
    uuids = resp.next_frame().buf
    assert seqs == [("m", [(partition_of(string_data("k")), 3)]), ("unknown", [])]
    assert len(uuids) == 271 * 21
    assert FixSizedTypesCodec.decode_uuid(uuids, 4) == svc.partition_uuid


def test_error_response_decodes_to_named_client_exception():
    from hazelcast.errors import UnsupportedOperationError, create_error_from_message
    msg = frames(P.error_response("java.lang.UnsupportedOperationException", "no queue_offer").buf)[0]
    err = create_error_from_message(msg)
    assert isinstance(err, UnsupportedOperationError) and "no queue_offer" in str(err)
    assert P.codec_name(0x030100) == "queue_offer"


def test_snapshot_store_round_trip_keeps_entries_and_drops_deleted(tmp_path, svc):
    svc.track_dirty = True
    store = SnapshotStore(tmp_path)
    call(svc, map_put_codec.encode_request("m", d("a"), d("1"), 1, -1))
    call(svc, map_put_codec.encode_request("m", d("b"), d("2"), 1, 60_000))
    call(svc, map_put_codec.encode_request("other", d("c"), d("3"), 1, -1))
    store.commit(svc, {})
    call(svc, map_clear_codec.encode_request("other"))
    from hazelcast.protocol.codec import map_remove_codec
    call(svc, map_remove_codec.encode_request("m", d("a"), 1))
    store.commit(svc, {})
    store.close()
    state, services = SnapshotStore(tmp_path).load()
    fresh = MapService(uuid.uuid4(), lambda *a: None, clock=svc.clock)
    fresh.restore(state)
    assert services == {}
    assert {n: sorted(data_string(k) for k in m.entries) for n, m in fresh.maps.items()} == {"m": ["b"]}
    assert fresh.maps["m"].entries[string_data("b")].ttl == 60.0
