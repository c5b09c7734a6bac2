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
import random
import time
from pathlib import Path

import pytest

from prod.execution import Credentials
from prod.execution.preflight import PreflightConfig, run_preflight
from prod.execution.rest import OrderRestClient
from prod.trading.journal import Journal
from tests.helpers import Proc, free_port, running_venue, wait_until
from tests.helpers import venue_admin as admin
from tests.market import scan_payload, walk
from tests.venue_kit import CREDS

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with running_venue(tmp_path_factory.mktemp("preflight"), "--start-balance", "100000", "--symbols", "80",
                       "--klines-1s", "0") as (_proc, port):
        yield port


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


def test_a_venue_clock_that_jumps_ahead_is_followed_by_the_minus_1021_resync(sim):
    """The simulator's clock_skew fault moves serverTime and its timestamp check ahead, as a drifting host
    clock would look from the venue: the next signed call meets -1021, resyncs and succeeds."""
    async def go():
        async with OrderRestClient(f"http://127.0.0.1:{sim}", CREDS, time_sync_s=600) as rest:
            await rest.account()
            before = rest.time_offset_ms
            admin(sim, "/sim/admin/fault", {"kind": "clock_skew", "offset_ms": 6_500})   # > recvWindow 5000
            await rest.account()
            return before, rest.time_offset_ms, rest.time_resyncs_1021
    before, after, resyncs = asyncio.run(go())
    assert resyncs == 1 and 6_000 < after - before < 7_000
    admin(sim, "/sim/admin/fault", {"kind": "clock_skew", "offset_ms": 8_000})   # the preflight: beyond recvWindow
    r, _ = preflight(sim)
    c = check(r, "server")
    assert not c.ok and "s behind the venue, beyond recvWindow 5000 ms" in c.detail and not r.entries_allowed
    assert 7_000 < r.time_offset_ms < 9_000


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


# ── the account's settings (the simulator's admin switches) ───────────────────────────────────
@pytest.fixture(autouse=True)
def _good_account(sim):
    yield
    admin(sim, "/sim/admin/account", {"dual_side": False, "multi_assets": False, "balance": 100_000})


def test_a_good_account_passes_every_check_and_sets_margin_type_and_leverage(sim):
    admin(sim, "/sim/admin/account", {"leverage": 2, "margin_type": "CROSSED"})     # a low leverage, by hand
    r, rest = preflight(sim)
    assert r.ok and r.entries_allowed, r.lines()
    assert [c.name for c in r.checks] == ["endpoint", "server", "api key", "position mode", "asset mode", "symbols",
                                          "margin", "commission", "balance"]
    assert f"{len(SYMBOLS)} marginType + {len(SYMBOLS)} leverage requests" in check(r, "margin").detail
    assert r.fees is not None and (r.fees.maker, r.fees.taker) == (0.0002, 0.0005)
    assert r.wallet_available == 100_000 and r.capital == 25_000 and "capital 25000.00" in check(r, "balance").detail

    async def rows():
        async with OrderRestClient(f"http://127.0.0.1:{sim}", CREDS) as rest:
            return {x["symbol"]: x for x in await rest.request("GET", "/fapi/v2/positionRisk")}
    risk = asyncio.run(rows())
    assert all(risk[s]["leverage"] == "6" and risk[s]["marginType"] == "isolated" for s in SYMBOLS)
    again, _ = preflight(sim)
    assert again.ok and "0 marginType + 0 leverage requests" in check(again, "margin").detail


def test_hedge_mode_fails_naming_the_position_mode_setting(sim):
    admin(sim, "/sim/admin/account", {"dual_side": True})
    r, _ = preflight(sim)
    c = check(r, "position mode")
    assert not c.ok and "Hedge Mode" in c.detail and "-4061" in c.detail and "One-way" in c.fix
    assert "dualSidePosition=false" in c.fix and not r.entries_allowed
    assert [x.name for x in r.failures()] == ["position mode"]


def test_multi_assets_mode_fails_naming_the_asset_mode_setting(sim):
    admin(sim, "/sim/admin/account", {"multi_assets": True})
    r, _ = preflight(sim)
    c = check(r, "asset mode")
    assert not c.ok and "Multi-Assets" in c.detail and "Single-Asset" in c.fix and not r.entries_allowed


def test_a_balance_below_the_minimum_notional_fails(sim):
    admin(sim, "/sim/admin/account", {"balance": 3})
    r, _ = preflight(sim)
    c = check(r, "balance")
    assert not c.ok and "USDT available 3.00" in c.detail and "minimum notional 5" in c.detail
    assert r.capital == 3.0 and not r.entries_allowed


def test_capital_is_the_smaller_of_wallet_and_allocation(sim):
    admin(sim, "/sim/admin/account", {"balance": 800})
    r, _ = preflight(sim, allocation_usdt=25_000.0)
    assert r.ok and r.capital == 800.0 and r.wallet_available == 800.0
    r, _ = preflight(sim, allocation_usdt=500.0)
    assert r.ok and r.capital == 500.0 and "allocation 500.00 -> capital 500.00" in check(r, "balance").detail


def test_a_bad_key_fails_naming_the_endpoint_and_minus_2015(sim):
    r, _ = preflight(sim, creds=Credentials("not-a-key", "nope"))
    c = check(r, "api key")
    assert not c.ok and "GET /fapi/v2/balance" in c.detail and "code=-2015" in c.detail
    assert "DOLPHIN_VENUE_API_KEY" in c.fix and "whitelist" in c.fix and check(r, "position mode").skipped


def test_a_delisted_symbol_is_refused_alone_and_the_rest_trade(sim):
    r, _ = preflight(sim, symbols=SYMBOLS + ("FOOUSDT",))
    c = check(r, "symbols")
    assert not c.ok and "FOOUSDT: not listed in GET /fapi/v1/exchangeInfo" in c.detail and "DOLPHIN_SYMBOLS" in c.fix
    assert r.entries_allowed and "FOOUSDT" in r.refused_symbols and set(r.tradable) == set(SYMBOLS)


def test_a_leverage_below_the_engines_maximum_or_above_the_bracket_fails(sim):
    r, _ = preflight(sim, leverage=3)
    c = check(r, "margin")
    assert not c.ok and "DOLPHIN_VENUE_LEVERAGE=3" in c.detail and "DOLPHIN_VENUE_LEVERAGE>=6" in c.fix
    r, _ = preflight(sim, leverage=125)
    c = check(r, "margin")
    assert not c.ok and "POST /fapi/v1/leverage" in c.detail and "code=-4028" in c.detail
    assert set(r.refused_symbols) <= set(SYMBOLS) and r.refused_symbols


# ── the command line and the trader ────────────────────────────────────────────────────────────
@pytest.fixture
def own_sim(tmp_path):
    """A simulator of its own: its request-weight budget (2400/min) is not shared with the other tests."""
    with running_venue(tmp_path, "--start-balance", "100000", "--symbols", "80", "--klines-1s", "0",
                       name="own_sim") as (_proc, port):
        yield port


def _cli(port: int, tmp: Path, name: str, **env) -> tuple[int, list[str]]:
    e = {"DOLPHIN_VENUE_REST": f"http://127.0.0.1:{port}", "DOLPHIN_VENUE_WS": f"ws://127.0.0.1:{port}",
         "DOLPHIN_DATA_DIR": str(tmp / "data"), "DOLPHIN_VENUE_API_KEY": CREDS.api_key,
         "DOLPHIN_VENUE_API_SECRET": CREDS.secret, "DOLPHIN_SYMBOLS": ",".join(SYMBOLS), **env}
    p = Proc("prod.execution", ["preflight"], tmp / f"{name}.log", env=e).start()
    rc = p.p.wait(60)
    return rc, [ln for ln in p.log_text().splitlines() if ln.startswith(("PASS", "FAIL", "SKIP"))]


def test_the_preflight_command_fails_in_hedge_mode_naming_the_setting_and_passes_in_one_way(own_sim, tmp_path):
    sim = own_sim
    admin(sim, "/sim/admin/account", {"dual_side": True})
    rc, lines = _cli(sim, tmp_path, "hedge")
    assert rc == 1 and len(lines) == 10, lines
    assert [ln for ln in lines if ln.startswith("FAIL position mode")][0].count("One-way") == 1
    assert lines[-1].startswith("FAIL preflight")
    admin(sim, "/sim/admin/account", {"dual_side": False})
    rc, lines = _cli(sim, tmp_path, "oneway")
    assert rc == 0 and all(ln.startswith("PASS") for ln in lines) and len(lines) == 10, lines
    rc, lines = _cli(sim, tmp_path, "mainnet", DOLPHIN_VENUE_KIND="mainnet")
    assert rc == 1 and lines[0].startswith("FAIL endpoint") and "simulator endpoint" in lines[0]


def test_the_trader_refuses_entries_in_hedge_mode_and_trades_once_switched_to_one_way(own_sim, tmp_path,
                                                                                     monkeypatch):
    """The trader's venue account (VenueAccounts → VenueAccount + preflight) under its decision core."""
    sim = own_sim
    from prod.settings import load_settings
    from prod.trading.core import CoreLimits, TraderCore
    from services.event_trader.main import TraderConfig, VenueAccounts, load_engine_params
    monkeypatch.setenv("DOLPHIN_VENUE_API_KEY", CREDS.api_key)
    monkeypatch.setenv("DOLPHIN_VENUE_API_SECRET", CREDS.secret)
    admin(sim, "/sim/admin/account", {"dual_side": True, "balance": 20_000})
    syms = SYMBOLS + ("LINKUSDT", "DOTUSDT", "LTCUSDT", "BCHUSDT", "AVAXUSDT", "TRXUSDT")
    marks = {r["symbol"]: float(r["markPrice"]) for r in admin(sim, "/fapi/v1/premiumIndex")}
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), venue_rest=f"http://127.0.0.1:{sim}",
                             venue_ws=f"ws://127.0.0.1:{sim}", symbols=syms)
    cfg = TraderConfig(settings=settings, execution="venue", fill_timeout_s=5.0, preflight_retry_s=0.3)
    cfg.trader_dir.mkdir(parents=True)
    journal = Journal.open(cfg.trader_dir / "journal.sqlite", cfg.trader_dir / "audit.log")
    params = load_engine_params()
    accounts = VenueAccounts(cfg, journal, params)
    core = TraderCore(CoreLimits(), journal, params, syms, time.time, account_type=accounts)
    acct = core.account
    rng, prices = random.Random(3), {s: marks[s] for s in syms}

    def scan(n, vd, drift=0.0, noise=0.001):
        walk(prices, rng, drift, noise)
        return scan_payload(n, prices, vd, time.time())

    def signal_until(n, key):
        for n in range(n + 1, n + 80):  # noqa: B020
            r = core.process(scan(n, -0.06, -0.002, 0.003))
            if r and r.get(key):
                return n, r[key]
        raise AssertionError(f"no {key} in 80 signal scans")
    try:
        # capital from the wallet (20,000 < the 25,000 allocation), engine sized from it
        assert acct.capital == core.engine.capital == 20_000.0
        why = acct.gate.refusal("ETHUSDT")
        assert not acct.gate.open and "position mode: Hedge Mode" in why and "One-way" in why
        n = 0
        for n in range(1, 160):
            core.process(scan(n, 0.0, 0, 0.001 + n * 0.00002))
        n, refused = signal_until(n, "not_taken")
        assert refused["error"] == "EntriesRefused" and "Hedge Mode" in refused["detail"]
        assert core.engine.position is None and acct.position is None
        assert not acct._call(acct.client.positions) and journal.events("ENTRY_NOT_TAKEN")
        admin(sim, "/sim/admin/account", {"dual_side": False})
        wait_until(lambda: acct.gate.open, 10, what="the preflight retry passes once the account is one-way")
        n, entered = signal_until(n, "entered")
        assert entered["source"] == "venue" and entered["status"] == "FILLED"
        assert [p.symbol for p in acct._call(acct.client.positions)] == [entered["symbol"]]
        runs = [e["payload"] for e in journal.events("PREFLIGHT")]
        assert not runs[0]["ok"] and runs[-1]["ok"] and runs[-1]["capital"] == 20_000.0
    finally:
        accounts.preflight.stop()
        try:
            acct._call(acct.client.kill)
        finally:
            acct.stop()
            journal.close()


def test_the_trader_process_in_hedge_mode_stays_up_refusing_entries_and_trades_once_one_way(own_sim, tmp_path,
                                                                                            hz_member):
    """``python -m services.event_trader`` (execution=venue) on the member and the simulator, scans on the bus."""
    sim = own_sim
    import sqlite3
    from prod.bus import maps
    from prod.bus.client import make_client
    from prod.settings import PRIORITY_SYMBOLS, load_settings
    _, hz_port = hz_member
    admin(sim, "/sim/admin/account", {"dual_side": True})
    marks = {r["symbol"]: float(r["markPrice"]) for r in admin(sim, "/fapi/v1/premiumIndex")}
    data = tmp_path / "data"
    tr = Proc("services.event_trader", ["--hz-members", f"127.0.0.1:{hz_port}", "--data-dir", str(data)],
              tmp_path / "trader.log", env={
                  "DOLPHIN_EVENT_TRADER_EXECUTION": "venue", "DOLPHIN_EVENT_TRADER_RECORD": "0",
                  "DOLPHIN_EVENT_TRADER_PREFLIGHT_RETRY_S": "3", "DOLPHIN_VENUE_REST": f"http://127.0.0.1:{sim}",
                  "DOLPHIN_VENUE_WS": f"ws://127.0.0.1:{sim}", "DOLPHIN_VENUE_API_KEY": CREDS.api_key,
                  "DOLPHIN_VENUE_API_SECRET": CREDS.secret}).start()
    client = make_client(load_settings(env={}, hz_members=(f"127.0.0.1:{hz_port}",)), name="test-preflight")
    db = data / "trader" / "journal.sqlite"

    def rows(kind):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return [json.loads(p) for (p,) in con.execute("SELECT payload FROM events WHERE kind=?", (kind,))]
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()
    try:
        hb = client.get_map(maps.HEARTBEAT).blocking()
        wait_until(lambda: hb.get("event_trader") is not None or tr.p.poll() is not None, 90, what="trader heartbeat")
        assert tr.p.poll() is None, tr.log_text()[-3000:]
        log = tr.log_text()
        assert "REFUSING ENTRIES: preflight failed: position mode: Hedge Mode" in log and "One-way" in log, log[-3000:]
        fm = client.get_map(maps.FEATURES).blocking()
        rng = random.Random(5)
        prices = {a: marks[a] for a in PRIORITY_SYMBOLS}
        n = 0

        def push(vd, drift, noise):
            nonlocal n
            walk(prices, rng, drift, noise)
            n += 1
            fm.set(maps.KEY_EIGEN_SCAN, json.dumps(scan_payload(n, prices, vd, timestamp_ns=time.time_ns(),
                                                                t=time.time())))

        def decided():
            return json.loads(hb.get("event_trader") or "{}").get("last_scan") == n

        for i in range(159):
            push(0.0, 0.0, 0.001 + i * 0.00002)
        for _ in range(80):
            push(-0.06, -0.002, 0.003)
        wait_until(decided, 60, what="every scan decided")
        refused = rows("ENTRY_NOT_TAKEN")
        assert refused and refused[0]["error"] == "EntriesRefused" and "Hedge Mode" in refused[0]["detail"]
        assert not rows("ENTRY") and tr.p.poll() is None
        admin(sim, "/sim/admin/account", {"dual_side": False})
        wait_until(lambda: "preflight passed: entries allowed" in tr.log_text(), 30, what="the retry passes")
        for _ in range(80):
            push(-0.06, -0.002, 0.003)
        wait_until(decided, 60, what="every scan decided")
        entry = rows("ENTRY")
        assert entry and entry[0]["source"] == "venue" and entry[0]["status"] == "FILLED", tr.log_text()[-3000:]
        def failed_then_passed() -> bool:         # the account's held appends reach the journal off the log's thread
            runs = rows("PREFLIGHT")
            return bool(runs) and not runs[0]["ok"] and runs[-1]["ok"]
        wait_until(failed_then_passed, 30, what="PREFLIGHT rows: the hedge-mode failure, then a pass")
    finally:
        tr.stop()
        client.shutdown()
        try:
            async def flatten():
                from prod.execution import ExecutionClient
                async with OrderRestClient(f"http://127.0.0.1:{sim}", CREDS) as rest:
                    c = ExecutionClient(rest, None)
                    await c.start()
                    try:
                        await c.kill()
                    finally:
                        await c.stop()
            asyncio.run(flatten())
        except Exception:  # noqa: BLE001 - best effort; the module's simulator ends with the module
            pass
    assert tr.p.returncode == 0, tr.log_text()[-2000:]


def test_a_trader_whose_key_is_refused_logs_the_failing_check_with_endpoint_and_code(sim, tmp_path, monkeypatch,
                                                                                      caplog):
    """A venue that refuses the key at start: the trader's connect gives up (exit 5 in ``run``) after logging the
    preflight, so the operator reads which check failed, on which endpoint, with which code."""
    import logging
    from prod.execution import ExecutionError
    from prod.settings import load_settings
    from services.event_trader.main import TraderConfig, VenueAccounts, load_engine_params
    monkeypatch.setenv("DOLPHIN_VENUE_API_KEY", "not-a-key")
    monkeypatch.setenv("DOLPHIN_VENUE_API_SECRET", "nope")
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), venue_rest=f"http://127.0.0.1:{sim}",
                             venue_ws=f"ws://127.0.0.1:{sim}", symbols=SYMBOLS)
    cfg = TraderConfig(settings=settings, execution="venue", venue_connect_s=0.5)
    cfg.trader_dir.mkdir(parents=True)
    journal = Journal.open(cfg.trader_dir / "journal.sqlite", cfg.trader_dir / "audit.log")
    try:
        with caplog.at_level(logging.INFO, logger="event_trader"), pytest.raises(ExecutionError, match="-2015"):
            VenueAccounts(cfg, journal, load_engine_params()).new(25_000.0)
    finally:
        journal.close()
    fails = [r.getMessage() for r in caplog.records if r.getMessage().startswith("preflight: FAIL")]
    assert any("api key" in m and "GET /fapi/v2/balance" in m and "code=-2015" in m for m in fails), fails


def test_a_symbol_not_trading_is_refused_alone(sim):
    admin(sim, "/sim/admin/fault", {"kind": "delist", "symbol": "XRPUSDT", "status": "SETTLING"})
    try:
        r, _ = preflight(sim)
    finally:
        admin(sim, "/sim/admin/fault", {"kind": "delist", "symbol": "XRPUSDT", "status": "TRADING"})
    c = check(r, "symbols")
    assert not c.ok and "XRPUSDT: GET /fapi/v1/exchangeInfo status 'SETTLING' (not TRADING)" in c.detail
    assert r.entries_allowed and list(r.refused_symbols) == ["XRPUSDT"] and "XRPUSDT" not in r.tradable
    assert preflight(sim)[0].ok
