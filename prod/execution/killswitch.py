"""The kill switch flag: a small JSON file whose presence halts entries until it is cleared.

Engaging writes ``{"ts", "reason", "by"}`` atomically (temp file + rename) so a reader never sees a
half-written flag; a flag that exists but cannot be parsed still counts as engaged (fail safe).
The trader's execution adapter polls it (every 0.2 s); ``python -m prod.execution kill`` engages it
and then cancels and flattens on the venue itself, so the account is flat even if no trader runs.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path


class KillSwitch:
    """File-backed kill switch at ``path`` (default ``<data_dir>/trader/KILL``)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def engage(self, reason: str, by: str | None = None) -> dict:
        """Write the flag (atomically); return its content."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"ts": time.time(), "reason": reason, "by": by or f"{socket.gethostname()}:{os.getpid()}"}
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(body, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        return body

    def active(self) -> bool:
        return self.path.exists()

    def read(self) -> dict | None:
        """Return the flag's content, ``{"reason": "unreadable flag"}`` if garbled, None if clear."""
        try:
            d = json.loads(self.path.read_text(encoding="utf-8"))
            return d if isinstance(d, dict) else {"reason": "unreadable flag"}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"reason": "unreadable flag"}

    def clear(self) -> bool:
        """Remove the flag; return whether one was there."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False
