"""Maintenance holds: programs MHS must not revive while an operator works on them.

Design notes: ``docs/design/services.meta_health.md``.
"""
from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from prod.runtime import atomic_write_json
from prod.settings import REPO_ROOT

HOLDS_FILE = "meta_health_holds.json"
HOLD_COMMANDS = ("hold", "release", "holds")


class HoldError(ValueError):
    """A hold request or a holds file that cannot be used (the message names the source)."""


def holds_path(run_logs: Path | str) -> Path:
    return Path(run_logs) / HOLDS_FILE


def resolve_program(name: str, critical: Sequence[str], informational: Sequence[str]) -> str:
    """Return the ``group:program`` of ``name`` (bare or qualified); raise HoldError when it cannot be held."""
    def match(names: Sequence[str]) -> str | None:
        for full in names:
            if name == full or name == full.split(":")[-1]:
                return full
        return None

    full = match(critical)
    if full:
        return full
    info = match(informational)
    if info:
        raise HoldError(f"{info} is never auto-restarted by MHS, so it needs no hold: stop it with supervisorctl "
                        f"(programs that can be held: {', '.join(critical)})")
    raise HoldError(f"unknown program {name!r}: programs that can be held are {', '.join(critical)}")


def _valid_hold(prog: Any, h: Any) -> bool:
    if not isinstance(prog, str) or not isinstance(h, dict):
        return False
    since, until = h.get("since"), h.get("until")
    num = (int, float)
    return (isinstance(since, num) and not isinstance(since, bool) and math.isfinite(since)
            and (until is None or (isinstance(until, num) and not isinstance(until, bool) and math.isfinite(until)))
            and isinstance(h.get("reason", ""), str))


def read_holds(path: Path) -> dict[str, dict]:
    """Return every hold in ``path`` (expired ones included); {} when the file does not exist.

    Raises HoldError naming the file when it is not a JSON object of valid holds.
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise HoldError(f"{path}: cannot read the holds file ({exc})") from exc
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise HoldError(f"{path}: not JSON ({exc})") from exc
    holds = obj.get("holds") if isinstance(obj, dict) else None
    if not isinstance(holds, dict):
        raise HoldError(f"{path}: expected {{\"holds\": {{program: {{since, until, reason}}}}}}")
    bad = [p for p, h in holds.items() if not _valid_hold(p, h)]
    if bad:
        raise HoldError(f"{path}: malformed hold(s) for {bad} (need since: number, until: number|null, reason: str)")
    return dict(holds)


def active_holds(holds: dict[str, dict], now: float) -> dict[str, dict]:
    """Return the holds that have not expired at ``now``."""
    return {p: h for p, h in holds.items() if h.get("until") is None or h["until"] > now}


def add_hold(path: Path, program: str, *, reason: str, minutes: float | None, now: float, by: str) -> dict:
    """Record a hold on ``program`` (replacing one it had) and return it."""
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise HoldError(f"--minutes {minutes}: must be > 0")
    holds = active_holds(read_holds(path), now)
    hold = {"since": now, "until": None if minutes is None else now + minutes * 60.0, "reason": reason, "by": by}
    holds[program] = hold
    atomic_write_json(path, {"holds": holds})
    return hold


def remove_hold(path: Path, program: str, now: float) -> dict | None:
    """Remove the hold on ``program``; return it (None when it was not held)."""
    holds = active_holds(read_holds(path), now)
    old = holds.pop(program, None)
    if old is not None or path.exists():
        atomic_write_json(path, {"holds": holds})
    return old


def describe(program: str, hold: dict, now: float) -> str:
    since = datetime.fromtimestamp(hold["since"], timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    until = hold.get("until")
    left = "no expiry" if until is None else f"expires in {max(0.0, until - now) / 60:.1f} min"
    reason = hold.get("reason") or "no reason given"
    return f"{program}: held since {since} by {hold.get('by') or '?'} ({left}): {reason}"


def default_run_logs() -> tuple[Path, str]:
    """Return (run_logs dir, where it came from) for the CLI when ``--run-logs`` is not given."""
    env = os.environ.get("DOLPHIN_RUN_LOGS")
    if env:
        p = Path(env)
        return (p if p.is_absolute() else REPO_ROOT / p), "DOLPHIN_RUN_LOGS"
    from prod.runtime.mesh_record import live_records
    live = live_records(quiet=True)
    if len(live) == 1:
        return Path(live[0]["run_logs"]), f"the running mesh {live[0]['instance']}"
    if len(live) > 1:
        raise HoldError("several meshes are running (" + ", ".join(r["instance"] for r in live)
                        + "): say which with --run-logs DIR (python -m ops.mesh status lists them)")
    return REPO_ROOT / "run_logs", "the default run_logs"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m services.meta_health",
                                 description="maintenance holds: stop MHS from reviving a program you stopped")
    sub = ap.add_subparsers(dest="command", required=True)
    h = sub.add_parser("hold", help="MHS must not restart PROGRAM until it is released (or the hold expires)")
    h.add_argument("program")
    h.add_argument("--reason", default="", help="why (shown in meta_health.json and the TUI)")
    h.add_argument("--minutes", type=float, default=None, help="expire the hold after N minutes")
    r = sub.add_parser("release", help="let MHS revive PROGRAM again")
    r.add_argument("program")
    sub.add_parser("holds", help="list the active holds")
    for p in (h, r, sub.choices["holds"]):
        p.add_argument("--run-logs", type=Path, default=None,
                       help="run_logs directory of the mesh (default: DOLPHIN_RUN_LOGS, the running mesh, run_logs/)")
        p.add_argument("--json", action="store_true", help="print JSON")
    return ap


def main(argv: Sequence[str] | None = None, *, critical: Sequence[str], informational: Sequence[str]) -> int:
    """Run one hold command; return 0, or 2 with one error line on stderr."""
    args = build_parser().parse_args(argv)
    now = time.time()
    try:
        if args.run_logs is not None:
            run_logs, origin = args.run_logs.resolve(), "--run-logs"
        else:
            run_logs, origin = default_run_logs()
        path = holds_path(run_logs)
        if args.command == "holds":
            holds = active_holds(read_holds(path), now)
            if args.json:
                print(json.dumps({"file": str(path), "holds": holds}, indent=2))
            elif not holds:
                print(f"no holds ({path})")
            else:
                print("\n".join(describe(p, h, now) for p, h in sorted(holds.items())))
            return 0
        program = resolve_program(args.program, critical, informational)
        if args.command == "hold":
            if not run_logs.is_dir():
                raise HoldError(f"{run_logs} ({origin}): no such directory; is this the mesh's run_logs?")
            hold = add_hold(path, program, reason=args.reason, minutes=args.minutes, now=now, by=getpass.getuser())
            print(json.dumps({program: hold}) if args.json else
                  f"{describe(program, hold, now)}\nwritten to {path}; MHS leaves it stopped from its next cycle "
                  f"(stop it with: supervisorctl -c <conf> stop {program})")
        else:
            old = remove_hold(path, program, now)
            if args.json:
                print(json.dumps({program: old}))
            else:
                print(f"{program}: released; MHS revives it if it is stopped ({path})" if old else
                      f"{program} was not held ({path})")
        return 0
    except HoldError as exc:
        print(f"meta_health {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"meta_health {args.command}: cannot write the holds file: {exc}", file=sys.stderr)
        return 2
