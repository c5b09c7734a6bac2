"""Account settings, account state and algo-order endpoints of the venue simulator (mixin of ``VenueSim``).

Design notes: ``docs/design/standins.venue_sim.md``.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from standins.venue_sim import accounts as A
from standins.venue_sim.algo import AlgoDesk
from standins.venue_sim.exchange import ExchangeError, SimExchange

log = logging.getLogger("venue_sim")


def _flag(p: dict[str, str], name: str) -> bool:
    raw = (p.get(name) or "").lower()
    if raw not in ("true", "false"):
        if not raw:
            raise ExchangeError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        raise ExchangeError(-1130, f"Data sent for parameter '{name}' is not valid.")
    return raw == "true"


def _opt_int(p: dict[str, str], name: str) -> int | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ExchangeError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                   "'^[0-9]{1,20}$'.") from None


class AccountApi:
    """Handlers; expects ``exchange``, ``model`` and the :mod:`user_api` plumbing (``_signed``, ``_ujson``)."""

    exchange: SimExchange
    model: Any

    def init_account_api(self) -> None:
        self.algo = AlgoDesk(self.exchange)
        self.countdowns: dict[tuple[str, str], float] = {}    # (api key, symbol) -> loop-time deadline
        self._funding_mark = self.model.t_ms // A.FUNDING_MS
        self.funding_charged = 0
        self.margin_calls: dict[str, int] = {}                 # api key -> market time of the last MARGIN_CALL

    def account_tick(self, now_ms: int, loop_now: float) -> None:
        """Per tick: algo triggers, funding at the 8-hour marks, expired countdowns."""
        self.algo.on_tick(now_ms)
        mark = now_ms // A.FUNDING_MS
        if mark != self._funding_mark:
            self._funding_mark = mark
            self.funding_charged += A.charge_funding(self.exchange, mark * A.FUNDING_MS)
        if self.model.tick_no % 10 == 0:                       # once a market second
            A.check_margin_calls(self.exchange, now_ms, self.margin_calls)
        if self.countdowns:
            for (key, sym), until in list(self.countdowns.items()):
                if loop_now >= until:
                    del self.countdowns[(key, sym)]
                    n = self.exchange.cancel_all(key, sym, now_ms)
                    log.info("venue_sim: countdownCancelAll fired for %s (%d orders cancelled)", sym, n)

    async def _call(self, request: web.Request, weight: int, fn, symbol: str = "") -> web.Response:
        """Sign-check, charge ``weight`` (429 above the IP limit), check the symbol (``required``/``optional``),
        run ``fn(key, p, i)``."""
        s = await self._signed(request)     # type: ignore[attr-defined]
        if isinstance(s, web.Response):
            return s
        key, p = s
        if (r := self._over_limit(request, weight)) is not None:   # type: ignore[attr-defined]
            return r                        # HTTP 429 -1003 once the IP's weight passes 2400 a minute
        i = None
        if symbol:
            if (r := self._sym_param(p, request, required=symbol == "required")) is not None:  # type: ignore[attr-defined]
                return r
            i = self.model.index.get(p.get("symbol", ""))
        try:
            body = fn(key, p, i)
        except ExchangeError as exc:
            return self._exc(exc, request)  # type: ignore[attr-defined]
        self.flush_user_events()            # type: ignore[attr-defined]
        return self._ujson(body, request)   # type: ignore[attr-defined]

    def _acct(self, key: str):
        return self.exchange.account(key)

    # ------------------------------------------------------------------ settings
    async def h_dual_get(self, request: web.Request) -> web.Response:
        return await self._call(request, 30, lambda k, p, i: {"dualSidePosition": self._acct(k).dual_side})

    async def h_dual_post(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            A.set_dual_side(self._acct(k), _flag(p, "dualSidePosition"))
            return {"code": 200, "msg": "success"}
        return await self._call(request, 1, fn)

    async def h_multi_get(self, request: web.Request) -> web.Response:
        return await self._call(request, 30, lambda k, p, i: {"multiAssetsMargin": self._acct(k).multi_assets})

    async def h_multi_post(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            A.set_multi_assets(self._acct(k), _flag(p, "multiAssetsMargin"), self.model.t_ms)
            return {"code": 200, "msg": "success"}
        return await self._call(request, 1, fn)

    async def h_leverage(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            if not p.get("leverage"):
                raise ExchangeError(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.")
            return A.set_leverage(self.exchange, self._acct(k), i, p["leverage"], self.model.t_ms)
        return await self._call(request, 1, fn, "required")

    async def h_margin_type(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            if not p.get("marginType"):
                raise ExchangeError(-1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or "
                                           "malformed.")
            A.set_margin_type(self._acct(k), i, p["marginType"].upper())
            return {"code": 200, "msg": "success"}
        return await self._call(request, 1, fn, "required")

    async def h_account_config(self, request: web.Request) -> web.Response:
        return await self._call(request, 5, lambda k, p, i: A.account_config(self._acct(k)))

    async def h_symbol_config(self, request: web.Request) -> web.Response:
        return await self._call(request, 5, lambda k, p, i: A.symbol_config(self.exchange, self._acct(k),
                                                                             p.get("symbol")), "optional")

    async def h_leverage_bracket(self, request: web.Request) -> web.Response:
        def row(i: int) -> dict:
            # (notionalCoef appears only on accounts whose brackets Binance adjusted)
            return {"symbol": self.model.symbols[i], "brackets": A.brackets(self.exchange, i)}

        def fn(k, p, i):
            return row(i) if i is not None else [row(j) for j in range(self.model.n)]
        return await self._call(request, 1, fn, "optional")

    async def h_commission_rate(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            c = self.exchange.cfg
            return {"symbol": self.model.symbols[i], "makerCommissionRate": f"{c.maker_fee:.6f}",
                    "takerCommissionRate": f"{c.taker_fee:.6f}", "rpiCommissionRate": "0.000000"}
        return await self._call(request, 20, fn, "required")

    # ------------------------------------------------------------------ state
    async def h_balance(self, request: web.Request) -> web.Response:
        return await self._call(request, 5, lambda k, p, i: A.balance_json(self.exchange, self._acct(k)))

    async def h_account(self, request: web.Request) -> web.Response:
        return await self._call(request, 5, lambda k, p, i: A.account_v2(self.exchange, self._acct(k)))

    async def h_account_v3(self, request: web.Request) -> web.Response:
        return await self._call(request, 5, lambda k, p, i: A.account_v3(self.exchange, self._acct(k)))

    async def h_position_risk(self, request: web.Request) -> web.Response:
        return await self._call(request, 5, lambda k, p, i: A.position_risk_v2(self.exchange, self._acct(k),
                                                                                p.get("symbol")), "optional")

    async def h_position_risk_v3(self, request: web.Request) -> web.Response:
        return await self._call(request, 5, lambda k, p, i: A.position_risk_v3(self.exchange, self._acct(k),
                                                                                p.get("symbol")), "optional")

    async def h_adl_quantile(self, request: web.Request) -> web.Response:
        return await self._call(request, 5, lambda k, p, i: A.adl_quantile(self.exchange, self._acct(k),
                                                                            p.get("symbol")), "optional")

    async def h_income(self, request: web.Request) -> web.Response:
        kinds = ("TRANSFER", "WELCOME_BONUS", "REALIZED_PNL", "FUNDING_FEE", "COMMISSION", "INSURANCE_CLEAR",
                 "REFERRAL_KICKBACK", "COMMISSION_REBATE", "API_REBATE", "CONTEST_REWARD", "CROSS_COLLATERAL_TRANSFER",
                 "OPTIONS_PREMIUM_FEE", "OPTIONS_SETTLE_PROFIT", "INTERNAL_TRANSFER", "AUTO_EXCHANGE",
                 "DELIVERED_SETTELMENT", "COIN_SWAP_DEPOSIT", "COIN_SWAP_WITHDRAW", "POSITION_LIMIT_INCREASE_FEE",
                 "STRATEGY_UMFUTURES_TRANSFER", "FEE_RETURN", "BFUSD_REWARD")

        def fn(k, p, i):
            kind = p.get("incomeType") or None
            if kind is not None and kind not in kinds:
                raise ExchangeError(-1130, "Data sent for parameter 'incomeType' is not valid.")
            limit = _opt_int(p, "limit") or 100
            if not 1 <= limit <= 1000:
                raise ExchangeError(-1130, "Data sent for parameter 'limit' is not valid.")
            st, et = _opt_int(p, "startTime"), _opt_int(p, "endTime")
            if st is not None and et is not None and st > et:
                raise ExchangeError(-1023, "Start time is greater than end time.")
            return A.income_rows(self._acct(k), p.get("symbol"), kind, st, et, limit, self.model.t_ms)
        return await self._call(request, 30, fn, "optional")

    async def h_countdown(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            ms = _opt_int(p, "countdownTime")
            if ms is None:
                raise ExchangeError(-1102, "Mandatory parameter 'countdownTime' was not sent, was empty/null, or "
                                           "malformed.")
            if ms < 0:
                raise ExchangeError(-1130, "Data sent for parameter 'countdownTime' is not valid.")
            sym = self.model.symbols[i]
            if ms == 0:
                self.countdowns.pop((k, sym), None)
            else:
                self.countdowns[(k, sym)] = asyncio.get_running_loop().time() + ms / 1000.0
            return {"symbol": sym, "countdownTime": str(ms)}
        return await self._call(request, 10, fn, "required")

    # ------------------------------------------------------------------ algo orders
    def _algo_ref(self, p: dict[str, str]) -> tuple[int | None, str | None]:
        aid, cid = _opt_int(p, "algoId"), p.get("clientAlgoId") or None
        if aid is None and cid is None:
            raise ExchangeError(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!")
        return aid, cid

    async def h_algo_post(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            return self.algo.order_json(self.algo.place(k, p, self.model.t_ms))
        s = await self._signed(request)     # type: ignore[attr-defined]
        if isinstance(s, web.Response):
            return s
        key, p = s
        if self._count_order(key) > 1200:    # type: ignore[attr-defined]
            return self._ujson({"code": -1015, "msg": "Too many new orders; current limit is 1200 orders per "
                                                      "MINUTE."}, request, key, status=429)  # type: ignore[attr-defined]
        try:
            body = fn(key, p, None)
        except ExchangeError as exc:
            return self._exc(exc, request, key)  # type: ignore[attr-defined]
        self.flush_user_events()            # type: ignore[attr-defined]
        return self._ujson(body, request, key)  # type: ignore[attr-defined]

    async def h_algo_get(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            a = self.algo.find(k, *self._algo_ref(p))
            if a is None:
                raise ExchangeError(-2013, "Order does not exist.")
            return self.algo.order_json(a)
        return await self._call(request, 1, fn)

    async def h_algo_delete(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            a = self.algo.find(k, *self._algo_ref(p))
            if a is None:
                raise ExchangeError(-2011, "Unknown order sent.")
            self.algo.cancel(k, a, self.model.t_ms)
            return {"algoId": a.algo_id, "clientAlgoId": a.client_id, "code": "200", "msg": "success"}
        return await self._call(request, 1, fn)

    async def h_open_algo(self, request: web.Request) -> web.Response:
        s = await self._signed(request)     # type: ignore[attr-defined]
        if isinstance(s, web.Response):
            return s
        key, p = s
        if (r := self._sym_param(p, request, required=False)) is not None:  # type: ignore[attr-defined]
            return r
        self._charge(request, 1 if p.get("symbol") else 40)  # type: ignore[attr-defined]
        return self._ujson([self.algo.order_json(a) for a in self.algo.open_orders(key, p.get("symbol"))],
                           request)  # type: ignore[attr-defined]

    async def h_algo_open_delete(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            self.algo.cancel_all(k, p["symbol"], self.model.t_ms)
            return {"code": 200, "msg": "The operation of cancel all open order is done."}
        return await self._call(request, 1, fn, "required")

    async def h_all_algo(self, request: web.Request) -> web.Response:
        def fn(k, p, i):
            limit = _opt_int(p, "limit") or 500
            rows = [a for a in self._acct(k).algos.values() if a.symbol == p["symbol"]]
            return [self.algo.order_json(a) for a in rows[-min(limit, 1000):]]
        return await self._call(request, 5, fn, "required")

    # ------------------------------------------------------------------ admin
    async def h_admin_account(self, request: web.Request) -> web.Response:
        """Set an account's state directly: ``api_key`` (default: the first), ``dual_side``, ``multi_assets``,
        ``leverage`` (int: every symbol, or {symbol: int}), ``margin_type`` (str or {symbol: str}),
        ``balance`` (USDT wallet), ``margin_call`` (true: push a MARGIN_CALL for the open positions)."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            unknown = set(body) - {"api_key", "dual_side", "multi_assets", "leverage", "margin_type", "balance",
                                   "margin_call"}
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            key = body.get("api_key") or next(iter(self.exchange.accounts))
            acct = self.exchange.accounts[key]
            now = self.model.t_ms
            if "dual_side" in body:
                acct.dual_side = bool(body["dual_side"])
            if "multi_assets" in body and bool(body["multi_assets"]) != acct.multi_assets:
                acct.multi_assets = bool(body["multi_assets"])
                acct.outbox.append({"e": "ACCOUNT_CONFIG_UPDATE", "E": now, "T": now, "ai": {"j": acct.multi_assets}})
            for field, apply in (("leverage", self._admin_lev), ("margin_type", self._admin_margin)):
                v = body.get(field)
                if v is None:
                    continue
                items = v.items() if isinstance(v, dict) else [(s, v) for s in self.model.symbols]
                for sym, val in items:
                    apply(acct, self.model.index[str(sym)], val, now, isinstance(v, dict))
            if "balance" in body:
                bal = float(body["balance"])
                if not 0 <= bal < 1e12:
                    raise ValueError("balance must be in [0, 1e12)")
                delta, acct.wallet, acct.update_ms = bal - acct.wallet, bal, now
                self.exchange.book_income(acct, "", "TRANSFER", delta, now)
                acct.outbox.append({"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {
                    "m": "DEPOSIT" if delta >= 0 else "WITHDRAW",
                    "B": [{"a": "USDT", "wb": A.f8(acct.wallet), "cw": A.f8(acct.wallet), "bc": A.f8(delta)}],
                    "P": []}})
            if body.get("margin_call"):
                acct.outbox.append(A.margin_call_event(self.exchange, acct, now))
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": f"bad account request: {exc!r}"}, status=400)
        self.flush_user_events()            # type: ignore[attr-defined]
        log.warning("venue_sim: account %s… set by admin: %s", key[:4], {k: v for k, v in body.items() if k != "api_key"})
        return web.json_response({"ok": True, "dual_side": acct.dual_side, "multi_assets": acct.multi_assets,
                                  "balance": acct.wallet, "leverage": {self.model.symbols[i]: v
                                                                       for i, v in acct.leverage.items()},
                                  "isolated": sorted(self.model.symbols[i] for i in acct.isolated)})

    def _admin_lev(self, acct, i: int, val, now: int, notify: bool) -> None:
        try:
            lev = int(val)
        except (TypeError, ValueError):
            raise ValueError(f"leverage {val!r}: must be an integer in [1, 125]") from None
        if not 1 <= lev <= 125:
            raise ValueError(f"leverage {lev}: must be in [1, 125]")
        lev = min(lev, A.max_leverage(self.exchange, i))
        changed = acct.leverage.get(i, self.exchange.cfg.leverage) != lev
        acct.leverage[i] = lev
        if changed and notify:              # one event per symbol named in the request (not all 560)
            acct.outbox.append({"e": "ACCOUNT_CONFIG_UPDATE", "E": now, "T": now,
                                "ac": {"s": self.model.symbols[i], "l": lev}})

    def _admin_margin(self, acct, i: int, val, now: int, notify: bool) -> None:
        kind = str(val).upper()
        if kind not in ("ISOLATED", "CROSSED"):
            raise ValueError(f"margin_type {val!r}: ISOLATED or CROSSED")
        (acct.isolated.add if kind == "ISOLATED" else acct.isolated.discard)(i)
