"""Read-only operator view of the cluster: list maps with sizes, print a map's entries or one key.

``python -m prod.bus.inspect [--map NAME] [--key KEY] [--members HOST:PORT] [--cluster NAME]``
It is an ordinary hazelcast-python-client, so it works against the embedded member and a real cluster.
It never writes: no put, no listener, no proxy destroy.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from prod.bus.client import make_client
from prod.settings import load_settings

MAP_SERVICE = "hz:impl:mapService"


def _fmt(value: object, width: int) -> str:
    if isinstance(value, str):
        try:
            value = json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            pass
    text = str(value)
    return text if width <= 0 or len(text) <= width else text[: width - 3] + "..."


def inspect(client, map_name: str | None, key: str | None, out: TextIO, width: int = 200) -> int:
    """Print maps and sizes (no ``map_name``), a map's entries, or one entry; return the exit code."""
    if map_name is None:
        names = sorted(o.name for o in client.get_distributed_objects() if o.service_name == MAP_SERVICE)
        print(f"{'map':<40} {'size':>8}", file=out)
        for name in names:
            print(f"{name:<40} {client.get_map(name).blocking().size():>8}", file=out)
        return 0
    m = client.get_map(map_name).blocking()
    if key is not None:
        value = m.get(key)
        if value is None:
            print(f"{map_name}[{key!r}]: <absent>", file=out)
            return 1
        print(f"{map_name}[{key!r}] = {_fmt(value, 0)}", file=out)
        return 0
    entries = sorted(m.entry_set(), key=lambda kv: str(kv[0]))
    print(f"{map_name}: {len(entries)} entries", file=out)
    for k, v in entries:
        print(f"  {k!s:<32} {_fmt(v, width)}", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.bus.inspect", description=__doc__.splitlines()[0])
    ap.add_argument("--map", help="print the entries of this map")
    ap.add_argument("--key", help="print only this key of --map")
    ap.add_argument("--members", help="comma-separated host:port (default from DOLPHIN_HZ_MEMBERS)")
    ap.add_argument("--cluster", help="cluster name (default from DOLPHIN_HZ_CLUSTER)")
    ap.add_argument("--width", type=int, default=200, help="truncate values to this many characters (0 = no limit)")
    a = ap.parse_args(argv)
    if a.key is not None and a.map is None:
        ap.error("--key needs --map")
    settings = load_settings(hz_members=tuple(x.strip() for x in a.members.split(",")) if a.members else None,
                             hz_cluster=a.cluster)
    client = make_client(settings, name="hz-inspect", cluster_connect_timeout=10.0)
    try:
        return inspect(client, a.map, a.key, sys.stdout, a.width)
    finally:
        client.shutdown()


if __name__ == "__main__":
    sys.exit(main())
