"""The last test run's results file (bible §28.4): ``run_logs/test_results_latest.json``, written and read.

Schema: ``{"_run_at": ISO-8601 UTC, <category>: {"passed": int|null, "total": int|null, "status":
"PASS"|"FAIL"|"N/A"}, ...}`` plus our own ``_``-prefixed extras (``_exit_status``, ``_duration_s``,
``_failed``, ``_skipped``, ``_args``). :func:`write_test_results` writes it atomically (temp file +
rename) — ``make test`` does so through ``tests/results_plugin.py`` — and :func:`read_test_results`
validates it, so a truncated or hand-edited file is an error naming the file, never a crash.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

FILE_NAME = "test_results_latest.json"
STATUSES = ("PASS", "FAIL", "N/A")


class TestResultsError(ValueError):
    """The results file is unreadable or does not match the schema; the message names the file."""

    __test__ = False      # not a pytest test class


def default_path() -> Path:
    """``$DOLPHIN_RUN_LOGS/test_results_latest.json`` (default: the repository's run_logs/)."""
    from prod.settings import REPO_ROOT
    base = os.environ.get("DOLPHIN_RUN_LOGS") or "run_logs"
    p = Path(base)
    return (p if p.is_absolute() else REPO_ROOT / p) / FILE_NAME


def category(passed: int | None, total: int | None, failed: int = 0) -> dict:
    """Build one category entry; status PASS when all ran tests passed, FAIL on any failure, N/A when none ran."""
    if not total:
        return {"passed": None, "total": None, "status": "N/A"}
    return {"passed": passed, "total": total, "status": "FAIL" if failed or (passed or 0) < total else "PASS"}


def write_test_results(categories: Mapping[str, Any], path: Path | str | None = None, *,
                       now: float | None = None) -> Path:
    """Write ``_run_at`` (UTC ISO, now) plus ``categories`` atomically to ``path``; return the path."""
    path = Path(path) if path is not None else default_path()
    doc = {"_run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now)),
           **dict(categories)}
    text = json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".test_results.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def read_test_results(path: Path | str | None = None) -> dict | None:
    """Return the validated results document, None when there is no file; raise :class:`TestResultsError`."""
    path = Path(path) if path is not None else default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise TestResultsError(f"{path}: unreadable ({exc})") from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TestResultsError(f"{path}: malformed JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("_run_at"), str):
        raise TestResultsError(f"{path}: expected an object with a '_run_at' string")
    for name, cat in doc.items():
        if name.startswith("_"):
            continue
        if not isinstance(cat, dict) or cat.get("status") not in STATUSES:
            raise TestResultsError(f"{path}: category {name!r} must be an object with status in {STATUSES}")
        for k in ("passed", "total"):
            v = cat.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise TestResultsError(f"{path}: {name}.{k} must be a non-negative integer or null, got {v!r}")
    return doc
