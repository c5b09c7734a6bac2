"""Drive the whole mesh under supervisord: ``python -m ops.mesh up|down|status`` (``make run/stop/status``).

Design notes: ``docs/design/ops.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from prod.settings import REPO_ROOT
from prod.runtime import mesh_record

CONF = REPO_ROOT / "supervisor" / "dolphin-supervisord.conf"
DEFAULT_HZ_PORT = 5701
DEFAULT_VENUE_PORT = 8765
DEFAULT_PREFECT_PORT = 4200
DEFAULT_WEB_PORT = 8088
TRADER = "dolphin:event_trader"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class MeshPaths:
    conf: Path
    socket: Path
    pidfile: Path
    logdir: Path
    run_logs: Path
    env: dict = field(default_factory=dict)
    ports: tuple = (DEFAULT_HZ_PORT, DEFAULT_VENUE_PORT, DEFAULT_PREFECT_PORT)   # must be free (embedded profile)
    prefect_home: Path | None = None   # PREFECT_HOME of the prefect program: created by up() (prefect makes no parents)
    hz_cluster: tuple = ()             # ports of the real members of a local cluster (--hz-members); () = none
    deferred: tuple = ()               # programs started by up() once the local cluster serves
    instance: Path = REPO_ROOT         # the instance directory (the repository for the committed config)
    profile: str = "embedded"
    start_trader: bool = False         # up() starts dolphin:event_trader once GREEN (the committed config keeps it manual)

    def port_owners(self) -> dict[int, str]:
        """Every port this mesh binds on 127.0.0.1, with the program that binds it (checked free before ``up``)."""
        if not self.ports:
            return {}
        names = ([f"hz_cluster:hz{i + 1}" for i in range(len(self.hz_cluster))] if self.hz_cluster
                 else ["hz_member"]) + ["venue_sim", "prefect"]
        owners = dict(zip(self.ports, names))
        web = self.env.get("DOLPHIN_WEB_PORT") or os.environ.get("DOLPHIN_WEB_PORT") or DEFAULT_WEB_PORT
        try:
            owners.setdefault(int(web), "web_console")
        except ValueError:
            pass    # config_errors() names a malformed DOLPHIN_WEB_PORT before anything starts
        return owners

    @property
    def health_file(self) -> Path:
        return self.run_logs / "meta_health.json"


def default_paths(for_up: bool = False) -> MeshPaths:
    """The committed config as is. ``for_up``: with the venue key of ``run/venue_api_key`` for venue_sim and the
    trader (generated once), and the trader started by ``up`` once the mesh is GREEN."""
    env = venue_key_env(REPO_ROOT / "run", {}) if for_up else {}
    return MeshPaths(conf=CONF, socket=REPO_ROOT / "run" / "supervisor.sock", pidfile=REPO_ROOT / "run" / "supervisord.pid",
                     logdir=REPO_ROOT / "run_logs" / "supervisor",
                     run_logs=Path(os.environ.get("DOLPHIN_RUN_LOGS") or REPO_ROOT / "run_logs"),
                     prefect_home=REPO_ROOT / "data" / "prefect", instance=REPO_ROOT, env=env, start_trader=for_up)


def _set_in_section(text: str, section: str, key: str, value: str) -> str:
    """Set ``key=value`` inside ``[section]`` of an ini text (the key must already exist there)."""
    out, cur = [], None
    for line in text.splitlines():
        m = re.match(r"^\[(.+)\]\s*$", line)
        if m:
            cur = m.group(1)
        elif cur == section and re.match(rf"^{re.escape(key)}\s*=", line):
            line = f"{key}={value}"
        out.append(line)
    return "\n".join(out) + "\n"


def _sub_in_section(text: str, section: str, pattern: str, repl: str) -> str:
    """``re.sub(pattern, repl)`` on the lines of ``[section]`` only."""
    out, cur = [], None
    for line in text.splitlines():
        m = re.match(r"^\[(.+)\]\s*$", line)
        if m:
            cur = m.group(1)
        elif cur == section:
            line = re.sub(pattern, repl, line)
        out.append(line)
    return "\n".join(out) + "\n"


HZ_CLUSTER_PROGRAMS = ("hz1", "hz2", "hz3")


def _program_names(text: str) -> list[str]:
    return re.findall(r"^\[program:([^\]]+)\]\s*$", text, flags=re.M)


def _group_of(text: str) -> dict[str, str]:
    out = {}
    for group, progs in re.findall(r"^\[group:([^\]]+)\]\s*\nprograms=(.*)$", text, flags=re.M):
        for prog in progs.split(","):
            out[prog.strip()] = group
    return out


def render_conf(text: str, *, instance_dir: Path, hz_port: int, venue_port: int, profile: str = "embedded",
                mhs_interval: float | None = None, env: dict | None = None, trader_autostart: bool | None = None,
                prefect_port: int = DEFAULT_PREFECT_PORT, hz_members: int = 0) -> str:
    """Return the committed config rewritten for one instance directory (socket, logs, ports, env).

    ``hz_members`` > 0 (cluster profile only) turns on that many ``hz_cluster`` programs on ports
    ``hz_port``.. and turns every program that is not a member off (``up`` starts them later).
    """
    inst = str(instance_dir)
    text = text.replace("%(here)s/../run/hz_real", f"{inst}/hz_real")
    text = text.replace("%(here)s/../run/supervisor.sock", f"{inst}/sv.sock")
    text = text.replace("%(here)s/../run/supervisord.pid", f"{inst}/supervisord.pid")
    text = text.replace("%(here)s/../run_logs/supervisor", f"{inst}/logs")
    text = text.replace("%(here)s/../data/", f"{inst}/data/")
    text = text.replace("%(here)s/..", str(REPO_ROOT))
    text = _sub_in_section(text, "program:hz_member", rf"--port {DEFAULT_HZ_PORT}\b", f"--port {hz_port}")
    text = text.replace(f"--port {DEFAULT_VENUE_PORT} ", f"--port {venue_port} ")
    text = _sub_in_section(text, "program:prefect", rf"--port {DEFAULT_PREFECT_PORT}\b", f"--port {prefect_port}")
    text = _sub_in_section(text, "program:meta_health", r"--prefect-port \d+", f"--prefect-port {prefect_port}")
    for prog in ("program:prefect", "program:prefect_worker"):   # the UI's and the worker's API URL
        text = _sub_in_section(text, prog, rf"127\.0\.0\.1:{DEFAULT_PREFECT_PORT}/", f"127.0.0.1:{prefect_port}/")
    if mhs_interval is not None:
        text = re.sub(r"--check-interval \S+", f"--check-interval {mhs_interval:g}", text)
    envs = {"PYTHONUNBUFFERED": "1", "DOLPHIN_PROFILE": profile, **(env or {})}
    env_line = ",".join(f'{k}="{v}"' for k, v in envs.items())
    text = _set_in_section(text, "supervisord", "environment", env_line)
    if profile == "cluster":
        for prog in ("hz_member", "venue_sim", "prefect", "event_trader"):
            text = _set_in_section(text, f"program:{prog}", "autostart", "false")
    if trader_autostart is None and profile != "cluster":
        trader_autostart = True    # the committed config keeps the trader manual (§16.3); the mesh starts it
    if trader_autostart is not None:
        text = _set_in_section(text, "program:event_trader", "autostart", "true" if trader_autostart else "false")
    if hz_members:
        if profile != "cluster" or not 1 <= hz_members <= len(HZ_CLUSTER_PROGRAMS):
            raise ValueError(f"--hz-members {hz_members}: needs --profile cluster and 1..{len(HZ_CLUSTER_PROGRAMS)}")
        ports = [hz_port + i for i in range(hz_members)]
        peers = ",".join(map(str, ports))
        cp = 3 if hz_members >= 3 else 0
        for i, prog in enumerate(HZ_CLUSTER_PROGRAMS):
            sec = f"program:{prog}"
            if i < hz_members:
                text = _sub_in_section(text, sec, r"--port \d+", f"--port {ports[i]}")
                text = _sub_in_section(text, sec, r"--peers \S+", f"--peers {peers}")
                text = _sub_in_section(text, sec, r"--cp-members \d+", f"--cp-members {cp}")
                text = _set_in_section(text, sec, "autostart", "true")
            else:
                text = _set_in_section(text, sec, "autostart", "false")
        for prog in _program_names(text):
            if prog not in HZ_CLUSTER_PROGRAMS:
                text = _set_in_section(text, f"program:{prog}", "autostart", "false")
    return text


def deferred_programs(committed: str, rendered_for_cluster: str) -> tuple[str, ...]:
    """Programs (group:name) autostarted by ``render_conf(profile="cluster")`` without ``hz_members``."""
    groups = _group_of(committed)
    out = []
    for prog in _program_names(rendered_for_cluster):
        if prog in HZ_CLUSTER_PROGRAMS or prog == "hz_member":
            continue
        m = re.search(rf"^\[program:{re.escape(prog)}\]\s*$(.*?)(?=^\[|\Z)", rendered_for_cluster, flags=re.M | re.S)
        if m and re.search(r"^autostart=true\s*$", m.group(1), flags=re.M):
            out.append(f"{groups[prog]}:{prog}" if prog in groups else prog)
    return tuple(out)


def venue_key_env(instance_dir: Path, env: dict) -> dict:
    """The simulator's API key for this instance (generated once into ``<instance>/venue_api_key``, 0600).

    venue_sim and event_trader both read ``DOLPHIN_VENUE_API_KEY`` / ``_SECRET`` from the environment,
    so the trader fills through the order API; a key already set (environment or ``extra_env``) wins.
    """
    import secrets
    instance_dir.mkdir(parents=True, exist_ok=True)
    if (env.get("DOLPHIN_VENUE_API_KEY") or os.environ.get("DOLPHIN_VENUE_API_KEY")) and \
            (env.get("DOLPHIN_VENUE_API_SECRET") or os.environ.get("DOLPHIN_VENUE_API_SECRET")):
        return {}
    f = instance_dir / "venue_api_key"
    try:
        key, secret = f.read_text().strip().split(":", 1)
    except (OSError, ValueError):
        key, secret = f"dolphin-{secrets.token_hex(8)}", secrets.token_hex(32)
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{key}:{secret}\n")
    return {"DOLPHIN_VENUE_API_KEY": key, "DOLPHIN_VENUE_API_SECRET": secret}


def instance_paths(instance_dir: Path, hz_port: int, venue_port: int, profile: str, mhs_interval: float | None,
                   extra_env: dict, trader_autostart: bool | None = None,
                   prefect_port: int = DEFAULT_PREFECT_PORT, hz_members: int = 0) -> MeshPaths:
    """Render the config into ``instance_dir`` and return its paths and child environment."""
    instance_dir = instance_dir.resolve()
    for d in (instance_dir, instance_dir / "logs", instance_dir / "run_logs"):
        d.mkdir(parents=True, exist_ok=True)
    hz_ports = tuple(hz_port + i for i in range(hz_members))
    env = {"DOLPHIN_HZ_MEMBERS": ",".join(f"127.0.0.1:{p}" for p in (hz_ports or (hz_port,))),
           "DOLPHIN_VENUE_WS": f"ws://127.0.0.1:{venue_port}",
           "DOLPHIN_VENUE_REST": f"http://127.0.0.1:{venue_port}",
           "DOLPHIN_DATA_DIR": str(instance_dir / "data"),
           "DOLPHIN_RUN_LOGS": str(instance_dir / "run_logs"), **extra_env}
    env.update(venue_key_env(instance_dir, env))
    conf = instance_dir / "dolphin-supervisord.conf"
    committed = CONF.read_text()
    kw = dict(instance_dir=instance_dir, hz_port=hz_port, venue_port=venue_port, profile=profile,
              mhs_interval=mhs_interval, env=env, trader_autostart=trader_autostart, prefect_port=prefect_port)
    deferred: tuple = ()
    if hz_members:
        # a local cluster keeps the simulator and Prefect of the one machine; the rest as the cluster profile
        plain = render_conf(committed, **kw)
        for prog in ("venue_sim", "prefect"):
            plain = _set_in_section(plain, f"program:{prog}", "autostart", "true")
        deferred = deferred_programs(committed, plain)
    conf.write_text(render_conf(committed, **kw, hz_members=hz_members))
    conf.chmod(0o600)  # its environment= lines carry the instance's venue key
    if profile == "embedded":
        ports: tuple = (hz_port, venue_port, prefect_port)
    elif hz_members:
        ports = (*hz_ports, venue_port, prefect_port)
    else:
        ports = ()
    return MeshPaths(conf=conf, socket=instance_dir / "sv.sock", pidfile=instance_dir / "supervisord.pid",
                     logdir=instance_dir / "logs", run_logs=instance_dir / "run_logs", env=env, ports=ports,
                     prefect_home=instance_dir / "data" / "prefect", hz_cluster=hz_ports, deferred=deferred,
                     instance=instance_dir, profile=profile)


def paths_from_record(entry: dict) -> MeshPaths:
    """The paths of a mesh recorded by ``up`` (enough for ``down``, ``status`` and ``logs``)."""
    return MeshPaths(conf=Path(entry["conf"]), socket=Path(entry["socket"]), pidfile=Path(entry["pidfile"]),
                     logdir=Path(entry["logdir"]), run_logs=Path(entry["run_logs"]), ports=tuple(entry["ports"]),
                     instance=Path(entry["instance"]), profile=str(entry["profile"]))


def record_entry(paths: MeshPaths, pid: int, started_at: float) -> dict:
    return {"instance": str(paths.instance), "conf": str(paths.conf), "socket": str(paths.socket),
            "pidfile": str(paths.pidfile), "logdir": str(paths.logdir), "run_logs": str(paths.run_logs),
            "ports": list(paths.ports), "pid": pid, "profile": paths.profile, "started_at": started_at}


def running_meshes(args_paths: MeshPaths | None = None) -> list[MeshPaths]:
    """The meshes ``down``/``status``/``logs`` act on: ``args_paths`` alone, else every recorded live one.

    The default mesh counts too when its supervisord answers without a record (started by an older
    ``up``); a stale record is reported and cleared by :func:`prod.runtime.mesh_record.live_records`.
    """
    if args_paths is not None:
        return [args_paths]
    out = [paths_from_record(e) for e in mesh_record.live_records()]
    default = default_paths()
    if all(p.conf != default.conf for p in out) and is_up(default):
        out.append(default)
    return out


def supervisord_pid(paths: MeshPaths, timeout: float = 15.0) -> int | None:
    """The pid of the daemonised supervisord of ``paths`` (from its pidfile, once written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int(paths.pidfile.read_text().strip())
            if mesh_record.supervisord_alive(pid, str(paths.conf)):
                return pid
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    return None


def _port_in_use(port: int) -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def _port_holder(port: int) -> str:
    """Who listens on ``port`` (``pid N (cmdline)``), as far as this user may see; else "another process"."""
    import psutil
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return "another process"
    for c in conns:
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
            try:
                cmd = " ".join(psutil.Process(c.pid).cmdline())[:120]
            except psutil.Error:
                cmd = "?"
            return f"pid {c.pid} ({cmd})"
    return "another process"


def supervisorctl(paths: MeshPaths, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "supervisorctl"), "-c", str(paths.conf), *args], capture_output=True,
                          text=True, timeout=timeout)


def is_up(paths: MeshPaths) -> bool:
    if not paths.socket.exists():
        return False
    res = supervisorctl(paths, "pid", timeout=10)
    return res.returncode == 0 and res.stdout.strip().isdigit()


def read_health(paths: MeshPaths) -> dict | None:
    try:
        return json.loads(paths.health_file.read_text())
    except (OSError, ValueError):
        return None


def register_flows(prefect_port: int, env: dict, timeout: float = 120.0, wait_s: float = 90.0) -> bool:
    """Register the Prefect deployments (``python -m prod.flows register``) on the mesh's server; warn on failure."""
    url = f"http://127.0.0.1:{prefect_port}/api"
    cmd = [sys.executable, "-m", "prod.flows", "register", "--api-url", url, "--wait-s", f"{wait_s:g}"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO_ROOT), timeout=timeout)
        ok = res.returncode == 0
        detail = (res.stdout.splitlines() or [""])[0] if ok else res.stderr[-2000:]
    except subprocess.TimeoutExpired:
        ok, detail = False, f"timed out after {timeout:.0f}s"
    if ok:
        print(f"{detail.strip()}; UI: http://127.0.0.1:{prefect_port}")
    else:
        print(f"WARNING: Prefect deployments not registered ({detail.strip()}); the mesh runs without them. "
              f"Retry: {' '.join(cmd[1:])}", file=sys.stderr)
    return ok


def up(paths: MeshPaths, timeout: float = 120.0, wait: bool = True, register: bool = True) -> int:
    """Start supervisord (daemonised) and wait for meta_health GREEN; return a process exit code."""
    for d in (paths.socket.parent, paths.logdir, paths.run_logs, paths.pidfile.parent, paths.prefect_home):
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)
    if is_up(paths):
        print(f"mesh already running (supervisord socket {paths.socket})")
        pid = supervisord_pid(paths, timeout=2)
        if pid is not None and all(e["conf"] != str(paths.conf) for e in mesh_record.live_records()):
            mesh_record.add(record_entry(paths, pid, time.time()))   # started before the record existed
        print(supervisorctl(paths, "status").stdout)
        return 0
    if paths.socket.exists():
        paths.socket.unlink()  # stale socket of a dead supervisord
    if paths.pidfile.exists():
        paths.pidfile.unlink()  # and its pidfile: the record must get the new supervisord's pid
    busy = {p: prog for p, prog in paths.port_owners().items() if _port_in_use(p)}
    if busy:
        for p, prog in busy.items():
            print(f"ERROR: port {p} (needed by {prog}) is already in use on 127.0.0.1 by {_port_holder(p)}",
                  file=sys.stderr)
        print("mesh: nothing started. Stop what holds the port, or start this mesh elsewhere: python -m ops.mesh "
              "up --instance-dir DIR --hz-port N --venue-port M --prefect-port P --env DOLPHIN_WEB_PORT=W",
              file=sys.stderr)
        return 2
    if paths.hz_cluster:
        from standins.hz_real.fetch import HzRealError, ensure_jar, require_tool
        try:
            require_tool("java")
            print(f"hazelcast jar: {ensure_jar()}", flush=True)
        except HzRealError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 2
    t_start = time.time()
    env = {**os.environ, **paths.env}
    res = subprocess.run([str(BIN / "supervisord"), "-c", str(paths.conf)], capture_output=True, text=True, env=env,
                         cwd=str(REPO_ROOT), timeout=60)
    if res.returncode != 0:
        print(f"ERROR: supervisord failed to start (exit {res.returncode}):\n{res.stdout}{res.stderr}", file=sys.stderr)
        return 2
    print(f"supervisord started with {paths.conf}")
    pid = supervisord_pid(paths)
    if pid is None:
        print(f"WARNING: no supervisord pid in {paths.pidfile}; this mesh is not recorded (stop it with "
              f"`python -m ops.mesh down` and the same options)", file=sys.stderr)
    else:
        mesh_record.add(record_entry(paths, pid, t_start))
        print(f"recorded in {mesh_record.record_path()} (supervisord pid {pid}; "
              f"`python -m ops.mesh status|logs|down` find it without options)")
    if paths.hz_cluster:
        rc = _start_after_cluster(paths, timeout)
        if rc:
            return rc
    if not wait:
        return 0
    print(f"waiting up to {timeout:.0f}s for meta_health GREEN ({paths.health_file}) ...", flush=True)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        rep = read_health(paths)
        if rep and rep.get("timestamp", 0) >= t_start:
            last = rep
            if rep.get("status") == "GREEN":
                break
        time.sleep(0.5)
    status = supervisorctl(paths, "status").stdout
    print(status)
    where = (f"logs: {paths.logdir}/<program>.log | health: {paths.health_file} | "
             f"control: {BIN / 'supervisorctl'} -c {paths.conf} status")
    if last and last.get("status") == "GREEN":
        print(f"mesh is GREEN (rm_meta={last['rm_meta']:.3f}) after {time.time() - t_start:.1f}s")
        print(where)
        if register and len(paths.ports) == 3:
            register_flows(paths.ports[2], env)
        if paths.start_trader:
            return start_trader(paths)
        return 0
    if last is None:
        print(f"ERROR: no meta_health report within {timeout:.0f}s: is dolphin_data:meta_health running? "
              f"see {paths.logdir}/meta_health.log", file=sys.stderr)
    else:
        bad = {p: s for p, s in last.get("services", {}).items() if s != "RUNNING"}
        print(f"ERROR: mesh not GREEN within {timeout:.0f}s: status={last.get('status')} rm_meta={last.get('rm_meta')} "
              f"sensors={last.get('sensors')} not running={bad} data={last.get('data_sources')}", file=sys.stderr)
    print(where, file=sys.stderr)
    return 1


def start_trader(paths: MeshPaths) -> int:
    """Start the (manual) trader once the mesh is GREEN; print its state. Non-zero when it does not reach RUNNING."""
    res = supervisorctl(paths, "start", TRADER, timeout=120)
    state = supervisorctl(paths, "status", TRADER, timeout=10).stdout.strip()
    if " RUNNING " not in f" {state} ":
        print(f"ERROR: the trader did not start: {res.stdout.strip()} {res.stderr.strip()}\n{state}\n"
              f"see {paths.logdir}/event_trader.log", file=sys.stderr)
        return 1
    print(f"trader started: {state}")
    print(f"decisions and fills: tail -f {paths.logdir}/event_trader.log")
    return 0


def _start_after_cluster(paths: MeshPaths, timeout: float) -> int:
    """Wait until the local real cluster serves (all members, a CP call), then start the deferred programs."""
    from standins.hz_real.fetch import HzRealError
    from standins.hz_real.runner import check_member
    cluster = paths.env.get("DOLPHIN_HZ_CLUSTER", "dolphin")
    n = len(paths.hz_cluster)
    print(f"waiting up to {timeout:.0f}s for {n} real Hazelcast member(s) on 127.0.0.1:{paths.hz_cluster} ...",
          flush=True)
    dead: list[str] = []
    last = [0.0]
    first_pid: dict[str, str] = {}

    def members_alive() -> bool:
        """False once a member exited: supervisord gave up on it (FATAL/EXITED), or it exited and was
        started again (a new pid; on a loaded box a JVM that cannot bind its port outlives startsecs, so
        supervisord counts it as started and restarts it forever). A member that cannot bind its port never
        joins, so waiting the whole timeout for it only hides the cause."""
        if time.monotonic() - last[0] < 2.0:
            return not dead
        last[0] = time.monotonic()
        for line in supervisorctl(paths, "status", timeout=10).stdout.splitlines():
            parts = line.split()
            if len(parts) < 2 or not parts[0].startswith("hz_cluster:"):
                continue
            name = parts[0].split(":")[1]
            pid = parts[3].rstrip(",") if len(parts) >= 4 and parts[2] == "pid" else None
            if parts[1] in ("FATAL", "EXITED") or (pid and first_pid.setdefault(name, pid) != pid):
                if name not in dead:
                    dead.append(name)
        return not dead

    try:
        check_member("127.0.0.1", paths.hz_cluster[0], cluster, timeout, cluster_size=n, cp=True,
                     alive=members_alive)
    except HzRealError as exc:
        logs = ", ".join(f"{paths.logdir}/{m}.log" for m in (dead or ["hz1"]))
        print(f"ERROR: the real Hazelcast cluster did not form: {exc}\n(see {logs})\n"
              f"{supervisorctl(paths, 'status').stdout}", file=sys.stderr)
        return 1
    print(f"cluster {cluster!r} serves with {n} member(s); starting {len(paths.deferred)} programs", flush=True)
    try:
        errors = start_programs(paths, paths.deferred)
    except (OSError, xmlrpc.client.Error) as exc:
        errors = [f"supervisord did not answer on {paths.socket} ({type(exc).__name__}: {exc})"]
    if errors:
        print("ERROR: supervisord could not start: " + "; ".join(errors), file=sys.stderr)
        return 1
    return 0


def start_programs(paths: MeshPaths, names: tuple[str, ...], timeout: float = 120.0) -> list[str]:
    """Start ``names`` together (as supervisord's autostart does), wait until none is starting; return errors
    (a program supervisord could not start, or that exited / went FATAL).

    ``supervisorctl start a b c`` starts one at a time, each after the previous one's ``startsecs``.
    """
    rpc = _rpc(paths)
    errors = []
    for name in names:
        try:
            rpc.supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as exc:
            if "ALREADY_STARTED" not in exc.faultString:
                errors.append(f"{name}: {exc.faultString}")
    deadline = time.monotonic() + timeout
    while True:
        st = {f"{p['group']}:{p['name']}": p["statename"] for p in rpc.supervisor.getAllProcessInfo()}
        pending = [n for n in names if st.get(n) in ("STARTING", "BACKOFF")]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    errors += [f"{n}: {st.get(n)} (see {paths.logdir}/{n.split(':')[-1]}.log)" for n in names
               if st.get(n) not in ("RUNNING", "STARTING", "BACKOFF") and not any(e.startswith(f"{n}:") for e in errors)]
    return errors                        # still starting after ``timeout``: the GREEN wait names what is not healthy


def _rpc(paths: MeshPaths) -> xmlrpc.client.ServerProxy:
    """supervisord's XML-RPC interface on the mesh's unix socket."""
    from supervisor.xmlrpc import SupervisorTransport
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(serverurl=f"unix://{paths.socket}"))


def down(paths: MeshPaths, timeout: float = 60.0) -> int:
    """Stop every program and supervisord; return 0 when it is gone (its record is then removed)."""
    if not is_up(paths):
        mesh_record.remove(paths.conf)
        print(f"mesh is not running ({paths.instance})")
        return 0
    pid = supervisorctl(paths, "pid", timeout=10).stdout.strip()
    print(f"stopping the mesh of {paths.instance} (supervisord pid {pid}) ...", flush=True)
    print(supervisorctl(paths, "shutdown", timeout=timeout).stdout.strip())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except (OSError, ValueError):
            mesh_record.remove(paths.conf)
            print(f"mesh stopped ({paths.instance})")
            return 0
        time.sleep(0.2)
    print(f"ERROR: supervisord pid {pid} still alive after {timeout:.0f}s", file=sys.stderr)
    return 1


def status(paths: MeshPaths) -> int:
    if not is_up(paths):
        print(f"mesh is not running (no supervisord on {paths.socket}); start it with `make run`")
        return 3
    print(f"== mesh {paths.instance} (profile {paths.profile}, ports {list(paths.ports)}, conf {paths.conf})")
    print(supervisorctl(paths, "status").stdout)
    rep = read_health(paths)
    if rep:
        print(f"meta_health: {rep.get('status')} rm_meta={rep.get('rm_meta')} at {rep.get('timestamp_iso')} "
              f"sensors={rep.get('sensors')}")
        if rep.get("holds"):
            print(f"maintenance holds (MHS leaves them stopped): {', '.join(sorted(rep['holds']))}")
    print(f"logs: {paths.logdir}/<program>.log | health: {paths.health_file}")
    return 0


def logs(paths: MeshPaths, program: str | None = None, lines: int = 40) -> int:
    """List the supervisor log files of a mesh, or print the last ``lines`` lines of one program's log."""
    print(f"== mesh {paths.instance}: logs in {paths.logdir} (health report: {paths.health_file})")
    if program is None:
        files = sorted(paths.logdir.glob("*.log")) if paths.logdir.is_dir() else []
        for f in files:
            print(f"  {f.name:<28} {f.stat().st_size:>10,d} B")
        if not files:
            print("  (no log files yet)")
        return 0
    f = paths.logdir / f"{program.split(':')[-1]}.log"
    if not f.exists():
        known = ", ".join(sorted(p.stem for p in paths.logdir.glob("*.log"))) or "none"
        print(f"ERROR: no log {f} (logs: {known})", file=sys.stderr)
        return 2
    with open(f, "rb") as fh:
        fh.seek(max(0, f.stat().st_size - 256 * 1024))
        tail = fh.read().decode(errors="replace").splitlines()[-lines:]
    print(f"-- {f} (last {len(tail)} lines)")
    print("\n".join(tail))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m ops.mesh", description="DOLPHIN mesh driver (supervisord)")
    ap.add_argument("command", choices=("up", "down", "status", "logs"))
    ap.add_argument("program", nargs="?", default=None, help="logs: the program whose log tail to print")
    ap.add_argument("--lines", type=int, default=40, help="logs PROGRAM: how many lines")
    ap.add_argument("--instance-dir", type=Path, default=None,
                    help="render the config into this directory (own socket, logs, data, ports)")
    ap.add_argument("--hz-port", type=int, default=DEFAULT_HZ_PORT)
    ap.add_argument("--venue-port", type=int, default=DEFAULT_VENUE_PORT)
    ap.add_argument("--prefect-port", type=int, default=DEFAULT_PREFECT_PORT,
                    help="port of the supervised Prefect server (and of MHS's M4 check)")
    ap.add_argument("--profile", choices=("embedded", "cluster"), default=os.environ.get("DOLPHIN_PROFILE", "embedded"))
    ap.add_argument("--hz-members", type=int, default=0,
                    help="cluster profile: run this many real Hazelcast members (1..3) under supervisord (hz_cluster)")
    ap.add_argument("--mhs-interval", type=float, default=None)
    ap.add_argument("--no-trader", action="store_true", help="do not autostart the trader")
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="extra DOLPHIN_* for every program")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--no-wait", action="store_true")
    ap.add_argument("--no-register", action="store_true", help="do not register the Prefect deployments after GREEN")
    return ap


def is_custom(args: argparse.Namespace) -> bool:
    """True when the options differ from the committed config's, i.e. a rendered instance is needed."""
    return (args.instance_dir is not None or args.profile != "embedded" or args.hz_port != DEFAULT_HZ_PORT
            or args.venue_port != DEFAULT_VENUE_PORT or args.prefect_port != DEFAULT_PREFECT_PORT
            or args.mhs_interval is not None or bool(args.env) or args.no_trader or bool(args.hz_members))


# every supervised program's config class, for checking DOLPHIN_* values before anything starts
SERVICE_CONFIGS = (("scanner", "scanner.ng8_scanner", "ScannerConfig"),
                   ("exf_fetcher", "services.exf_fetcher.main", "ExfConfig"),
                   ("acb_processor", "services.acb_processor.main", "AcbConfig"),
                   ("obf_universe", "services.obf_universe.main", "ObfConfig"),
                   ("safety_watchdog", "services.safety_watchdog.main", "WatchdogConfig"),
                   ("meta_health", "services.meta_health.main", "MHSConfig"),
                   ("mc_forewarner", "services.mc_forewarner.main", "ForewarnerConfig"),
                   ("event_trader", "services.event_trader.main", "TraderConfig"),
                   ("scan_bridge", "services.scan_bridge.main", "BridgeConfig"))


def config_errors(env: dict) -> list[str]:
    """Return what every program would refuse in ``env`` (mesh-wide settings and DOLPHIN_<SVC>_* values)."""
    import importlib

    from prod.runtime.config import check_environment
    classes = [(svc, getattr(importlib.import_module(mod), cls)) for svc, mod, cls in SERVICE_CONFIGS]
    return check_environment(env, classes)


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.env)
    if args.hz_members and (args.profile != "cluster" or not 1 <= args.hz_members <= len(HZ_CLUSTER_PROGRAMS)):
        ap.error(f"--hz-members {args.hz_members}: needs --profile cluster and a count of 1..{len(HZ_CLUSTER_PROGRAMS)}")
    if args.program is not None and args.command != "logs":
        ap.error(f"{args.command} takes no program argument ({args.program!r})")
    custom = is_custom(args)
    if args.command != "up" and not custom:
        return _on_running(args)
    if custom:
        default_dir = REPO_ROOT / "run" / ("cluster" if args.hz_members else "instance")
        paths = instance_paths(args.instance_dir or default_dir, args.hz_port, args.venue_port,
                               args.profile, args.mhs_interval, extra, False if args.no_trader else None,
                               prefect_port=args.prefect_port, hz_members=args.hz_members)
    else:
        paths = default_paths(for_up=args.command == "up")
    if args.command == "up":
        errors = config_errors({**os.environ, **paths.env, **extra})
        if errors:
            for e in errors:
                print(f"mesh: configuration error: {e}", file=sys.stderr)
            print("mesh: nothing started; fix the value(s) above (flags, --env or the environment)", file=sys.stderr)
            return 2
        return up(paths, timeout=args.timeout, wait=not args.no_wait, register=not args.no_register)
    if args.command == "down":
        return down(paths)
    if args.command == "logs":
        return logs(paths, args.program, args.lines)
    return status(paths)


def _on_running(args: argparse.Namespace) -> int:
    """``down``/``status``/``logs`` without instance options: every running mesh (record + default)."""
    meshes = running_meshes()
    if not meshes:
        if args.command == "status":
            print("mesh is not running (nothing in the record, no supervisord on the default socket); "
                  "start it with `make run`")
            return 3
        if args.command == "logs":
            return logs(default_paths(), args.program, args.lines)
        print("mesh is not running")
        return 0
    rcs = []
    for paths in meshes:
        if args.command == "down":
            rcs.append(down(paths))
        elif args.command == "logs":
            rcs.append(logs(paths, args.program, args.lines))
        else:
            rcs.append(status(paths))
    return max(rcs)


if __name__ == "__main__":
    sys.exit(main())
