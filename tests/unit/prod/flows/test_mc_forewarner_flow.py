"""The MC-forewarner flow's check of the one writer's value: missing, stale (s or ns stamps), disagreeing."""
from __future__ import annotations

from prod.flows.mc_forewarner import compare

NOW = 1_800_000_000.0
ASSESSED = {"status": "GREEN", "source": "REAL_MODEL"}


def test_nothing_published_names_the_writer():
    assert compare(ASSESSED, None, NOW, 8.0) == [
        "nothing published in DOLPHIN_FEATURES[mc_forewarner_latest]: is services.mc_forewarner running?"]


def test_a_fresh_agreeing_value_passes_whatever_the_stamp_unit():
    for ts in (NOW - 3600, (NOW - 3600) * 1e3, (NOW - 3600) * 1e9):
        assert compare(ASSESSED, {**ASSESSED, "ts": ts}, NOW, 8.0) == []


def test_stale_and_disagreeing_values_are_each_named():
    got = compare(ASSESSED, {"status": "ORANGE", "source": "FALLBACK_NO_DATA", "ts": NOW - 10 * 3600}, NOW, 8.0)
    assert got == ["published value is 10.0 h old (> 8.0 h)", "published status 'ORANGE' != assessed 'GREEN'",
                   "published source 'FALLBACK_NO_DATA' != assessed 'REAL_MODEL'"]
    assert compare(ASSESSED, {**ASSESSED, "ts": "garbage"}, NOW, 8.0) == ["published value is inf h old (> 8.0 h)"]
