"""A Nautilus ``TradingNode`` running :class:`prod.nautilus.actor.DolphinActor` with Nautilus's own Binance USDT-M
futures data and execution clients (bible §2's "TradingNode → live exchange connectivity").

Nothing here is stubbed: the clients talk REST + websockets to whatever ``base_url_http`` / ``base_url_ws`` say —
the venue simulator (``http://127.0.0.1:<port>`` / ``ws://127.0.0.1:<port>``), Binance's futures testnet
(``testnet=True`` and no URLs: Nautilus's own testnet defaults) or production. docs/nautilus.md has the recipes.

Live mode (§14.4): the actor steps once per closed driver bar (``<DRIVER>-PERP.BINANCE-1-MINUTE-LAST-EXTERNAL``,
Binance's ``kline_1m`` stream) on the latest scan on the bus (:class:`BusScanFeed`: ``latest_eigen_scan``,
deduplicated on ``scan_number``, a scan older than ``max_age_s`` logged and skipped).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from typing import Any, Callable

import numpy as np

from prod.nautilus import require_nautilus

require_nautilus()

from nautilus_trader.adapters.binance import (BINANCE, BinanceAccountType, BinanceDataClientConfig,  # noqa: E402
                                              BinanceExecClientConfig, BinanceLiveDataClientFactory,
                                              BinanceLiveExecClientFactory)
from nautilus_trader.config import InstrumentProviderConfig, LoggingConfig, TradingNodeConfig  # noqa: E402
from nautilus_trader.live.node import TradingNode  # noqa: E402
from nautilus_trader.model.data import BarType  # noqa: E402
from nautilus_trader.model.identifiers import InstrumentId, Venue  # noqa: E402

from prod.alpha.engine import NDAlphaEngine  # noqa: E402
from prod.alpha.vol import VolGate  # noqa: E402
from prod.nautilus.actor import DolphinActor, DolphinActorConfig, ScanRow  # noqa: E402

log = logging.getLogger("dolphin.nautilus.node")

VENUE = Venue("BINANCE")
VOL_SYMBOL = "BTCUSDT"


def live_instrument_id(symbol: str) -> InstrumentId:
    return InstrumentId.from_str(f"{symbol}-PERP.BINANCE")


class BusScanFeed:
    """§14.4 live mode: one driver bar → the latest scan on the bus, once per ``scan_number``.

    ``vol_gate``: the trader's streaming :class:`VolGate` on the scan's BTCUSDT price (default); ``None`` leaves
    ``vol_regime_ok`` True (a caller's explicit choice, e.g. a venue smoke run that must trade at once).
    """

    def __init__(self, bus: Any, assets: tuple[str, ...], max_age_s: float = 10.0,
                 vol_gate: VolGate | None | bool = True, clock: Callable[[], float] = time.time) -> None:
        from prod.bus import maps
        self._topic = maps.EIGEN_SCAN
        self.bus = bus
        self.assets = assets
        self.max_age_s = max_age_s
        self.gate = VolGate() if vol_gate is True else (vol_gate or None)
        self.clock = clock
        self.last_scan: int | None = None
        self.stale = self.duplicates = self.missing = 0

    def row(self, ts_ns: int) -> ScanRow | None:
        scan = self.bus.get(self._topic)
        if scan is None:
            self.missing += 1
            return None
        if self.last_scan is not None and scan.scan_number <= self.last_scan:
            self.duplicates += 1
            return None
        age = self.clock() - scan.timestamp_ns / 1e9
        if age > self.max_age_s:
            self.stale += 1
            log.warning("scan %d is %.1f s old (> %.0f s): skipped", scan.scan_number, age, self.max_age_s)
            return None
        self.last_scan = scan.scan_number
        px = dict(zip(scan.assets, scan.asset_prices))
        prices = np.array([float(px[a]) if px.get(a) is not None else math.nan for a in self.assets])
        vol_ok = True if self.gate is None else self.gate.update(px.get(VOL_SYMBOL))
        date = dt.datetime.fromtimestamp(ts_ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d")
        nan = math.nan
        return ScanRow(date, int(scan.scan_number), nan if scan.vel_div is None else scan.vel_div, prices,
                       nan if scan.w50_velocity is None else scan.w50_velocity,
                       nan if scan.w750_velocity is None else scan.w750_velocity, bool(vol_ok), bool(scan.gap_hold))


def build_node(engine: NDAlphaEngine, feed: Any, *, api_key: str | None = None, api_secret: str | None = None,
               base_url_http: str | None = None,
               base_url_ws: str | None = None, testnet: bool = False, bus: Any = None, strategy: str = "blue",
               direction: int = -1, driver: str = VOL_SYMBOL, trader_id: str = "DOLPHIN-NT-001",
               log_level: str = "WARNING") -> tuple[TradingNode, DolphinActor]:
    """Build a TradingNode with Binance USDT-M data + exec clients and a DolphinActor trading ``engine.assets``.

    ``api_key`` / ``api_secret`` None: Nautilus reads its own environment variables (``BINANCE_FUTURES_API_KEY`` /
    ``_SECRET``, or ``BINANCE_FUTURES_TESTNET_API_KEY`` / ``_SECRET`` with ``testnet``). URLs None: Nautilus's
    defaults for production or testnet.
    """
    ids = {a: live_instrument_id(a) for a in engine.assets}
    ip = InstrumentProviderConfig(load_ids=frozenset(str(i) for i in ids.values()))
    common = dict(api_key=api_key, api_secret=api_secret, account_type=BinanceAccountType.USDT_FUTURES,
                  base_url_http=base_url_http, base_url_ws=base_url_ws, testnet=testnet, instrument_provider=ip)
    cfg = TradingNodeConfig(
        trader_id=trader_id, logging=LoggingConfig(log_level=log_level),
        data_clients={BINANCE: BinanceDataClientConfig(**common)},
        exec_clients={BINANCE: BinanceExecClientConfig(**common)},
        timeout_connection=30.0)
    # the node's own loop, set as this thread's: after an asyncio.run() the thread has none, and Nautilus's
    # get_event_loop() fallback refuses to make one under pytest
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    node = TradingNode(cfg, loop=loop)
    bar_type = BarType.from_str(f"{driver}-PERP.BINANCE-1-MINUTE-LAST-EXTERNAL")
    actor = DolphinActor(DolphinActorConfig(strategy_name=strategy, direction=direction), engine, ids, bar_type,
                         feed, VENUE, bus=bus)
    node.trader.add_strategy(actor)
    node.add_data_client_factory(BINANCE, BinanceLiveDataClientFactory)
    node.add_exec_client_factory(BINANCE, BinanceLiveExecClientFactory)
    node.build()
    return node, actor


def main(argv: list[str] | None = None) -> int:
    """``python -m prod.nautilus.node``: run DolphinActor on a TradingNode until Ctrl-C (docs/nautilus.md)."""
    import argparse
    import dataclasses
    import os
    import sys

    from prod.configs import ConfigError, load_config
    from prod.runtime import Bus
    from prod.settings import load_settings

    ap = argparse.ArgumentParser(prog="python -m prod.nautilus.node", description=main.__doc__)
    ap.add_argument("--config", default="prod/configs/blue.yml", help="strategy YAML")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--testnet", action="store_true", help="Binance USDT-M futures testnet (Nautilus's URLs)")
    where.add_argument("--sim", action="store_true",
                       help="the venue simulator at DOLPHIN_VENUE_REST / DOLPHIN_VENUE_WS (keys DOLPHIN_VENUE_API_KEY/_SECRET)")
    ap.add_argument("--http", help="REST base URL (overrides)")
    ap.add_argument("--ws", help="websocket base URL (overrides)")
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(a.config)
    except ConfigError as exc:
        print(f"nautilus node: {exc}", file=sys.stderr)
        return 2
    settings = load_settings()
    http, ws = a.http, a.ws
    key = secret = None
    if a.sim:
        http, ws = http or settings.venue_rest, ws or settings.venue_ws
        key = os.environ.get("DOLPHIN_VENUE_API_KEY", "dolphin-sim-key")
        secret = os.environ.get("DOLPHIN_VENUE_API_SECRET", "dolphin-sim-secret")
    bus = Bus(settings, "nautilus-node").start()
    if not bus.wait_connected(30):
        print(f"nautilus node: no Hazelcast member at {settings.hz_members} within 30 s", file=sys.stderr)
        bus.close()
        return 2
    params = dataclasses.replace(cfg.engine, use_sp_fees=False, use_sp_slippage=False)     # §8.3: venue friction
    engine = NDAlphaEngine(params, settings.symbols)
    node, _ = build_node(engine, BusScanFeed(bus, engine.assets), api_key=key, api_secret=secret, base_url_http=http,
                         base_url_ws=ws, testnet=a.testnet, bus=bus, strategy=cfg.strategy, direction=cfg.direction,
                         log_level=a.log_level)
    try:
        node.run()
    except KeyboardInterrupt:
        pass
    finally:
        node.dispose()
        bus.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
