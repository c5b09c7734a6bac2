"""Unit tests of exf_fetcher's body parsers and per-indicator status (no I/O)."""
from __future__ import annotations

import pytest

from prod.bus import maps
from prod.runtime import ConfigError, build_config
from prod.settings import load_settings
from prod.venue import DvolCandle, FearGreed, PremiumIndex, TakerRatio
from services.exf_fetcher.main import (ExfConfig, FetchError, build_indicators, build_payload, pick_dvol, pick_fng,
                                  pick_funding, pick_taker)


def test_pickers_take_the_newest_value_of_each_source():
    assert pick_funding([PremiumIndex("ETHUSDT", 1, 1, 0.3, 0, 0),
                         PremiumIndex("BTCUSDT", 1, 1, -0.00012, 0, 1700000000000)]) == (-0.00012, 1700000000.0)
    assert pick_dvol([DvolCandle(2000, 50, 62, 49, 61.25), DvolCandle(1000, 50, 51, 49, 50.5)]) == (61.25, 2.0)
    assert pick_fng([FearGreed(23, "Extreme Fear", 1700000000)]) == (23.0, 1700000000.0)
    assert pick_taker([TakerRatio(0.75, 1, 1, 1000), TakerRatio(0.9, 1, 1, 2000)]) == (0.9, 2.0)


@pytest.mark.parametrize("fn,items", [
    (pick_funding, [PremiumIndex("ETHUSDT", 1, 1, 0.0, 0, 0)]),          # no BTC row
    (pick_funding, [PremiumIndex("BTCUSDT", 1, 1, float("nan"), 0, 0)]),
    (pick_funding, [PremiumIndex("BTCUSDT", 1, 1, 0.5, 0, 0)]),           # 50 % per 8 h: insane
    (pick_dvol, []), (pick_dvol, [DvolCandle(1, 1, 1, 1, -3.0)]),
    (pick_fng, []), (pick_fng, [FearGreed(250, "?", 1)]),
    (pick_taker, []), (pick_taker, [TakerRatio(float("inf"), 1, 1, 1)]),
])
def test_insane_or_missing_values_are_fetch_errors(fn, items):
    with pytest.raises(FetchError):
        fn(items)


def test_status_ok_degraded_stale_missing_and_nulls_in_payload():
    cfg = ExfConfig(settings=load_settings(env={}))
    inds = {i.name: i for i in build_indicators(cfg)}
    now = 10_000.0
    inds["funding_btc"].value, inds["funding_btc"].fetched_at = -0.0002, now - 1
    inds["dvol_btc"].value, inds["dvol_btc"].fetched_at, inds["dvol_btc"].failures = 70.0, now - 1, 2
    inds["taker"].value, inds["taker"].fetched_at = 0.8, now - 3 * cfg.taker_interval_s - 1
    p = build_payload(list(inds.values()), now, cfg.stale_factor)
    st = {k: v["status"] for k, v in p["indicators"].items()}
    assert st == {"funding_btc": "OK", "dvol_btc": "DEGRADED", "fng": "MISSING", "taker": "STALE"}
    assert (p["funding_btc"], p["dvol_btc"], p["fng"], p["taker"]) == (-0.0002, 70.0, None, None)
    assert p["indicators"]["taker"]["value"] == 0.8 and p["n_ok"] == 2
    typed = maps.EXF.decode(maps.EXF.encode(p))
    assert typed.value("funding_btc") == -0.0002 and typed.value("fng") is None and typed.n_ok == 2
    assert maps.EXF.written_at(typed) == now and typed.indicators["dvol_btc"]["status"] == "DEGRADED"


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        ExfConfig(settings=load_settings(env={}), push_s=0)


def test_config_fields_are_flags_and_dolphin_exf_variables_and_warmup_keeps_its_flag():
    cfg, _ = build_config(ExfConfig, "exf_fetcher", ["--warmup", "15", "--retries", "4"],
                          env={"DOLPHIN_EXF_PUSH_S": "2.5", "DOLPHIN_EXF_RETRIES": "1",
                               "DOLPHIN_EXF_FNG_URL": "http://fng.example"})
    assert (cfg.warmup_s, cfg.retries, cfg.push_s, cfg.fng_url) == (15.0, 4, 2.5, "http://fng.example")
    assert build_config(ExfConfig, "exf_fetcher", [], env={"DOLPHIN_EXF_WARMUP_S": "3"})[0].warmup_s == 3.0
    with pytest.raises(ConfigError, match="DOLPHIN_EXF_PUSH_S='often'"):
        build_config(ExfConfig, "exf_fetcher", [], env={"DOLPHIN_EXF_PUSH_S": "often"})
    with pytest.raises(ConfigError, match="push_s must be > 0"):
        build_config(ExfConfig, "exf_fetcher", ["--push-s", "0"], env={})
