"""Durable member state in SQLite (WAL): map entries written through by group commit, service blobs.

The member takes a batch (:meth:`SnapshotStore.prepare`) on its loop and writes it (:meth:`SnapshotStore.write`)
on its snapshot thread, and writes the batch's responses to the sockets only once that commit is done, so every
acknowledged write is in a committed SQLite transaction (``synchronous=NORMAL`` in WAL mode survives a crash of
the process; a power loss may lose the last transactions). Entry events do not wait for the commit: as on a
Hazelcast member, they are not ordered with the responses, and the disk stays off the event path. Map entries
are written incrementally (only the keys touched since the last commit); other services (CP) are
stored as one pickled ``snapshot()`` blob each, rewritten only when it changed.
"""
from __future__ import annotations

import logging
import pickle
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from standins.hz_member.imap import MapService

log = logging.getLogger("hz_member.snapshot")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    map TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    ttl REAL NOT NULL, idle REAL NOT NULL, updated REAL NOT NULL, last_access REAL NOT NULL,
    PRIMARY KEY (map, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS services (name TEXT PRIMARY KEY, state BLOB NOT NULL);
"""


@dataclass(frozen=True)
class CommitBatch:
    """The rows and blobs of one group commit, taken from the member's state on its loop."""

    cleared: set[str]
    rows_del: list[tuple[str, bytes]]
    rows_up: list[tuple]
    blobs: list[tuple[str, bytes]]


class SnapshotStore:
    """SQLite file ``DIR/hz_member.sqlite3`` holding the member's durable state."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "hz_member.sqlite3"
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._last_blob: dict[str, bytes] = {}
        self.commits = 0

    def load(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return (MapService state, {service name: state}) as stored."""
        maps: dict[str, list] = {}
        for name, k, v, ttl, idle, upd, acc in self.db.execute(
                "SELECT map, key, value, ttl, idle, updated, last_access FROM entries"):
            maps.setdefault(name, []).append((bytes(k), bytes(v), ttl, idle, upd, acc))
        services: dict[str, Any] = {}
        for name, blob in self.db.execute("SELECT name, state FROM services"):
            try:
                services[name] = pickle.loads(blob)
                self._last_blob[name] = bytes(blob)
            except Exception as exc:  # noqa: BLE001 - a corrupt blob must not stop the member
                log.error("snapshot %s: cannot load state of service %s: %r (ignored)", self.path, name, exc)
        return {"maps": maps}, services

    def commit(self, map_service: MapService, services: dict[str, Any]) -> None:
        """Write the keys touched since the last commit and changed service blobs, atomically."""
        batch = self.prepare(map_service, services)
        if batch is not None:
            try:
                self.write(batch)
            except Exception:
                self.restore_dirty(map_service, batch)
                raise

    def prepare(self, map_service: MapService, services: dict[str, Any]) -> CommitBatch | None:
        """Take the rows touched since the last commit (and the changed service blobs) out of ``map_service``.

        Runs on the member's loop (the state must not change under it); :meth:`write` then needs no member
        state and may run on another thread. None when there is nothing to write.
        """
        rows_up, rows_del, cleared = [], [], map_service.cleared
        if map_service.dirty:
            maps = map_service.maps
            for name, key in map_service.dirty:
                m = maps.get(name)
                e = m.entries.get(key) if m is not None else None
                if e is None:
                    rows_del.append((name, key))
                else:
                    rows_up.append((name, key, e.value, e.ttl, e.idle, e.updated, e.last_access))
        blobs = []
        for name, svc in services.items():
            try:
                blob = pickle.dumps(svc.snapshot(), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001
                log.exception("snapshot of service %s failed (state not persisted this round)", name)
                continue
            if self._last_blob.get(name) != blob:
                blobs.append((name, blob))
        if not (rows_up or rows_del or cleared or blobs):
            return None
        map_service.dirty = set()
        map_service.cleared = set()
        return CommitBatch(cleared, rows_del, rows_up, blobs)

    def write(self, batch: CommitBatch) -> None:
        """Write one prepared batch in one transaction (any thread, one at a time)."""
        db = self.db
        db.execute("BEGIN")
        try:
            for name in batch.cleared:
                db.execute("DELETE FROM entries WHERE map = ?", (name,))
            if batch.rows_del:
                db.executemany("DELETE FROM entries WHERE map = ? AND key = ?", batch.rows_del)
            if batch.rows_up:
                db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", batch.rows_up)
            if batch.blobs:
                db.executemany("INSERT OR REPLACE INTO services VALUES (?, ?)", batch.blobs)
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            raise
        for name, blob in batch.blobs:
            self._last_blob[name] = blob
        self.commits += 1

    @staticmethod
    def restore_dirty(map_service: MapService, batch: CommitBatch) -> None:
        """After a failed :meth:`write`: mark the batch's keys dirty again, so the next commit retries them."""
        map_service.cleared |= set(batch.cleared)
        map_service.dirty |= {(n, k) for n, k in batch.rows_del}
        map_service.dirty |= {(r[0], r[1]) for r in batch.rows_up}

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass
