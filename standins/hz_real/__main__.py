"""Command line: ``python -m standins.hz_real --port N [--peers 5701,5702,5703] [--cp-members 3]``.

Fetches the pinned Hazelcast jar once (``--fetch-only`` stops there), renders ``docker/hazelcast.yaml``
for this member into ``--work-dir`` and runs the JVM. By default it waits until a client connects,
logs ``ready`` and then stays in the foreground until the JVM exits (SIGTERM/SIGINT are passed on).
``--exec`` replaces this process with the JVM right after rendering (for supervisord, so its pid *is*
the member's). ``--check HOST:PORT`` only checks that a member of ``--cluster-name`` serves there.
Exit codes: 0 ok, 2 a tool is missing, the jar cannot be fetched or the member cannot be reached.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from prod.settings import REPO_ROOT, load_settings
from standins.hz_real.config import RealMemberConfig
from standins.hz_real.fetch import HzRealError, ensure_jar
from standins.hz_real.runner import RealMember, check_member, prepare

log = logging.getLogger("hz_real")


def _ports(text: str) -> tuple[int, ...]:
    return tuple(int(x.strip().rpartition(":")[2]) for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    settings = load_settings()
    ap = argparse.ArgumentParser(prog="python -m standins.hz_real", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=int(settings.hz_members[0].rpartition(":")[2]))
    ap.add_argument("--peers", type=_ports, default=(), help="comma-separated ports (or host:port) of every member")
    ap.add_argument("--cp-members", type=int, default=None,
                    help="CP member count: 0 = unsafe mode (default for < 3 members), else >= 3 (default 3)")
    ap.add_argument("--cluster-name", default=settings.hz_cluster)
    ap.add_argument("--heap", default="512m", help="JVM -Xms/-Xmx (default 512m)")
    ap.add_argument("--session-ttl-s", type=int, default=None, help="CP session TTL override")
    ap.add_argument("--heartbeat-s", type=int, default=None, help="CP session heartbeat override")
    ap.add_argument("--work-dir", type=Path, default=REPO_ROOT / "run" / "hz_real")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the member to serve")
    ap.add_argument("--exec", action="store_true", help="exec the JVM (no readiness wait)")
    ap.add_argument("--fetch-only", action="store_true", help="download the jar into the cache and exit")
    ap.add_argument("--check", metavar="HOST:PORT", default=None, help="only check a running member")
    ap.add_argument("--log-level", default="INFO")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if a.fetch_only:
            print(ensure_jar())
            return 0
        if a.check:
            host, _, port = a.check.rpartition(":")
            check_member(host or "127.0.0.1", int(port), a.cluster_name, a.timeout)
            print(f"{a.check}: member of cluster {a.cluster_name!r} serves clients")
            return 0
        n = len(set(a.peers) | {a.port})
        cp = a.cp_members if a.cp_members is not None else (3 if n >= 3 else 0)
        cfg = RealMemberConfig(port=a.port, peers=a.peers, cluster_name=a.cluster_name, cp_members=cp,
                               heap=a.heap, session_ttl_s=a.session_ttl_s, heartbeat_s=a.heartbeat_s)
        log.info("effective config: %s", cfg)
        if a.exec:
            cmd = prepare(cfg, a.work_dir)
            sys.stdout.flush()
            os.execv(cmd[0], cmd)
        member = RealMember(cfg, a.work_dir)
        member.start(timeout=a.timeout)
    except ValueError as exc:
        print(f"hz_real: bad configuration: {exc}", file=sys.stderr)
        return 2
    except HzRealError as exc:
        print(f"hz_real: {exc}", file=sys.stderr)
        return 2
    log.info("ready: real Hazelcast member %s of cluster %r (pid %d, log %s)", member.address,
             cfg.cluster_name, member.p.pid, member.log_path)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: member.p.send_signal(signal.SIGTERM))
    rc = member.p.wait()
    log.info("member %s exited with %d", member.address, rc)
    return 0 if rc in (0, 143, -15) else 1


if __name__ == "__main__":
    sys.exit(main())
