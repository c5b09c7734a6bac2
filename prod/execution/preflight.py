"""Preflight: check a Binance-USDT-M trading account before the trader may enter a position.

Design notes: ``docs/design/prod.execution.md``.
"""
from __future__ import annotations

import asyncio
import ipaddress
import math
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from prod.execution.errors import OrderRejected, RateLimited, UnknownOutcome, VenueUnavailable
from prod.execution.rest import OrderRestClient
from prod.execution.schemas import FeeRates, parse_commission_rate
from prod.venue.errors import MalformedMessage

KINDS = ("simulator", "testnet", "mainnet")
MARGIN_TYPES = ("ISOLATED", "CROSSED")
# hosts of Binance USDT-M (REST, market streams, user streams, WebSocket API); docs/execution.md
MAINNET_HOSTS = frozenset({"fapi.binance.com", "fstream.binance.com", "fstream-auth.binance.com",
                           "ws-fapi.binance.com"})
TESTNET_SUFFIXES = (".binancefuture.com",)
KEY_CODES = {-2014: "API-key format invalid", -2015: "invalid API key, IP or permissions", -1022: "bad signature"}
ACCOUNT_LEVEL = ("endpoint", "server", "api key", "position mode", "asset mode", "commission", "balance")


def url_kind(url: str) -> str:
    """Return what a venue URL points at: ``mainnet``, ``testnet``, ``simulator`` (loopback or private
    address, a bare host name) or ``unknown`` (another public host)."""
    host = (urlparse(url).hostname or "").lower().rstrip(".")
    if host in MAINNET_HOSTS or (host.endswith(".binance.com") and not host.startswith("demo-")) \
            or host == "binance.com":
        return "mainnet"
    if host.endswith(TESTNET_SUFFIXES) or host == "binancefuture.com" or \
            (host.startswith("demo-") and host.endswith(".binance.com")):
        return "testnet"
    if host == "localhost" or "." not in host:          # localhost, a compose service name (venue_sim)
        return "simulator"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "unknown"
    return "simulator" if ip.is_loopback or ip.is_private else "unknown"


def endpoint_check(kind: str, mainnet_ok: bool, urls: tuple[str, ...]) -> "Check":
    """Check that the declared venue kind matches every URL (and mainnet is opted in)."""
    shown = ", ".join(urls)
    if kind not in KINDS:
        return Check("endpoint", False, f"DOLPHIN_VENUE_KIND={kind!r} is not one of {KINDS}",
                     "set DOLPHIN_VENUE_KIND to simulator, testnet or mainnet")
    for u in urls:
        got = url_kind(u)
        if got != kind:
            return Check("endpoint", False, f"declared {kind} but {u} is a {got} endpoint",
                         f"set DOLPHIN_VENUE_KIND={got}" if got in KINDS else
                         f"point DOLPHIN_VENUE_REST/_WS at a {kind} endpoint")
    if kind == "mainnet" and not mainnet_ok:
        return Check("endpoint", False, f"mainnet ({shown}) trades real money and DOLPHIN_VENUE_MAINNET_OK is not set",
                     "run on testnet first; then set DOLPHIN_VENUE_MAINNET_OK=1")
    return Check("endpoint", True, f"{kind} ({shown})" + (" with DOLPHIN_VENUE_MAINNET_OK=1" if kind == "mainnet" else ""))


@dataclass(frozen=True)
class PreflightConfig:
    """What the account must look like (from :class:`prod.settings.Settings` and the engine parameters)."""

    rest_base: str
    ws_base: str | None
    kind: str = "simulator"
    mainnet_ok: bool = False
    symbols: tuple[str, ...] = ()
    margin_type: str = "ISOLATED"
    leverage: int = 6
    engine_max_leverage: float = 6.0        # EngineParams.abs_max_leverage: the configured leverage must reach it
    allocation_usdt: float = 25_000.0
    max_entry_fraction: float = 1.2         # largest entry notional / capital (fraction × abs_max_leverage)
    min_entry_fraction: float = 0.01        # smallest (min_fraction × min_leverage)
    engine_taker_fee: float = 0.0005        # what the backtest assumes (EngineParams.taker_fee)
    fee_symbol: str = "BTCUSDT"             # the commission rate is read on this symbol (else the first tradable)
    recv_window_ms: int = 5000
    concurrency: int = 8                    # margin/leverage requests in flight

    def __post_init__(self) -> None:
        if self.margin_type not in MARGIN_TYPES:
            raise ValueError(f"margin_type {self.margin_type!r}: expected one of {MARGIN_TYPES}")
        if not 1 <= self.leverage <= 125:
            raise ValueError(f"leverage {self.leverage}: must be in [1, 125]")
        if not (math.isfinite(self.allocation_usdt) and self.allocation_usdt > 0):
            raise ValueError(f"allocation_usdt {self.allocation_usdt}: must be > 0")
        if not 0 < self.min_entry_fraction <= self.max_entry_fraction:
            raise ValueError("need 0 < min_entry_fraction <= max_entry_fraction")

    @classmethod
    def from_settings(cls, settings: Any, params: Any, **kw: Any) -> "PreflightConfig":
        """Build from ``prod.settings.Settings`` and ``prod.alpha.params.EngineParams``."""
        alloc = settings.venue_allocation_usdt
        values: dict[str, Any] = dict(
            rest_base=settings.venue_rest, ws_base=settings.venue_ws, kind=settings.venue_kind,
            mainnet_ok=settings.venue_mainnet_ok, symbols=tuple(settings.symbols),
            margin_type=settings.venue_margin_type, leverage=settings.venue_leverage,
            engine_max_leverage=params.abs_max_leverage,
            allocation_usdt=float(alloc) if alloc is not None else float(params.initial_capital),
            max_entry_fraction=params.fraction * params.abs_max_leverage,
            min_entry_fraction=params.min_fraction * params.min_leverage,
            engine_taker_fee=params.taker_fee, fee_symbol=params.fallback_asset)
        return cls(**{**values, **kw})


@dataclass(frozen=True)
class Check:
    """One preflight line: ``name``, passed or not, what was found, and what to change."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    def line(self) -> str:
        word = "SKIP" if self.skipped else "PASS" if self.ok else "FAIL"
        return f"{word} {self.name:<13} {self.detail}" + (f"  -> {self.fix}" if self.fix and not self.ok else "")


@dataclass(frozen=True)
class PreflightReport:
    """The outcome of :func:`run_preflight`."""

    checks: tuple[Check, ...]
    kind: str
    time_offset_ms: int | None = None
    fees: FeeRates | None = None
    wallet_available: float | None = None
    allocation: float | None = None
    capital: float | None = None
    tradable: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()      # (symbol, why) refused for entries
    elapsed_ms: float = 0.0
    requests: int = 0

    @property
    def ok(self) -> bool:
        """True when every check passed (the CLI's exit code)."""
        return all(c.ok for c in self.checks)

    @property
    def entries_allowed(self) -> bool:
        """True when no account-level check failed (per-symbol refusals aside)."""
        return all(c.ok for c in self.checks if c.name in ACCOUNT_LEVEL)

    @property
    def refused_symbols(self) -> dict[str, str]:
        return dict(self.refused)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def lines(self) -> list[str]:
        out = [c.line() for c in self.checks]
        verdict = "PASS" if self.ok else "FAIL"
        out.append(f"{verdict} preflight     {len(self.checks) - len(self.failures())}/{len(self.checks)} checks "
                   f"passed in {self.elapsed_ms:.0f} ms ({self.requests} requests)"
                   + ("" if self.entries_allowed else "; the trader refuses every entry until this passes")
                   + (f"; entries refused in {len(self.refused)} symbol(s)" if self.refused and self.entries_allowed
                      else ""))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries_allowed": self.entries_allowed, "kind": self.kind,
                "checks": [{"name": c.name, "ok": c.ok, "skipped": c.skipped, "detail": c.detail, "fix": c.fix}
                           for c in self.checks],
                "time_offset_ms": self.time_offset_ms,
                "fees": None if self.fees is None else {"maker": self.fees.maker, "taker": self.fees.taker,
                                                        "symbol": self.fees.symbol},
                "wallet_available": self.wallet_available, "allocation": self.allocation, "capital": self.capital,
                "tradable": len(self.tradable), "refused": dict(self.refused), "elapsed_ms": round(self.elapsed_ms, 1),
                "requests": self.requests}


def _why(exc: BaseException) -> str:
    """One line naming the endpoint and the code (the REST client's messages already start with the endpoint)."""
    if isinstance(exc, RateLimited):
        return (f"{exc} — {'IP banned (418)' if exc.status == 418 else 'rate limited (429)'}; "
                f"wait {exc.retry_after_s:g}s")
    return str(exc)


class _Stop(Exception):
    """A check failed in a way that makes the following ones meaningless (nothing more is sent)."""


class _Run:
    def __init__(self, rest: OrderRestClient, cfg: PreflightConfig):
        self.rest, self.cfg = rest, cfg
        self.checks: list[Check] = []
        self.refused: dict[str, str] = {}
        self.tradable: list[str] = []
        self.rules: dict[str, dict] = {}
        self.fees: FeeRates | None = None
        self.available: float | None = None
        self.capital: float | None = None
        self.balance_rows: Any = None

    def add(self, name: str, ok: bool, detail: str, fix: str = "") -> bool:
        self.checks.append(Check(name, ok, detail, fix))
        return ok

    def fail_stop(self, name: str, exc: BaseException, fix: str) -> None:
        self.add(name, False, _why(exc), fix)
        raise _Stop(name)

    async def server(self) -> None:
        try:
            off = await self.rest.sync_time()
        except RateLimited as exc:
            self.fail_stop("server", exc, "stop every client using this IP/key and wait for Retry-After; "
                                          "a 418 ban doubles with each repeat")
        except VenueUnavailable as exc:
            self.fail_stop("server", exc, "check DOLPHIN_VENUE_REST, the network and the venue's status page")
        except (UnknownOutcome, OrderRejected) as exc:
            self.fail_stop("server", exc, "check DOLPHIN_VENUE_REST points at a Binance USDT-M REST endpoint")
        rw = self.cfg.recv_window_ms
        if abs(off) >= rw:
            self.add("server", False, f"GET /fapi/v1/time: the host clock is {abs(off) / 1e3:.1f}s "
                     f"{'behind' if off > 0 else 'ahead of'} the venue, beyond recvWindow {rw} ms (-1021 for every "
                     "signed call without the offset)", "sync the host clock (chrony or systemd-timesyncd)")
            raise _Stop("server")
        self.add("server", True, f"GET /fapi/v1/time: offset {off:+d} ms (rtt {self.rest.time_rtt_ms:.0f} ms), "
                                 f"applied to every signed call, resynced every {self.rest.time_sync_s:g}s and on -1021")

    async def api_key(self) -> None:
        try:
            self.balance_rows = await self.rest.request("GET", "/fapi/v2/balance")
        except OrderRejected as exc:
            if exc.code in KEY_CODES:
                self.fail_stop("api key", exc, "check DOLPHIN_VENUE_API_KEY/_SECRET; the key needs 'Enable Futures', "
                                               "and this host's IP on its whitelist")
            if exc.code == -1021:
                self.fail_stop("server", exc, "sync the host clock (chrony or systemd-timesyncd)")
            self.fail_stop("api key", exc, "see the venue's error code")
        except (VenueUnavailable, UnknownOutcome) as exc:
            self.fail_stop("api key", exc, "the venue stopped answering: run the preflight again")
        self.add("api key", True, "signed GET /fapi/v2/balance accepted")

    async def account_modes(self) -> None:
        try:
            dual = await self.rest.request("GET", "/fapi/v1/positionSide/dual")
        except (OrderRejected, VenueUnavailable, UnknownOutcome) as exc:
            self.add("position mode", False, _why(exc), "check the endpoint is Binance USDT-M")
            dual = None
        hedge = dual.get("dualSidePosition") if isinstance(dual, dict) else None
        if dual is None:
            pass
        elif not isinstance(hedge, bool):
            self.add("position mode", False, f"GET /fapi/v1/positionSide/dual: no boolean dualSidePosition in "
                                             f"{str(dual)[:80]}", "check the endpoint is Binance USDT-M")
        elif hedge:
            self.add("position mode", False, "Hedge Mode (dualSidePosition=true): every order would fail with -4061",
                     "switch Position Mode to One-way (Binance Futures > Preferences > Position Mode, or "
                     "POST /fapi/v1/positionSide/dual dualSidePosition=false with no open position or order)")
        else:
            self.add("position mode", True, "One-way (dualSidePosition=false)")
        try:
            multi = await self.rest.request("GET", "/fapi/v1/multiAssetsMargin")
        except (OrderRejected, VenueUnavailable, UnknownOutcome) as exc:
            self.add("asset mode", False, _why(exc), "check the endpoint is Binance USDT-M")
            return
        m = multi.get("multiAssetsMargin") if isinstance(multi, dict) else None
        if not isinstance(m, bool):
            self.add("asset mode", False, f"GET /fapi/v1/multiAssetsMargin: no boolean multiAssetsMargin in "
                                          f"{str(multi)[:80]}", "check the endpoint is Binance USDT-M")
        elif m:
            self.add("asset mode", False, "Multi-Assets Mode (multiAssetsMargin=true): margin and PnL are pooled "
                                          "across assets", "switch Asset Mode to Single-Asset (Binance Futures > "
                                                           "Preferences > Asset Mode, or POST /fapi/v1/multiAssetsMargin "
                                                           "multiAssetsMargin=false)")
        else:
            self.add("asset mode", True, "Single-Asset (multiAssetsMargin=false)")

    async def symbols(self) -> None:
        try:
            info = await self.rest.exchange_info()
        except (OrderRejected, VenueUnavailable, UnknownOutcome) as exc:
            self.add("symbols", False, _why(exc), "run the preflight again")
            for s in self.cfg.symbols:
                self.refused[s] = "exchangeInfo not read"
            return
        rows = {s.get("symbol"): s for s in (info.get("symbols") or []) if isinstance(s, dict)} \
            if isinstance(info, dict) else {}
        for sym in self.cfg.symbols:
            r = rows.get(sym)
            if r is None:
                self.refused[sym] = "not listed in GET /fapi/v1/exchangeInfo (delisted?)"
            elif r.get("status") != "TRADING":
                self.refused[sym] = f"GET /fapi/v1/exchangeInfo status {r.get('status')!r} (not TRADING)"
            else:
                self.tradable.append(sym)
                self.rules[sym] = r
        n = len(self.cfg.symbols)
        if self.refused:
            shown = "; ".join(f"{s}: {w}" for s, w in list(self.refused.items())[:6])
            more = f" (+{len(self.refused) - 6} more)" if len(self.refused) > 6 else ""
            self.add("symbols", False, f"{len(self.tradable)}/{n} tradable; entries refused in {shown}{more}",
                     "remove them from DOLPHIN_SYMBOLS")
        else:
            self.add("symbols", True, f"{n}/{n} configured symbols TRADING in GET /fapi/v1/exchangeInfo")

    async def margin(self) -> None:
        cfg = self.cfg
        if cfg.leverage < cfg.engine_max_leverage:
            self.add("margin", False, f"DOLPHIN_VENUE_LEVERAGE={cfg.leverage} is below the engine's absolute "
                                      f"maximum {cfg.engine_max_leverage:g}x: its largest entries would be refused "
                                      "for margin", f"set DOLPHIN_VENUE_LEVERAGE>={math.ceil(cfg.engine_max_leverage)}")
            return
        try:
            rows = await self.rest.request("GET", "/fapi/v2/positionRisk")
        except (OrderRejected, VenueUnavailable, UnknownOutcome):
            rows = []
        now: dict[str, dict] = {}
        for r in rows if isinstance(rows, list) else []:     # leverage and margin type are per symbol: in hedge
            if isinstance(r, dict):                           # mode its LONG and SHORT rows carry the same ones
                now.setdefault(str(r.get("symbol")), r)
        want_mt = "isolated" if cfg.margin_type == "ISOLATED" else "cross"
        sem = asyncio.Semaphore(cfg.concurrency)
        sent = {"marginType": 0, "leverage": 0}
        problems: dict[str, str] = {}
        max_notional: dict[str, float] = {}

        async def one(sym: str) -> None:
            row = now.get(sym, {})
            async with sem:
                if str(row.get("marginType", "")).lower() != want_mt:
                    sent["marginType"] += 1
                    try:
                        await self.rest.request("POST", "/fapi/v1/marginType",
                                                {"symbol": sym, "marginType": cfg.margin_type})
                    except OrderRejected as exc:
                        if exc.code != -4046:          # -4046 "No need to change margin type.": it is so already
                            problems[sym] = _why(exc) + (" (a position or open order exists)" if exc.code in
                                                          (-4047, -4048) else "")
                            return
                    except (VenueUnavailable, UnknownOutcome) as exc:
                        problems[sym] = _why(exc)
                        return
                try:
                    lev_now = int(float(row.get("leverage", 0)))
                except (TypeError, ValueError):
                    lev_now = 0
                mn = row.get("maxNotionalValue")
                if lev_now != cfg.leverage or mn is None:
                    sent["leverage"] += 1
                    try:
                        ans = await self.rest.request("POST", "/fapi/v1/leverage",
                                                      {"symbol": sym, "leverage": cfg.leverage})
                    except (OrderRejected, VenueUnavailable, UnknownOutcome) as exc:
                        problems[sym] = _why(exc)
                        return
                    if not isinstance(ans, dict) or int(float(ans.get("leverage", 0))) != cfg.leverage:
                        problems[sym] = f"POST /fapi/v1/leverage answered {str(ans)[:80]}"
                        return
                    mn = ans.get("maxNotionalValue", mn)
                try:
                    max_notional[sym] = float(mn) if mn not in (None, "INF") else math.inf
                except (TypeError, ValueError):
                    max_notional[sym] = math.inf

        await asyncio.gather(*(one(s) for s in self.tradable))
        largest = (self.capital or 0.0) * cfg.max_entry_fraction
        for sym, mn in max_notional.items():
            if largest > mn:
                problems[sym] = (f"maxNotionalValue {mn:g} at {cfg.leverage}x is below the largest entry "
                                 f"{largest:.0f} USDT")
        for sym, why in problems.items():
            self.refused[sym] = why
        self.tradable = [s for s in self.tradable if s not in problems]
        what = f"{cfg.margin_type} {cfg.leverage}x"
        calls = f"{sent['marginType']} marginType + {sent['leverage']} leverage requests"
        if problems:
            shown = "; ".join(f"{s}: {w}" for s, w in list(problems.items())[:4])
            self.add("margin", False, f"{what} not set on {len(problems)} symbol(s): {shown} ({calls})",
                     "close positions/orders in those symbols, or lower DOLPHIN_VENUE_LEVERAGE to the "
                     "symbol's bracket, then run the preflight again")
        else:
            self.add("margin", True, f"{what} on {len(self.tradable)} symbols ({calls}; engine max "
                                     f"{cfg.engine_max_leverage:g}x)")

    async def commission(self) -> None:
        sym = self.cfg.fee_symbol if self.cfg.fee_symbol in self.tradable else \
            (self.tradable[0] if self.tradable else None)
        if sym is None:
            self.add("commission", False, "no tradable symbol to read GET /fapi/v1/commissionRate on",
                     "fix the symbols check first")
            return
        try:
            self.fees = fees = parse_commission_rate(
                await self.rest.request("GET", "/fapi/v1/commissionRate", {"symbol": sym}))
        except (OrderRejected, VenueUnavailable, UnknownOutcome) as exc:
            self.add("commission", False, _why(exc), "run the preflight again")
            return
        except MalformedMessage as exc:
            self.add("commission", False, f"GET /fapi/v1/commissionRate: unusable answer ({exc})",
                     "check the endpoint is Binance USDT-M")
            return
        maker, taker = fees.maker, fees.taker
        note = "" if taker <= self.cfg.engine_taker_fee else \
            f"; above the backtest's taker {self.cfg.engine_taker_fee:.4%}: live costs exceed backtests"
        self.add("commission", True, f"{sym} maker {maker:.4%} taker {taker:.4%}: fees are booked at these "
                                     f"rates{note}")

    def balance(self) -> None:
        rows = self.balance_rows
        usdt = next((r for r in rows if isinstance(r, dict) and r.get("asset") == "USDT"), None) \
            if isinstance(rows, list) else None
        try:
            avail = float(usdt["availableBalance"]) if usdt else float("nan")
        except (TypeError, ValueError):
            avail = float("nan")
        if not math.isfinite(avail):
            self.add("balance", False, f"GET /fapi/v2/balance: no USDT availableBalance in {str(rows)[:80]}",
                     "transfer USDT to the USDⓈ-M futures wallet")
            return
        self.available = avail
        self.capital = max(0.0, min(avail, self.cfg.allocation_usdt))

    def balance_verdict(self) -> None:
        if self.available is None:
            return
        cfg, cap = self.cfg, self.capital or 0.0
        mins = [float(f.get("notional", 0)) for s in self.tradable for f in self.rules.get(s, {}).get("filters", [])
                if isinstance(f, dict) and f.get("filterType") == "MIN_NOTIONAL"]
        floor = min(mins) if mins else 0.0
        largest, smallest = cap * cfg.max_entry_fraction, cap * cfg.min_entry_fraction
        text = (f"USDT available {self.available:.2f}, allocation {cfg.allocation_usdt:.2f} -> capital {cap:.2f} "
                f"(entries {smallest:.2f}..{largest:.2f} USDT)")
        if cap <= 0 or largest < floor:
            self.add("balance", False, f"{text}: below the venue's minimum notional {floor:g} USDT (MIN_NOTIONAL)",
                     "transfer USDT to the futures wallet or raise DOLPHIN_VENUE_ALLOCATION_USDT")
        else:
            below = sum(1 for m in mins if smallest < m)
            self.add("balance", True, text + (f"; the smallest entries are below MIN_NOTIONAL on {below} symbol(s) "
                                              "and are refused there" if below else ""))


async def run_preflight(rest: OrderRestClient, cfg: PreflightConfig) -> PreflightReport:
    """Run every check against the venue behind ``rest`` (its server-time offset is set on the way)."""
    t0, n0 = time.perf_counter(), rest.requests
    r = _Run(rest, cfg)
    urls = (cfg.rest_base,) + ((cfg.ws_base,) if cfg.ws_base else ())
    ep = endpoint_check(cfg.kind, cfg.mainnet_ok, urls)
    r.checks.append(ep)
    try:
        if not ep.ok:
            raise _Stop("endpoint")
        await r.server()
        await r.api_key()
        r.balance()                   # capital before margin: the largest entry is checked against maxNotionalValue
        await r.account_modes()
        await r.symbols()
        await r.margin()
        await r.commission()
        r.balance_verdict()
    except _Stop:
        done = {c.name for c in r.checks}
        for name in ("server", "api key", "position mode", "asset mode", "symbols", "margin", "commission",
                     "balance"):
            if name not in done:
                r.checks.append(Check(name, False, "not checked (an earlier check failed)", skipped=True))
    return PreflightReport(tuple(r.checks), cfg.kind, rest.time_offset_ms if rest.time_synced_at else None, r.fees,
                           r.available, cfg.allocation_usdt, r.capital, tuple(r.tradable),
                           tuple(sorted(r.refused.items())), (time.perf_counter() - t0) * 1e3, rest.requests - n0)


class EntryGate:
    """Which entries the last preflight refuses: every entry, or entries in some symbols (thread-safe).

    Closed until a report is applied, so a trader whose preflight never ran does not enter.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: str | None = "preflight has not run"
        self._symbols: dict[str, str] = {}
        self.report: PreflightReport | None = None

    def apply(self, report: PreflightReport) -> None:
        with self._lock:
            self.report = report
            fails = [c for c in report.checks if not c.ok and not c.skipped and c.name in ACCOUNT_LEVEL]
            self._all = None if report.entries_allowed else "preflight failed: " + "; ".join(
                f"{c.name}: {c.detail}" + (f" -> {c.fix}" if c.fix else "") for c in fails)
            self._symbols = report.refused_symbols

    def refusal(self, symbol: str) -> str | None:
        """Return why an entry in ``symbol`` is refused, or None when it may go ahead."""
        with self._lock:
            if self._all is not None:
                return self._all
            why = self._symbols.get(symbol)
            return None if why is None else f"preflight refused {symbol}: {why}"

    def close(self, why: str) -> None:
        """Refuse every entry with ``why`` (until the next :meth:`apply`)."""
        with self._lock:
            self._all = why

    @property
    def open(self) -> bool:
        with self._lock:
            return self._all is None



class PreflightRunner:
    """The trader's preflight: run it on the execution runtime's own REST client (so the server-time offset
    it measures is the one every order uses), apply it to an :class:`EntryGate`, and while it refuses
    every entry run it again every ``retry_s`` until it passes (an operator fixing the account — switching
    to one-way mode — needs no restart).

    ``capital_from_wallet`` is False when the start-up capital could not be read from the wallet; a later
    pass then keeps entries refused (the capital would otherwise be the configured number alone).
    """

    def __init__(self, runtime: Any, cfg: PreflightConfig, gate: EntryGate | None = None, retry_s: float = 30.0,
                 on_report: Any = None):
        self.runtime, self.cfg, self.retry_s = runtime, cfg, retry_s
        self.gate = gate or EntryGate()
        self.on_report = on_report
        self.capital_from_wallet = True
        self.runs = 0
        self._last_outcome: tuple | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, timeout_s: float = 120.0) -> PreflightReport:
        """Run the checks, log one line each, apply the result to the gate; return the report."""
        import logging
        log = logging.getLogger(__name__)
        report = self.runtime.call(run_preflight, self.runtime.client.rest, self.cfg, timeout_s=timeout_s)
        self.runs += 1
        self.gate.apply(report)
        if report.entries_allowed and not self.capital_from_wallet:
            self.gate.close("the wallet could not be read at start, so the capital is unknown: restart the trader")
        outcome = tuple((c.name, c.ok, c.detail if not c.ok else "") for c in report.checks)
        if outcome != self._last_outcome:      # the whole report when something changed, else one quiet line
            for line in report.lines():
                (log.info if line.startswith(("PASS", "SKIP")) else log.error)("preflight: %s", line)
        else:
            log.debug("preflight run %d: unchanged (%s)", self.runs, report.lines()[-1])
        self._last_outcome = outcome
        if self.on_report is not None:
            self.on_report(report)
        return report

    def start_retry(self) -> None:
        """While every entry is refused, run the preflight again every ``retry_s`` (a daemon thread)."""
        if self._thread is not None or self.gate.open:
            return
        self._thread = threading.Thread(target=self._retry, name="preflight-retry", daemon=True)
        self._thread.start()

    def _retry(self) -> None:
        import logging
        log = logging.getLogger(__name__)
        while not self._stop.wait(self.retry_s) and not self.gate.open:
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the venue may be down; entries stay refused, try again
                log.error("preflight: not run (%s: %s); entries stay refused", type(exc).__name__, exc)
        if self.gate.open:
            log.warning("preflight passed: entries allowed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
