"""Boundaries pinned so that an off-by-one or a changed constant fails a test (issue 19's mutation audit):
the engine's warm-up (``bar_count < lookback``), OB-2's hard-skip persistence (> 0.60) and the watchdog's
DVOL spike level (80, the ACB "extreme")."""
from __future__ import annotations

import dataclasses

import pytest

from prod.alpha.signal import ob_confidence_adjust
from services.safety_watchdog.main import DvolSpikeTracker, WatchdogConfig
from tests.unit.prod.alpha.test_alpha_engine import fresh, make_data


def test_warmup_ends_exactly_at_the_lookback_th_bar():
    prices = make_data(2)[0]
    e = fresh()
    lookback = e.params.lookback
    assert lookback == 100
    notes = [e.step_bar(i, -0.09, prices[i]).note for i in range(lookback)]
    assert set(notes[:lookback - 1]) == {"warmup"}     # bars 1..99 never trade
    assert notes[lookback - 1] != "warmup"              # the 100th bar may (here: it enters)
    assert e.position is not None


@pytest.mark.parametrize("persistence, skip", [(0.50, False), (0.55, False), (0.60, False), (0.6001, True),
                                               (0.61, True)])
def test_ob2_hard_skip_needs_persistence_above_0_60(persistence, skip):
    conf, hard = ob_confidence_adjust(1.0, 0.16, persistence, -1)   # eff = -0.16 < -0.15: against the SHORT
    assert hard is skip
    if not skip:
        assert conf == pytest.approx(max(0.85, 1.0 - 0.16 * persistence * 0.4))


@pytest.mark.parametrize("reading, spike", [(79.99, False), (80.0, True), (82.0, True), (84.9, True)])
def test_dvol_spike_level_is_80(reading, spike):
    defaults = {f.name: f.default for f in dataclasses.fields(WatchdogConfig)}
    assert defaults["dvol_spike_level"] == 80.0 and defaults["dvol_spike_jump"] == 15.0
    t = DvolSpikeTracker(defaults["dvol_spike_level"], defaults["dvol_spike_jump"])
    assert t.update(70.0, 0.0) is None                  # a first calm reading: no spike, no jump reference
    got = t.update(reading, 60.0)                       # +10..15 points: below the jump rule
    assert (got is not None) is spike
