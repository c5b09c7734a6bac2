"""One Binance HTTP client shared by market data and execution, against the venue simulator over real sockets."""
from __future__ import annotations

import asyncio

import pytest

from prod.binance.http import BinanceHttpClient
from prod.execution.rest import OrderRestClient
from prod.venue import VenueRequestError, VenueRestClient
from tests.helpers import running_venue
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
