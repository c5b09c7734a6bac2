"""Integration tests: the preflight (prod/execution/preflight.py) against a real simulator process.

Every bad input the go-live checklist names meets the preflight over real HTTP: a misconfigured account (the
simulator's admin switches: hedge mode, multi-assets mode, a small balance), a 418/429 ban, a bad key, a clock
beyond ``recvWindow``, an unreachable endpoint, a delisted symbol. Each gives a FAIL line naming the endpoint
and the code (or the setting to change); the trader's venue account then refuses entries and never crashes,
and switched back to a good account, it trades.
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest

from prod.execution import Credentials
from prod.execution.preflight import PreflightConfig, run_preflight
from prod.execution.rest import OrderRestClient
from tests.helpers import free_port, running_venue

CREDS = Credentials("dolphin-sim-key", "dolphin-sim-secret")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with running_venue(tmp_path_factory.mktemp("preflight"), "--start-balance", "100000", "--symbols", "80",
                       "--klines-1s", "0") as (_proc, port):
        yield port


def admin(port: int, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(autouse=True)
def _clear_faults(sim):
    yield
    admin(sim, "/sim/admin/fault", {"kind": "clear"})


def pcfg(port: int, **kw) -> PreflightConfig:
    base = dict(rest_base=f"http://127.0.0.1:{port}", ws_base=f"ws://127.0.0.1:{port}", kind="simulator",
                symbols=SYMBOLS, allocation_usdt=25_000.0)
    return PreflightConfig(**{**base, **kw})


def preflight(port: int, creds: Credentials = CREDS, rest_kw: dict | None = None, **kw):
    async def go():
        async with OrderRestClient(f"http://127.0.0.1:{port}", creds, **(rest_kw or {})) as rest:
            return await run_preflight(rest, pcfg(port, **kw)), rest
    return asyncio.run(go())


def check(report, name: str):
    return next(c for c in report.checks if c.name == name)


# ── server time ───────────────────────────────────────────────────────────────────────────────
def test_a_clock_beyond_recv_window_fails_naming_the_time_endpoint_and_sends_nothing_signed(sim):
    r, rest = preflight(sim, rest_kw={"clock_ms": lambda: int(time.time() * 1000) + 12_000})
    c = check(r, "server")
    assert not c.ok and "GET /fapi/v1/time" in c.detail and "12." in c.detail and "ahead" in c.detail
    assert "recvWindow 5000" in c.detail and "chrony" in c.fix
    assert not r.entries_allowed and check(r, "api key").skipped and r.requests == 1


def test_signed_calls_use_the_server_offset_and_minus_1021_resyncs_and_retries_once(sim):
    async def go():
        ahead = lambda: int(time.time() * 1000) + 3_000        # noqa: E731 - 3 s ahead: -1021 without the offset
        async with OrderRestClient(f"http://127.0.0.1:{sim}", CREDS, clock_ms=ahead) as rest:
            acct = await rest.account()                          # measured first, then signed with it
            assert "totalWalletBalance" in acct and rest.time_syncs == 1
            assert -3_400 < rest.time_offset_ms < -2_600
            rest.time_offset_ms = 0                              # the clock drifted since the last sync
            await rest.account()
            assert rest.time_resyncs_1021 == 1 and rest.time_syncs == 2 and -3_400 < rest.time_offset_ms < -2_600
    asyncio.run(go())


# ── bans, unreachable ─────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("status,what", [(418, "IP banned (418)"), (429, "rate limited (429)")])
def test_a_418_or_429_ban_fails_naming_the_endpoint_and_retry_after(sim, status, what):
    admin(sim, "/sim/admin/fault", {"kind": "rest_error", "status": status, "count": 1, "retry_after": 120})
    r, _ = preflight(sim)
    c = check(r, "server")
    assert not c.ok and f"HTTP {status}" in c.detail and "Retry-After 120s" in c.detail and what in c.detail
    assert "GET /fapi/v1/time" in c.detail and not r.entries_allowed


def test_an_unreachable_endpoint_fails_naming_it():
    port = free_port()
    r, _ = preflight(port, rest_kw={"backoff_initial_s": 0.01, "retries": 1})
    c = check(r, "server")
    assert not c.ok and "GET /fapi/v1/time: cannot connect" in c.detail and "DOLPHIN_VENUE_REST" in c.fix
    assert not r.ok and [x.name for x in r.checks if x.skipped][:1] == ["api key"]


def test_a_declared_mainnet_sends_nothing_to_a_local_url():
    r, _ = preflight(free_port(), kind="mainnet", mainnet_ok=True)
    assert not check(r, "endpoint").ok and "simulator endpoint" in check(r, "endpoint").detail
    assert r.requests == 0 and r.time_offset_ms is None
