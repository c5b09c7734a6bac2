"""Start one real Hazelcast member as a JVM and wait until a client can use it (a condition, never a sleep)."""
from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

from standins.hz_real.config import RealMemberConfig, render
from standins.hz_real.fetch import HzRealError, ensure_jar, require_tool

log = logging.getLogger("hz_real")

MAIN_CLASS = "com.hazelcast.core.server.HazelcastMemberStarter"
# what the official start script passes on Java 17 (no illegal-access warnings, full metrics)
JAVA_MODULE_OPTS = ("--add-modules", "java.se",
                    "--add-exports", "java.base/jdk.internal.ref=ALL-UNNAMED",
                    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
                    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
                    "--add-opens", "java.management/sun.management=ALL-UNNAMED",
                    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED")


def java_command(cfg: RealMemberConfig, jar: Path, config_file: Path) -> list[str]:
    """Return the ``java`` command line of one member (heap fixed at ``cfg.heap``; serial GC for 2 cores)."""
    return [require_tool("java"), f"-Xms{cfg.heap}", f"-Xmx{cfg.heap}", "-XX:+UseSerialGC",
            *JAVA_MODULE_OPTS, f"-Dhazelcast.config={config_file}", "-Djava.net.preferIPv4Stack=true",
            "-cp", str(jar), MAIN_CLASS]


def prepare(cfg: RealMemberConfig, work_dir: Path, jar: Path | None = None) -> list[str]:
    """Fetch the jar if needed, write ``work_dir/hazelcast-<port>.yaml`` and return the java command."""
    require_tool("java")
    jar = jar or ensure_jar()
    work_dir.mkdir(parents=True, exist_ok=True)
    conf = work_dir / f"hazelcast-{cfg.port}.yaml"
    conf.write_text(render(cfg))
    return java_command(cfg, jar, conf)


def port_accepting(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


AUTH_STATUS = {0: "AUTHENTICATED", 1: "CREDENTIALS_FAILED", 2: "SERIALIZATION_VERSION_MISMATCH",
               3: "NOT_ALLOWED_IN_CLUSTER"}


def probe_auth(host: str, port: int, cluster_name: str, timeout: float = 5.0) -> int | None:
    """Send one client authentication for ``cluster_name`` over a raw socket; return the status byte.

    None when the member does not answer within ``timeout`` (still starting: it accepts before it
    authenticates). A real 5.3 member answers CREDENTIALS_FAILED (1) for a wrong cluster name.
    """
    import struct
    import uuid

    from hazelcast.protocol.client_message import Frame, InboundMessage, _IS_FINAL_FLAG
    from hazelcast.protocol.codec import client_authentication_codec as auth

    req = auth.encode_request(cluster_name, None, None, uuid.uuid4(), "PYH", 1, "5.3.0", "hz_real-probe", [])
    req.set_correlation_id(1)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"CP2" + bytes(req.buf))
            buf, msg = b"", None
            while True:
                while len(buf) < 6 or len(buf) < struct.unpack_from("<i", buf, 0)[0]:
                    data = s.recv(65536)
                    if not data:
                        return None
                    buf += data
                length, flags = struct.unpack_from("<iH", buf, 0)
                frame, buf = Frame(buf[6:length], flags), buf[length:]
                msg = InboundMessage(frame) if msg is None else (msg.add_frame(frame) or msg)
                if flags & _IS_FINAL_FLAG:
                    break
            if struct.unpack_from("<i", msg.start_frame.buf, 0)[0] != auth._RESPONSE_MESSAGE_TYPE:
                return None
            return auth.decode_response(msg)["status"]
    except (OSError, struct.error, ValueError):
        return None


def _wait_future(fut, timeout: float):
    import threading
    done = threading.Event()
    fut.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout):
        raise TimeoutError(f"no answer within {timeout:.0f}s")
    return fut.result()


def check_member(host: str, port: int, cluster_name: str, timeout: float = 10.0,
                 cluster_size: int | None = None, alive=None, cp: bool = False) -> None:
    """Wait until ``host:port`` accepts and a client of ``cluster_name`` connects (and sees ``cluster_size``).

    Raises HzRealError naming the cause: nothing accepting on the port, a member of another cluster
    (wrong cluster name), a cluster that does not reach the expected size in time, or (``cp``) a CP
    subsystem that does not answer. ``alive`` is an optional callable; when it returns False (a member
    JVM died) the wait stops at once, in every phase.
    """
    import hazelcast
    from hazelcast.errors import HazelcastError

    deadline = time.monotonic() + timeout
    while not port_accepting(host, port):
        if alive is not None and not alive():
            raise HzRealError(f"the member process for {host}:{port} exited before it accepted connections")
        if time.monotonic() > deadline:
            raise HzRealError(f"no Hazelcast member accepts connections on {host}:{port} within {timeout:.0f}s "
                              f"(unreachable: not started, crashed, or another address)")
        time.sleep(0.1)
    while True:
        status = probe_auth(host, port, cluster_name, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
        if status == 0:
            break
        if status is not None:
            raise HzRealError(f"{host}:{port} refused cluster name {cluster_name!r} ({AUTH_STATUS.get(status, status)}): "
                              f"a member of another cluster? (check --cluster-name / DOLPHIN_HZ_CLUSTER)")
        if alive is not None and not alive():
            raise HzRealError(f"the member process for {host}:{port} exited before it served clients")
        if time.monotonic() > deadline:
            raise HzRealError(f"{host}:{port} accepts connections but no Hazelcast member answered within "
                              f"{timeout:.0f}s (not a Hazelcast member, or still starting)")
        time.sleep(0.2)
    left = max(1.0, deadline - time.monotonic())
    try:
        client = hazelcast.HazelcastClient(cluster_members=[f"{host}:{port}"], cluster_name=cluster_name,
                                           cluster_connect_timeout=left, smart_routing=False,
                                           client_name="hz_real-check")
    except HazelcastError as exc:
        text = str(exc)
        if "cluster name" in text.lower() or "Authentication" in type(exc).__name__ or "NOT_ALLOWED" in text:
            raise HzRealError(f"{host}:{port} refused cluster name {cluster_name!r} "
                              f"(a member of another cluster?): {exc}") from exc
        raise HzRealError(f"a client of cluster {cluster_name!r} could not connect to {host}:{port} "
                          f"within {timeout:.0f}s: {exc}") from exc
    try:
        if cluster_size:
            while len(client.cluster_service.get_members()) < cluster_size:
                if alive is not None and not alive():
                    raise HzRealError(f"a member of cluster {cluster_name!r} exited before the cluster had "
                                      f"{cluster_size} members")
                if time.monotonic() > deadline:
                    n = len(client.cluster_service.get_members())
                    raise HzRealError(f"cluster {cluster_name!r} at {host}:{port} has {n} of {cluster_size} "
                                      f"members after {timeout:.0f}s")
                time.sleep(0.1)
        if cp:
            while True:
                left = deadline - time.monotonic()
                if alive is not None and not alive():
                    raise HzRealError(f"a member of cluster {cluster_name!r} exited before its CP subsystem answered")
                if left <= 0:
                    raise HzRealError(f"the CP subsystem of cluster {cluster_name!r} did not answer within "
                                      f"{timeout:.0f}s (CP group not formed: are all CP members up?)")
                try:
                    _wait_future(client.cp_subsystem.get_atomic_long("hz_real_ready").get(), min(left, 10.0))
                    break
                except (TimeoutError, HazelcastError) as exc:
                    log.info("CP subsystem not ready yet: %r", exc)
                    time.sleep(0.5)
    finally:
        client.shutdown()


class RealMember:
    """A real member JVM started as a child process, logging to ``log_path``."""

    def __init__(self, cfg: RealMemberConfig, work_dir: Path, log_path: Path | None = None):
        self.cfg, self.work_dir = cfg, work_dir
        self.log_path = log_path or work_dir / f"hz_real-{cfg.port}.log"
        self.p: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0, cluster_size: int | None = None) -> "RealMember":
        """Start the JVM and wait until it serves clients; raise HzRealError (with the log tail) otherwise."""
        cmd = prepare(self.cfg, self.work_dir)
        self._log = open(self.log_path, "ab")
        self.p = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            check_member(self.cfg.host, self.cfg.port, self.cfg.cluster_name, timeout, cluster_size,
                         alive=lambda: self.p.poll() is None)
        except BaseException as exc:
            self.kill()
            if isinstance(exc, HzRealError):
                raise HzRealError(f"{exc}\n--- member log tail ({self.log_path}) ---\n{self.log_tail()}") from exc
            raise
        return self

    @property
    def address(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill(self) -> None:
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.p and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(30)
