"""Scan bridge: carry Arrow scan files (external scanners, archives) onto ``DOLPHIN_FEATURES``.

Watch mode (``python -m services.scan_bridge --arrow-dir DIR``) polls the archive tree by file
modification time, not scan number, because a restarted scanner resets or repeats its counters
(bible §2a.2): every file whose mtime is newer than the bridge's watermark is read, validated
against the v5.0.0 schema and pushed as ``latest_eigen_scan``, oldest mtime first. At start the
watermark is the newest mtime already on disk (``--from-start`` pushes the existing files too).

Dedup: a scan is identified by ``(scan_number, timestamp_ns)``. The bridge never pushes an identity it
already pushed, and before each push it reads the map: in watch mode it does not write when the map
already holds a scan with the same or a later ``timestamp_ns`` (a scanner that writes the map itself
got there first, or the file is older than what consumers already have — ``latest`` never goes
backwards). A new file is pushed only once it is ``--grace-s`` old (default 0.5 s), which gives a
map-writing scanner the head start it needs (NG8 writes the file, then the map, within
milliseconds). So the bridge is safe beside the NG8 scanner, and a restarted scanner's lower scan
numbers still get pushed because their files are newer and their timestamps later.

Replay mode (``--replay DIR --speed X``) pushes every valid file of an archive in ``timestamp_ns``
order, spacing pushes by the original scan spacing divided by X, for paper sessions on recorded data.
Malformed files are logged (with the path and the reason) and skipped; they never stop the bridge.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from prod.bus import maps
from prod.settings import ConfigError, Settings, load_settings
from scanner import arrow_io

log = logging.getLogger("scan_bridge")

SERVICE = "scan_bridge"
SEEN_CAP = 100_000


@dataclass(frozen=True)
class BridgeConfig:
    """Effective configuration of the bridge process."""

    settings: Settings
    arrow_dir: Path
    poll_s: float = 0.5
    grace_s: float = 0.5
    from_start: bool = False
    replay: bool = False
    speed: float = 1.0
    heartbeat_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0.01 <= self.poll_s <= 60:
            raise ConfigError(f"--poll-s {self.poll_s}: must be in [0.01, 60]")
        if not 0.0 <= self.grace_s <= 60:
            raise ConfigError(f"--grace-s {self.grace_s}: must be in [0, 60]")
        if not 0.001 <= self.speed <= 1_000_000:
            raise ConfigError(f"--speed {self.speed}: must be in [0.001, 1e6]")

    def log_dict(self) -> dict:
        return {"arrow_dir": str(self.arrow_dir), "poll_s": self.poll_s, "grace_s": self.grace_s, "from_start": self.from_start,
                "replay": self.replay, "speed": self.speed, "heartbeat_s": self.heartbeat_s,
                **self.settings.as_log_dict()}


class Pusher:
    """Validated, deduplicated writes of scan records to ``DOLPHIN_FEATURES[latest_eigen_scan]``."""

    def __init__(self, fmap, clock: Callable[[], float] = time.time, monotonic: bool = True):
        self.map = fmap
        self.monotonic = monotonic
        self.clock = clock
        self.seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.pushed = 0
        self.skipped_dup = 0

    def _on_map(self, ident: tuple[int, int]) -> bool:
        raw = self.map.get(maps.KEY_EIGEN_SCAN)
        if raw is None:
            return False
        try:
            cur = maps.decode(maps.FEATURES, maps.KEY_EIGEN_SCAN, raw)
        except maps.PayloadError:
            return False
        if self.monotonic:
            return cur["timestamp_ns"] >= ident[1]
        return (cur["scan_number"], cur["timestamp_ns"]) == ident

    def push(self, rec: dict, source: str) -> bool:
        """Push one validated record unless it was pushed before; return True if written."""
        ident = (int(rec["scan_number"]), int(rec["timestamp_ns"]))
        if ident in self.seen or self._on_map(ident):
            self.skipped_dup += 1
            self._remember(ident)
            log.debug("skip duplicate scan %s from %s", ident, source)
            return False
        payload = arrow_io.payload_from_record(rec, self.clock())
        self.map.set(maps.KEY_EIGEN_SCAN, maps.encode(maps.FEATURES, maps.KEY_EIGEN_SCAN, payload))
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

    def new_files(self, grace_s: float = 0.0, now: float | None = None) -> list[Path]:
        """Return files newer than the watermark and at least ``grace_s`` old, oldest mtime first."""
        limit = (time.time() if now is None else now) - grace_s
        fresh = [(m, str(p), p) for p, m in self._listing(self.mark)
                 if (m > self.mark or (m == self.mark and str(p) not in self.at_mark)) and m <= limit]
        fresh.sort()
        for m, _, p in fresh:
            self._advance(p, m)
        return [p for _, _, p in fresh]


def watch(cfg: BridgeConfig, pusher: Pusher, stop: threading.Event,
          heartbeat: Callable[[], None] | None = None) -> None:
    """Poll the archive until ``stop`` is set, pushing each new valid file once."""
    w = MtimeWatcher(cfg.arrow_dir, cfg.from_start)
    log.info("watching %s (watermark mtime %.3f)", cfg.arrow_dir, w.mark)
    last_hb = 0.0
    while not stop.is_set():
        for p in w.new_files(cfg.grace_s):
            push_file(pusher, p)
        if heartbeat is not None and time.monotonic() - last_hb >= cfg.heartbeat_s:
            last_hb = time.monotonic()
            heartbeat()
        stop.wait(cfg.poll_s)


def push_file(pusher: Pusher, path: Path) -> bool:
    try:
        rec = arrow_io.read_scan(path)
    except arrow_io.ScanFileError as exc:
        log.error("rejected scan file: %s", exc)
        return False
    try:
        return pusher.push(rec, str(path))
    except Exception as exc:  # noqa: BLE001 - bus trouble: log, keep the bridge alive
        log.error("push of %s failed: %s", path, exc)
        return False


def replay(cfg: BridgeConfig, pusher: Pusher, stop: threading.Event) -> int:
    """Push every valid scan of the archive at ``speed`` times the original pace; return the count."""
    recs = []
    for p in arrow_io.iter_scan_files(cfg.arrow_dir):
        try:
            recs.append(arrow_io.read_scan(p))
        except arrow_io.ScanFileError as exc:
            log.error("rejected scan file: %s", exc)
    recs.sort(key=lambda r: (r["timestamp_ns"], r["scan_number"]))
    log.info("replaying %d scans from %s at %.3gx", len(recs), cfg.arrow_dir, cfg.speed)
    if not recs:
        return 0
    t0_scan = recs[0]["timestamp_ns"]
    t0_wall = time.monotonic()
    n = 0
    for r in recs:
        due = t0_wall + (r["timestamp_ns"] - t0_scan) / 1e9 / cfg.speed
        if stop.wait(max(0.0, due - time.monotonic())):
            break
        try:
            if pusher.push(r, f"replay {cfg.arrow_dir}"):
                n += 1
        except Exception as exc:  # noqa: BLE001
            log.error("push of scan %s failed: %s", r["scan_number"], exc)
    log.info("replay done: %d scans pushed in %.2fs", n, time.monotonic() - t0_wall)
    return n


def run(cfg: BridgeConfig, stop: threading.Event | None = None) -> int:
    """Connect to the bus and run watch or replay mode until ``stop``; return the pushed count."""
    from prod.bus.client import make_client, write_heartbeat

    stop = stop or threading.Event()
    client = make_client(cfg.settings, name=SERVICE)
    try:
        pusher = Pusher(client.get_map(maps.FEATURES).blocking(), monotonic=not cfg.replay)

        def hb() -> None:
            try:
                write_heartbeat(client, SERVICE, pushed=pusher.pushed, skipped_dup=pusher.skipped_dup)
            except Exception as exc:  # noqa: BLE001
                log.warning("heartbeat failed: %s", exc)

        if cfg.replay:
            hb()
            replay(cfg, pusher, stop)
            hb()
        else:
            watch(cfg, pusher, stop, hb)
        return pusher.pushed
    finally:
        client.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.scan_bridge", description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--arrow-dir", help="archive root to watch (default: <DOLPHIN_DATA_DIR>/arrow_scans)")
    g.add_argument("--replay", help="archive root to replay (…/arrow_scans)")
    ap.add_argument("--speed", type=float, default=1.0, help="replay speed (x real time)")
    ap.add_argument("--poll-s", type=float, default=0.5)
    ap.add_argument("--grace-s", type=float, default=0.5, help="min file age before a push (watch mode)")
    ap.add_argument("--from-start", action="store_true", help="also push files already on disk")
    ap.add_argument("--hz-members", default=None)
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(
            hz_members=tuple(x.strip() for x in a.hz_members.split(",")) if a.hz_members else None)
        root = a.replay or a.arrow_dir
        cfg = BridgeConfig(settings=settings, arrow_dir=Path(root) if root else settings.arrow_dir,
                           poll_s=a.poll_s,
                           grace_s=a.grace_s, from_start=a.from_start, replay=a.replay is not None, speed=a.speed)
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    log.info("scan_bridge starting, config %s", json.dumps(cfg.log_dict()))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run(cfg, stop)
    except Exception as exc:  # noqa: BLE001 - e.g. no member reachable at start: supervisord restarts us
        log.error("scan_bridge failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
