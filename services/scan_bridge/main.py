"""Scan bridge: carry Arrow scan files (external scanners, archives) onto ``DOLPHIN_FEATURES``.

Design notes: ``docs/design/services.scan_bridge.md``.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from prod.bus import maps
from prod.bus.payloads import PayloadError
from prod.runtime import Bus, BusUnavailable, Clock, RateLog, Service, result_within
from prod.settings import ConfigError, Settings
from prod.scans import arrow_io

log = logging.getLogger("scan_bridge")

SERVICE = "scan_bridge"
SEEN_CAP = 100_000
_BUS_ERRORS = (BusUnavailable, TimeoutError, ConnectionError)


@dataclass(frozen=True)
class BridgeConfig:
    """Settings of the bridge (``DOLPHIN_SCAN_BRIDGE_<FIELD>`` or ``--<field>``)."""

    ENV_PREFIX: ClassVar[str] = "DOLPHIN_SCAN_BRIDGE_"
    settings: Settings
    arrow_dir: Path | None = field(default=None, metadata={
        "help": "archive root to watch (default: <DOLPHIN_DATA_DIR>/arrow_scans)"})
    replay: Path | None = field(default=None, metadata={"help": "archive root to replay (…/arrow_scans)"})
    poll_s: float = 0.5
    grace_s: float = field(default=0.5, metadata={"help": "min file age before a push (watch mode)"})
    from_start: bool = field(default=False, metadata={"help": "also push files already on disk"})
    speed: float = field(default=1.0, metadata={"help": "replay speed (x real time)"})
    heartbeat_s: float = 5.0

    def __post_init__(self) -> None:
        if self.arrow_dir is not None and self.replay is not None:
            raise ConfigError("--arrow-dir and --replay exclude each other")
        if not 0.01 <= self.poll_s <= 60:
            raise ConfigError(f"--poll-s {self.poll_s}: must be in [0.01, 60]")
        if not 0.0 <= self.grace_s <= 60:
            raise ConfigError(f"--grace-s {self.grace_s}: must be in [0, 60]")
        if not 0.001 <= self.speed <= 1_000_000:
            raise ConfigError(f"--speed {self.speed}: must be in [0.001, 1e6]")
        if not self.heartbeat_s > 0:
            raise ConfigError(f"--heartbeat-s {self.heartbeat_s}: must be > 0")

    @property
    def root(self) -> Path:
        """The archive this run reads: the replay archive, the watched one, or the default."""
        return Path(self.replay or self.arrow_dir or self.settings.arrow_dir)


class Pusher:
    """Validated, deduplicated writes of scan records to ``maps.EIGEN_SCAN``."""

    def __init__(self, bus: Bus, clock: Callable[[], float], monotonic: bool = True):
        self.bus = bus
        self.monotonic = monotonic
        self.clock = clock
        self.seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.pushed = 0
        self.skipped_dup = 0
        self.failures = 0

    def _on_map(self, ident: tuple[int, int]) -> bool:
        cur = self.bus.get(maps.EIGEN_SCAN)     # a malformed value is logged by the bus and reads as None
        if cur is None:
            return False
        if self.monotonic:
            return cur.timestamp_ns >= ident[1]
        return (cur.scan_number, cur.timestamp_ns) == ident

    def push(self, rec: dict, source: str) -> bool:
        """Push one validated record unless it was pushed before; return True if written.

        Raises the bus's errors (BusUnavailable, TimeoutError) so the caller can retry, and
        :class:`PayloadError` for a record that does not make a valid scan payload.
        """
        ident = (int(rec["scan_number"]), int(rec["timestamp_ns"]))
        if ident in self.seen or self._on_map(ident):
            self.skipped_dup += 1
            self._remember(ident)
            log.debug("skip duplicate scan %s from %s", ident, source)
            return False
        payload = arrow_io.payload_from_record(rec, self.clock())
        self.bus.publish(maps.EIGEN_SCAN, payload)
        self._remember(ident)
        self.pushed += 1
        return True

    def _remember(self, ident: tuple[int, int]) -> None:
        self.seen[ident] = None
        self.seen.move_to_end(ident)
        while len(self.seen) > SEEN_CAP:
            self.seen.popitem(last=False)


class MtimeWatcher:
    """Find archive files whose mtime is newer than a watermark (ties resolved by name)."""

    def __init__(self, root: Path, from_start: bool):
        self.root = Path(root)
        self.mark = -1.0
        self.at_mark: set[str] = set()
        if not from_start:
            for p, m in self._listing(None):
                self._advance(p, m)

    def _listing(self, since: float | None) -> list[tuple[Path, float]]:
        out = []
        if not self.root.is_dir():
            return out
        for day in os.scandir(self.root):
            if not day.is_dir():
                continue
            try:
                if since is not None and day.stat().st_mtime < since - 2.0:
                    continue   # no entry added to this day folder since the watermark
                for e in os.scandir(day.path):
                    if arrow_io.FILE_RE.match(e.name):
                        try:
                            out.append((Path(e.path), e.stat().st_mtime))
                        except FileNotFoundError:
                            continue
            except FileNotFoundError:
                continue
        return out

    def _advance(self, p: Path, m: float) -> None:
        if m > self.mark:
            self.mark, self.at_mark = m, {str(p)}
        elif m == self.mark:
            self.at_mark.add(str(p))

    def new_files(self, grace_s: float, now: float) -> list[Path]:
        """Return files newer than the watermark and at least ``grace_s`` old at ``now``, oldest mtime first."""
        limit = now - grace_s
        fresh = [(m, str(p), p) for p, m in self._listing(self.mark)
                 if (m > self.mark or (m == self.mark and str(p) not in self.at_mark)) and m <= limit]
        fresh.sort()
        for m, _, p in fresh:
            self._advance(p, m)
        return [p for _, _, p in fresh]


_rl = RateLog(log, 30.0)


def push_file(pusher: Pusher, path: Path) -> bool | None:
    """Push one archive file; True pushed, False rejected or duplicate, None: bus trouble (retry)."""
    try:
        rec = arrow_io.read_scan(path)
    except arrow_io.ScanFileError as exc:
        log.error("rejected scan file: %s", exc)
        return False
    try:
        return pusher.push(rec, str(path))
    except PayloadError as exc:
        log.error("rejected scan file: %s: %s", path, exc)
        return False
    except _BUS_ERRORS as exc:
        pusher.failures += 1
        _rl.warning("push", "push of %s failed, will retry (%d failures so far): %s", path, pusher.failures, exc)
        return None


def watch(cfg: BridgeConfig, pusher: Pusher, clock: Clock, stop: threading.Event,
          heartbeat: Callable[[], None] | None = None) -> None:
    """Poll the archive until ``stop`` is set, pushing each new valid file once (bus failures retried)."""
    w = MtimeWatcher(cfg.root, cfg.from_start)
    log.info("watching %s (watermark mtime %.3f)", cfg.root, w.mark)
    retry: list[Path] = []
    last_hb = float("-inf")
    while not stop.is_set():
        todo, retry = retry + w.new_files(cfg.grace_s, clock.time()), []
        for i, p in enumerate(todo):
            if push_file(pusher, p) is None:
                retry = todo[i:]      # keep the order: nothing newer goes out before it
                break
        if heartbeat is not None and clock.monotonic() - last_hb >= cfg.heartbeat_s:
            last_hb = clock.monotonic()
            heartbeat()
        clock.wait(stop, cfg.poll_s)


def replay(cfg: BridgeConfig, pusher: Pusher, clock: Clock, stop: threading.Event) -> int:
    """Push every valid scan of the archive at ``speed`` times the original pace; return the count."""
    recs = []
    for p in arrow_io.iter_scan_files(cfg.root):
        try:
            recs.append(arrow_io.read_scan(p))
        except arrow_io.ScanFileError as exc:
            log.error("rejected scan file: %s", exc)
    recs.sort(key=lambda r: (r["timestamp_ns"], r["scan_number"]))
    log.info("replaying %d scans from %s at %.3gx", len(recs), cfg.root, cfg.speed)
    if not recs:
        return 0
    t0_scan = recs[0]["timestamp_ns"]
    t0_wall = clock.monotonic()
    n = 0
    for r in recs:
        due = t0_wall + (r["timestamp_ns"] - t0_scan) / 1e9 / cfg.speed
        if clock.wait(stop, max(0.0, due - clock.monotonic())):
            break
        try:
            if pusher.push(r, f"replay {cfg.root}"):
                n += 1
        except (PayloadError, *_BUS_ERRORS) as exc:
            pusher.failures += 1
            log.error("push of scan %s failed: %s", r["scan_number"], exc)
    log.info("replay done: %d scans pushed in %.2fs", n, clock.monotonic() - t0_wall)
    return n


def run(cfg: BridgeConfig, bus: Bus, clock: Clock, stop: threading.Event) -> int:
    """Wait for the bus, then watch or replay until ``stop`` (replay: until done); return 0."""
    pusher = Pusher(bus, clock.time, monotonic=cfg.replay is None)

    def hb(wait: bool = False) -> None:
        try:
            fut = bus.heartbeat(now=clock.time(), pushed=pusher.pushed, skipped_dup=pusher.skipped_dup,
                                push_failures=pusher.failures)
            if wait:   # the last beat of a replay must not be lost with the connection
                result_within(fut, bus.timeout_s)
        except (BusUnavailable, PayloadError, TimeoutError) as exc:
            _rl.warning("heartbeat", "heartbeat skipped: %s", exc)

    while not bus.wait_connected(1.0):
        if stop.is_set():
            return 0
    if cfg.replay is not None:
        hb()
        replay(cfg, pusher, clock, stop)
        hb(wait=True)
    else:
        watch(cfg, pusher, clock, stop, hb)
    return 0


def main(argv: list[str] | None = None) -> int:
    return Service.main(SERVICE, BridgeConfig, run, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
