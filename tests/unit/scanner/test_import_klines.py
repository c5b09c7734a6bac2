"""scanner.import_klines: formats, cadence detection, late listing and bad files on small generated inputs."""
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scanner import import_klines as ik

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real" / "binance_spot_btcusdt_1m"
T0 = 1_620_604_800_000  # 2021-05-10 00:00 UTC


def _csv(path: Path, t0: int, n: int, scale: int = 1, header: bool = False) -> None:
    lines = ["open_time,open,high,low,close,volume,close_time"] if header else []
    for i in range(n):
        t = (t0 + i * 60_000) * scale
        lines.append(f"{t},1,1,1,{100 + (i * 7919 % 13) * 0.1},1,{t + 59_999}")
    path.write_text("\n".join(lines) + "\n")


def test_formats_cadence_late_listing_and_bad_files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _csv(src / "AAAUSDT-1m-2021-05-10.csv", T0, 30)
    _csv(src / "BBBUSDT-1m-2021-05-10.csv", T0, 30, scale=1000, header=True)     # µs + header
    (src / "CCC_USDT-1m.json").write_text(json.dumps(
        [[T0 + i * 60_000, 1, 1, 1, 50 + i % 3, 1] for i in range(10, 30)]))    # late-listed
    (src / "DDDUSDT-1m-2021-05-10.csv").write_text(f"{T0},1,1,1,1,1\n{T0 + 60000},1")  # truncated
    (src / "EEEUSDT.json").write_text("[[1, 2, 3")                              # garbage
    (src / "FFFUSDT.json").write_text(json.dumps([[T0, "1", "1", "1", "NaN", "1"]]))  # NaN
    out = tmp_path / "out"
    lines: list[str] = []
    s = ik.run([src], out, echo=lines.append)
    assert s["cadence_s"] == 60
    assert sorted(s["symbols"]) == ["AAAUSDT", "BBBUSDT", "CCCUSDT"]
    assert s["late_listed"] == ["CCCUSDT"]
    bad = {Path(x["file"]).name for x in s["skipped"]}
    assert bad == {"DDDUSDT-1m-2021-05-10.csv", "EEEUSDT.json", "FFFUSDT.json"}
    assert all(Path(x["file"]).name in x["error"] for x in s["skipped"])
    assert any(line.startswith("cadence: 60 s") for line in lines)
    t = pq.read_table(out / "vbt_cache_klines" / "2021-05-10.parquet")
    assert t.num_rows == 30
    assert t.column("CCCUSDT").to_pylist()[:10] == [None] * 10
    assert t.column("BBBUSDT").to_pylist() == t.column("AAAUSDT").to_pylist()


def test_cli_exit_codes(tmp_path):
    assert ik.main([str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    (tmp_path / "XUSDT.json").write_text("garbage")
    assert ik.main([str(tmp_path / "XUSDT.json"), "--out", str(tmp_path / "o")]) == 1


@pytest.mark.skipif(not REAL.is_dir(), reason="shared/data/real absent (user clone)")
def test_real_archive_ms_and_us(tmp_path):
    files = sorted(REAL.glob("BTCUSDT-1m-*.csv"))
    pick = [files[0], files[-1]]           # 2021 (ms) and 2025 (µs)
    s = ik.run(pick, tmp_path, echo=lambda _: None)
    assert s["cadence_s"] == 60 and not s["skipped"]
    assert {d["date"] for d in s["days"]} >= {p.name[11:21] for p in pick}
