"""The test-results file (write/read/validate), its TUI footer line, and the pytest plugin that writes it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from observability import state as S
from observability.test_results import TestResultsError, category, read_test_results, write_test_results
from tests.helpers import REPO_ROOT

NOW = 1_800_000_000.0


def test_write_is_atomic_and_reads_back(tmp_path):
    p = write_test_results({"unit": category(15, 15), "e2e": category(None, None)}, tmp_path / "r" / "t.json", now=NOW)
    doc = read_test_results(p)
    assert doc["_run_at"] == "2027-01-15T08:00:00Z"
    assert doc["unit"] == {"passed": 15, "total": 15, "status": "PASS"}
    assert doc["e2e"] == {"passed": None, "total": None, "status": "N/A"}
    assert [f.name for f in p.parent.iterdir()] == ["t.json"]            # no temp file left behind
    assert category(3, 4, failed=1)["status"] == "FAIL"


@pytest.mark.parametrize("text,msg", [
    ('{"_run_at": "2026-01-01T00:00:00Z", "unit": {"passed": 1, "tot', "malformed JSON"),   # truncated
    ("[1, 2]", "'_run_at'"),
    ('{"_run_at": "x", "unit": {"passed": 1, "total": 1, "status": "GREEN"}}', "category 'unit'"),
    ('{"_run_at": "x", "unit": {"passed": -1, "total": 1, "status": "PASS"}}', "unit.passed"),
    ('{"_run_at": "x", "unit": {"passed": true, "total": 1, "status": "PASS"}}', "unit.passed"),
])
def test_a_bad_file_is_an_error_naming_the_file(tmp_path, text, msg):
    p = tmp_path / "test_results_latest.json"
    p.write_text(text)
    with pytest.raises(TestResultsError, match=msg) as exc:
        read_test_results(p)
    assert str(p) in str(exc.value)
    line = S.results_footer(None, str(exc.value), NOW)
    assert line.style == S.BAD and line.text.startswith("tests: ") and str(p) in line.text
    assert read_test_results(tmp_path / "absent.json") is None


def test_footer_line_colours_and_text():
    doc = {"_run_at": "2027-01-15T07:58:00Z", "unit": {"passed": 120, "total": 120, "status": "PASS", "skipped": 0},
           "integration": {"passed": 39, "total": 40, "status": "FAIL", "skipped": 1},
           "e2e": {"passed": None, "total": None, "status": "N/A"}, "_exit_status": 1}
    line = S.results_footer(doc, None, NOW)
    assert line.text == ("tests 2027-01-15T07:58:00Z (2m ago): unit 120/120 PASS · integration 39/40 FAIL (1 skipped)"
                         " · e2e N/A")
    assert line.style == S.BAD
    doc["integration"] = {"passed": 40, "total": 40, "status": "PASS"}
    assert S.results_footer(doc, None, NOW).style == S.OK
    assert S.results_footer({"_run_at": "?", "e2e": category(None, None)}, None, NOW).style == S.WARN
    assert S.results_footer(None, None, NOW).style == S.DIM


@pytest.mark.parametrize("workers", [[], ["-n", "2", "--dist", "loadgroup"]], ids=["serial", "xdist"])
def test_plugin_writes_per_folder_counts(tmp_path, workers):
    # under xdist (make test) the controller alone writes, from the reports of both workers
    proj = tmp_path / "proj"
    (proj / "tests" / "unit").mkdir(parents=True)
    (proj / "tests" / "integration").mkdir(parents=True)
    (proj / "pytest.ini").write_text("[pytest]\n")
    (proj / "tests" / "unit" / "test_a.py").write_text(textwrap.dedent("""
        import pytest
        def test_ok(): assert True
        def test_ok2(): assert 1 + 1 == 2
        def test_bad(): assert False
        def test_skip(): pytest.skip("not here")
    """))
    (proj / "tests" / "integration" / "test_b.py").write_text(textwrap.dedent("""
        import pytest
        @pytest.fixture
        def broken(): raise RuntimeError("setup fails")
        def test_ok(): pass
        @pytest.mark.xdist_group("g")     # xdist reports it as ...::test_setup_error@g
        def test_setup_error(broken): pass
    """))
    run_logs = tmp_path / "rl"
    env = {**os.environ, "DOLPHIN_RUN_LOGS": str(run_logs), "PYTHONPATH": str(REPO_ROOT)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.results_plugin",
                        *workers, "tests"], cwd=proj, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "test results written to" in r.stdout
    doc = json.loads((run_logs / "test_results_latest.json").read_text())
    assert doc["unit"] == {"passed": 2, "total": 3, "status": "FAIL", "skipped": 1}
    assert doc["integration"] == {"passed": 1, "total": 2, "status": "FAIL", "skipped": 0}
    assert doc["e2e"]["status"] == "N/A" and doc["bench"]["status"] == "N/A"
    assert doc["_exit_status"] == 1
    assert doc["_failed"] == ["tests/integration/test_b.py::test_setup_error", "tests/unit/test_a.py::test_bad"]
    assert read_test_results(run_logs / "test_results_latest.json") == doc
