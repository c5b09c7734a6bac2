"""ccxt.pro (ccxt's websocket client) judges the simulator's streams: market streams on Binance's category
URLs (``/public/ws``, ``/market/ws``) and the user-data stream on ``/private/ws?listenKey=``, parsed by a
real client: candles, best bid/ask, mark price, aggregated trades, and the ORDER_TRADE_UPDATE,
ACCOUNT_UPDATE and ALGO_UPDATE events of a bot's entry, protective stop and exit.

ccxt.pro is configured, never patched: ``urls['api']`` for REST and ``urls['api']['ws']['linear']``.
"""
from __future__ import annotations

import asyncio
import copy
import secrets

import pytest

from tests.helpers import running_venue

ccxtpro = pytest.importorskip("ccxt.pro")

MKT = "BTC/USDT:USDT"


@pytest.fixture
def sim(tmp_path):
    key, secret = f"pro-{secrets.token_hex(4)}", secrets.token_hex(16)
    with running_venue(tmp_path, "--symbols", "60", "--api-key", f"{key}:{secret}", name="sim", seed=None) as (_, port):
        yield port, key, secret


def pro_client(port: int, key: str, secret: str):
    ex = ccxtpro.binanceusdm({"apiKey": key, "secret": secret, "timeout": 10_000,
                              "options": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False}})
    base = f"http://127.0.0.1:{port}"
    for name, url in list(ex.urls["api"].items()):
        if isinstance(url, str) and url.startswith("https://fapi.binance.com"):
            ex.urls["api"][name] = url.replace("https://fapi.binance.com", base)
    ex.urls["api"]["ws"]["linear"] = f"ws://127.0.0.1:{port}/ws"    # ccxt derives /public, /market, /private
    return ex


async def _market_streams(ex) -> dict:
    await ex.load_markets()
    got = {}
    got["ohlcv"] = await asyncio.wait_for(ex.watch_ohlcv(MKT, "1m"), 15)
    got["bids_asks"] = await asyncio.wait_for(ex.watch_bids_asks([MKT]), 15)
    got["mark"] = await asyncio.wait_for(ex.watch_mark_price(MKT), 15)
    got["trades"] = await asyncio.wait_for(ex.watch_trades(MKT, params={"name": "aggTrade"}), 30)
    return got


def test_market_streams_parse_in_ccxt_pro(sim):
    async def run():
        ex = pro_client(*sim)
        try:
            return await _market_streams(ex)
        finally:
            await ex.close()
    got = asyncio.run(run())
    o, h, lo, c = got["ohlcv"][-1][1:5]
    assert lo <= min(o, c) <= max(o, c) <= h
    ba = got["bids_asks"][MKT]
    assert 0 < ba["bid"] < ba["ask"]
    assert got["mark"]["markPrice"] > 0
    assert got["trades"] and all(t["price"] > 0 and t["amount"] > 0 and t["side"] in ("buy", "sell")
                                 for t in got["trades"])


async def _next(gen_fn, pred, timeout: float = 15.0):
    """Call ``gen_fn()`` (a ccxt.pro watch) until its result satisfies ``pred``; return that result."""
    async def loop():
        while True:
            r = await gen_fn()
            if pred(r):
                return copy.deepcopy(list(r) if isinstance(r, list) else r)   # ccxt updates its caches in place
    return await asyncio.wait_for(loop(), timeout)


def test_user_stream_events_parse_in_ccxt_pro(sim):
    async def run():
        ex = pro_client(*sim)
        out: dict = {}
        try:
            await ex.load_markets()
            last = (await ex.fetch_ticker(MKT))["last"]
            orders = asyncio.ensure_future(_next(lambda: ex.watch_orders(MKT),
                                                 lambda r: any(o["status"] == "closed" for o in r)))
            balance = asyncio.ensure_future(_next(ex.watch_balance, lambda r: r.get("USDT", {}).get("total")))
            await asyncio.sleep(1.0)              # the user stream is open before the order
            await ex.create_order(MKT, "market", "buy", 0.01)
            out["orders"], out["balance"] = await orders, await balance
            stop = asyncio.ensure_future(_next(lambda: ex.watch_orders(MKT),
                                               lambda r: any(o.get("triggerPrice") for o in r)))
            placed = await ex.create_order(MKT, "market", "sell", 0.01, None,
                                           {"stopLossPrice": round(last * 0.8, 1), "reduceOnly": True})
            out["stop"], out["placed"] = await stop, placed
            await ex.cancel_order(placed["id"], MKT, {"trigger": True})
            fills = asyncio.ensure_future(_next(lambda: ex.watch_my_trades(MKT), lambda r: any(t["side"] == "sell"
                                                                                              for t in r)))
            await asyncio.sleep(0.5)
            await ex.create_order(MKT, "market", "sell", 0.01, None, {"reduceOnly": True})
            out["fills"] = await fills
        finally:
            await ex.close()
        return out
    out = asyncio.run(run())
    filled = [o for o in out["orders"] if o["status"] == "closed"]
    assert filled[-1]["side"] == "buy" and filled[-1]["filled"] == 0.01 and filled[-1]["average"] > 0
    assert 0 < out["balance"]["USDT"]["total"] < 10_000                    # the entry's fee came off the wallet
    stop = [o for o in out["stop"] if o.get("triggerPrice")][-1]
    assert stop["id"] == out["placed"]["id"] and stop["status"] == "open" and stop["side"] == "sell"
    assert stop["triggerPrice"] == pytest.approx(out["placed"]["triggerPrice"])
    sells = [t for t in out["fills"] if t["side"] == "sell"]
    assert sells and sells[-1]["amount"] == 0.01 and sells[-1]["fee"]["cost"] > 0
