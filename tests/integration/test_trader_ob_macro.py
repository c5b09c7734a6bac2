"""The OB macro live (issue 19): venue simulator → obf_universe → DOLPHIN_FEATURES[ob_macro_latest] → trader.

Real member, real simulator (websockets), real obf_universe process and the trader's real bus adapter
(:class:`TraderService`) in process. The simulator runs a liquidity-withdrawal episode (the stress regime
thins every book, bids more than asks, ``/sim/admin/regime``); the open SHORT's exit is tightened live
(OB-5: cascade → max-hold ×0.50, withdrawal stress with the book against the position → ×0.40), while
the same position in a trader without the macro runs to the champion max-hold.
"""
from __future__ import annotations

import queue
import time

from prod.alpha import exits as ex
from prod.bus import maps
from prod.runtime import Bus, SystemClock, result_within
from prod.trading.core import CoreLimits, TraderCore
from prod.trading.journal import Journal
from services.event_trader.main import BusOutputs, TraderConfig, TraderService, load_engine_params
from tests.helpers import running_venue, wait_until
from tests.integration.test_obf_universe import _admin, _obf
from tests.unit.services.event_trader.test_trader import Market, _run_until_entry


def _core(tmp_path, settings, name):
    d = tmp_path / name
    d.mkdir()
    j = Journal.open(d / "j.sqlite", d / "audit.log")
    return TraderCore(CoreLimits(), j, load_engine_params(), tuple(settings.symbols), clock=time.time)


def stressed_payload(bus):
    p = bus.get(maps.OB_MACRO)
    assert p is not None, "no macro on the bus"
    return {k: v for k, v in p.to_dict().items() if k != "_v"}


def _flat_until_exit(core, m, n, limit):
    pos = core.engine.position
    m.prices[pos.asset] = pos.entry_price          # pnl 0: neither TP nor stop, only the hold can end it
    regimes = []
    for k in range(n + 1, n + 1 + limit):
        r = core.process(m.scan(k, 0.0, 0.0, 0.0))
        regimes.append(r["ob_regime"])
        if r.get("exited"):
            return r["exited"], regimes
    return None, regimes


def test_liquidity_withdrawal_episode_tightens_the_open_short_exit_live(hz_member, tmp_path, settings_for):
    _, hz_port = hz_member
    with running_venue(tmp_path, "--speed", "1", "--symbols", "80") as (_, vport):
        obf = _obf(tmp_path, hz_port, vport)
        settings = settings_for(hz_port, vport)
        bus = Bus(settings, "event_trader", backoff_s=(0.1, 0.5)).start()
        svc = None
        try:
            assert bus.wait_connected(30), "trader bus did not connect"
            t0 = time.time()
            live, m = _core(tmp_path, settings, "live"), Market(t0)
            ctrl, mc = _core(tmp_path, settings, "ctrl"), Market(t0)
            n, r = _run_until_entry(live, m)
            n2, _ = _run_until_entry(ctrl, mc)
            assert n2 == n and r["entered"]["side"] == "SELL"       # the same SHORT in both traders
            assert live.engine._ob.get_macro() is None              # no macro before the listener runs

            svc = TraderService(TraderConfig(settings=settings), live, bus, SystemClock(),
                                BusOutputs(bus, queue.Queue()))
            svc.start()
            first = wait_until(lambda: live.engine._ob.get_macro(), 30, what="the first OB macro reaches the engine")
            assert first.regime_signal <= 0, f"calm market read as withdrawal stress: {first}"

            _admin(vport, "/sim/admin/regime", {"regime": "stress", "hold_s": 120, "settle": True})
            stressed = wait_until(lambda: (mm := live.engine._ob.get_macro()) is not None and mm.regime_signal == 1
                                  and mm, 20, what="withdrawal stress (regime_signal +1) reaches the engine")
            assert stressed.withdrawal_stress > first.withdrawal_stress

            hold = live.params.max_hold_bars
            x, regimes = _flat_until_exit(live, m, n, hold)
            assert x is not None, "the stressed SHORT was not exited before the champion max-hold"
            assert x["reason"] == ex.MAX_HOLD and x["bars_held"] <= int(hold * 0.50), x
            assert set(regimes) == {1}, f"macro not live on every bar: {regimes}"
            print(f"stressed SHORT exited {x['reason']} after {x['bars_held']} bars (champion {hold})")
            assert live.heartbeat_fields()["ob_macro"] is True and live.macro_updates >= 2

            # an out-of-range macro on the key turns the engine neutral at once (the next bar brings a good one)
            dropped = live.macro_dropped
            bad = maps.OB_MACRO.encode(maps.OB_MACRO.build(**{**stressed_payload(bus), "regime_signal": 0}))
            result_within(bus.map(maps.FEATURES).put(maps.KEY_OB_MACRO, bad.replace('"regime_signal":0',
                                                                                   '"regime_signal":7')), 5)
            wait_until(lambda: live.macro_dropped > dropped, 10, what="the invalid macro is dropped")
            assert "ob_macro_latest" in live.macro_drop_reason and "invalid" in live.macro_drop_reason

            x0, regimes0 = _flat_until_exit(ctrl, mc, n, hold + 1)
            assert x0 is not None and x0["reason"] == ex.MAX_HOLD and x0["bars_held"] == hold
            assert set(regimes0) == {None}
        finally:
            if svc is not None:
                svc.stop()
            bus.close()
            obf.stop()
