"""Read-only operator view of the cluster: list maps with sizes, print a map's entries or one key.

``python -m prod.bus.inspect [--map NAME] [--key KEY] [--members HOST:PORT] [--cluster NAME] [--timeout S]``
It connects through :class:`prod.runtime.Bus` (an ordinary hazelcast-python-client), so it works against
the embedded member and a real cluster. It never writes: no put, no listener, no proxy destroy.

Every value of a known topic is checked with :func:`prod.bus.maps.decode`; a malformed one is
printed as it is, followed by a line ``invalid: <why>`` (and ``--key`` then exits 3).
Exit codes: 0 shown, 1 key absent, 2 no member answered, 3 the key's value is invalid.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from prod.bus import maps
from prod.runtime import Bus
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


def _problem(map_name: str, key: object, value: object) -> str | None:
    """Return why ``map_name[key]`` does not decode through its topic, None when fine or free-form."""
    if not isinstance(key, str) or maps.topic_for(map_name, key) is None:
        return None
    try:
        maps.decode(map_name, key, value)
    except maps.PayloadError as exc:
        return str(exc)
    return None


EXIT_NO_SUCH_MAP = 4


def _map_names(client) -> list[str]:
    return sorted(o.name for o in client.get_distributed_objects() if o.service_name == MAP_SERVICE)


def _json_value(value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def inspect_json(client, map_name: str | None, key: str | None, out: TextIO) -> int:
    """Like :func:`inspect`, as one JSON document (values parsed when they are JSON, problems named)."""
    names = _map_names(client)
    if map_name is None:
        json.dump({"maps": {n: client.get_map(n).blocking().size() for n in names}}, out, indent=2)
        print(file=out)
        return 0
    if map_name not in names:
        json.dump({"error": f"no such map {map_name!r}", "maps": names}, out, indent=2)
        print(file=out)
        return EXIT_NO_SUCH_MAP
    m = client.get_map(map_name).blocking()
    items = [(key, m.get(key))] if key is not None else sorted(m.entry_set(), key=lambda kv: str(kv[0]))
    entries: dict[str, dict] = {str(k): {"value": _json_value(v), "invalid": _problem(map_name, k, v)}
                                for k, v in items if v is not None}
    json.dump({"map": map_name, "entries": entries}, out, indent=2, default=repr)
    print(file=out)
    if key is not None and not entries:
        return 1
    return 3 if key is not None and entries[str(key)]["invalid"] else 0


def inspect(client, map_name: str | None, key: str | None, out: TextIO, width: int = 200) -> int:
    """Print maps and sizes (no ``map_name``), a map's entries, or one entry; return the exit code.

    A map that does not exist is reported (exit 4) and is **not** created: the tool never writes.
    """
    names = _map_names(client)
    if map_name is None:
        print(f"{'map':<40} {'size':>8}", file=out)
        for name in names:
            print(f"{name:<40} {client.get_map(name).blocking().size():>8}", file=out)
        return 0
    if map_name not in names:
        print(f"inspect: no such map {map_name!r} (maps: {', '.join(names) or 'none'})", file=out)
        return EXIT_NO_SUCH_MAP
    m = client.get_map(map_name).blocking()
    if key is not None:
        value = m.get(key)
        if value is None:
            print(f"{map_name}[{key!r}]: <absent>", file=out)
            return 1
        print(f"{map_name}[{key!r}] = {_fmt(value, 0)}", file=out)
        why = _problem(map_name, key, value)
        if why is not None:
            print(f"invalid: {why}", file=out)
            return 3
        return 0
    entries = sorted(m.entry_set(), key=lambda kv: str(kv[0]))
    print(f"{map_name}: {len(entries)} entries", file=out)
    for k, v in entries:
        print(f"  {k!s:<32} {_fmt(v, width)}", file=out)
        why = _problem(map_name, k, v)
        if why is not None:
            print(f"  {'':<32} invalid: {why}", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.bus.inspect", description=__doc__.splitlines()[0])
    ap.add_argument("--map", help="print the entries of this map")
    ap.add_argument("--key", help="print only this key of --map")
    ap.add_argument("--members", help="comma-separated host:port (default from DOLPHIN_HZ_MEMBERS)")
    ap.add_argument("--cluster", help="cluster name (default from DOLPHIN_HZ_CLUSTER)")
    ap.add_argument("--width", type=int, default=200, help="truncate values to this many characters (0 = no limit)")
    ap.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for a member (default 15)")
    ap.add_argument("--json", action="store_true", help="one JSON document (values parsed, problems named)")
    a = ap.parse_args(argv)
    if a.key is not None and a.map is None:
        ap.error("--key needs --map")
    settings = load_settings(hz_members=tuple(x.strip() for x in a.members.split(",")) if a.members else None,
                             hz_cluster=a.cluster)
    bus = Bus(settings, "hz-inspect", connect_timeout_s=min(10.0, a.timeout)).start()
    try:
        if not bus.wait_connected(a.timeout):
            print(f"inspect: no Hazelcast member answered at {','.join(settings.hz_members)} "
                  f"(cluster {settings.hz_cluster!r})", file=sys.stderr)
            return 2
        if a.json:
            return inspect_json(bus.client, a.map, a.key, sys.stdout)
        return inspect(bus.client, a.map, a.key, sys.stdout, a.width)
    finally:
        bus.close()


if __name__ == "__main__":
    sys.exit(main())
