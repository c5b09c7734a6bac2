"""Wire-format payloads of the simulator (Binance USDT-M field names, string decimals, ms timestamps).

Each function renders one stream message or REST body from :class:`MarketModel` state as a dict;
the server serialises each stream message once per tick and fans the bytes out to subscribers.
"""
from __future__ import annotations

import numpy as np

from standins.venue_sim.model import MarketModel

STREAM_KINDS = ("depth5@500ms", "depth5@100ms", "depth5", "bookTicker", "aggTrade", "markPrice@1s",
                "markPrice", "kline_1m")


def _px(model: MarketModel, i: int, idx: int) -> str:
    d = model.price_dec[i]
    return f"{idx * model.tick_size[i]:.{d}f}"


def _qty(model: MarketModel, i: int, q: float) -> str:
    return f"{q:.{model.qty_dec[i]}f}"


def fmt_price(model: MarketModel, i: int, p: float) -> str:
    return f"{p:.{model.price_dec[i]}f}"


def _sides(model: MarketModel, i: int, levels: int) -> tuple[list, list]:
    bi, ai = model.bid_idx[i], model.ask_idx[i]
    bq, aq = model.bid_qty[i], model.ask_qty[i]
    bids = [[_px(model, i, int(bi[k])), _qty(model, i, float(bq[k]))] for k in range(levels)]
    asks = [[_px(model, i, int(ai[k])), _qty(model, i, float(aq[k]))] for k in range(levels)]
    if i in model.crossed:   # fault injection: asks below bids
        bids, asks = asks, bids
    return bids, asks


def depth_partial(model: MarketModel, i: int, first_u: int, prev_u: int) -> dict:
    """``<symbol>@depth5@500ms`` / ``@100ms`` partial book depth event."""
    bids, asks = _sides(model, i, 5)
    return {"e": "depthUpdate", "E": model.t_ms, "T": model.t_ms - 2, "s": model.symbols[i],
            "U": int(first_u), "u": int(model.update_id[i]), "pu": int(prev_u), "b": bids, "a": asks}


def book_ticker(model: MarketModel, i: int) -> dict:
    """``<symbol>@bookTicker`` event."""
    bids, asks = _sides(model, i, 1)
    return {"e": "bookTicker", "u": int(model.update_id[i]), "s": model.symbols[i],
            "b": bids[0][0], "B": bids[0][1], "a": asks[0][0], "A": asks[0][1],
            "T": model.t_ms - 2, "E": model.t_ms}


def agg_trade(model: MarketModel, j: int) -> tuple[int, dict]:
    """``<symbol>@aggTrade`` event for the j-th trade of the current tick; returns (symbol index, msg)."""
    i = int(model.trade_sym[j])
    return i, {"e": "aggTrade", "E": model.t_ms, "a": int(model.agg_id[i]), "s": model.symbols[i],
               "p": _px(model, i, int(model.trade_px_idx[j])), "q": _qty(model, i, float(model.trade_qty[j])),
               "f": int(model.trade_first[j]), "l": int(model.trade_last[j]), "T": model.t_ms - 5,
               "m": bool(model.trade_maker[j])}


def mark_price(model: MarketModel, i: int, mark: np.ndarray, index: np.ndarray, nft: int) -> dict:
    """``<symbol>@markPrice@1s`` event (also the element type of ``!markPrice@arr@1s``)."""
    return {"e": "markPriceUpdate", "E": model.t_ms, "s": model.symbols[i],
            "p": f"{mark[i]:.8f}", "P": f"{mark[i] * (1 + 0.5 * model.basis[i]):.8f}",
            "i": f"{index[i]:.8f}", "r": f"{model.funding[i]:.8f}", "T": nft}


def kline(model: MarketModel, i: int, closed: bool) -> dict:
    """``<symbol>@kline_1m`` event for the open kline (or the one that just closed)."""
    if closed:
        k, t0 = model.closed_kline, model.closed_kline_t
    else:
        k, t0 = model.k_open, model.k_open_t
    return {"e": "kline", "E": model.t_ms, "s": model.symbols[i], "k": {
        "t": int(t0), "T": int(t0) + 59_999, "s": model.symbols[i], "i": "1m",
        "f": int(k["f"][i]), "L": int(k["L"][i]),
        "o": fmt_price(model, i, k["o"][i]), "c": fmt_price(model, i, k["c"][i]),
        "h": fmt_price(model, i, k["h"][i]), "l": fmt_price(model, i, k["l"][i]),
        "v": _qty(model, i, k["v"][i]), "n": int(k["n"][i]), "x": bool(closed),
        "q": f"{k['q'][i]:.5f}", "V": _qty(model, i, k["V"][i]), "Q": f"{k['Q'][i]:.5f}", "B": "0"}}


# ---------------------------------------------------------------------- REST bodies
def exchange_info(model: MarketModel, status: dict[int, str] | None = None) -> dict:
    """``GET /fapi/v1/exchangeInfo`` body (``status``: symbol index -> a status other than TRADING)."""
    status = status or {}
    syms = []
    for i, s in enumerate(model.universe):
        tick = f"{s.tick:.{s.price_decimals}f}"
        step = f"{s.step:.{s.qty_decimals}f}"
        syms.append({
            "symbol": s.symbol, "pair": s.symbol, "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": status.get(i, "TRADING"),
            "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": s.base, "quoteAsset": "USDT", "marginAsset": "USDT",
            "pricePrecision": s.price_decimals, "quantityPrecision": s.qty_decimals,
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "filters": [
                {"minPrice": tick, "maxPrice": f"{s.price * 1000:.{s.price_decimals}f}",
                 "filterType": "PRICE_FILTER", "tickSize": tick},
                {"stepSize": step, "filterType": "LOT_SIZE", "maxQty": "10000000", "minQty": step},
                {"stepSize": step, "filterType": "MARKET_LOT_SIZE", "maxQty": "1000000", "minQty": step},
                {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
                {"limit": 10, "filterType": "MAX_NUM_ALGO_ORDERS"},
                {"notional": "5", "filterType": "MIN_NOTIONAL"},
                {"multiplierDown": "0.9500", "multiplierUp": "1.0500", "multiplierDecimal": "4",
                 "filterType": "PERCENT_PRICE"}],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                           "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"]})
    return {"timezone": "UTC", "serverTime": model.t_ms, "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": syms}


def depth_snapshot(model: MarketModel, i: int, limit: int) -> dict:
    """``GET /fapi/v1/depth`` body; levels beyond 5 extend the book with the same spacing and sizes."""
    bi, ai = model.bid_idx[i], model.ask_idx[i]
    gap = int(bi[0] - bi[1]) if len(bi) > 1 else 1
    gap = max(gap, 1)
    bids, asks = [], []
    for k in range(limit):
        src = k % 5
        b = int(bi[0]) - gap * k
        if b <= 0:
            break
        bids.append([_px(model, i, b), _qty(model, i, float(model.bid_qty[i][src]))])
        asks.append([_px(model, i, int(ai[0]) + gap * k), _qty(model, i, float(model.ask_qty[i][src]))])
    if i in model.crossed:
        bids, asks = asks, bids
    return {"lastUpdateId": int(model.update_id[i]), "E": model.t_ms, "T": model.t_ms - 2,
            "bids": bids, "asks": asks}


def premium_index(model: MarketModel, i: int) -> dict:
    """One ``GET /fapi/v1/premiumIndex`` entry."""
    mark = model.mid[i] * (1 + model.basis[i])
    return {"symbol": model.symbols[i], "markPrice": f"{mark:.8f}", "indexPrice": f"{model.mid[i]:.8f}",
            "estimatedSettlePrice": f"{mark * (1 + 0.5 * model.basis[i]):.8f}",
            "lastFundingRate": f"{model.funding[i]:.8f}", "interestRate": "0.00010000",
            "nextFundingTime": model.next_funding_ms(), "time": model.t_ms}


def ticker_24hr(model: MarketModel, idx: list[int]) -> list[dict]:
    """``GET /fapi/v1/ticker/24hr`` entries: the last 1,440 one-minute klines and the open one."""
    from standins.venue_sim.model import KLINE_CAP
    cnt = min(model.k_count, KLINE_CAP, 1440)
    pos = np.arange(model.k_count - cnt, model.k_count) % KLINE_CAP
    h, lo = model.k_hist["h"][:, pos], model.k_hist["l"][:, pos]
    out = []
    for i in idx:
        o = float(model.k_hist["o"][i, pos[0]]) if cnt else float(model.k_open["o"][i])
        c = float(model.k_open["c"][i])
        hi = max(float(h[i].max()) if cnt else c, float(model.k_open["h"][i]))
        low = min(float(lo[i].min()) if cnt else c, float(model.k_open["l"][i]))
        v = float(model.k_hist["v"][i, pos].sum() + model.k_open["v"][i])
        q = float(model.k_hist["q"][i, pos].sum() + model.k_open["q"][i])
        n = int(model.k_hist_n[i, pos].sum() + model.k_open["n"][i])
        last = int(model.trade_id[i])
        open_t = int(model.k_times[pos[0]]) if cnt else int(model.k_open_t)
        out.append({"symbol": model.symbols[i], "priceChange": fmt_price(model, i, c - o),
                    "priceChangePercent": f"{(c / o - 1) * 100 if o else 0.0:.3f}",
                    "weightedAvgPrice": fmt_price(model, i, q / v if v else c), "lastPrice": fmt_price(model, i, c),
                    "lastQty": _qty(model, i, float(model.step_size[i])), "openPrice": fmt_price(model, i, o),
                    "highPrice": fmt_price(model, i, hi), "lowPrice": fmt_price(model, i, low),
                    "volume": _qty(model, i, v), "quoteVolume": f"{q:.2f}", "openTime": open_t,
                    "closeTime": model.t_ms, "firstId": max(0, last - n + 1), "lastId": last, "count": n})
    return out


def ticker_price(model: MarketModel, idx: list[int]) -> list[dict]:
    """``GET /fapi/v1/ticker/price`` entries (last trade price)."""
    return [{"symbol": model.symbols[i], "price": fmt_price(model, i, float(model.k_open["c"][i])),
             "time": model.t_ms} for i in idx]


def book_ticker_rest(model: MarketModel, idx: list[int]) -> list[dict]:
    """``GET /fapi/v1/ticker/bookTicker`` entries."""
    out = []
    for i in idx:
        bids, asks = _sides(model, i, 1)
        out.append({"symbol": model.symbols[i], "bidPrice": bids[0][0], "bidQty": bids[0][1],
                    "askPrice": asks[0][0], "askQty": asks[0][1], "time": model.t_ms,
                    "lastUpdateId": int(model.update_id[i])})
    return out
