"""Durable trade journal (SQLite, WAL) with a hash-chained audit log anchored in the journal.

Design notes: ``docs/design/prod.trading.md``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    scan_number INTEGER, audit_seq INTEGER NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1), ts REAL NOT NULL, last_scan_number INTEGER,
    engine_state TEXT, paper_state TEXT);
"""


class JournalIntegrityError(RuntimeError):
    """The audit chain or its anchor does not check out: trading must not start."""


def line_hash(seq: int, ts: str, prev: str, event: str, payload: str) -> str:
    return hashlib.sha256(f"{seq}|{ts}|{prev}|{event}|{payload}".encode()).hexdigest()


@dataclass(frozen=True)
class AuditLine:
    seq: int
    ts: str
    prev: str
    event: str
    payload: str
    hash: str

    def render(self) -> str:
        return f"{self.seq}|{self.ts}|{self.prev}|{self.event}|{self.payload}|{self.hash}\n"


def parse_audit(path: Path) -> list[AuditLine]:
    """Read and verify every line of the audit log; raise JournalIntegrityError at the first fault."""
    out: list[AuditLine] = []
    if not path.exists():
        return out
    prev = GENESIS
    with open(path, "r", encoding="utf-8") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.endswith("\n"):
                raise JournalIntegrityError(f"{path}:{n}: partial last line (torn write or truncation)")
            parts = raw[:-1].split("|")
            if len(parts) < 6:
                raise JournalIntegrityError(f"{path}:{n}: malformed audit line")
            seq_s, ts, p, event, h = parts[0], parts[1], parts[2], parts[3], parts[-1]
            payload = "|".join(parts[4:-1])
            try:
                seq = int(seq_s)
            except ValueError:
                raise JournalIntegrityError(f"{path}:{n}: bad sequence number {seq_s!r}") from None
            if seq != len(out) + 1:
                raise JournalIntegrityError(f"{path}:{n}: sequence {seq} where {len(out) + 1} expected (lines removed?)")
            if p != prev:
                raise JournalIntegrityError(f"{path}:{n}: prev_hash does not link to line {seq - 1} (tampered)")
            if line_hash(seq, ts, p, event, payload) != h:
                raise JournalIntegrityError(f"{path}:{n}: hash mismatch (line edited)")
            out.append(AuditLine(seq, ts, p, event, payload, h))
            prev = h
    return out


class Journal:
    """Trade journal + audit log of one trader; every write is one crash-safe step."""

    def __init__(self, db_path: str | os.PathLike, audit_path: str | os.PathLike):
        self.db_path, self.audit_path = Path(db_path), Path(audit_path)
        self._lock = threading.Lock()
        self.db: sqlite3.Connection | None = None
        self.seq = 0
        self.tail = GENESIS
        self.broken: str | None = None

    @classmethod
    def open(cls, db_path: str | os.PathLike, audit_path: str | os.PathLike) -> "Journal":
        """Open (creating on first use) and verify chain + anchor; raise JournalIntegrityError if bad."""
        j = cls(db_path, audit_path)
        j._open()
        return j

    def _open(self) -> None:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        fresh_db = not self.db_path.exists()
        self.db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        anchor_hash = self._meta("anchor_hash")
        anchor_seq = int(self._meta("anchor_seq") or 0)
        lines = parse_audit(self.audit_path)
        if anchor_hash is None:
            if lines:
                raise JournalIntegrityError(
                    f"{self.audit_path} has {len(lines)} lines but journal {self.db_path} has no anchor "
                    f"({'journal was deleted' if fresh_db else 'journal reset'})")
            self.seq, self.tail = 0, GENESIS
            self.append("JOURNAL_CREATED", {"db": str(self.db_path)})
            return
        if len(lines) < anchor_seq:
            raise JournalIntegrityError(
                f"{self.audit_path}: audit log truncated: {len(lines)} lines, journal anchor is line {anchor_seq}")
        if lines[anchor_seq - 1].hash != anchor_hash:
            raise JournalIntegrityError(f"{self.audit_path}: line {anchor_seq} does not match the journal anchor")
        extra = len(lines) - anchor_seq
        if extra > 1:
            raise JournalIntegrityError(
                f"{self.audit_path}: {extra} audit lines beyond the journal anchor (journal rolled back?)")
        self.seq, self.tail = len(lines), lines[-1].hash
        if extra == 1:
            self.append("UNCOMMITTED_TAIL", {"seq": lines[-1].seq, "event": lines[-1].event})

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def append(self, kind: str, payload: dict, scan_number: int | None = None,
               snapshot: tuple[int | None, dict | None, dict | None] | None = None) -> int:
        """Write one event: audit line (fsync), then journal row + anchor (+ snapshot) in one txn."""
        with self._lock:
            body = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).replace("\n", " ")
            seq = self.seq + 1
            ts = f"{time.time():.6f}"
            h = line_hash(seq, ts, self.tail, kind, body)
            line = AuditLine(seq, ts, self.tail, kind, body, h)
            if self.broken:
                raise JournalIntegrityError(f"journal unusable until restart: {self.broken}")
            size0 = self.audit_path.stat().st_size if self.audit_path.exists() else 0
            try:
                with open(self.audit_path, "a", encoding="utf-8") as fh:
                    fh.write(line.render())
                    fh.flush()
                    os.fsync(fh.fileno())
                cur = self.db
                cur.execute("BEGIN IMMEDIATE")
                try:
                    cur.execute("INSERT INTO events(ts, kind, scan_number, audit_seq, payload) VALUES (?,?,?,?,?)",
                                (float(ts), kind, scan_number, seq, body))
                    if snapshot is not None:
                        self._write_snapshot(*snapshot)
                    cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('anchor_hash', ?)", (h,))
                    cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('anchor_seq', ?)", (str(seq),))
                    cur.execute("COMMIT")
                except BaseException:
                    if cur.in_transaction:   # a failed COMMIT (disk I/O error) has already rolled back
                        cur.execute("ROLLBACK")
                    raise
            except BaseException:
                self._undo_audit(size0)
                raise
            self.seq, self.tail = seq, h
            return seq

    def _undo_audit(self, size0: int) -> None:
        """A write that did not commit (full disk, I/O error) leaves no audit bytes behind.

        Without this a torn line (a partial write) or a line the journal never committed stays in the
        log, and the next append reuses its sequence number: the chain breaks and the trader refuses
        to start. Shrinking needs no space; if even that fails, every later append is refused.
        """
        try:
            if self.audit_path.exists() and self.audit_path.stat().st_size > size0:
                os.truncate(self.audit_path, size0)
                fd = os.open(self.audit_path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            self.broken = f"could not undo an uncommitted audit write: {exc}"

    def _write_snapshot(self, last_scan: int | None, engine_state: dict | None, trader_state: dict | None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO snapshot(id, ts, last_scan_number, engine_state, paper_state) VALUES (1,?,?,?,?)",
            (time.time(), last_scan, None if engine_state is None else json.dumps(engine_state, allow_nan=False),
             None if trader_state is None else json.dumps(trader_state, allow_nan=False)))

    def save_snapshot(self, last_scan: int | None, engine_state: dict | None, trader_state: dict | None) -> bool:
        """Persist the state between trade events (no audit line: nothing was decided).

        A snapshot older (by scan number) than the stored one is skipped, so a periodic snapshot that
        was queued before a trade can never overwrite the trade's snapshot; returns whether it wrote.
        """
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute("SELECT last_scan_number FROM snapshot WHERE id=1").fetchone()
                if row is not None and row[0] is not None and last_scan is not None and row[0] > last_scan:
                    self.db.execute("ROLLBACK")
                    return False
                self._write_snapshot(last_scan, engine_state, trader_state)
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:   # a failed COMMIT has already rolled back
                    self.db.execute("ROLLBACK")
                raise
            return True

    def load_snapshot(self) -> tuple[int | None, dict | None, dict | None]:
        """Return (last_scan_number, engine_state, trader_state) of the last snapshot, or Nones (the SQL column
        keeps its old name ``paper_state`` so existing journals open)."""
        row = self.db.execute("SELECT last_scan_number, engine_state, paper_state FROM snapshot WHERE id=1").fetchone()
        if row is None:
            return None, None, None
        return row[0], (json.loads(row[1]) if row[1] else None), (json.loads(row[2]) if row[2] else None)

    def events(self, kind: str | None = None, after_id: int = 0) -> list[dict[str, Any]]:
        """The journal's event rows (``kind`` only, when given) with id above ``after_id``, oldest first."""
        return _event_rows(self.db, kind, after_id)

    def last_event_id(self) -> int:
        """The id of the newest event row (0 when empty): a recording's bounds in the journal."""
        with self._lock:
            row = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ order events (venue execution)
    ORDER_PREFIX = "ORDER_"

    def append_order_event(self, event: str, order: dict) -> int:
        """Record one order event (``ORDER_<event>``: SUBMIT, NEW, FILL, FILLED, REJECTED, ...) in the chain."""
        return self.append(order_kind(event), order)

    def order_states(self) -> dict[str, dict]:
        """Return the last journaled state of every order, keyed by client order id (oldest first)."""
        rows = self.db.execute("SELECT payload FROM events WHERE kind LIKE 'ORDER\\_%' ESCAPE '\\' ORDER BY id"
                               ).fetchall()
        out: dict[str, dict] = {}
        for (body,) in rows:
            d = json.loads(body)
            cid = d.get("client_id") if isinstance(d, dict) else None
            if isinstance(cid, str):
                out.pop(cid, None)
                out[cid] = d
        return out

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


_EVENT_COLS = "SELECT id, ts, kind, scan_number, audit_seq, payload FROM events WHERE id > ?"


def _event_rows(db: sqlite3.Connection, kind: str | None, after_id: int) -> list[dict[str, Any]]:
    q, args = _EVENT_COLS, [int(after_id)]
    if kind:
        q, args = q + " AND kind=?", args + [kind]
    return [{"id": r[0], "ts": r[1], "kind": r[2], "scan_number": r[3], "audit_seq": r[4],
             "payload": json.loads(r[5])} for r in db.execute(q + " ORDER BY id", args).fetchall()]


def read_events(db_path: str | os.PathLike, kind: str | None = None, after_id: int = 0) -> list[dict[str, Any]]:
    """Read a journal's event rows read-only (another process may be writing it): the one read API for
    readers outside the trader (the parity check). Rows as :meth:`Journal.events`."""
    db = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True)
    try:
        return _event_rows(db, kind, after_id)
    finally:
        db.close()


def order_kind(event: str) -> str:
    """The journal kind of an order event (``ORDER_<event>``); ValueError on a bad name."""
    if not event or not event.replace("_", "").isalnum():
        raise ValueError(f"bad order event name {event!r}")
    return Journal.ORDER_PREFIX + event


class HeldAppends:
    """Journal appends that a failed write (full disk, I/O error) holds in memory, in order, and retries.

    For the journal's writers beside the core's decision path — the execution runtime's order events, the
    venue account's reconcile and kill-switch reports — which used to lose an event when the disk was full
    (the order the venue acknowledged stayed out of the journal that restart reconcile reads). Every append
    first writes what is held; :meth:`flush` retries (the kill watcher calls it every poll, reconcile before it
    reads the journal's orders, stop at the end). Held events are in memory only: a kill -9 while the disk is
    full loses them, and restart reconcile then works from the venue's side. More than ``max_held`` held
    events drop the oldest, logged (a disk full for days must not exhaust memory).
    """

    def __init__(self, journal: "Journal", max_held: int = 100_000):
        self.journal, self.max_held = journal, max_held
        self.held: deque = deque()
        self.failures = self.dropped = 0
        self._lock = threading.Lock()

    def append(self, kind: str, payload: dict, scan_number: int | None = None) -> bool:
        """Append (after anything held); False when the write failed and the event is held."""
        with self._lock:
            self.held.append((kind, payload, scan_number))
            while len(self.held) > self.max_held:
                k, _, _ = self.held.popleft()
                self.dropped += 1
                _log.error("journal: %d held events, more than %d: dropped the oldest (%s)", len(self.held) + 1,
                           self.max_held, k)
            return self._flush()

    def order_event(self, event: str, order: dict) -> None:
        """The execution runtime's ``on_order`` hook: ``ORDER_<event>``, held if the write fails."""
        self.append(order_kind(event), dict(order))

    def flush(self) -> bool:
        """Write what is held, in order; True when nothing is left."""
        with self._lock:
            return self._flush()

    def _flush(self) -> bool:
        while self.held:
            kind, payload, sn = self.held[0]
            try:
                self.journal.append(kind, payload, sn)
            except (OSError, sqlite3.Error) as exc:
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    _log.error("journal write failed (%s: %s): %d event(s) held (%s first), retried", type(exc).__name__,
                               exc, len(self.held), kind)
                return False
            self.held.popleft()
        return True


_log = logging.getLogger("event_trader.journal")
