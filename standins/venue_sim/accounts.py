"""Account settings and account-state views of the venue simulator (Binance USDT-M shapes).

Design notes: ``docs/design/standins.venue_sim.md``.
"""
from __future__ import annotations

from standins.venue_sim.exchange import Account, ExchangeError, Position, SimExchange

FUNDING_MS = 8 * 3_600_000
CAPS = (50_000, 250_000, 1_000_000, 5_000_000, 20_000_000, 50_000_000)
MMR = (0.004, 0.005, 0.01, 0.025, 0.05, 0.1)


def f8(v: float) -> str:
    return f"{v:.8f}"


# ---------------------------------------------------------------------- brackets
def max_leverage(ex: SimExchange, i: int) -> int:
    """Leverage of symbol ``i``'s first bracket."""
    base = ex.m.universe[i].base
    return 125 if base in ("BTC", "ETH") else 75 if i < 50 else 50


def brackets(ex: SimExchange, i: int) -> list[dict]:
    """``leverageBracket`` rows of symbol ``i`` (``cum`` = maintenance amount, as Binance computes it)."""
    lev = max_leverage(ex, i)
    rows, floor, cum = [], 0, 0.0
    for k, (cap, mmr) in enumerate(zip(CAPS, MMR)):
        if k:
            cum += floor * (mmr - MMR[k - 1])
        rows.append({"bracket": k + 1, "initialLeverage": max(1, lev >> k), "notionalCap": cap,
                     "notionalFloor": floor, "maintMarginRatio": mmr, "cum": round(cum, 2)})
        floor = cap
    return rows


def max_notional(ex: SimExchange, i: int, lev: int) -> int:
    """Largest notional allowed at leverage ``lev`` (the cap of the last bracket that allows it)."""
    cap = CAPS[0]
    for b in brackets(ex, i):
        if b["initialLeverage"] >= lev:
            cap = b["notionalCap"]
    return cap


# ---------------------------------------------------------------------- settings
def _has_open_orders(acct: Account, i: int | None = None) -> bool:
    opens = [acct.orders[x].i for x in acct.by_client.values()]
    opens += [a.i for a in acct.algos.values() if a.open]
    return any(i is None or k == i for k in opens)


def _has_position(acct: Account, i: int | None = None) -> bool:
    return any(p.amt and (i is None or k == i) for k, p in acct.positions.items())


def set_dual_side(acct: Account, on: bool) -> None:
    if on == acct.dual_side:
        raise ExchangeError(-4059, "No need to change position side.")
    if _has_open_orders(acct):
        raise ExchangeError(-4067, "Position side cannot be changed if there exists open orders.")
    if _has_position(acct):
        raise ExchangeError(-4068, "Position side cannot be changed if there exists position.")
    acct.dual_side = on


def set_multi_assets(acct: Account, on: bool, now_ms: int) -> None:
    if on == acct.multi_assets:
        raise ExchangeError(-4171, "Adjusted asset mode is currently set and does not need to be adjusted repeatedly")
    if on and acct.isolated:
        raise ExchangeError(-4167, "Unable to adjust to Multi-Assets mode with symbols of USDⓈ-M Futures under "
                                   "isolated-margin mode.")
    if _has_open_orders(acct):
        raise ExchangeError(-4170, "Unable to adjust Multi-Assets Mode with open orders in USDⓈ-M Futures")
    acct.multi_assets = on
    acct.outbox.append({"e": "ACCOUNT_CONFIG_UPDATE", "E": now_ms, "T": now_ms, "ai": {"j": on}})


def set_leverage(ex: SimExchange, acct: Account, i: int, raw: str, now_ms: int) -> dict:
    try:
        lev = int(raw)
    except ValueError:
        raise ExchangeError(-1100, "Illegal characters found in parameter 'leverage'; legal range is "
                                   "'^[0-9]{1,20}$'.") from None
    if not 1 <= lev <= max_leverage(ex, i):
        raise ExchangeError(-4028, f"Leverage {lev} is not valid")
    cap = max_notional(ex, i, lev)
    pos = acct.positions.get(i, Position())
    if abs(pos.amt) * float(ex.m.step_size[i]) * ex.mark(i) > cap:
        raise ExchangeError(-2027, "Exceeded the maximum allowable position at current leverage.")
    acct.leverage[i] = lev
    acct.outbox.append({"e": "ACCOUNT_CONFIG_UPDATE", "E": now_ms, "T": now_ms,
                        "ac": {"s": ex.m.symbols[i], "l": lev}})
    return {"leverage": lev, "maxNotionalValue": str(cap), "symbol": ex.m.symbols[i]}


def set_margin_type(acct: Account, i: int, kind: str) -> None:
    if kind not in ("ISOLATED", "CROSSED"):
        raise ExchangeError(-1130, "Data sent for parameter 'marginType' is not valid.")
    iso = kind == "ISOLATED"
    if iso == (i in acct.isolated):
        raise ExchangeError(-4046, "No need to change margin type.")
    if iso and acct.multi_assets:
        raise ExchangeError(-4168, "Unable to adjust to isolated-margin mode under the Multi-Assets mode.")
    if _has_open_orders(acct, i):
        raise ExchangeError(-4047, "Margin type cannot be changed if there exists open orders.")
    if _has_position(acct, i):
        raise ExchangeError(-4048, "Margin type cannot be changed if there exists position.")
    (acct.isolated.add if iso else acct.isolated.discard)(i)


# ---------------------------------------------------------------------- funding
def charge_funding(ex: SimExchange, now_ms: int) -> int:
    """Charge funding to every open position; return the number of positions charged."""
    m = ex.m
    mark = m.mark_price()
    n = 0
    for acct in ex.accounts.values():
        total = 0.0
        for i, pos in acct.positions.items():
            if not pos.amt:
                continue
            fee = -pos.amt * float(m.step_size[i]) * float(mark[i]) * float(m.funding[i])
            acct.wallet += fee
            acct.update_ms = now_ms
            total += fee
            ex.book_income(acct, m.symbols[i], "FUNDING_FEE", fee, now_ms)
            n += 1
        if total:
            acct.outbox.append({"e": "ACCOUNT_UPDATE", "E": now_ms, "T": now_ms, "a": {
                "m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": f8(acct.wallet), "cw": f8(acct.wallet),
                                           "bc": "0"}], "P": []}})
    return n


# ---------------------------------------------------------------------- margin calls
MARGIN_CALL_RATIO = 0.8          # maintenance margin / margin balance that triggers a MARGIN_CALL
MARGIN_CALL_EVERY_MS = 60_000    # at most one per account per minute of market time


def margin_call_event(ex: SimExchange, acct: Account, now_ms: int) -> dict:
    """The ``MARGIN_CALL`` user event listing the account's open positions."""
    rows = []
    for i, pos in acct.positions.items():
        if not pos.amt:
            continue
        step, mark = float(ex.m.step_size[i]), ex.mark(i)
        rows.append({"s": ex.m.symbols[i], "ps": "BOTH", "pa": ex.fq(i, pos.amt),
                     "mt": "ISOLATED" if i in acct.isolated else "CROSSED", "iw": "0", "mp": f8(mark),
                     "up": f8(pos.amt * step * (mark - pos.entry)),
                     "mm": f8(abs(pos.amt) * step * mark * ex.cfg.maint_margin_rate)})
    return {"e": "MARGIN_CALL", "E": now_ms, "cw": f8(acct.wallet), "p": rows}


def check_margin_calls(ex: SimExchange, now_ms: int, last: dict[str, int]) -> int:
    """Push a MARGIN_CALL to each account whose margin ratio reached ``MARGIN_CALL_RATIO`` (rate-limited
    through ``last``: api key -> market time of its last call); return how many were pushed. Liquidation
    itself is not simulated."""
    n = 0
    for key, acct in ex.accounts.items():
        if not any(p.amt for p in acct.positions.values()) or now_ms - last.get(key, -10**18) < MARGIN_CALL_EVERY_MS:
            continue
        g = _margins(ex, acct)
        balance = acct.wallet + g["up"]
        if g["mm"] > 0 and (balance <= 0 or g["mm"] / balance >= MARGIN_CALL_RATIO):
            acct.outbox.append(margin_call_event(ex, acct, now_ms))
            last[key] = now_ms
            n += 1
    return n


# ---------------------------------------------------------------------- state views
def _margins(ex: SimExchange, acct: Account) -> dict[str, float]:
    up, pm, om = ex.unrealized(acct), ex.position_margin(acct), ex.order_margin(acct)
    mm = sum(abs(p.amt) * ex.m.step_size[i] * ex.mark(i) * ex.cfg.maint_margin_rate
             for i, p in acct.positions.items())
    avail = acct.wallet + up - pm - om
    return {"up": up, "pm": pm, "om": om, "mm": float(mm), "avail": avail}


def _active(acct: Account) -> list[int]:
    return sorted({i for i, p in acct.positions.items() if p.amt} | {acct.orders[x].i for x in acct.by_client.values()})


def _pos_numbers(ex: SimExchange, acct: Account, i: int) -> dict:
    pos = acct.positions.get(i, Position())
    step = float(ex.m.step_size[i])
    mark = ex.mark(i)
    notional = pos.amt * step * mark
    lev = ex.lev(acct, i)
    om = sum((o.qty - o.filled) * step * ex.price(i, o.price) / lev
             for o in (acct.orders[x] for x in acct.by_client.values()) if o.i == i and not o.reduce_only)
    return {"pos": pos, "mark": mark, "notional": notional, "lev": lev, "im": abs(notional) / lev, "om": om,
            "mm": abs(notional) * ex.cfg.maint_margin_rate,
            "up": pos.amt * step * (mark - pos.entry) if pos.amt else 0.0}


def balance_json(ex: SimExchange, acct: Account) -> list[dict]:
    """``GET /fapi/v2/balance`` (and v3) body."""
    g = _margins(ex, acct)
    return [{"accountAlias": "SgsR", "asset": "USDT", "balance": f8(acct.wallet),
             "crossWalletBalance": f8(acct.wallet), "crossUnPnl": f8(g["up"]), "availableBalance": f8(g["avail"]),
             "maxWithdrawAmount": f8(max(0.0, g["avail"])), "marginAvailable": True, "updateTime": acct.update_ms}]


def _assets(acct: Account, g: dict[str, float]) -> list[dict]:
    return [{"asset": "USDT", "walletBalance": f8(acct.wallet), "unrealizedProfit": f8(g["up"]),
             "marginBalance": f8(acct.wallet + g["up"]), "maintMargin": f8(g["mm"]),
             "initialMargin": f8(g["pm"] + g["om"]), "positionInitialMargin": f8(g["pm"]),
             "openOrderInitialMargin": f8(g["om"]), "crossWalletBalance": f8(acct.wallet),
             "crossUnPnl": f8(g["up"]), "availableBalance": f8(g["avail"]),
             "maxWithdrawAmount": f8(max(0.0, g["avail"])), "marginAvailable": True, "updateTime": acct.update_ms}]


def _totals(acct: Account, g: dict[str, float]) -> dict:
    return {"totalInitialMargin": f8(g["pm"] + g["om"]), "totalMaintMargin": f8(g["mm"]),
            "totalWalletBalance": f8(acct.wallet), "totalUnrealizedProfit": f8(g["up"]),
            "totalMarginBalance": f8(acct.wallet + g["up"]), "totalPositionInitialMargin": f8(g["pm"]),
            "totalOpenOrderInitialMargin": f8(g["om"]), "totalCrossWalletBalance": f8(acct.wallet),
            "totalCrossUnPnl": f8(g["up"]), "availableBalance": f8(g["avail"]),
            "maxWithdrawAmount": f8(max(0.0, g["avail"]))}


def account_v2(ex: SimExchange, acct: Account) -> dict:
    """``GET /fapi/v2/account`` body (positions of every symbol, as v2 documents; v3 lists the active ones)."""
    g = _margins(ex, acct)
    poss = []
    for i in range(ex.m.n):
        n = _pos_numbers(ex, acct, i)
        pos = n["pos"]
        poss.append({"symbol": ex.m.symbols[i], "initialMargin": f8(n["im"] + n["om"]), "maintMargin": f8(n["mm"]),
                     "unrealizedProfit": f8(n["up"]), "positionInitialMargin": f8(n["im"]),
                     "openOrderInitialMargin": f8(n["om"]), "leverage": str(n["lev"]), "isolated": i in acct.isolated,
                     "entryPrice": f8(pos.entry), "breakEvenPrice": f8(pos.entry),
                     "maxNotional": str(max_notional(ex, i, n["lev"])), "bidNotional": "0", "askNotional": "0",
                     "positionSide": "BOTH", "positionAmt": ex.fq(i, pos.amt), "updateTime": pos.update_ms})
    return {"feeTier": 0, "feeBurn": False, "canTrade": True, "canDeposit": True, "canWithdraw": True,
            "updateTime": 0, "multiAssetsMargin": acct.multi_assets, "tradeGroupId": -1, **_totals(acct, g),
            "assets": _assets(acct, g), "positions": poss}


def account_v3(ex: SimExchange, acct: Account) -> dict:
    """``GET /fapi/v3/account`` body (only symbols with a position or an open order, v3 position fields)."""
    g = _margins(ex, acct)
    poss = []
    for i in _active(acct):
        n = _pos_numbers(ex, acct, i)
        poss.append({"symbol": ex.m.symbols[i], "positionSide": "BOTH", "positionAmt": ex.fq(i, n["pos"].amt),
                     "unrealizedProfit": f8(n["up"]), "isolatedMargin": "0.00000000", "notional": f8(n["notional"]),
                     "isolatedWallet": "0", "initialMargin": f8(n["im"] + n["om"]), "maintMargin": f8(n["mm"]),
                     "updateTime": n["pos"].update_ms})
    return {**_totals(acct, g), "assets": _assets(acct, g), "positions": poss}


def position_risk_v2(ex: SimExchange, acct: Account, symbol: str | None) -> list[dict]:
    """``GET /fapi/v2/positionRisk`` rows (every symbol, or one)."""
    idx = range(ex.m.n) if symbol is None else [ex.m.index[symbol]]
    rows = []
    for i in idx:
        n = _pos_numbers(ex, acct, i)
        pos = n["pos"]
        rows.append({"symbol": ex.m.symbols[i], "positionAmt": ex.fq(i, pos.amt), "entryPrice": f8(pos.entry),
                     "breakEvenPrice": f8(pos.entry), "markPrice": f8(n["mark"]), "unRealizedProfit": f8(n["up"]),
                     "liquidationPrice": "0", "leverage": str(n["lev"]),
                     "maxNotionalValue": str(max_notional(ex, i, n["lev"])),
                     "marginType": "isolated" if i in acct.isolated else "cross", "isolatedMargin": "0.00000000",
                     "isAutoAddMargin": "false", "positionSide": "BOTH", "notional": f8(n["notional"]),
                     "isolatedWallet": "0", "updateTime": pos.update_ms})
    return rows


def position_risk_v3(ex: SimExchange, acct: Account, symbol: str | None) -> list[dict]:
    """``GET /fapi/v3/positionRisk`` rows: only symbols with a position or an open order."""
    rows = []
    for i in _active(acct):
        if symbol is not None and ex.m.symbols[i] != symbol:
            continue
        n = _pos_numbers(ex, acct, i)
        pos = n["pos"]
        rows.append({"symbol": ex.m.symbols[i], "positionSide": "BOTH", "positionAmt": ex.fq(i, pos.amt),
                     "entryPrice": f8(pos.entry), "breakEvenPrice": f8(pos.entry), "markPrice": f8(n["mark"]),
                     "unRealizedProfit": f8(n["up"]), "liquidationPrice": "0", "isolatedMargin": "0",
                     "notional": f8(n["notional"]), "marginAsset": "USDT", "isolatedWallet": "0",
                     "initialMargin": f8(n["im"] + n["om"]), "maintMargin": f8(n["mm"]),
                     "positionInitialMargin": f8(n["im"]), "openOrderInitialMargin": f8(n["om"]), "adl": 0,
                     "bidNotional": "0", "askNotional": "0", "updateTime": pos.update_ms})
    return rows


def account_config(acct: Account) -> dict:
    """``GET /fapi/v1/accountConfig`` body."""
    return {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "dualSidePosition": acct.dual_side,
            "updateTime": 0, "multiAssetsMargin": acct.multi_assets, "tradeGroupId": -1}


def symbol_config(ex: SimExchange, acct: Account, symbol: str | None) -> list[dict]:
    """``GET /fapi/v1/symbolConfig`` rows (every symbol, or one)."""
    idx = range(ex.m.n) if symbol is None else [ex.m.index[symbol]]
    return [{"symbol": ex.m.symbols[i], "marginType": "ISOLATED" if i in acct.isolated else "CROSSED",
             "isAutoAddMargin": False, "leverage": ex.lev(acct, i),
             "maxNotionalValue": str(max_notional(ex, i, ex.lev(acct, i)))} for i in idx]


def adl_quantile(ex: SimExchange, acct: Account, symbol: str | None) -> list[dict]:
    """``GET /fapi/v1/adlQuantile`` rows (one-way mode: LONG, SHORT and BOTH; 0 = lowest priority)."""
    rows = []
    for i in _active(acct):
        if symbol is not None and ex.m.symbols[i] != symbol:
            continue
        n = _pos_numbers(ex, acct, i)
        q = 0 if not n["pos"].amt else min(4, 1 + int(abs(n["up"]) / max(1.0, n["im"]) * 2))
        rows.append({"symbol": ex.m.symbols[i], "adlQuantile": {"LONG": q if n["pos"].amt > 0 else 0,
                                                                "SHORT": q if n["pos"].amt < 0 else 0, "BOTH": q}})
    return rows


def income_rows(acct: Account, symbol: str | None, kind: str | None, start: int | None, end: int | None,
                limit: int, now_ms: int) -> list[dict]:
    """``GET /fapi/v1/income`` rows, oldest first; no time range = the last 7 days of market time."""
    if start is None and end is None:
        start = now_ms - 7 * 86_400_000
    rows = [r for r in acct.income
            if (symbol is None or r["symbol"] == symbol) and (kind is None or r["incomeType"] == kind)
            and (start is None or r["time"] >= start) and (end is None or r["time"] <= end)]
    return rows[:limit] if start is not None else rows[-limit:]
