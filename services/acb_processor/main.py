"""acb_processor: ACB v6 boost and beta from ExF, scans and OB macro → ``acb_boost`` (bible §10, §15.5, §16.4).

Start: ``python -m services.acb_processor`` (flags override ``DOLPHIN_*`` settings).

The computation is :func:`prod.alpha.acb.compute_acb` — the very code the engine's backtest uses —
fed with live inputs:

* **Scale 1, live daily aggregation rule.** The backtest takes, per date, the per-factor median of
  the first 10 scans of the date (:func:`prod.alpha.acb.daily_factors`). Live, the processor keeps
  the last ``--exf-window`` (10) distinct ``exf_latest`` snapshots (distinct ``_pushed_at``; stale or
  missing indicators are ``null`` and ignored) and applies the same ``daily_factors`` median to them.
  At the start of a UTC day (and after a restart, when the window is seeded from today's rows of the
  exf Parquet history ``<data>/exf/date=YYYY-MM-DD``) this *is* the first-10 rule; later in the day
  the window rolls, so a macro shift mid-day reaches the engine as a sub-day ACB update (§10.5).
* **Scale 3.** ``w750_velocity`` of every ``latest_eigen_scan`` (deduplicated on ``scan_number``,
  nulls skipped) goes into a history of up to ``--scan-history`` (17 280 = one day of 5-s scans);
  the threshold is :func:`w750_threshold` (60th percentile) of that history once it holds
  ``--min-scans`` (50) values (before that: no threshold → BETA_LOW, the conservative choice), and the
  current velocity is :func:`daily_w750` (median) of the last 10 scans.
* **OB sub-4.** ``obf_universe_latest._stats.regime_signal`` → :func:`ob_stress_from_regime`.

Recomputed whenever exf_latest, latest_eigen_scan or obf_universe_latest change (entry listeners).
A result equal (boost, beta, signals) to this instance's last write is dropped at once; otherwise the
processor takes the CP FencedLock ``prod.bus.maps.ACB_LOCK``, reads ``acb_boost`` again, skips the
write if it already holds the same result (another instance wrote it), else writes ``acb_boost``
(``{boost, beta, signals, inputs, factor_weights, computed_at, fence}``) and ``acb_state_latest``,
then unlocks. Every acquisition logs ``ACB lock acquired fence=<token>`` and its release, with
times, so two instances can be shown never to interleave.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prod.alpha import acb
from prod.bus import maps
from prod.bus.client import decoding_listener, make_client, write_heartbeat
from prod.settings import Settings
from services.datasvc import add_common_flags, settings_from_args

SERVICE = "acb_processor"
log = logging.getLogger(SERVICE)


@dataclass(frozen=True)
class AcbConfig:
    """Effective configuration of acb_processor (frozen)."""

    settings: Settings
    exf_window: int = 10
    scan_history: int = 17_280
    min_scans: int = 50
    w750_recent: int = 10
    lock_timeout_s: float = 30.0
    hold_s: float = 0.0          # extra time the lock is held per write (tests make overlaps visible)
    heartbeat_s: float = 5.0

    def __post_init__(self) -> None:
        if self.exf_window < 1 or self.scan_history < 1 or self.min_scans < 1 or self.w750_recent < 1:
            raise ValueError("acb_processor config: windows must be >= 1")
        if self.lock_timeout_s <= 0 or self.hold_s < 0 or self.heartbeat_s <= 0:
            raise ValueError("acb_processor config: lock_timeout_s > 0, hold_s >= 0, heartbeat_s > 0")

    def as_log_dict(self) -> dict:
        return {**self.settings.as_log_dict(), **{k: v for k, v in asdict(self).items() if k != "settings"}}


FACTOR_KEYS = acb.FACTOR_NAMES


class AcbInputs:
    """Live input state of the processor (owned by its main thread)."""

    def __init__(self, cfg: AcbConfig):
        self.cfg = cfg
        self.exf: deque[dict] = deque(maxlen=cfg.exf_window)
        self.last_exf_at: float | None = None
        self.w750: deque[float] = deque(maxlen=cfg.scan_history)
        self.last_scan: int | None = None
        self.regime_signal: float | None = None

    def add_exf(self, payload: dict) -> bool:
        at = payload.get("_pushed_at")
        if at == self.last_exf_at:
            return False
        self.last_exf_at = at
        self.exf.append({k: payload.get(k) for k in FACTOR_KEYS})
        return True

    def add_scan(self, payload: dict) -> bool:
        n = payload.get("scan_number")
        if n == self.last_scan:
            return False
        self.last_scan = n
        v = payload.get("w750_velocity")
        if v is None:
            return False
        self.w750.append(float(v))
        return True

    def add_obf(self, payload: dict) -> bool:
        stats = payload.get("_stats") if isinstance(payload.get("_stats"), dict) else {}
        r = stats.get("regime_signal", payload.get("regime_signal"))
        if r == self.regime_signal:
            return False
        self.regime_signal = r
        return True

    def seed_exf_history(self, exf_dir: Path, now: float) -> int:
        """Load today's rows of the exf Parquet history (newest ``exf_window``) into the window."""
        d = exf_dir / f"date={time.strftime('%Y-%m-%d', time.gmtime(now))}"
        if not d.is_dir():
            return 0
        import pyarrow.parquet as pq
        rows: list[dict] = []
        for p in sorted(d.glob("part-*.parquet")):
            try:
                rows.extend(pq.read_table(p).to_pylist())
            except Exception as exc:  # noqa: BLE001 - a truncated file is skipped, named
                log.warning("exf history %s unreadable, skipped: %r", p, exc)
        rows.sort(key=lambda r: r.get("ts") or 0)
        for r in rows[-self.cfg.exf_window:]:
            self.exf.append({k: r.get(k) for k in FACTOR_KEYS})
        return len(rows[-self.cfg.exf_window:])

    def compute(self) -> tuple[acb.AcbResult, dict]:
        """Return the ACB result of the current inputs and the inputs as recorded in the payload."""
        cfg = self.cfg
        factors = acb.daily_factors(list(self.exf)) if self.exf else acb.ExternalFactors()
        hist = list(self.w750)
        thr = acb.w750_threshold(hist) if len(hist) >= cfg.min_scans else None
        w_now = acb.daily_w750(hist[-cfg.w750_recent:]) if hist else None
        stress = acb.ob_stress_from_regime(self.regime_signal)
        res = acb.compute_acb(factors, w_now, thr, stress)
        inputs = {"factors": factors.to_dict(), "w750_vel": w_now, "w750_threshold": thr, "ob_stress": stress,
                  "regime_signal": self.regime_signal, "n_exf": len(self.exf), "n_scans": len(hist),
                  "rule": f"median of last {cfg.exf_window} exf snapshots; w750 p60 over {len(hist)} scans"}
        return res, inputs


def _same(a: dict | None, res: acb.AcbResult) -> bool:
    return (a is not None and a.get("boost") == res.boost and a.get("beta") == res.beta
            and a.get("signals") == res.signals)


class Processor:
    """Listens, recomputes, writes under the CP lock."""

    def __init__(self, cfg: AcbConfig, client):
        self.cfg = cfg
        self.client = client
        self.inputs = AcbInputs(cfg)
        self.events: queue.Queue = queue.Queue()
        self.last_written: dict | None = None
        self.writes = 0
        self.skips = 0
        self.lock = client.cp_subsystem.get_lock(maps.ACB_LOCK).blocking()
        self.fmap = client.get_map(maps.FEATURES)

    def listen(self) -> None:
        cb = decoding_listener(maps.FEATURES, lambda k, p: self.events.put((k, p)))
        for key in (maps.KEY_EXF, maps.KEY_EIGEN_SCAN, maps.KEY_OBF_UNIVERSE):
            self.fmap.add_entry_listener(key=key, include_value=True, added_func=cb, updated_func=cb)

    def load_current(self) -> None:
        b = self.fmap.blocking()
        for key in (maps.KEY_EXF, maps.KEY_EIGEN_SCAN, maps.KEY_OBF_UNIVERSE):
            raw = b.get(key)
            if raw is None:
                continue
            try:
                self.apply(key, maps.decode(maps.FEATURES, key, raw))
            except maps.PayloadError as exc:
                log.error("dropped bad payload at start: %s", exc)

    def apply(self, key: str, payload: dict) -> bool:
        if key == maps.KEY_EXF:
            return self.inputs.add_exf(payload)
        if key == maps.KEY_EIGEN_SCAN:
            return self.inputs.add_scan(payload)
        if key == maps.KEY_OBF_UNIVERSE:
            return self.inputs.add_obf(payload)
        return False

    def recompute_and_write(self) -> bool:
        """Compute; write acb_boost + acb_state_latest under the FencedLock if changed. True if written."""
        res, inputs = self.inputs.compute()
        if _same(self.last_written, res):
            self.skips += 1
            log.info("ACB unchanged (boost=%.6f beta=%.4f): write skipped, skips=%d", res.boost, res.beta, self.skips)
            return False
        fence = self.lock.try_lock(self.cfg.lock_timeout_s)
        if not fence:
            log.warning("ACB lock %s not acquired within %.1fs; will retry on the next change",
                        maps.ACB_LOCK, self.cfg.lock_timeout_s)
            return False
        t_acq = time.time()
        log.info("ACB lock acquired fence=%d t=%.6f pid=%d", fence, t_acq, os.getpid())
        wrote = False
        try:
            raw = self.fmap.blocking().get(maps.KEY_ACB_BOOST)
            cur = None
            if raw is not None:
                try:
                    cur = maps.decode(maps.FEATURES, maps.KEY_ACB_BOOST, raw)
                except maps.PayloadError as exc:
                    log.error("current acb_boost is malformed, overwriting: %s", exc)
            if _same(cur, res):
                self.skips += 1
                self.last_written = cur
            else:
                now = time.time()
                boost = {"boost": res.boost, "beta": res.beta, "signals": res.signals, "inputs": inputs,
                         "factor_weights": res.factor_weights, "computed_at": now, "fence": fence,
                         "writer_pid": os.getpid()}
                state = {"boost": res.boost, "beta": res.beta, "signals": res.signals, "computed_at": now,
                         "fence": fence, "inputs": inputs}
                b = self.fmap.blocking()
                b.set(maps.KEY_ACB_BOOST, maps.encode(maps.FEATURES, maps.KEY_ACB_BOOST, boost))
                b.set(maps.KEY_ACB_STATE, maps.encode(maps.FEATURES, maps.KEY_ACB_STATE, state))
                if self.cfg.hold_s:
                    time.sleep(self.cfg.hold_s)   # test knob: widen the critical section
                self.last_written = boost
                self.writes += 1
                wrote = True
                log.info("ACB write boost=%.6f beta=%.4f signals=%.2f fence=%d", res.boost, res.beta,
                         res.signals, fence)
        finally:
            t_rel = time.time()
            self.lock.unlock()
            log.info("ACB lock released fence=%d t=%.6f wrote=%s", fence, t_rel, wrote)
        return wrote

    def run(self, stop: threading.Event) -> None:
        self.listen()
        self.load_current()
        n = self.inputs.seed_exf_history(self.cfg.settings.data_dir / "exf", time.time())
        if n:
            log.info("seeded the exf window with %d row(s) of today's history", n)
        self._safe_recompute()
        last_hb = 0.0
        while not stop.is_set():
            try:
                key, payload = self.events.get(timeout=0.5)
            except queue.Empty:
                key = None
            changed = False
            if key is not None:
                changed = self.apply(key, payload)
                while True:   # coalesce a burst of events into one recompute
                    try:
                        k2, p2 = self.events.get_nowait()
                    except queue.Empty:
                        break
                    changed |= self.apply(k2, p2)
            if changed:
                self._safe_recompute()
            now = time.time()
            if now - last_hb >= self.cfg.heartbeat_s:
                last_hb = now
                try:
                    write_heartbeat(self.client, SERVICE, now=now, writes=self.writes, skips=self.skips)
                    if self.last_written is not None and self.fmap.blocking().get(maps.KEY_ACB_BOOST) is None:
                        log.warning("acb_boost vanished from the bus (member restarted?): rewriting")
                        self.last_written = None
                        self._safe_recompute()
                except Exception as exc:  # noqa: BLE001 - member away: the client reconnects by itself
                    log.warning("heartbeat failed: %r", exc)

    def _safe_recompute(self) -> None:
        try:
            self.recompute_and_write()
        except Exception as exc:  # noqa: BLE001 - member away / lock lost: retry on the next change
            log.error("ACB recompute/write failed: %r", exc)
            self.last_written = None


def run(cfg: AcbConfig) -> None:
    """Connect (waiting for a member), then process until SIGTERM/SIGINT."""
    client = make_client(cfg.settings, name=f"{SERVICE}-{os.getpid()}", cluster_connect_timeout=-1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        Processor(cfg, client).run(stop)
    finally:
        client.shutdown()
        log.info("stopped cleanly")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m services.acb_processor", description=__doc__.split("\n")[0])
    add_common_flags(ap)
    ap.add_argument("--exf-window", type=int, default=None)
    ap.add_argument("--scan-history", type=int, default=None)
    ap.add_argument("--min-scans", type=int, default=None)
    ap.add_argument("--lock-timeout-s", type=float, default=None)
    ap.add_argument("--hold-s", type=float, default=None)
    ap.add_argument("--heartbeat-s", type=float, default=None)
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    logging.basicConfig(level=a.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    over: dict[str, Any] = {k: getattr(a, k) for k in ("exf_window", "scan_history", "min_scans",
                                                       "lock_timeout_s", "hold_s", "heartbeat_s")
                            if getattr(a, k) is not None}
    cfg = AcbConfig(settings=settings_from_args(a), **over)
    log.info("%s starting (pid %d) with %s", SERVICE, os.getpid(), json.dumps(cfg.as_log_dict(), default=str))
    run(cfg)


if __name__ == "__main__":
    main()
