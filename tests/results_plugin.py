"""pytest plugin: write the run's results to run_logs/test_results_latest.json for the TUI footer (bible §28.4).

Loaded by ``make test`` (``-p tests.results_plugin``). One category per top-level test folder
(``unit``, ``integration``, ``e2e``, ``bench``; anything else is ``other``): ``passed`` tests, ``total`` =
passed + failed (a setup/teardown error counts as failed), ``skipped`` beside them (a skip is never
counted as passed), and ``status`` PASS / FAIL / N/A (nothing ran). The file is written atomically by
:func:`observability.test_results.write_test_results` when the session ends, whatever its outcome.

Under pytest-xdist only the controller writes: it sees every worker's reports through
``pytest_runtest_logreport``; their node ids carry the xdist group (``...::test@group``), which is cut off.
"""
from __future__ import annotations

import time

import pytest

from observability.test_results import category, write_test_results

CATEGORIES = ("unit", "integration", "e2e", "bench")


def _category(nodeid: str) -> str:
    parts = nodeid.split("::", 1)[0].replace("\\", "/").split("/")
    if "tests" in parts:
        i = parts.index("tests")
        if i + 1 < len(parts) and parts[i + 1] in CATEGORIES:
            return parts[i + 1]
    return "other"


def _test_id(nodeid: str) -> str:
    """The node id without the ``@group`` suffix xdist's loadgroup adds (an ``@`` inside ``[...]`` stays)."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") else nodeid


class ResultsRecorder:
    def __init__(self, config: pytest.Config):
        self.config = config
        self.outcome: dict[str, str] = {}      # nodeid -> passed / failed / skipped
        self.t0 = time.time()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = _test_id(report.nodeid)
        prev = self.outcome.get(nodeid)
        if report.failed:
            self.outcome[nodeid] = "failed"
        elif report.skipped and prev != "failed":
            self.outcome[nodeid] = "skipped"
        elif report.when == "call" and report.passed and prev is None:
            self.outcome[nodeid] = "passed"

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        counts: dict[str, dict[str, int]] = {c: {"passed": 0, "failed": 0, "skipped": 0} for c in (*CATEGORIES, "other")}
        for nodeid, out in self.outcome.items():
            counts[_category(nodeid)][out] += 1
        doc: dict = {}
        for name, c in counts.items():
            if name == "other" and not any(c.values()):
                continue
            total = c["passed"] + c["failed"]
            doc[name] = {**category(c["passed"], total, c["failed"]), "skipped": c["skipped"]}
        doc["_exit_status"] = int(exitstatus)
        doc["_duration_s"] = round(time.time() - self.t0, 1)
        doc["_failed"] = sorted(n for n, o in self.outcome.items() if o == "failed")[:50]
        doc["_args"] = [str(a) for a in self.config.invocation_params.args][:20]
        try:
            path = write_test_results(doc)
        except OSError as exc:
            self.config.get_terminal_writer().line(f"results_plugin: cannot write test results ({exc})", red=True)
            return
        self.config.get_terminal_writer().line(f"test results written to {path}")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):        # one writer per run
        config.pluginmanager.register(ResultsRecorder(config), "dolphin-results-recorder")
