"""Chaos soak of the whole mesh: ``make soak MINUTES=N`` (= ``python -m tests.soak --minutes N``).

Starts the mesh in a rendered instance (``ops.mesh up --instance-dir``, free ports, 1 s scans, as
the e2e tests do), makes the venue simulator cycle calm/stress regimes and, at seeded random intervals,
injects faults, alternating a ``kill -9`` of the next program in a shuffled round (every supervised
program, ``hz_member`` included, pids from ``supervisorctl status``) with one of:

* ``ws_stall`` / ``ws_drop``: the simulator's own fault endpoint (``/sim/admin/fault`` ``stall`` of every
  stream, ``drop_all`` with ``abort`` and a few seconds of refused reconnects);
* ``journal_full``: the trader's journal writes fail. The soak runs as whatever user runs it (often root
  here, where chmod denies nothing) and mounting a tiny filesystem needs privileges, so the fault sets
  the trader process's ``RLIMIT_FSIZE`` (``prlimit``) to the audit log's current size: every write that
  would grow a file fails in the kernel with ``EFBIG`` (CPython ignores SIGXFSZ), which is what a full
  disk does to an append (``ENOSPC``) for this one process; after the window the limit is lifted;
* ``garbage``: bad JSON, NaN, wrong-schema values written with the real hazelcast client to every map
  (features keys, every OB shard, safety, PnL, state, heartbeats, meta-health); the ACB and MC values
  are put back after (their writers rewrite only on change);
* ``stale_scan``: a schema-valid scan 60 s old with a fresh (never used) scan number.

A sampler thread checks the invariants of :mod:`tests.soak.invariants` every few seconds (chain, no
double entry, entries only on fresh scans the scanner wrote, capital == journal replay; a finding must
persist over three samples to count, so a read between the trader's two writes is not a failure) and
samples each program's RSS (psutil, process + children). The run writes ``run_logs/soak_<ts>.json``
(seed, every fault and recovery, recovery p50/max, RSS slopes, trades, invariant results) and exits 1
when an invariant failed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path

import psutil

from prod.bus import maps
from prod.bus.client import make_client
from prod.settings import REPO_ROOT, load_settings
from tests.soak import invariants as inv

RECOVERY_LIMIT_S = 30.0
RSS_LIMIT_MB_PER_H = 200.0
MAX_SCAN_AGE_S = 10.0          # services.event_trader TraderConfig.max_scan_age_s default
LIVE_ENV = ("DOLPHIN_SCAN_INTERVAL_S=1", "DOLPHIN_SIM_LIQ_TAU_S=3600")
INJECT_BASE = 900_000_000      # scan numbers the soak injects (never reached by the live scanner)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def _wait(pred, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:  # noqa: BLE001 - the condition's source may be down during a fault
            pass
        time.sleep(interval)
    return False


class Soak:
    def __init__(self, minutes: float, seed: int, root: Path, out: Path, fault_every: tuple[float, float]):
        self.minutes, self.seed, self.root, self.out = minutes, seed, root, out
        self.rng = random.Random(seed)
        self.fault_every = fault_every
        self.hz_port, self.venue_port, self.prefect_port = _free_port(), _free_port(), _free_port()
        self.args = ["--instance-dir", str(root), "--hz-port", str(self.hz_port), "--venue-port", str(self.venue_port),
                     "--prefect-port", str(self.prefect_port), "--mhs-interval", "5", "--no-register",
                     "--env", f"DOLPHIN_WEB_PORT={_free_port()}"]   # not the default mesh's 8088
        for kv in LIVE_ENV:
            self.args += ["--env", kv]
        self.conf = root / "dolphin-supervisord.conf"
        self.trader_dir = root / "data" / "trader"
        self.arrow_dir = root / "data" / "arrow_scans"
        self.faults: list[dict] = []
        self.regimes: list[dict] = []
        self.injected: set[int] = set()
        self.next_inject = INJECT_BASE
        self.rss: dict[str, list[tuple[float, int, float]]] = {}
        self.violations: dict[str, list[str]] = {k: [] for k in (
            "no_trade_on_stale_or_invalid_input", "no_double_entry", "journal_chain_intact",
            "capital_equals_journal_replay", "recovery_within_30s", "rss_not_growing", "live_equals_replay",
            "harness")}
        self.pending: dict[str, tuple[int, list[str]]] = {}
        self.samples = 0
        self.postures: dict[str, int] = {}    # samples per DOLPHIN_SAFETY posture
        self.capital_checks = 0
        self.journal_fault_until = 0.0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self._client = None
        self.t0 = time.time()

    # ── mesh control ────────────────────────────────────────────────────────────────────────
    def driver(self, cmd: str, *extra: str, timeout: float = 200) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ops.mesh", cmd, *self.args, *extra], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict[str, tuple[str, int | None]]:
        res = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", str(self.conf), "status"],
                             capture_output=True, text=True, timeout=60)
        out = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[parts.index("pid") + 1].rstrip(",")) if "pid" in parts else None
                out[parts[0]] = (parts[1], pid)
        return out

    def client(self):
        if self._client is None:
            self._client = make_client(load_settings(env={}, hz_members=(f"127.0.0.1:{self.hz_port}",)), name="soak")
        return self._client

    def sim(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.venue_port}{path}", method="POST",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def publish_mc_green(self) -> None:
        self.client().get_map(maps.FEATURES).blocking().set(maps.KEY_MC_FOREWARNER, json.dumps(
            {"status": "GREEN", "catastrophic_prob": 0.05, "envelope_score": 0.95, "source": "SOAK_FIXTURE",
             "ts": time.time()}))

    def up(self) -> None:
        proc = subprocess.Popen([sys.executable, "-m", "ops.mesh", "up", *self.args, "--timeout", "150"],
                                cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if not _wait(lambda: _port_open(self.hz_port) or proc.poll() is not None, 60):
            raise RuntimeError("member port never opened")
        self.publish_mc_green()
        _wait(lambda: _port_open(self.venue_port) or proc.poll() is not None, 60)
        self.sim("/sim/admin/regime", {"regime": "calm", "hold_s": None})
        out, _ = proc.communicate(timeout=200)
        if proc.returncode != 0:
            raise RuntimeError(f"mesh up failed (exit {proc.returncode}):\n{out[-3000:]}")
        print(f"soak: mesh up in {self.root} (hz {self.hz_port}, venue {self.venue_port})", flush=True)

    # ── faults ──────────────────────────────────────────────────────────────────────────────
    def record(self, kind: str, **detail) -> dict:
        f = {"t": round(time.time(), 3), "t_rel_s": round(time.time() - self.t0, 1), "kind": kind, **detail}
        with self.lock:
            self.faults.append(f)
        print(f"soak: +{f['t_rel_s']:7.1f}s {kind} {json.dumps(detail)}", flush=True)
        return f

    def kill(self, program: str) -> None:
        st = self.status().get(program)
        if not st or st[0] != "RUNNING" or st[1] is None:
            self.record("kill9_skipped", program=program, state=st[0] if st else None)
            return
        pid = st[1]
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        back = _wait(lambda: (s := self.status().get(program)) is not None and s[0] == "RUNNING" and s[1] != pid,
                     RECOVERY_LIMIT_S + 30, interval=0.25)
        rec = round(time.monotonic() - t_kill, 2) if back else None
        self.record("kill9", program=program, pid=pid, recovery_s=rec)
        if program == "dolphin_core:hz_member":
            # the member keeps no map data across a kill -9: republish what the forewarner flow would
            _wait(lambda: (self.publish_mc_green() or True), 60, interval=1.0)
        if program == "dolphin_core:venue_sim":
            _wait(lambda: self.sim("/sim/admin/regime", {"regime": self.regime, "hold_s": None}) is not None, 30)

    def ws_stall(self) -> None:
        dur = round(self.rng.uniform(5, 20), 1)
        self.sim("/sim/admin/fault", {"kind": "stall", "stream": "*", "duration_s": dur})
        self.record("ws_stall", duration_s=dur)

    def ws_drop(self) -> None:
        refuse = round(self.rng.uniform(1, 8), 1)
        res = self.sim("/sim/admin/fault", {"kind": "drop_all", "mode": "abort", "refuse_s": refuse})
        self.record("ws_drop", refuse_s=refuse, dropped=res.get("result", {}).get("dropped"))

    def journal_full(self) -> None:
        st = self.status().get("dolphin:event_trader")
        if not st or st[0] != "RUNNING" or st[1] is None:
            self.record("journal_full_skipped", state=st[0] if st else None)
            return
        audit = self.trader_dir / "audit.log"
        # at the log's size every append fails whole; a little above it the next line is torn mid-write
        size = (audit.stat().st_size if audit.exists() else 0) + self.rng.choice((0, 0, 37, 300))
        dur = round(self.rng.uniform(10, 30), 1)
        self.journal_fault_until = time.monotonic() + dur + 15
        p = psutil.Process(st[1])
        soft, hard = p.rlimit(psutil.RLIMIT_FSIZE)
        p.rlimit(psutil.RLIMIT_FSIZE, (size, hard))
        t_end = time.monotonic() + dur
        while time.monotonic() < t_end and not self.stop.is_set():
            time.sleep(0.5)
        restored = True
        try:
            p.rlimit(psutil.RLIMIT_FSIZE, (soft, hard))
        except psutil.NoSuchProcess:
            restored = False   # the trader died meanwhile (its restart has no limit)
        self.record("journal_full", pid=st[1], limit_bytes=size, errno="EFBIG", duration_s=dur,
                    trader_survived=restored)

    def _inject_number(self) -> int:
        self.next_inject += 1
        self.injected.add(self.next_inject)
        return self.next_inject

    def garbage(self) -> None:
        c = self.client()
        fm = c.get_map(maps.FEATURES).blocking()
        keep = {k: fm.get(k) for k in (maps.KEY_ACB_BOOST, maps.KEY_MC_FOREWARNER)}
        sn = self._inject_number()
        day = time.strftime("%Y-%m-%d", time.gmtime())
        variants = ["{this is not json", '{"a": NaN}', "[1, 2, 3]", '"just a string"', "null",
                    json.dumps({"scan_number": "many", "vel_div": "lots"})]
        nan_scan = ('{"scan_number": %d, "timestamp_ns": %d, "vel_div": NaN, "w50_velocity": NaN, '
                    '"w750_velocity": 0.0, "assets": ["BTCUSDT"], "asset_prices": [NaN]}' % (sn, time.time_ns()))
        written = 0
        targets: list[tuple[str, str, str]] = []
        for key in (maps.KEY_EIGEN_SCAN, maps.KEY_ACB_BOOST, maps.KEY_ACB_STATE, maps.KEY_EXF, maps.KEY_OBF_UNIVERSE,
                    maps.KEY_MC_FOREWARNER):
            targets.append((maps.FEATURES, key, self.rng.choice(variants)))
        targets.append((maps.FEATURES, maps.KEY_EIGEN_SCAN, nan_scan))
        for sym in load_settings(env={}).symbols[:20]:
            targets.append((maps.shard_map(sym), sym, self.rng.choice(variants)))
        targets += [(maps.SAFETY, maps.KEY_LATEST, self.rng.choice(variants)),
                    (maps.PNL_BLUE, day, self.rng.choice(variants)),
                    (maps.STATE_BLUE, maps.KEY_LATEST, self.rng.choice(variants)),
                    (maps.META_HEALTH, maps.KEY_LATEST, self.rng.choice(variants))]
        for svc in ("event_trader", "scanner", "safety_watchdog", "acb_processor", "exf_fetcher", "obf_universe",
                    "meta_health"):
            targets.append((maps.HEARTBEAT, svc, self.rng.choice(variants)))
        for m, k, v in targets:
            c.get_map(m).blocking().set(k, v)
            written += 1
        time.sleep(1.0)   # the listeners see the garbage before the good values come back
        for k, v in keep.items():
            if v is not None:
                fm.set(k, v)
        self.record("garbage", values=written, maps=sorted({m for m, _, _ in targets}), injected_scan=sn)

    def stale_scan(self) -> None:
        sn = self._inject_number()
        scan = {"scan_number": sn, "timestamp_ns": time.time_ns() - 60 * 10**9, "timestamp": "", "bridge_ts": time.time(),
                "vel_div": -0.2, "w50_velocity": -0.2, "w150_velocity": 0.0, "w300_velocity": 0.0,
                "w750_velocity": 0.0, "instability_50": 0.0, "instability_150": 0.0,
                "assets": ["BTCUSDT", "ETHUSDT"], "asset_prices": [50000.0, 3000.0]}
        self.client().get_map(maps.FEATURES).blocking().set(maps.KEY_EIGEN_SCAN, json.dumps(scan))
        self.record("stale_scan", scan_number=sn, age_s=60)

    # ── sampling + invariants ───────────────────────────────────────────────────────────────
    def _flag(self, name: str, found: list[str], persist: int = 3) -> None:
        """Count a finding once it was seen in ``persist`` consecutive samples (reads race the writers)."""
        if not found:
            self.pending.pop(name, None)
            return
        n, _ = self.pending.get(name, (0, []))
        self.pending[name] = (n + 1, found)
        if n + 1 == persist:
            with self.lock:
                self.violations[name].extend(f"+{time.time() - self.t0:.0f}s {v}" for v in found)
            print(f"soak: INVARIANT {name} FAILED: {found}", flush=True)

    def state_capital(self) -> float | None:
        raw = self.client().get_map(maps.STATE_BLUE).blocking().get(maps.KEY_LATEST)
        try:
            return float(json.loads(raw)["capital"])
        except (TypeError, ValueError, KeyError):
            return None   # absent, or the soak's own garbage until the trader republishes

    def check_once(self) -> None:
        journal, audit = self.trader_dir / "journal.sqlite", self.trader_dir / "audit.log"
        events = inv.read_events(journal)
        self._flag("journal_chain_intact", inv.check_chain(journal, audit))
        self._flag("no_double_entry", inv.check_no_double_entry(events), persist=1)
        self._flag("no_trade_on_stale_or_invalid_input",
                   inv.check_entries_inputs(events, inv.scan_times(self.arrow_dir), self.injected, MAX_SCAN_AGE_S),
                   persist=2)
        try:
            cap = self.state_capital()
        except Exception:  # noqa: BLE001 - member down/reconnecting during a fault
            cap = None
        if time.monotonic() < self.journal_fault_until:
            cap = None   # while the journal cannot be written it lags the account by design (held events)
        try:    # how long the survival stack let the trader trade (why a soak made few or no trades)
            raw = self.client().get_map(maps.SAFETY).blocking().get(maps.KEY_LATEST)
            posture = str(json.loads(raw)["posture"])
        except Exception:  # noqa: BLE001 - absent, garbage, member down
            posture = "unknown"
        self.postures[posture] = self.postures.get(posture, 0) + 1
        if cap is not None and len(inv.read_events(journal)) == len(events):
            self.capital_checks += 1
            self._flag("capital_equals_journal_replay", inv.check_capital(events, cap), persist=4)

    def sample_rss(self) -> None:
        now = time.time()
        for prog, (state, pid) in self.status().items():
            if state != "RUNNING" or pid is None:
                continue
            try:
                p = psutil.Process(pid)
                rss = p.memory_info().rss + sum(ch.memory_info().rss for ch in p.children(recursive=True))
            except psutil.Error:
                continue
            self.rss.setdefault(prog, []).append((round(now, 1), pid, round(rss / 2**20, 2)))

    def sampler(self, every_s: float = 5.0) -> None:
        while not self.stop.wait(every_s):
            try:
                self.sample_rss()
                self.check_once()
                self.samples += 1
            except Exception as exc:  # noqa: BLE001 - a sample may race a kill; never stop sampling
                print(f"soak: sample error {type(exc).__name__}: {exc}", flush=True)

    # ── the run ─────────────────────────────────────────────────────────────────────────────
    def run(self) -> int:
        print(f"soak: seed {self.seed}, {self.minutes:g} min, instance {self.root}", flush=True)
        self.up()
        self.t0 = time.time()
        programs = [p for p, (s, _) in self.status().items() if s == "RUNNING"]
        th = threading.Thread(target=self.sampler, daemon=True)
        th.start()
        end = time.monotonic() + self.minutes * 60
        self.regime, regime_until = "calm", time.monotonic() + self.rng.uniform(60, 120)
        kill_round: list[str] = []
        other = (self.ws_stall, self.ws_drop, self.journal_full, self.garbage, self.stale_scan)
        other_round: list = []
        turn = 0
        try:
            while time.monotonic() < end:
                if time.monotonic() >= regime_until:
                    nxt = "stress" if self.regime == "calm" else "calm"
                    hold = self.rng.uniform(90, 240) if nxt == "stress" else self.rng.uniform(60, 180)
                    try:
                        self.sim("/sim/admin/regime", {"regime": nxt, "hold_s": None})
                        self.regime = nxt
                        self.regimes.append({"t_rel_s": round(time.time() - self.t0, 1), "regime": nxt})
                        print(f"soak: regime -> {nxt}", flush=True)
                    except OSError as exc:
                        self.record("regime_switch_failed", regime=nxt, error=str(exc))
                        hold = 10.0   # retry soon
                    regime_until = time.monotonic() + hold
                if turn % 2 == 0:
                    if not kill_round:
                        kill_round = list(programs)
                        self.rng.shuffle(kill_round)
                    self.kill(kill_round.pop())
                else:
                    if not other_round:
                        other_round = list(other)
                        self.rng.shuffle(other_round)
                    fn = other_round.pop()
                    try:
                        fn()
                    except Exception as exc:  # noqa: BLE001 - a fault source may be down (venue just killed)
                        self.record(f"{fn.__name__}_failed", error=f"{type(exc).__name__}: {exc}")
                turn += 1
                time.sleep(min(self.rng.uniform(*self.fault_every), max(0.0, end - time.monotonic())))
        except Exception:  # noqa: BLE001 - report what the harness hit, still write the JSON
            self.violations["harness"].append(traceback.format_exc())
        return self.finish(programs, th)

    def finish(self, programs: list[str], th: threading.Thread) -> int:
        print("soak: faults over; settling", flush=True)
        try:
            self.sim("/sim/admin/fault", {"kind": "clear"})
        except OSError:
            pass
        settled = _wait(lambda: all(self.status().get(p, ("?",))[0] == "RUNNING" for p in programs), 60)
        if not settled:
            self.violations["recovery_within_30s"].append(f"not every program RUNNING at the end: {self.status()}")
        # the final capital comparison must agree within 30 s (the trader republishes state every few s)
        journal = self.trader_dir / "journal.sqlite"
        final_cap: dict = {}

        def agrees() -> bool:
            ev = inv.read_events(journal)
            cap = self.state_capital()
            final_cap.update(state=cap, replay=inv.replay_capital(ev))
            return cap is not None and not inv.check_capital(ev, cap)
        if not _wait(agrees, 30, interval=1.0) and final_cap.get("replay") is not None:
            self.violations["capital_equals_journal_replay"].append(f"final: {final_cap}")
        self.stop.set()
        th.join(15)
        self.check_once()
        events = inv.read_events(journal)
        chain = inv.check_chain(journal, self.trader_dir / "audit.log")
        self.violations["journal_chain_intact"] += [f"final: {v}" for v in chain]
        kills = [f for f in self.faults if f["kind"] == "kill9"]
        self.violations["recovery_within_30s"] += inv.check_recoveries(kills, RECOVERY_LIMIT_S)
        slopes = inv.rss_slopes(self.rss)
        self.violations["rss_not_growing"] += inv.check_rss(slopes, RSS_LIMIT_MB_PER_H)
        recs = [f["recovery_s"] for f in kills if f["recovery_s"] is not None]
        counts: dict[str, int] = {}
        for f in self.faults:
            counts[f["kind"]] = counts.get(f["kind"], 0) + 1
        kinds = [e["kind"] for e in events]
        logs = self.root / "logs"
        tlog = (logs / "event_trader.log").read_text(errors="replace") if (logs / "event_trader.log").exists() else ""
        report = {
            "seed": self.seed, "minutes": self.minutes, "started_at": self.t0, "ended_at": time.time(),
            "instance_dir": str(self.root), "faults_injected": len(self.faults), "fault_counts": counts,
            "faults": self.faults, "regimes": self.regimes,
            "recovery_s": {"n": len(recs), "p50": statistics.median(recs) if recs else None,
                           "max": max(recs) if recs else None,
                           "per_program": {p: [f["recovery_s"] for f in kills if f["program"] == p] for p in programs}},
            "rss": slopes, "rss_limit_mb_per_h": RSS_LIMIT_MB_PER_H,
            "rss_samples": {p: rows[::max(1, len(rows) // 200)] for p, rows in self.rss.items()},
            "trades": {"entries": kinds.count("ENTRY"), "exits": kinds.count("EXIT"),
                       "entry_not_taken": kinds.count("ENTRY_NOT_TAKEN"), "exit_failed": kinds.count("EXIT_FAILED"),
                       "trader_starts": kinds.count("TRADER_START"), "journal_events": len(events),
                       "refused_to_trade": tlog.count("REFUSING TO TRADE"),
                       "dropped_bad_payload_lines": tlog.count("dropped bad payload"),
                       "stale_scans_skipped_lines": tlog.count("old (>")},
            "capital": {"final": final_cap, "checks": self.capital_checks}, "samples": self.samples,
            "posture_samples": self.postures,
            "injected_scan_numbers": sorted(self.injected),
            "invariants": {k: {"ok": not v, "violations": v} for k, v in self.violations.items()},
        }
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(report, indent=2, default=str))
        if self._client is not None:
            try:
                self._client.shutdown()
            except Exception:  # noqa: BLE001 - the member may be mid-restart
                pass
        down = self.driver("down", timeout=120)
        # the trader is stopped now (its last recording closed): replay every run it made against the journal
        report["parity"], found = inv.check_parity(self.root / "data" / "recordings")
        self.violations["live_equals_replay"] += found
        report["invariants"] = {k: {"ok": not v, "violations": v} for k, v in self.violations.items()}
        self.out.write_text(json.dumps(report, indent=2, default=str))
        ok = all(not v for v in self.violations.values())
        print(f"soak: {len(self.faults)} faults, recoveries p50 {report['recovery_s']['p50']} max "
              f"{report['recovery_s']['max']} s, trades {report['trades']['entries']}/{report['trades']['exits']}, "
              f"parity {report['parity']['ok']}/{report['parity']['runs']} runs, "
              f"invariants {'OK' if ok else 'FAILED: ' + ', '.join(k for k, v in self.violations.items() if v)}; "
              f"report {self.out}; mesh down rc={down.returncode}", flush=True)
        self.report = report
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.soak",
                                 description="DOLPHIN chaos soak (whole mesh, kill -9, ws faults, full journal, garbage)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=None, help="fault schedule seed (printed; default random)")
    ap.add_argument("--instance-dir", type=Path, default=None, help="default: a new temporary directory")
    ap.add_argument("--out", type=Path, default=None, help="default: run_logs/soak_<UTC ts>.json")
    ap.add_argument("--fault-every", type=float, nargs=2, default=(15.0, 40.0), metavar=("MIN_S", "MAX_S"))
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2**31)
    root = a.instance_dir or Path(tempfile.mkdtemp(prefix="dolphin_soak_"))
    out = a.out or REPO_ROOT / "run_logs" / f"soak_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    return Soak(a.minutes, seed, root, out, tuple(a.fault_every)).run()
