"""Fetch the pinned Hazelcast OSS jar with Maven into a git-ignored cache, once."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from prod.settings import REPO_ROOT

HAZELCAST_VERSION = "5.3.8"
ARTIFACT = f"com.hazelcast:hazelcast:{HAZELCAST_VERSION}"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "hazelcast"


class HzRealError(RuntimeError):
    """A real member cannot be fetched, started or reached; the message names the cause and the fix."""


class MissingToolError(HzRealError):
    """``java`` or ``mvn`` is not installed."""


def cache_dir() -> Path:
    """Return the jar cache directory (``DOLPHIN_HZ_JAR_CACHE`` or ``.cache/hazelcast`` in the repository)."""
    return Path(os.environ.get("DOLPHIN_HZ_JAR_CACHE") or DEFAULT_CACHE)


def require_tool(name: str) -> str:
    """Return the path of ``name`` on PATH or raise MissingToolError saying what to install."""
    path = shutil.which(name)
    if path is None:
        what = {"java": "a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)",
                "mvn": "Apache Maven (e.g. `apt-get install maven`)"}[name]
        raise MissingToolError(f"`{name}` not found on PATH: install {what} to run real Hazelcast members")
    return path


def jar_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / f"hazelcast-{HAZELCAST_VERSION}.jar"


def ensure_jar(cache: Path | None = None, timeout: float = 600.0) -> Path:
    """Return the cached hazelcast jar, downloading it with ``mvn dependency:copy`` when absent.

    Raises MissingToolError without ``mvn`` and HzRealError (with Maven's last output lines) when the
    download fails or times out. A partial download never counts: the jar must exist afterwards. Processes
    fetching at once (test workers, a cluster's members) take turns on a lock file, and the jar appears
    under its name only whole (downloaded into a private directory, then renamed).
    """
    jar = jar_path(cache)
    if jar.is_file() and jar.stat().st_size > 0:
        return jar
    mvn = require_tool("mvn")
    jar.parent.mkdir(parents=True, exist_ok=True)
    with open(jar.parent / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)             # released when the file closes
        if jar.is_file() and jar.stat().st_size > 0:  # another process fetched it meanwhile
            return jar
        with tempfile.TemporaryDirectory(dir=jar.parent, prefix=".fetch-") as tmp:
            cmd = [mvn, "-B", "-q", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={tmp}"]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise HzRealError(f"downloading {ARTIFACT} with Maven timed out after {timeout:.0f}s "
                                  f"(is Maven Central reachable?)") from exc
            got = Path(tmp) / jar.name
            if res.returncode != 0 or not got.is_file():
                tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-8:])
                raise HzRealError(f"downloading {ARTIFACT} with `mvn dependency:copy` failed (exit {res.returncode}; "
                                  f"is Maven Central reachable?):\n{tail}")
            os.replace(got, jar)
    return jar
