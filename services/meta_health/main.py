"""Meta Health Service v3 (MHS): score the mesh's health and revive stopped critical data services.

Design notes: ``docs/design/services.meta_health.md``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

from prod import metrics
from prod.bus import maps
from prod.bus.payloads import AcbBoost, ObfUniverse, Payload, PayloadError
from prod.runtime import Bus, BusUnavailable, Clock, RateLog, Service, SystemClock, atomic_write_json, result_within
from prod.settings import REPO_ROOT, Settings
from prod.timeparse import parse_timestamp
from services.meta_health import holds
from services.meta_health.supervisor_rpc import SupervisorRPC, SupervisorUnreachable

log = logging.getLogger("meta_health")

SERVICE_NAME = "meta_health"

# ── constants (bible §26.3.1) ────────────────────────────────────────────────────────────────
CHECK_INTERVAL_S = 10.0
DATA_STALE_S = 30.0
DATA_DEAD_S = 120.0
RECOVERY_COOLDOWN_CRITICAL_S = 10.0
RECOVERY_COOLDOWN_DEFAULT_S = 300.0

SENSOR_WEIGHTS: dict[str, float] = {
    "m4_control_plane": 0.35,
    "m1_data_infra": 0.35,
    "m3_data_freshness": 0.20,
    "m5_coherence": 0.10,
}
HZ_PORT_WEIGHT = 0.8
PREFECT_PORT_WEIGHT = 0.2
MIN_OBF_ASSETS = 200
ACB_BOOST_RANGE = (1.0, 2.0)
ACB_BETA_RANGE = (0.0, 1.0)

STATUS_GREEN, STATUS_DEGRADED, STATUS_CRITICAL, STATUS_DEAD = "GREEN", "DEGRADED", "CRITICAL", "DEAD"
STATUSES = (STATUS_GREEN, STATUS_DEGRADED, STATUS_CRITICAL, STATUS_DEAD)

CRITICAL_DATA_PROGRAMS: tuple[str, ...] = (
    "dolphin_data:exf_fetcher",
    "dolphin_data:acb_processor",
    "dolphin_data:obf_universe",
    "dolphin_data:scanner",
    "dolphin_data:safety_watchdog",
)
TRADER_PROGRAM = "dolphin:event_trader"
INFORMATIONAL_PROGRAMS: tuple[str, ...] = (TRADER_PROGRAM, "dolphin:scan_bridge")
RESTARTABLE_STATES = frozenset({"STOPPED", "FATAL"})
SUPERVISOR_STATES = frozenset({"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED",
                               "FATAL", "UNKNOWN"})

# topics whose age feeds M3 (aged from each topic's ts_field); those in PRESENCE_ONLY score on presence
FRESHNESS_TOPICS: tuple[maps.Topic, ...] = (maps.EXF, maps.ACB_BOOST, maps.EIGEN_SCAN, maps.OBF_UNIVERSE)
PRESENCE_ONLY: frozenset[str] = frozenset({maps.KEY_ACB_BOOST})


# ── sensor scoring (pure) ────────────────────────────────────────────────────────────────────
def _clamp01(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(v):
        return 0.0
    return min(1.0, max(0.0, v))


def score_m1_data(states: Mapping[str, str], critical: Sequence[str] = CRITICAL_DATA_PROGRAMS) -> float:
    """Return the fraction of ``critical`` programs whose state is RUNNING (0.0 if none listed)."""
    if not critical:
        return 0.0
    return sum(1 for p in critical if states.get(p) == "RUNNING") / len(critical)


def score_m1_trader(states: Mapping[str, str]) -> float:
    return 1.0 if states.get(TRADER_PROGRAM) == "RUNNING" else 0.0


def freshness_score(age_s: float | None) -> float:
    """Score one data age: ≤ DATA_STALE_S → 1.0, ≤ DATA_DEAD_S → 0.5, older/unknown → 0.0.

    Negative ages (future timestamps) within ``DATA_STALE_S`` count as fresh clock skew; further in
    the future scores 0.5 (suspect clock).
    """
    if age_s is None or not math.isfinite(age_s):
        return 0.0
    if age_s < -DATA_STALE_S:
        return 0.5
    if age_s <= DATA_STALE_S:
        return 1.0
    if age_s <= DATA_DEAD_S:
        return 0.5
    return 0.0


def score_source(topic: maps.Topic, payload: Payload | None, now: float,
                 presence_only: bool = False) -> tuple[float, float | None]:
    """Return (score, age_s) of one monitored topic's payload (None payload = absent).

    The age is measured from the topic's writer timestamp (``topic.written_at``; s, ms or ns).
    """
    if payload is None:
        return 0.0, None
    if presence_only:
        return 1.0, None
    ts = parse_timestamp(topic.written_at(payload))
    if ts is None:
        return 0.0, None
    age = now - ts
    return freshness_score(age), age


def score_m3(scores: Iterable[float]) -> float:
    vals = [_clamp01(s) for s in scores]
    return sum(vals) / len(vals) if vals else 0.0


PREFECT_POOL = "dolphin"


def prefect_workers_online(host: str, port: int, pool: str = PREFECT_POOL, timeout: float = 2.0) -> int | None:
    """Return how many workers of ``pool`` the Prefect API reports ONLINE; None when it does not answer.

    ``POST /api/work_pools/<pool>/workers/filter`` (a worker heartbeats every 30 s); a pool that does
    not exist yet (deployments not registered) counts as 0. Plain HTTP: MHS does not import prefect.
    """
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://{host}:{port}/api/work_pools/{pool}/workers/filter", data=b"{}",
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            workers = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return 0 if exc.code == 404 else None
    except (OSError, ValueError):
        return None
    if not isinstance(workers, list):
        return None
    return sum(1 for w in workers if isinstance(w, dict) and w.get("status") == "ONLINE")


def score_m4(hz_up: bool, prefect_up: bool) -> float:
    return HZ_PORT_WEIGHT * bool(hz_up) + PREFECT_PORT_WEIGHT * bool(prefect_up)


def score_acb(acb: AcbBoost | None) -> float:
    """1.0 when boost is in [1, 2] and beta in [0, 1]; 0.5 when absent; 0.0 otherwise."""
    if acb is None:
        return 0.5
    try:
        boost, beta = float(acb.boost), float(acb.beta)
    except (TypeError, ValueError):
        return 0.0
    if not (math.isfinite(boost) and math.isfinite(beta)):
        return 0.0
    ok = ACB_BOOST_RANGE[0] <= boost <= ACB_BOOST_RANGE[1] and ACB_BETA_RANGE[0] <= beta <= ACB_BETA_RANGE[1]
    return 1.0 if ok else 0.0


def score_obf(obf: ObfUniverse | None, min_assets: int = MIN_OBF_ASSETS) -> float:
    """1.0 when the universe covers ≥ ``min_assets``, 0.5 when fewer, 0.0 when absent or empty."""
    if obf is None:
        return 0.0
    n = obf.n_assets
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n):
        n = len(obf.assets) if isinstance(obf.assets, dict) else 0
    if n <= 0:
        return 0.0
    return 1.0 if n >= min_assets else 0.5


def score_m5(acb: AcbBoost | None, obf: ObfUniverse | None, min_obf_assets: int = MIN_OBF_ASSETS) -> float:
    return (score_acb(acb) + score_obf(obf, min_obf_assets)) / 2.0


def compute_rm_meta(sensors: Mapping[str, Any], weights: Mapping[str, float] = SENSOR_WEIGHTS) -> float:
    """Return the weighted sum of the rm sensors divided by the sum of weights (each clamped to [0,1])."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return _clamp01(sum(w * _clamp01(sensors.get(k, 0.0)) for k, w in weights.items()) / total)


def status_for(rm: float) -> str:
    """Map rm_meta to GREEN (> 0.85), DEGRADED (> 0.60), CRITICAL (> 0.30) or DEAD."""
    rm = _clamp01(rm)
    if rm > 0.85:
        return STATUS_GREEN
    if rm > 0.60:
        return STATUS_DEGRADED
    if rm > 0.30:
        return STATUS_CRITICAL
    return STATUS_DEAD


def programs_to_restart(states: Mapping[str, str], critical: Sequence[str] = CRITICAL_DATA_PROGRAMS,
                        held: Iterable[str] = ()) -> list[str]:
    """Return the critical programs in STOPPED or FATAL that are not ``held``; informational ones never."""
    skip = set(held) | set(INFORMATIONAL_PROGRAMS)
    return [p for p in critical if states.get(p) in RESTARTABLE_STATES and p not in skip]


# ── recovery ─────────────────────────────────────────────────────────────────────────────────
Restarter = Callable[[str], "tuple[bool, str]"]


class Recovery:
    """Restart programs through supervisord (XML-RPC) under per-program cooldowns."""

    def __init__(self, conf: str | os.PathLike, restarter: Restarter | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 cooldown_critical_s: float = RECOVERY_COOLDOWN_CRITICAL_S,
                 cooldown_default_s: float = RECOVERY_COOLDOWN_DEFAULT_S, wall_clock: Callable[[], float] = time.time):
        self.conf = str(conf)
        self.wall_clock = wall_clock
        self.restarter = restarter or SupervisorRPC(self.conf, timeout_s=60.0).restart
        self.clock = clock
        self.cooldown_critical_s = cooldown_critical_s
        self.cooldown_default_s = cooldown_default_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._outcomes: dict[str, dict] = {}     # program -> last restart's {ok, detail, at} (alerts read it)
        self.fired: list[tuple[str, float]] = []
        self.threads: list[threading.Thread] = []

    def cooldown_for(self, program: str) -> float:
        return self.cooldown_critical_s if program in CRITICAL_DATA_PROGRAMS else self.cooldown_default_s

    def restart(self, program: str) -> bool:
        """Trigger one restart of ``program`` unless it is informational or cooling down.

        The cooldown timestamp is committed before the worker thread starts; returns True if a
        restart was spawned.
        """
        if program in INFORMATIONAL_PROGRAMS or program not in CRITICAL_DATA_PROGRAMS:
            log.warning("recovery refused for %s: not a critical data service (never auto-restarted)", program)
            return False
        with self._lock:
            now = self.clock()
            last = self._last.get(program)
            if last is not None and now - last < self.cooldown_for(program):
                return False
            self._last[program] = now
            self.fired.append((program, now))
        t = threading.Thread(target=self._run, args=(program,), name=f"mhs-restart-{program}", daemon=True)
        self.threads.append(t)
        t.start()
        return True

    def _run(self, program: str) -> None:
        log.warning("RECOVERY: restarting %s through supervisord (%s)", program, self.conf)
        try:
            ok, text = self.restarter(program)
            (log.info if ok else log.error)("RECOVERY %s %s", program, text)
        except Exception as exc:  # noqa: BLE001 - a hung/failed restart must not kill MHS
            ok, text = False, f"restart FAILED: {exc!r}"[:300]
            log.error("RECOVERY %s failed: %r", program, exc)
        with self._lock:
            self._outcomes[program] = {"ok": ok, "detail": text, "at": self.wall_clock()}

    def outcomes(self) -> dict[str, dict]:
        """Return the last restart outcome of each program ``{program: {ok, detail, at}}`` (report field)."""
        with self._lock:
            return {p: dict(o) for p, o in self._outcomes.items()}

    def last_restarts(self) -> dict[str, float]:
        with self._lock:
            return dict(self._last)


# ── probes (I/O) ─────────────────────────────────────────────────────────────────────────────
def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def psutil_states(programs: Sequence[str]) -> dict[str, str]:
    """Fallback: a program is RUNNING if a process runs ``-m services.<name>`` / ``scanner...<name>``."""
    import psutil
    cmdlines: list[str] = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmdlines.append(" ".join(p.info["cmdline"] or []))
        except (psutil.Error, TypeError):
            continue
    out: dict[str, str] = {}
    for prog in programs:
        name = prog.split(":")[-1]
        pat = re.compile(rf"-m\s+\S*\b{re.escape(name)}\b")
        out[prog] = "RUNNING" if any(pat.search(c) for c in cmdlines) else "STOPPED"
    return out


# ── service ──────────────────────────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class MHSConfig:
    ENV_PREFIX: ClassVar[str] = "DOLPHIN_META_HEALTH_"
    settings: Settings
    supervisor_conf: str = field(default=str(REPO_ROOT / "supervisor" / "dolphin-supervisord.conf"),
                                 metadata={"help": "supervisord config passed to supervisorctl -c"})
    check_interval_s: float = field(default=CHECK_INTERVAL_S,
                                    metadata={"flags": ("--check-interval",), "help": "seconds between cycles"})
    prefect_host: str = "127.0.0.1"
    prefect_port: int = field(default=4200, metadata={"help": "Prefect API port probed by M4 (0 = not probed)"})
    min_obf_assets: int = MIN_OBF_ASSETS
    hz_timeout_s: float = field(default=2.0, metadata={"help": "wait for one bus read or write"})
    once: bool = field(default=False, metadata={"help": "run one cycle and exit"})

    def __post_init__(self) -> None:
        if not 0.05 <= self.check_interval_s <= 15.0:
            raise ValueError(f"--check-interval {self.check_interval_s}: must be in [0.05, 15] s (§26.3.4)")
        if self.hz_timeout_s <= 0:
            raise ValueError(f"--hz-timeout-s {self.hz_timeout_s}: must be > 0")
        object.__setattr__(self, "supervisor_conf", os.path.abspath(self.supervisor_conf))

    @property
    def report_path(self) -> Path:
        return Path(self.settings.run_logs) / "meta_health.json"

    @property
    def holds_path(self) -> Path:
        return holds.holds_path(self.settings.run_logs)


class MetaHealthService:
    """One MHS instance: sensors → report → outputs → recovery, once per :meth:`check`.

    ``bus`` may be disconnected (or never started): reads then give nothing and writes are skipped
    and counted, so the report on disk is written whatever the cluster does.
    """

    def __init__(self, cfg: MHSConfig, bus: Bus, recovery: Recovery | None = None, clock: Clock | None = None):
        self.cfg = cfg
        self.bus = bus
        self.clock = clock or SystemClock()
        self.supervisor = SupervisorRPC(cfg.supervisor_conf)
        self.recovery = recovery or Recovery(cfg.supervisor_conf)
        self.rl = RateLog(log, 30.0)
        self.member_events: list[dict] = []      # cluster membership changes seen by the client (last 20)
        bus.on_connect(self._watch_members)
        self.cycles = 0
        self.skipped_writes = 0
        self._holds: dict[str, dict] = {}        # active holds of the last cycle (for the once-per-hold lines)
        hz = cfg.settings.hz_members[0]
        host, _, port = hz.rpartition(":")
        self.hz_host, self.hz_port = host, int(port)

    def _read(self, topic: maps.Topic) -> tuple[Payload | None, bool]:
        """Return (payload, valid) of ``topic``; (None, True) when absent or unreadable.

        Reads the raw value and decodes it through the topic (rather than ``bus.get``, which drops a
        malformed value as absent) because the report tells "absent" from "present but invalid".
        """
        try:
            raw = result_within(self.bus.map(topic.map).get(topic.key), self.cfg.hz_timeout_s)
        except Exception as exc:  # noqa: BLE001 - disconnected / timeout: nothing read this cycle
            log.debug("read %s failed: %r", topic.source(), exc)
            return None, True
        if raw is None:
            return None, True
        try:
            return topic.decode(raw), True
        except PayloadError as exc:
            self.rl.warning(f"bad:{topic.source()}", "MHS: %s", exc)
            return None, False

    def _watch_members(self, bus: Bus) -> None:
        """on_connect hook: record the cluster's membership changes seen by this client."""
        bus.client.cluster_service.add_listener(member_added=lambda m: self._member_event("added", m),
                                                member_removed=lambda m: self._member_event("removed", m))

    def _member_event(self, kind: str, member: Any) -> None:
        ev = {"event": kind, "member": f"{member.address.host}:{member.address.port}", "uuid": str(member.uuid),
              "ts": self.clock.time()}
        (log.warning if kind == "removed" else log.info)("Hazelcast member %s: %s", kind, ev["member"])
        self.member_events = (self.member_events + [ev])[-20:]

    def _cluster_members(self) -> list[str]:
        try:
            client = self.bus.client
        except BusUnavailable:
            return []
        return sorted(f"{m.address.host}:{m.address.port}" for m in client.cluster_service.get_members())

    def _heartbeats(self, now: float) -> tuple[float, dict[str, float]]:
        try:
            entries = result_within(self.bus.map(maps.HEARTBEAT).entry_set(), self.cfg.hz_timeout_s)
        except Exception:  # noqa: BLE001 - disconnected / timeout: no heartbeats this cycle
            return 0.0, {}
        ages: dict[str, float] = {}
        for k, v in entries:
            try:
                ts = maps.HEARTBEATS.written_at(maps.HEARTBEATS.decode(v, k))
            except PayloadError:
                continue
            if ts is not None:
                ages[k] = round(now - ts, 3)
        if not ages:
            return 0.0, ages
        return sum(1 for a in ages.values() if a <= DATA_STALE_S) / len(ages), ages

    def _read_holds(self, now: float) -> dict[str, dict]:
        """Return the active maintenance holds; log a new hold, a release and an expiry once each."""
        try:
            allh = holds.read_holds(self.cfg.holds_path)
        except holds.HoldError as exc:
            self.rl.error("holds", "MHS: %s; ignoring it, every stopped program is revived", exc)
            allh = {}
        active = holds.active_holds(allh, now)
        for prog, h in active.items():
            if self._holds.get(prog) != h:
                log.warning("MAINTENANCE %s", holds.describe(prog, h, now) + ": MHS will not restart it")
        for prog in self._holds.keys() - active.keys():
            log.warning("MAINTENANCE %s: hold %s; MHS revives it again", prog,
                        "expired" if prog in allh else "released")
        self._holds = active
        return active

    def check(self) -> dict:
        """Run one health cycle: read sensors, write the report, trigger recovery; return the report."""
        now = self.clock.time()
        try:
            st = self.supervisor.states()
        except SupervisorUnreachable as exc:
            self.rl.warning("supervisord", "supervisord status failed: %s", exc)
            st = {}
        reachable = bool(st)
        all_programs = CRITICAL_DATA_PROGRAMS + INFORMATIONAL_PROGRAMS
        if reachable:
            states = {p: s.state for p, s in st.items()}
            source = "supervisord"
        else:
            states = psutil_states(all_programs)
            source = "psutil"
        m1_data = score_m1_data(states)
        m1_trader = score_m1_trader(states)

        # every configured member is probed (a cluster serves while any member does); the report lists each
        hz_members_up = {m: port_open(m.rpartition(":")[0], int(m.rpartition(":")[2]))
                         for m in self.cfg.settings.hz_members}
        hz_up = any(hz_members_up.values())
        prefect_up = port_open(self.cfg.prefect_host, self.cfg.prefect_port) if self.cfg.prefect_port else False
        m4 = score_m4(hz_up, prefect_up)
        # reported, not scored: the bible's M4 is the two ports; a worker that is not ONLINE is an action line
        workers = prefect_workers_online(self.cfg.prefect_host, self.cfg.prefect_port) if prefect_up else None

        data_sources: dict[str, dict] = {}
        payloads: dict[str, Payload | None] = {}
        for topic in FRESHNESS_TOPICS:
            key = str(topic.key)
            payload, valid = self._read(topic) if hz_up else (None, True)
            payloads[key] = payload
            if not valid:
                data_sources[key] = {"score": 0.0, "age_s": None, "present": True, "valid": False}
                continue
            score, age = score_source(topic, payload, now, key in PRESENCE_ONLY)
            data_sources[key] = {"score": score, "age_s": None if age is None else round(age, 3),
                                 "present": payload is not None}
        m3 = score_m3(d["score"] for d in data_sources.values())
        acb, obf = payloads.get(maps.KEY_ACB_BOOST), payloads.get(maps.KEY_OBF_UNIVERSE)
        m5 = score_m5(acb if isinstance(acb, AcbBoost) else None, obf if isinstance(obf, ObfUniverse) else None,
                      self.cfg.min_obf_assets)
        m2, hb_ages = self._heartbeats(now) if hz_up else (0.0, {})

        sensors = {"m4_control_plane": m4, "m1_data_infra": m1_data, "m3_data_freshness": m3,
                   "m5_coherence": m5, "m1_trader": m1_trader, "m2_heartbeat": m2}
        rm = compute_rm_meta(sensors)
        status = status_for(rm)

        actions: list[str] = []
        if prefect_up and not workers:
            actions.append(f"info: no ONLINE Prefect worker in pool {PREFECT_POOL!r}"
                           + (" (API did not answer)" if workers is None else "") + ": scheduled flows will not run")
        held = self._read_holds(now)      # reported under "holds", not in the per-cycle actions (logged once)
        for prog in programs_to_restart(states, held=held):
            if self.recovery.restart(prog):
                metrics.record_restart(prog)
                actions.append(f"restart {prog} (was {states.get(prog)})")
        if states.get(TRADER_PROGRAM) != "RUNNING":
            actions.append(f"info: {TRADER_PROGRAM} is {states.get(TRADER_PROGRAM, 'UNKNOWN')} (never auto-restarted)")

        report = {
            "rm_meta": round(rm, 6), "status": status, "timestamp": now,
            "timestamp_iso": datetime.fromtimestamp(now).astimezone().isoformat(),
            "sensors": {k: round(v, 6) for k, v in sensors.items()},
            "weights": SENSOR_WEIGHTS,
            "services": {p: states.get(p, "UNKNOWN") for p in all_programs},
            # every program supervisord runs (member, simulator, Prefect, console, ... too): for the consoles' rows
            "programs": dict(sorted(states.items())) if reachable else {},
            "status_source": source,
            "control_plane": {"hz": f"{self.hz_host}:{self.hz_port}", "hz_up": hz_up, "hz_members_up": hz_members_up,
                              "hz_cluster_members": self._cluster_members(), "hz_member_events": self.member_events,
                              "prefect": f"{self.cfg.prefect_host}:{self.cfg.prefect_port}", "prefect_up": prefect_up,
                              "prefect_workers_online": workers},
            "data_sources": data_sources,
            "heartbeat_ages_s": hb_ages,
            "actions": actions,
            "holds": held,
            "recovery_last_monotonic": self.recovery.last_restarts(),
            "restart_outcomes": self.recovery.outcomes(),
            "cycle": self.cycles,
            "pid": os.getpid(),
        }
        self.cycles += 1
        self._publish(report, now)
        down = [m for m, ok in hz_members_up.items() if not ok]
        log.info("rm_meta=%.3f [%s] m4=%.2f m1=%.2f m3=%.2f m5=%.2f trader=%.0f%s%s", rm, status, m4, m1_data, m3, m5,
                 m1_trader, f" | hz members down: {down}" if down else "", (" | " + "; ".join(actions)) if actions else "")
        return report

    def _publish(self, report: dict, now: float) -> None:
        metrics.record_meta_health(report)
        try:
            atomic_write_json(self.cfg.report_path, report)
        except (OSError, ValueError) as exc:
            log.error("cannot write %s: %r", self.cfg.report_path, exc)
        try:
            self.bus.publish(maps.META_HEALTH_LATEST, report, timeout=self.cfg.hz_timeout_s)
            self.bus.heartbeat(now=now)
        except PayloadError as exc:
            log.error("report not published: %s", exc)
        except Exception as exc:  # noqa: BLE001 - BusUnavailable / timeout: the file is written, the bus skipped
            self.skipped_writes += 1
            self.rl.warning("publish", "cannot publish to Hazelcast (%r); %d cycles skipped so far",
                            exc, self.skipped_writes)


def run(cfg: MHSConfig, bus: Bus, clock: Clock, stop: threading.Event) -> int:
    """Run health cycles every ``cfg.check_interval_s`` until ``stop`` is set (or once)."""
    svc = MetaHealthService(cfg, bus, clock=clock)
    while not stop.is_set():
        t0 = clock.monotonic()
        try:
            svc.check()
        except Exception:  # noqa: BLE001 - one bad cycle must not kill the watchdog
            log.exception("health cycle failed")
        if cfg.once:
            break
        clock.wait(stop, max(0.0, cfg.check_interval_s - (clock.monotonic() - t0)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the service, or one maintenance-hold command (``hold`` / ``release`` / ``holds``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in holds.HOLD_COMMANDS:
        return holds.main(args, critical=CRITICAL_DATA_PROGRAMS, informational=INFORMATIONAL_PROGRAMS)
    return Service.main(SERVICE_NAME, MHSConfig, run, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
