"""A tiny real supervisord for the operating tests: a few idle programs named like the mesh's, own socket."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_until

BIN = Path(sys.executable).parent
IDLE = f'{sys.executable} -c "import time; time.sleep(3600)"'


class TinySupervisor:
    """``supervisord -c <root>/sv.conf`` with the given programs (``group:name``), each an idle python."""

    def __init__(self, root: Path, programs: tuple[str, ...] = ("dolphin_data:exf_fetcher", "dolphin_data:scanner")):
        self.root = root
        self.conf = root / "sv.conf"
        self.socket = root / "sv.sock"
        self.pidfile = root / "supervisord.pid"
        self.logdir = root / "logs"
        self.programs = programs
        groups: dict[str, list[str]] = {}
        for p in programs:
            g, _, name = p.partition(":")
            groups.setdefault(g, []).append(name)
        lines = [f"[unix_http_server]\nfile={self.socket}\n",
                 f"[supervisord]\nlogfile={self.logdir}/supervisord.log\npidfile={self.pidfile}\n",
                 "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
                 f"[supervisorctl]\nserverurl=unix://{self.socket}\n"]
        for g, names in groups.items():
            lines.append(f"[group:{g}]\nprograms={','.join(names)}\n")
            for n in names:
                lines.append(f"[program:{n}]\ncommand={IDLE}\nautostart=true\nautorestart=false\nstartsecs=0\n"
                             f"stopwaitsecs=2\nstdout_logfile={self.logdir}/{n}.log\nredirect_stderr=true\n")
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text("\n".join(lines))

    def start(self) -> "TinySupervisor":
        subprocess.run([str(BIN / "supervisord"), "-c", str(self.conf)], check=True, timeout=30)
        wait_until(lambda: all(s == "RUNNING" for s in self.states().values()) and len(self.states()) == len(self.programs),
                   20, 0.1, what="tiny supervisord programs RUNNING")
        return self

    def ctl(self, *args: str) -> str:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=30).stdout

    def states(self) -> dict[str, str]:
        out = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2 and ":" in parts[0]:
                out[parts[0]] = parts[1]
        return out

    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def shutdown(self) -> None:
        if self.socket.exists():
            self.ctl("shutdown")
