"""Ask supervisord over its XML-RPC interface (the ``supervisor.childutils`` way) for program states and restarts.

The server URL and credentials come from the supervisord config's ``[supervisorctl]`` section, read by
supervisor's own ``ClientOptions``; every call has a socket timeout, so a hung supervisord cannot block MHS.
"""
from __future__ import annotations

import http.client
import socket
import xmlrpc.client
from dataclasses import dataclass
from urllib.parse import urlparse

from supervisor.options import ClientOptions
from supervisor.xmlrpc import Faults, SupervisorTransport, UnixStreamHTTPConnection

RPC_ERRORS = (OSError, xmlrpc.client.Error, http.client.HTTPException)


class SupervisorUnreachable(Exception):
    """supervisord did not answer (no socket, refused, timed out, or its config names no server)."""


@dataclass(frozen=True)
class ProgramStatus:
    name: str
    state: str
    pid: int | None = None
    detail: str = ""


class _TimedUnixConnection(UnixStreamHTTPConnection):
    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socketfile)


class _TimedTransport(SupervisorTransport):
    """supervisor's transport (unix socket or http, basic auth) with a timeout on every connection."""

    def __init__(self, username: str | None, password: str | None, serverurl: str, timeout_s: float):
        super().__init__(username, password, serverurl)
        if serverurl.startswith("unix://"):
            def get_connection() -> http.client.HTTPConnection:
                conn = _TimedUnixConnection("localhost", timeout=timeout_s)
                conn.socketfile = serverurl[7:]
                return conn
        else:
            u = urlparse(serverurl)

            def get_connection() -> http.client.HTTPConnection:
                return http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=timeout_s)
        self._get_connection = get_connection


class SupervisorRPC:
    """One supervisord, addressed by its config file."""

    def __init__(self, conf: str, timeout_s: float = 10.0):
        self.conf = str(conf)
        self.timeout_s = timeout_s

    def _proxy(self) -> xmlrpc.client.ServerProxy:
        opts = ClientOptions()
        try:
            opts.realize(args=["-c", self.conf])
        except (SystemExit, ValueError, OSError) as exc:
            raise SupervisorUnreachable(f"{self.conf}: cannot read the supervisorctl section ({exc!r})") from None
        transport = _TimedTransport(opts.username, opts.password, opts.serverurl, self.timeout_s)
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport)

    def states(self) -> dict[str, ProgramStatus]:
        """Return ``{"group:program": ProgramStatus}`` from ``supervisor.getAllProcessInfo``."""
        try:
            infos = self._proxy().supervisor.getAllProcessInfo()
        except RPC_ERRORS as exc:
            raise SupervisorUnreachable(f"{self.conf}: {type(exc).__name__}: {exc}") from None
        out: dict[str, ProgramStatus] = {}
        for i in infos:
            name = i["name"] if i["group"] == i["name"] else f"{i['group']}:{i['name']}"
            out[name] = ProgramStatus(name, i["statename"], i["pid"] or None, i.get("description", ""))
        return out

    def restart(self, program: str) -> tuple[bool, str]:
        """Stop (if running) and start ``program``, waiting for it to run; return (restarted?, what happened)."""
        try:
            rpc = self._proxy().supervisor
            was_running = True
            try:
                rpc.stopProcess(program, True)
            except xmlrpc.client.Fault as f:
                if f.faultCode != Faults.NOT_RUNNING:
                    return False, f"restart FAILED (stop: fault {f.faultCode}): {f.faultString}"[:300]
                was_running = False
            try:
                rpc.startProcess(program, True)
            except xmlrpc.client.Fault as f:
                return False, f"restart FAILED (start: fault {f.faultCode}): {f.faultString}"[:300]
        except RPC_ERRORS as exc:
            return False, f"restart FAILED (supervisord unreachable): {type(exc).__name__}: {exc}"[:300]
        return True, "restarted" + ("" if was_running else " (it was not running)")
