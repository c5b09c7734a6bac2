"""Bad and greedy clients over raw sockets: each is dropped (or held back) alone, never stalls the others.

Frames with a huge or negative length field, a truncated frame, a client that never authenticates, a
client that stops reading its socket (requests and events), and 200 concurrent clients. Tests taking
``member`` run on the embedded member and on a real member (``bus_member``); the embedded member's own
limits (auth timeout, output cap, memory) are checked on an embedded member started with short limits.
"""
from __future__ import annotations

import socket
import struct
import time
import uuid

import psutil
import pytest
from hazelcast.protocol.codec import (client_authentication_codec as auth, map_add_entry_listener_codec as listen,
                                      map_get_codec as mget, map_set_codec as mset)
from hazelcast.serialization.data import Data
from hazelcast.hash import hash_to_index

from prod.bus.client import make_client
from prod.settings import load_settings
from standins.hz_member.values import string_data as _string_bytes
from tests.helpers import free_port, start_listening, wait_until

PARTITIONS = 271


def string_data(text: str) -> Data:
    return Data(_string_bytes(text))


@pytest.fixture(scope="module")
def member(bus_member):
    return bus_member


@pytest.fixture(scope="module")
def strict_member(tmp_path_factory):
    """An embedded member that closes connections not authenticated within 1 s."""
    port = free_port()
    proc = start_listening("standins.hz_member", ["--host", "127.0.0.1", "--port", str(port), "--cluster-name",
                                                  "dolphin", "--auth-timeout-s", "1", "--no-heartbeat"],
                           tmp_path_factory.mktemp("hz_strict") / "hz_member.log", port, 30)
    try:
        yield proc, port
    finally:
        proc.stop()


def _client(port: int):
    return make_client(load_settings(env={}, hz_members=(f"127.0.0.1:{port}",)), cluster_connect_timeout=15.0)


class Raw:
    """A hand-driven protocol client: authenticate, send requests, read (or not) responses."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.corr = 0

    def send(self, msg) -> int:
        self.corr += 1
        msg.set_correlation_id(self.corr)
        self.s.sendall(bytes(msg.buf))
        return self.corr

    def start_auth(self) -> None:
        self.s.sendall(b"CP2")
        self.send(auth.encode_request("dolphin", None, None, uuid.uuid4(), "PYH", 1, "5.7.0", "raw", []))

    def read(self):
        from hazelcast.protocol.client_message import Frame, InboundMessage, _IS_FINAL_FLAG
        msg = None
        while True:
            while len(self.buf) < 6 or len(self.buf) < struct.unpack_from("<i", self.buf, 0)[0]:
                data = self.s.recv(1 << 20)
                if not data:
                    raise EOFError("closed by the member")
                self.buf += data
            length, flags = struct.unpack_from("<iH", self.buf, 0)
            f, self.buf = Frame(self.buf[6:length], flags), self.buf[length:]
            msg = InboundMessage(f) if msg is None else (msg.add_frame(f) or msg)
            if flags & _IS_FINAL_FLAG:
                return msg

    def close(self) -> None:
        self.s.close()


def _keyed(msg, key_data: Data):
    msg.set_partition_id(hash_to_index(key_data.get_partition_hash(), PARTITIONS))
    return msg


def _closed_within(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if s.recv(1 << 16) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def _served(port: int, client) -> None:
    m = client.get_map("hardening-probe").blocking()
    t0 = time.monotonic()
    m.set("k", "v")
    assert m.get("k") == "v"
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("length", [2**31 - 1, -5, 5, 0x7FFF0000])
def test_frame_with_a_bad_length_field_is_dropped_alone(member, length):
    c = _client(member.port)
    bad = socket.create_connection(("127.0.0.1", member.port))
    try:
        bad.sendall(b"CP2" + struct.pack("<iH", length, 0xC000) + b"\x00" * 32)
        assert _closed_within(bad, 5)                   # every length here is below 6 or above 64 MiB
        _served(member.port, c)
        if member.embedded:
            wait_until(lambda: f"malformed frame: length {length}" in member.log_text(), 5, what="log line")
    finally:
        bad.close()
        c.shutdown()


def test_truncated_frame_then_close_is_dropped_with_a_log_line(member):
    c = _client(member.port)
    r = Raw(member.port)
    try:
        r.start_auth()
        assert auth.decode_response(r.read())["status"] == 0
        key = string_data("k")
        whole = _keyed(mset.encode_request("hardening-trunc", key, string_data("v" * 1000), 1, -1), key)
        r.s.sendall(bytes(whole.buf)[: len(whole.buf) // 2])      # half a request, then hang up
    finally:
        r.close()
    _served(member.port, c)
    assert c.get_map("hardening-trunc").blocking().get("k") is None
    if member.embedded:
        wait_until(lambda: "closed mid-message" in member.log_text(), 5, what="truncated-frame log line")
    c.shutdown()


def test_client_that_never_authenticates_is_closed_without_stalling_others(strict_member):
    proc, port = strict_member
    c = _client(port)
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        silent[0].sendall(b"CP2")                                   # header only
        silent[1].sendall(b"CP")                                    # not even the header
        _served(port, c)
        t0 = time.monotonic()
        assert all(_closed_within(s, 5) for s in silent)
        assert time.monotonic() - t0 < 5
        assert "not authenticated within 1s" in proc.log_text()
        _served(port, c)                                            # an authenticated client is never timed out
    finally:
        for s in silent:
            s.close()
        c.shutdown()


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def test_client_that_stops_reading_responses_is_held_back_with_bounded_memory(strict_member):
    proc, port = strict_member
    c = _client(port)
    big = "x" * (1 << 20)
    c.get_map("hardening-big").blocking().set("big", big)
    rss0 = _rss_mb(proc.p.pid)
    r = Raw(port, timeout=30)
    try:
        r.start_auth()
        assert auth.decode_response(r.read())["status"] == 0
        r.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        key = string_data("big")
        req = _keyed(mget.encode_request("hardening-big", key, 1), key)
        r.s.settimeout(0.5)
        sent = 0
        try:
            for _ in range(400):                    # 400 MiB of responses asked for, none read
                req.set_correlation_id(sent + 1)
                r.s.sendall(bytes(req.buf))
                sent += 1
        except socket.timeout:
            pass                                    # the member stopped reading our requests: backpressure
        _served(port, c)
        assert _rss_mb(proc.p.pid) - rss0 < 150, (rss0, _rss_mb(proc.p.pid), sent)
        # the held-back client gets every answer once it reads again
        r.s.settimeout(30)
        got = 0
        while got < sent:
            r.read()
            got += 1
        assert got == sent
    finally:
        r.close()
        c.shutdown()


def test_client_that_stops_reading_events_is_disconnected_not_buffered_forever(strict_member):
    proc, port = strict_member
    c = _client(port)
    rss0 = _rss_mb(proc.p.pid)
    r = Raw(port, timeout=30)
    try:
        r.start_auth()
        assert auth.decode_response(r.read())["status"] == 0
        r.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        r.send(listen.encode_request("hardening-events", True, 1 | 4, False))
        r.read()                                                    # registration answered; now never read
        m = c.get_map("hardening-events")
        value = "y" * (1 << 20)
        futs = [m.set(f"k{i % 10}", value) for i in range(150)]     # 150 MiB of events for the silent client
        for f in futs:
            f.result()
        wait_until(lambda: "client is not reading its socket" in proc.log_text(), 30, what="slow reader dropped")
        _served(port, c)
        assert _rss_mb(proc.p.pid) - rss0 < 200
    finally:
        r.close()
        c.shutdown()


def test_two_hundred_concurrent_clients_are_served(member):
    clients = [Raw(member.port) for _ in range(200)]
    try:
        for r in clients:
            r.start_auth()
        assert all(auth.decode_response(r.read())["status"] == 0 for r in clients)
        name = "hardening-200-" + uuid.uuid4().hex[:6]
        for i, r in enumerate(clients):
            key = string_data(f"c{i}")
            r.send(_keyed(mset.encode_request(name, key, string_data(str(i)), 1, -1), key))
        for r in clients:
            r.read()
        for i, r in enumerate(clients):
            key = string_data(f"c{i}")
            r.send(_keyed(mget.encode_request(name, key, 1), key))
        assert [bytes(mget.decode_response(r.read()).buffer) for r in clients] == \
            [_string_bytes(str(i)) for i in range(200)]
    finally:
        for r in clients:
            r.close()
