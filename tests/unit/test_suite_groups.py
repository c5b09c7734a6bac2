"""The suite's xdist groups (tests/conftest.py): a module runs whole on one worker, the mesh tests first.

pytest >= 9.2 silently broke xdist's own ``loadgroup`` (pytest-xdist issue #1386): these run a real
``pytest -n 2 --dist loadgroup`` over three small modules and read which worker ran each test.
"""
from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

from tests.helpers import REPO_ROOT

MODULES = ("tests/unit/observability/test_tui_state.py", "tests/unit/observability/test_alerts.py",
           "tests/unit/prod/test_metrics_files.py")


def test_each_module_runs_whole_on_one_worker():
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
                        "-v", *MODULES], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, nodeid in re.findall(r"^\[(gw\d+)\] \[ *\d+%\] PASSED (\S+)", r.stdout, re.M):
        workers[nodeid.split("::", 1)[0]].add(worker)
    assert set(workers) == set(MODULES), r.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
    assert len(set().union(*workers.values())) == 2, dict(workers)      # and both workers had work


def _collection_order(*modules: str) -> list[str]:
    """The files of ``modules`` in the order the suite's collection hook leaves them (``--collect-only``)."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *modules],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    files: list[str] = []
    for line in r.stdout.splitlines():
        f = line.split("::", 1)[0]
        if "::" in line and (not files or files[-1] != f):
            files.append(f)
    return files


def test_mesh_tests_come_first_then_the_real_member_then_integration_then_unit():
    files = _collection_order("tests/unit/observability/test_alerts.py", "tests/integration/test_alerts.py",
                              "tests/integration/test_hz_member.py", "tests/e2e/test_mesh.py")
    assert files == ["tests/e2e/test_mesh.py", "tests/integration/test_hz_member.py",
                     "tests/integration/test_alerts.py", "tests/unit/observability/test_alerts.py"], files


def test_the_prefect_modules_share_one_group_ahead_of_the_other_integration_tests():
    from tests.conftest import PREFECT_GROUP, _group_of

    class Item:                       # the two attributes _group_of reads from a collected test
        def __init__(self, nodeid: str):
            self.nodeid = nodeid

        def get_closest_marker(self, _name):
            return None

    prefect = {"tests/integration/test_flows.py", "tests/integration/test_sweep_flow.py"}
    for path in sorted(prefect):
        assert _group_of(Item(f"{path}::t"), set(), prefect) == (1, PREFECT_GROUP)
    assert _group_of(Item("tests/integration/test_alerts.py::t"), set(), prefect) == (2, "tests/integration/test_alerts.py")
    files = _collection_order("tests/integration/test_alerts.py", *sorted(prefect))
    assert files == [*sorted(prefect), "tests/integration/test_alerts.py"], files
