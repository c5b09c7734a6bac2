"""The scan archive: 34-field Arrow IPC schema (v6.0.0; reads v5.0.0), atomic writer, validating reader, numbering.

Design notes: ``docs/design/prod.scans.md``.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.ipc as ipc

SCHEMA_VERSION = "6.0.0"
PREV_SCHEMA_VERSION = "5.0.0"
WINDOWS = (50, 150, 300, 750)
_STATS = ("lambda_max", "velocity", "eigengap", "instability")
WINDOW_FIELDS = tuple(f"w{w}_{s}" for w in WINDOWS for s in _STATS)
FLOAT_FIELDS = WINDOW_FIELDS + ("vel_div", "regime_signal", "instability_composite")
WARM_FIELDS = tuple(f"w{w}_warm" for w in WINDOWS)
GAP_FIELDS = [pa.field(name, pa.bool_(), nullable=False) for name in WARM_FIELDS] + [
    pa.field("gap_s", pa.float64(), nullable=False), pa.field("carried", pa.int64(), nullable=False),
    pa.field("gap_hold", pa.bool_(), nullable=False)]

SCAN_SCHEMA_V5 = pa.schema(
    [pa.field("scan_number", pa.int64(), nullable=False),
     pa.field("timestamp_ns", pa.int64(), nullable=False),
     pa.field("timestamp_iso", pa.string(), nullable=False)]
    + [pa.field(name, pa.float64()) for name in FLOAT_FIELDS]
    + [pa.field("n_assets", pa.int64(), nullable=False),
       pa.field("assets", pa.string(), nullable=False),
       pa.field("prices", pa.string(), nullable=False),
       pa.field("loadings", pa.string(), nullable=False),
       pa.field("schema_version", pa.string(), nullable=False)],
    metadata={"schema_version": PREV_SCHEMA_VERSION},
)
assert len(SCAN_SCHEMA_V5) == 27
SCAN_SCHEMA = pa.schema(list(SCAN_SCHEMA_V5) + GAP_FIELDS, metadata={"schema_version": SCHEMA_VERSION})
assert len(SCAN_SCHEMA) == 34

FILE_RE = re.compile(r"^scan_(\d{6,})_(\d{6})\.arrow$")


class ScanFileError(ValueError):
    """An Arrow scan file is unreadable or breaks the schema; the message names the file."""


def iso_from_ns(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


def scan_path(arrow_dir: Path, scan_number: int, ts_ns: int) -> Path:
    """Return the archive path of a scan: ``arrow_dir/YYYY-MM-DD/scan_NNNNNN_HHMMSS.arrow`` (UTC)."""
    t = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.timezone.utc)
    return Path(arrow_dir) / t.strftime("%Y-%m-%d") / f"scan_{scan_number:06d}_{t.strftime('%H%M%S')}.arrow"


def _clean_float(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def write_scan(arrow_dir: Path, record: dict) -> Path:
    """Write one scan record atomically and return its path; refuses to overwrite an existing file."""
    rec = dict(record)
    rec.setdefault("schema_version", SCHEMA_VERSION)
    rec.setdefault("timestamp_iso", iso_from_ns(int(rec["timestamp_ns"])))
    for name in FLOAT_FIELDS:
        rec[name] = _clean_float(rec.get(name))
    for w, name in zip(WINDOWS, WARM_FIELDS):
        rec[name] = bool(rec.get(name, rec[f"w{w}_lambda_max"] is not None))
    gap = _clean_float(rec.get("gap_s", 0.0))
    rec["gap_s"] = gap if gap is not None and gap >= 0 else 0.0
    rec["carried"] = int(rec.get("carried", 0))
    rec["gap_hold"] = bool(rec.get("gap_hold", False))
    for name in ("assets", "prices", "loadings"):
        if not isinstance(rec[name], str):
            rec[name] = json.dumps(rec[name], allow_nan=False, separators=(",", ":"))
    table = pa.Table.from_pylist([{f.name: rec[f.name] for f in SCAN_SCHEMA}], schema=SCAN_SCHEMA)
    path = scan_path(arrow_dir, int(rec["scan_number"]), int(rec["timestamp_ns"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(f"{path}: scan file already exists")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink:
        with ipc.new_file(sink, SCAN_SCHEMA) as writer:
            writer.write_table(table)
    os.replace(tmp, path)
    return path


def read_scan(path: Path) -> dict:
    """Read and validate one scan file; return its record (JSON columns decoded).

    Raises
    ------
    ScanFileError
        If the file cannot be read, its schema or version differs, or a value is invalid.
    """
    path = Path(path)
    try:
        with pa.memory_map(str(path), "r") as src:
            table = ipc.open_file(src).read_all()
    except (OSError, pa.ArrowInvalid, pa.ArrowException) as exc:
        raise ScanFileError(f"{path}: unreadable Arrow IPC file ({exc})") from exc
    return validate_table(table, str(path))


def validate_table(table: pa.Table, source: str) -> dict:
    """Validate a one-row scan table against the v6.0.0 (or v5.0.0) schema and return the decoded record."""
    names = [f.name for f in table.schema]
    schema = SCAN_SCHEMA_V5 if len(names) == len(SCAN_SCHEMA_V5) else SCAN_SCHEMA
    expected = [f.name for f in schema]
    if names != expected:
        missing = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        raise ScanFileError(f"{source}: schema mismatch (missing {missing}, unexpected {extra}, "
                            f"{len(names)} fields instead of {len(SCAN_SCHEMA)})")
    want = SCHEMA_VERSION if schema is SCAN_SCHEMA else PREV_SCHEMA_VERSION
    for f in schema:
        got = table.schema.field(f.name).type
        if got != f.type:
            raise ScanFileError(f"{source}: field {f.name} has type {got}, expected {f.type}")
    if table.num_rows != 1:
        raise ScanFileError(f"{source}: expected exactly one row, got {table.num_rows}")
    rec = table.to_pylist()[0]
    for name in ("scan_number", "timestamp_ns", "timestamp_iso", "n_assets", "assets", "prices",
                 "loadings", "schema_version"):
        if rec[name] is None:
            raise ScanFileError(f"{source}: {name} is null")
    if rec["schema_version"] != want:
        raise ScanFileError(f"{source}: schema_version {rec['schema_version']!r} != {want!r} "
                            f"({len(names)} fields)")
    if schema is SCAN_SCHEMA_V5:      # the previous version: derive the gap fields (module doc)
        for w, name in zip(WINDOWS, WARM_FIELDS):
            rec[name] = rec[f"w{w}_lambda_max"] is not None
        rec.update(gap_s=0.0, carried=0, gap_hold=False)
    else:
        for name in (*WARM_FIELDS, "gap_s", "carried", "gap_hold"):
            if rec[name] is None:
                raise ScanFileError(f"{source}: {name} is null")
        if not (math.isfinite(rec["gap_s"]) and rec["gap_s"] >= 0) or rec["carried"] < 0:
            raise ScanFileError(f"{source}: invalid gap_s {rec['gap_s']} / carried {rec['carried']}")
    if rec["scan_number"] < 0:
        raise ScanFileError(f"{source}: negative scan_number {rec['scan_number']}")
    if not 0 < rec["timestamp_ns"] < 2**62:
        raise ScanFileError(f"{source}: implausible timestamp_ns {rec['timestamp_ns']}")
    for name in FLOAT_FIELDS:
        v = rec[name]
        if v is not None and not math.isfinite(v):
            raise ScanFileError(f"{source}: {name} is not finite ({v})")
    if rec["regime_signal"] not in (None, -1.0, 0.0, 1.0):
        raise ScanFileError(f"{source}: regime_signal {rec['regime_signal']} not in {{-1, 0, 1}}")
    try:
        assets = json.loads(rec["assets"])
        prices = json.loads(rec["prices"], parse_constant=_no_const)
        loadings = json.loads(rec["loadings"], parse_constant=_no_const)
    except ValueError as exc:
        raise ScanFileError(f"{source}: malformed JSON column ({exc})") from exc
    if not (isinstance(assets, list) and all(isinstance(a, str) for a in assets)):
        raise ScanFileError(f"{source}: assets must be a JSON list of symbols")
    if not (isinstance(prices, list) and len(prices) == len(assets)):
        raise ScanFileError(f"{source}: prices must be a list aligned with assets")
    for p in prices:
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0):
            raise ScanFileError(f"{source}: invalid price {p!r}")
    if not isinstance(loadings, dict):
        raise ScanFileError(f"{source}: loadings must be a JSON object keyed by window")
    rec["assets"], rec["prices"], rec["loadings"] = assets, [None if p is None else float(p) for p in prices], loadings
    return rec


def _no_const(token: str):
    raise ValueError(f"non-finite number {token}")


def iter_scan_files(arrow_dir: Path) -> Iterator[Path]:
    """Yield every ``scan_NNNNNN_HHMMSS.arrow`` file under ``arrow_dir`` (date folders), unsorted."""
    root = Path(arrow_dir)
    if not root.is_dir():
        return
    for day in os.scandir(root):
        if not day.is_dir():
            continue
        for e in os.scandir(day.path):
            if FILE_RE.match(e.name):
                yield Path(e.path)


def scan_number_of(path: Path) -> int | None:
    m = FILE_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def last_scan_number(arrow_dir: Path) -> int:
    """Return the highest scan number in the archive (by file name), or 0 if there is none (§27.6)."""
    best = 0
    for p in iter_scan_files(arrow_dir):
        n = scan_number_of(p)
        if n is not None and n > best:
            best = n
    return best


def latest_scans(arrow_dir: Path, limit: int) -> list[dict]:
    """Return up to ``limit`` valid records with the highest scan numbers, oldest first.

    Invalid files are skipped (the caller logs nothing here: this is used for backfill only).
    """
    files = sorted(iter_scan_files(arrow_dir), key=lambda p: (scan_number_of(p) or 0, p.name))
    out: list[dict] = []
    for p in reversed(files):
        try:
            out.append(read_scan(p))
        except ScanFileError:
            continue
        if len(out) >= limit:
            break
    out.reverse()
    return out


def payload_from_record(rec: dict, bridge_ts: float) -> dict:
    """Build the NG8 flat ``latest_eigen_scan`` payload (bible §27.5 + assets/prices/warm windows)."""
    loadings = rec["loadings"] if isinstance(rec["loadings"], dict) else json.loads(rec["loadings"])
    assets = rec["assets"] if isinstance(rec["assets"], list) else json.loads(rec["assets"])
    prices = rec["prices"] if isinstance(rec["prices"], list) else json.loads(rec["prices"])
    mwr = {}
    for w in WINDOWS:
        mwr[f"w{w}"] = {s: rec[f"w{w}_{s}"] for s in _STATS}
        mwr[f"w{w}"]["loadings"] = loadings.get(f"w{w}")
    warm = [w for w in WINDOWS if rec.get(f"w{w}_warm", rec[f"w{w}_lambda_max"] is not None)
            and rec[f"w{w}_lambda_max"] is not None]
    return {
        "scan_number": int(rec["scan_number"]),
        "timestamp_ns": int(rec["timestamp_ns"]),
        "timestamp": rec["timestamp_iso"],
        "bridge_ts": float(bridge_ts),
        "vel_div": rec["vel_div"],
        "w50_velocity": rec["w50_velocity"], "w150_velocity": rec["w150_velocity"],
        "w300_velocity": rec["w300_velocity"], "w750_velocity": rec["w750_velocity"],
        "instability_50": rec["w50_instability"], "instability_150": rec["w150_instability"],
        "regime_signal": rec["regime_signal"],
        "instability_composite": rec["instability_composite"],
        "n_assets": int(rec["n_assets"]),
        "assets": list(assets),
        "asset_prices": list(prices),
        "warm_windows": warm,
        "schema_version": rec["schema_version"],
        "eigenvalue_gradients": {f"lambda_max_velocity_w{w}": rec[f"w{w}_velocity"] for w in WINDOWS},
        "multi_window_results": mwr,
        "gap_s": float(rec.get("gap_s", 0.0)),
        "carried": int(rec.get("carried", 0)),
        "gap_hold": bool(rec.get("gap_hold", False)),
    }
