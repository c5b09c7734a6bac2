"""What the live trader saw, recorded off the decision path, so ``prod.backtest.parity`` can replay it.

Design notes: ``docs/design/prod.trading.md``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import datetime as dt
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.ipc as ipc

log = logging.getLogger("event_trader.recorder")

RECORDING_VERSION = 1
RECORDING_KIND = "dolphin_trader_recording"
EVENT_KINDS = ("acb", "posture", "mc", "ob", "ob_macro", "ob_macro_invalid")
CONFIG_FILE, SCANS_FILE, EVENTS_FILE, END_FILE = "config.json", "scans.arrow", "events.jsonl", "end.json"
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"   # the Arrow IPC stream's end-of-stream marker
MAX_HELD = 200_000          # items held behind a failing write (~2 h of a 50-symbol mesh) before giving up
RETRY_MIN_S, RETRY_MAX_S = 1.0, 10.0
# the writer drains its queue at most this often: a scan's end_scan() then finds no thread waiting on the queue
# (no wake-up, no GIL hand-over in the middle of the decision thread's work), at ≈ 20 scans/s as at 1 per 5 s
WRITE_EVERY_S = 0.1
SCAN_SCHEMA = pa.schema(
    [pa.field("seq", pa.int64(), nullable=False), pa.field("scan_number", pa.int64()),
     pa.field("t_recv", pa.float64()), pa.field("clock", pa.list_(pa.float64()), nullable=False),
     pa.field("seq_end", pa.int64(), nullable=False), pa.field("scan", pa.string(), nullable=False),
     pa.field("account", pa.string(), nullable=False)],
    metadata={"kind": "dolphin_recorded_scans", "schema_version": str(RECORDING_VERSION)})


class NullRecorder:
    """The recorder of a core that records nothing (tests, replay, ``DOLPHIN_EVENT_TRADER_RECORD=0``)."""

    def event(self, kind: str, data: dict) -> None:
        pass

    def account_call(self, op: str, args: dict, fill: dict | None, exc: BaseException | None) -> None:
        pass

    def clock(self, base: Callable[[], float]) -> Callable[[], float]:
        return base

    def wrap_account(self, account: Any) -> Any:
        return account


NULL_RECORDER = NullRecorder()


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return obj


class RecordingAccount:
    """The trader's account seen through the recorder: ``open``/``close`` results (or errors) are recorded with
    the scan (with ``execution=venue`` the venue's fills are inputs the replay takes from the recording);
    everything else is the account's own."""

    def __init__(self, account: Any, rec: "Recorder"):
        object.__setattr__(self, "_acct", account)
        object.__setattr__(self, "_rec", rec)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._acct, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._acct, name, value)

    def open(self, trade_id: int, symbol: str, direction: int, notional: float, *a: Any, **kw: Any) -> dict:
        args = {"trade_id": trade_id, "symbol": symbol, "direction": direction, "notional": notional}
        try:
            fill = self._acct.open(trade_id, symbol, direction, notional, *a, **kw)
        except Exception as exc:
            self._rec.account_call("open", args, None, exc)
            raise
        self._rec.account_call("open", args, fill, None)
        return fill

    def close(self, reason: str, *a: Any, **kw: Any) -> dict:
        args = {"reason": reason}
        try:
            fill = self._acct.close(reason, *a, **kw)
        except Exception as exc:
            self._rec.account_call("close", args, None, exc)
            raise
        self._rec.account_call("close", args, fill, None)
        return fill


class Recorder:
    """Records scans (with the clock values the core used) and input events into one run directory."""

    def __init__(self, run_dir: Path, clock: Callable[[], float], max_held: int = MAX_HELD):
        self.dir = Path(run_dir)
        self.max_held = max_held
        self.dir.mkdir(parents=True, exist_ok=False)
        self._clock = clock
        self._lock = threading.Lock()
        self._seq = 0
        self._q: queue.Queue = queue.Queue()
        self._scan_thread: int | None = None
        self._clocks: list[float] | None = None
        self._calls: list[dict] = []
        self._cur: tuple | None = None
        self.failed: str | None = None
        self.started_utc = ""
        self.scans = self.events = 0
        self.write_errors = 0           # failed writes retried (full disk): the items wait in the queue
        self.held_max = 0               # the most items that waited behind a failing write
        self._files = {"scan": _AppendFile(self.dir / SCANS_FILE), "event": _AppendFile(self.dir / EVENTS_FILE)}
        self._files["scan"].write(SCAN_SCHEMA.serialize().to_pybytes())
        self._thread = threading.Thread(target=self._write_loop, name="trader-recorder", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, parent: Path, clock: Callable[[], float], max_held: int = MAX_HELD) -> "Recorder":
        """Create ``parent/<UTC start>_<pid>/`` and start the writer thread (``config.json`` comes with
        :meth:`write_config`, once the core it records has restored)."""
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        rec = cls(Path(parent) / f"{stamp}_{os.getpid()}", clock, max_held)
        rec.started_utc = stamp
        return rec

    def write_config(self, config: dict) -> None:
        """Write ``config.json`` (what the replay starts from); raises OSError / ValueError / TypeError."""
        body = {"kind": RECORDING_KIND, "version": RECORDING_VERSION, "started_utc": self.started_utc, **config}
        (self.dir / CONFIG_FILE).write_text(json.dumps(body, default=_jsonable, allow_nan=False))
        log.info("recording the trader's inputs into %s", self.dir)

    @classmethod
    def start(cls, parent: Path, clock: Callable[[], float], config: dict, max_held: int = MAX_HELD) -> "Recorder":
        """:meth:`open` and :meth:`write_config` in one (a recording whose config is known up front)."""
        rec = cls.open(parent, clock, max_held)
        rec.write_config(config)
        return rec

    def wrap_account(self, account: Any) -> "RecordingAccount":
        """The core's account seen through this recorder (its open/close calls recorded with the scan)."""
        return RecordingAccount(account, self)

    def _next(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    # ── the decision thread ──────────────────────────────────────────────────────────────────
    def clock(self, base: Callable[[], float]) -> Callable[[], float]:
        """Wrap the core's clock: values returned on the decision thread during a scan are recorded."""
        def timed() -> float:
            t = base()
            if self._clocks is not None and threading.get_ident() == self._scan_thread:
                self._clocks.append(t)
            return t
        return timed

    def begin_scan(self, scan: Any, t_recv: float | None) -> None:
        self._scan_thread = threading.get_ident()
        self._cur = (self._next(), scan, t_recv)
        self._clocks = []
        self._calls = []

    def end_scan(self) -> None:
        if self._cur is None:
            return
        seq, scan, t_recv = self._cur
        clocks, self._clocks, self._cur = self._clocks or [], None, None
        calls, self._calls = self._calls, []
        self._q.put(("scan", (seq, scan, t_recv, clocks, self._next(), calls)))

    def account_call(self, op: str, args: dict, fill: dict | None, exc: BaseException | None) -> None:
        """One open/close of the account during the current scan: its arguments and the fill (or the error)."""
        self._calls.append({"op": op, "args": args, "fill": None if fill is None else dict(fill),
                            "error": None if exc is None else type(exc).__name__,
                            "detail": None if exc is None else str(exc)})

    # ── listener threads ─────────────────────────────────────────────────────────────────────
    def event(self, kind: str, data: dict) -> None:
        self._q.put(("event", (self._next(), self._clock(), kind, data)))

    # ── the writer thread ────────────────────────────────────────────────────────────────────
    def _write_loop(self) -> None:
        delay = RETRY_MIN_S
        while True:
            if self._q.empty():
                time.sleep(WRITE_EVERY_S)     # batch: what arrives meanwhile is written in one go
            item = self._q.get()
            if item is None:
                return
            while not self.failed:
                try:
                    self._write(*item)
                    delay = RETRY_MIN_S
                    break
                except OSError as exc:      # a full disk: hold everything, retry the same item until it fits
                    self.write_errors += 1
                    held = self._q.qsize() + 1
                    self.held_max = max(self.held_max, held)
                    if held > self.max_held:
                        self.stop_recording(f"{type(exc).__name__}: {exc}; {held} items held, more than "
                                             f"{self.max_held}")
                        break
                    if self.write_errors == 1 or self.write_errors % 100 == 0:
                        log.error("recording %s: write failed (%s: %s); %d item(s) held, retrying every %.0f s",
                                  self.dir, type(exc).__name__, exc, held, delay)
                    time.sleep(delay)
                    delay = min(RETRY_MAX_S, delay * 2)
                except Exception as exc:  # noqa: BLE001 - anything else stops the recording, never the trader
                    self.stop_recording(f"{type(exc).__name__}: {exc}")

    def stop_recording(self, why: str) -> None:
        self.failed = why
        log.error("recording %s stopped: %s (the trader goes on; this run replays up to here)", self.dir, why)

    def _write(self, what: str, item: tuple) -> None:
        if what == "scan":
            seq, scan, t_recv, clocks, seq_end, calls = item
            # NaN/inf as Python writes and reads them: the replay must see what the core saw, bad values included
            body = json.dumps(_jsonable(scan), separators=(",", ":"))
            acct = json.dumps(calls, separators=(",", ":"))
            sn = getattr(scan, "scan_number", None)
            if sn is None and isinstance(scan, dict):
                sn = scan.get("scan_number")
            batch = pa.record_batch([pa.array([seq]), pa.array([sn if isinstance(sn, int) else None], pa.int64()),
                                     pa.array([t_recv], pa.float64()), pa.array([clocks], pa.list_(pa.float64())),
                                     pa.array([seq_end]), pa.array([body]), pa.array([acct])], schema=SCAN_SCHEMA)
            self._files["scan"].write(batch.serialize())   # = what an IPC stream writer writes
            self.scans += 1
        else:
            seq, t, kind, data = item
            self._files["event"].write((json.dumps({"v": RECORDING_VERSION, "seq": seq, "t": t, "kind": kind,
                                                    "data": _jsonable(data)},
                                                   separators=(",", ":")) + "\n").encode("utf-8"))
            self.events += 1

    def close(self, end: dict | None = None, drain_s: float = 10.0) -> None:
        """Drain the queue (up to ``drain_s``), close the files and write ``end.json`` if all was written."""
        self._q.put(None)
        self._thread.join(drain_s)
        if self._thread.is_alive():
            self.stop_recording(f"{self._q.qsize()} item(s) still unwritten after {drain_s:g} s at close")
            self._thread.join(RETRY_MAX_S + 1)
        try:
            if not self.failed:
                self._files["scan"].write(EOS)
            for f in self._files.values():
                f.close()
            if end is not None and not self.failed:
                (self.dir / END_FILE).write_text(json.dumps(
                    {"version": RECORDING_VERSION, "scans": self.scans, "events": self.events, **end},
                    allow_nan=False))
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.error("recording %s not closed cleanly: %s", self.dir, exc)


class _AppendFile:
    """An append-only file whose every write is whole or not at all: a write cut short (``ENOSPC``, ``EFBIG``)
    is truncated back off before the error is raised, so a retry appends at a clean message boundary."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.size = 0

    def write(self, data: Any) -> None:
        """Append ``data`` (bytes or any buffer, e.g. a pyarrow Buffer) whole, or raise with nothing appended."""
        view, done = memoryview(data).cast("B"), 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError:
            if done:
                os.ftruncate(self.fd, self.size)
                os.lseek(self.fd, self.size, os.SEEK_SET)
            raise
        self.size += done

    def close(self) -> None:
        os.close(self.fd)


# ── the reader (the replay's input) ─────────────────────────────────────────────────────────────
class RecordingError(ValueError):
    """A recording file is missing, corrupt or truncated; the message names the file."""


@dataclass
class Recording:
    dir: Path
    config: dict
    scans: list[dict]
    events: list[dict]
    end: dict | None
    torn_bytes: int = 0     # bytes of a write a kill cut short, dropped (runs without end.json only)
    live_not_recorded: int = 0   # live trade rows on scans the recording does not hold (partial runs)

    @property
    def partial(self) -> bool:
        """No ``end.json``: the run was killed or its recording stopped; it replays up to its last scan."""
        return self.end is None


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{path}: unreadable JSON ({exc})") from None


def load_recording(run_dir: Path) -> Recording:
    """Read and validate a recording; raise :class:`RecordingError` naming the file at the first fault."""
    run_dir = Path(run_dir)
    cfg = _json_file(run_dir / CONFIG_FILE)
    if not isinstance(cfg, dict) or cfg.get("kind") != RECORDING_KIND or cfg.get("version") != RECORDING_VERSION:
        raise RecordingError(f"{run_dir / CONFIG_FILE}: not a version-{RECORDING_VERSION} trader recording")
    for k in ("params", "symbols", "limits", "initial_snapshot", "journal_start_id"):
        if k not in cfg:
            raise RecordingError(f"{run_dir / CONFIG_FILE}: missing {k!r}")
    end_path = run_dir / END_FILE
    end = _json_file(end_path) if end_path.exists() else None
    # no end.json: the run was killed (or its recording stopped on a write error); what it wrote up to then is
    # replayable, and a write the kill cut short (the last Arrow message, the last JSON line) is its torn tail
    scans, torn = read_scans(run_dir / SCANS_FILE, torn_tail_ok=end is None)
    events, torn_ev = read_events(run_dir / EVENTS_FILE, torn_tail_ok=end is None)
    if end is not None and isinstance(end.get("scans"), int) and end["scans"] != len(scans):
        raise RecordingError(f"{run_dir / SCANS_FILE}: {len(scans)} scans, {end_path} says {end['scans']} "
                             "(truncated)")
    if end is not None and isinstance(end.get("events"), int) and end["events"] != len(events):
        raise RecordingError(f"{run_dir / EVENTS_FILE}: {len(events)} events, {end_path} says {end['events']} "
                             "(truncated)")
    if end is None:
        # inputs after the last recorded scan never reached a recorded decision: left out of the replay
        last = max((s["seq_end"] for s in scans), default=0)
        events = [e for e in events if e["seq"] < last]
    return Recording(run_dir, cfg, scans, events, end, torn_bytes=torn + torn_ev)


# a short read at the end of the file (what a kill -9 in the middle of a write leaves), as pyarrow words it
_SHORT_READ = ("bytes available", "but only read", "for message body, got")
_MAX_META = 1 << 20     # a recorded-scan batch's metadata is < 1 kB; a larger declared length is garbage


def _torn_tail(path: Path, good_end: int, exc: BaseException) -> int:
    """Bytes after the last complete message if the stream ends in one cut-short message, else 0."""
    size = path.stat().st_size
    if not any(m in str(exc) for m in _SHORT_READ) or size <= good_end:
        return 0
    with open(path, "rb") as fh:
        fh.seek(good_end)
        head = fh.read(8)
    if len(head) == 8 and head[:4] == b"\xff\xff\xff\xff" and int.from_bytes(head[4:], "little") > _MAX_META:
        return 0
    return size - good_end


def read_scans(path: Path, torn_tail_ok: bool = False) -> tuple[list[dict], int]:
    """The recorded scans and the size of a torn tail (0: none); a torn tail is accepted only if ``torn_tail_ok``."""
    out: list[dict] = []
    good_end = 0
    try:
        with pa.OSFile(str(path), "rb") as src:
            if torn_tail_ok and src.size() == 0:
                return out, 0       # killed before the first scan was written
            try:
                reader = ipc.open_stream(src)
                if not reader.schema.equals(SCAN_SCHEMA, check_metadata=False):
                    raise RecordingError(f"{path}: schema {reader.schema} is not the recorded-scan schema")
                good_end = src.tell()
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    for row in batch.to_pylist():
                        try:
                            row["scan"] = json.loads(row["scan"])
                        except ValueError as exc:
                            raise RecordingError(f"{path}: scan {len(out) + 1} (seq {row['seq']}) is not JSON "
                                                 f"({exc})") from None
                        out.append(row)
                    good_end = src.tell()
            except (OSError, pa.ArrowException) as exc:
                torn = _torn_tail(path, good_end, exc) if torn_tail_ok else 0
                if not torn:
                    raise RecordingError(f"{path}: corrupt or truncated Arrow IPC stream after {len(out)} scans "
                                         f"({exc})") from None
                return out, torn
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing") from None
    except OSError as exc:
        raise RecordingError(f"{path}: unreadable ({exc})") from None
    return out, 0


def read_events(path: Path, torn_tail_ok: bool = False) -> tuple[list[dict], int]:
    """The recorded input events and the size of a torn last line (accepted only if ``torn_tail_ok``)."""
    out: list[dict] = []
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                if torn_tail_ok:
                    return out, len(line.encode("utf-8"))
                raise RecordingError(f"{path}:{n}: partial last line (truncated)")
            try:
                ev = json.loads(line)
            except ValueError as exc:
                raise RecordingError(f"{path}:{n}: not JSON ({exc})") from None
            if (not isinstance(ev, dict) or ev.get("v") != RECORDING_VERSION or not isinstance(ev.get("seq"), int)
                    or ev.get("kind") not in EVENT_KINDS or not isinstance(ev.get("data"), dict)):
                raise RecordingError(f"{path}:{n}: not a version-{RECORDING_VERSION} event line")
            out.append(ev)
    return out, 0
