"""The OB-aware backtest (issue 17): ``--ob-dir`` feeds obf_universe's recorded Parquet (written here by the real
obf_universe Writer) into the engine's OB layers per asset as of each bar, instead of the neutral fallback."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from prod.backtest import synth
from prod.backtest.__main__ import main as backtest_main
from prod.backtest.data import load_ob_history
from prod.settings import PRIORITY_SYMBOLS, load_settings
from services.obf_universe.features import AssetRolling, FeatureParams, book_features, parse_depth
from services.obf_universe.main import ObfConfig, State, Writer

CONFIG = "prod/configs/blue.yml"
BARS = 4_000
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()


def _write_ob(data_dir, imbalance_sign: float, every_s: float = 600.0):
    """Snapshots of every synth symbol every ``every_s`` through the day via the real Writer.snapshot/flush_parquet."""
    cfg = ObfConfig(settings=load_settings(env={}, data_dir=str(data_dir)))
    st = State()
    w = Writer(cfg, None, st, list(PRIORITY_SYMBOLS), T0)      # no bus: its writes fail into the breaker
    rolls = {s: AssetRolling(FeatureParams()) for s in PRIORITY_SYMBOLS}
    w.rolling = rolls
    t = T0
    while t < T0 + BARS * 5:
        for s in PRIORITY_SYMBOLS:
            big, small = ("9000", "1000") if imbalance_sign > 0 else ("1000", "9000")
            book = parse_depth({"e": "depthUpdate", "E": int(t * 1000), "T": int(t * 1000), "s": s,
                                "b": [["100.0", big], ["99.9", big]], "a": [["100.1", small], ["100.2", small]]})
            f = book_features(book, FeatureParams())
            rolls[s].step(f, fresh=True)
            st.latest[s] = (f, t, int(t * 1000))
        w.snapshot(t)
        t += every_s
    w.flush_parquet()
    return data_dir / "ob_universe"


def _bt(tmp_path, name, *extra):
    out = tmp_path / f"{name}.json"
    assert backtest_main(["--config", CONFIG, "--data", str(tmp_path / "days"), "--summary", str(out),
                          "--no-png", "--no-progress", *extra]) == 0
    return json.loads(out.read_text())


def test_ob_dir_feeds_recorded_books_into_the_replay(tmp_path):
    synth.generate(tmp_path / "days", 1, 11, bars=BARS)
    bid_heavy = _write_ob(tmp_path / "bid", +1)
    ask_heavy = _write_ob(tmp_path / "ask", -1)
    assert list(bid_heavy.glob("date=2026-01-01/part-*.parquet"))

    h = load_ob_history(bid_heavy, PRIORITY_SYMBOLS)
    assert set(h.times) == set(PRIORITY_SYMBOLS)
    sym = PRIORITY_SYMBOLS[0]
    assert h.rows[sym][0]["imbalance"] == pytest.approx(0.8)        # (18 - 2) / 20 from the real feature code

    neutral = _bt(tmp_path, "neutral")
    bid = _bt(tmp_path, "bid", "--ob-dir", str(bid_heavy))
    ask = _bt(tmp_path, "ask", "--ob-dir", str(ask_heavy))
    assert neutral["ob"] is None
    assert bid["ob"]["symbols"] == len(PRIORITY_SYMBOLS) and bid["ob"]["rows_applied"] > 0
    assert bid["ob"]["bars_with_ob"] == BARS and bid["ob"]["skipped_files"] == []
    assert neutral["trades"] > 0
    # the books reach the engine: a persistent bid-heavy book contradicts every SHORT (§9.1), an ask-heavy
    # one confirms them and resizes them (a different capital from the neutral run)
    assert bid["trades"] == 0 and ask["trades"] > 0
    assert ask["final_capital"] != neutral["final_capital"]


def test_a_corrupt_ob_part_is_named_and_skipped_and_an_empty_dir_is_an_error(tmp_path, capsys):
    synth.generate(tmp_path / "days", 1, 11, bars=1_200)
    ob = _write_ob(tmp_path / "bid", +1)
    (ob / "date=2026-01-01" / "part-999.parquet").write_bytes(b"PAR1 garbage")
    s = _bt(tmp_path, "x", "--ob-dir", str(ob))
    assert len(s["ob"]["skipped_files"]) == 1 and "part-999.parquet" in s["ob"]["skipped_files"][0]["file"]
    assert s["ob"]["rows_applied"] > 0
    (tmp_path / "empty").mkdir()
    assert backtest_main(["--config", CONFIG, "--data", str(tmp_path / "days"), "--no-png", "--no-progress",
                          "--summary", str(tmp_path / "y.json"), "--ob-dir", str(tmp_path / "empty")]) == 2
    assert "no obf_universe Parquet parts" in capsys.readouterr().err
