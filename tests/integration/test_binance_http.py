"""One Binance HTTP client shared by market data and execution, against the venue simulator over real sockets."""
from __future__ import annotations

import asyncio
import gc

import pytest

from prod.binance.http import BinanceHttpClient
from prod.execution.rest import OrderRestClient
from prod.venue import VenueRequestError, VenueRestClient
from tests.helpers import running_venue
from prod.trading.journal import Journal
from tests.venue_kit import CREDS


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with running_venue(tmp_path_factory.mktemp("http"), "--symbols", "50", "--klines-1s", "0", name="sim",
                       seed=5) as (_proc, port):
        yield port


def test_market_data_and_execution_share_one_session_rate_budget_and_clock_offset(sim):
    base = f"http://127.0.0.1:{sim}"

    async def go():
        async with BinanceHttpClient(base, CREDS, timeout_s=5.0) as http:
            md = VenueRestClient(base, http=http, timeout_s=5.0)
            ex = OrderRestClient(base, CREDS, http=http)
            kl = await md.klines("BTCUSDT", "1m", limit=5)
            session = http.session()
            weight_after_md = http.used_weight
            acct = await ex.account()                   # signed: measures the server-time offset first
            assert len(kl) == 5 and "totalWalletBalance" in acct
            assert http.session() is session           # one session for both sides
            assert weight_after_md >= 1 and http.used_weight > weight_after_md   # one rate budget, venue-counted
            assert md.used_weight == ex.used_weight == http.used_weight
            assert ex.time_synced_at is not None and ex.time_offset_ms == http.time_offset_ms
            assert md.requests == ex.requests == http.requests >= 3   # klines, time, account
            await md.close()
            await ex.close()                            # neither side closes what it does not own
            assert not session.closed
            with pytest.raises(VenueRequestError):
                await md.depth("NOPEUSDT")
        assert session.closed

    asyncio.run(go())


def test_a_shared_client_with_other_credentials_is_refused(sim):
    http = BinanceHttpClient(f"http://127.0.0.1:{sim}")
    with pytest.raises(ValueError, match="other credentials"):
        OrderRestClient(http.base, CREDS, http=http)


def test_market_data_client_refuses_a_base_that_is_not_binance(sim):
    async def go():
        async with VenueRestClient(f"http://127.0.0.1:{sim}") as md:
            with pytest.raises(ValueError, match="prod.venue.macro"):
                await md.get_json("https://www.deribit.com", "/api/v2/public/get_volatility_index_data")

    asyncio.run(go())


def _http_clients() -> dict[int, BinanceHttpClient]:
    gc.collect()
    return {id(o): o for o in gc.get_objects() if isinstance(o, BinanceHttpClient)}


def test_the_traders_venue_account_sends_everything_through_one_http_client(sim, tmp_path):
    """The trader's account path (VenueAccounts → VenueAccount → ExecutionRuntime, then the preflight) builds one
    BinanceHttpClient: orders, the user stream, the reconcile and the preflight share its weight budget and clock."""
    from prod.settings import load_settings
    from services.event_trader.main import TraderConfig, VenueAccounts, load_engine_params
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), venue_rest=f"http://127.0.0.1:{sim}",
                             venue_ws=f"ws://127.0.0.1:{sim}", symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    cfg = TraderConfig(settings=settings, execution="venue", fill_timeout_s=5.0)
    cfg.trader_dir.mkdir(parents=True)
    journal = Journal.open(cfg.trader_dir / "journal.sqlite", cfg.trader_dir / "audit.log")
    before = _http_clients()
    accounts = VenueAccounts(cfg, journal, load_engine_params(), creds=CREDS)
    acct = accounts.new(10_000.0)
    try:
        http = acct.runtime.http
        built = [c for k, c in _http_clients().items() if k not in before]
        assert built == [http]                                  # connect, reconcile, preflight: one client
        assert acct.client.rest.http is http
        assert journal.events("PREFLIGHT")                     # the preflight ran at start, through it
        assert http.time_synced_at is not None and acct.client.rest.time_offset_ms == http.time_offset_ms
        n0 = http.requests
        accounts.preflight.run_once()                          # account, positions, rules, time: one budget
        assert http.requests > n0 and acct.client.rest.requests == http.requests
        assert acct.client.rest.used_weight == http.used_weight >= 1
        assert [c for k, c in _http_clients().items() if k not in before] == [http]
    finally:
        accounts.preflight.stop()
        acct.stop()
        journal.close()
