"""Command line of the embedded member: ``python -m standins.hz_member --host H --port P --cluster-name C``."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from prod.settings import load_settings
from standins.hz_member.server import MemberConfig, run

log = logging.getLogger("hz_member")


def parse_config(argv: list[str] | None = None) -> MemberConfig:
    """Build the frozen member config from flags, with defaults from prod.settings."""
    settings = load_settings()
    first = settings.hz_members[0]
    host, _, port = first.rpartition(":")
    ap = argparse.ArgumentParser(prog="python -m standins.hz_member", description=__doc__)
    ap.add_argument("--host", default=host, help="listen address (default from DOLPHIN_HZ_MEMBERS)")
    ap.add_argument("--port", type=int, default=int(port), help="listen port (default from DOLPHIN_HZ_MEMBERS)")
    ap.add_argument("--cluster-name", default=settings.hz_cluster, help="cluster name clients must present")
    ap.add_argument("--snapshot-dir", default=None, type=Path,
                    help="persist maps and CP state to DIR/hz_member.sqlite3 and reload them on start")
    ap.add_argument("--no-heartbeat", action="store_true", help="do not write DOLPHIN_HEARTBEAT[hz_member]")
    ap.add_argument("--auth-timeout-s", type=float, default=30.0,
                    help="close a connection that has not authenticated within this many seconds (0 = never)")
    ap.add_argument("--log-level", default="INFO")
    a = ap.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 0 < a.port < 65536:
        ap.error(f"--port {a.port}: out of range")
    if not a.cluster_name:
        ap.error("--cluster-name must not be empty")
    from prod.bus import maps
    return MemberConfig(host=a.host, port=a.port, cluster_name=a.cluster_name, snapshot_dir=a.snapshot_dir,
                        heartbeat_map=None if a.no_heartbeat else maps.HEARTBEAT, auth_timeout_s=a.auth_timeout_s)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    log.info("effective config: %s", cfg)
    try:
        asyncio.run(run(cfg))
    except OSError as exc:
        log.error("hz_member cannot listen on %s:%d: %s", cfg.host, cfg.port, exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
