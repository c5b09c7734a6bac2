"""ops.mesh refuses a bad DOLPHIN_* value once, before supervisord starts (issue 20)."""
from __future__ import annotations

import subprocess
import sys

from ops import mesh
from tests.helpers import REPO_ROOT, free_port


def test_config_errors_names_mesh_wide_and_per_service_variables():
    assert mesh.config_errors({}) == []
    errs = mesh.config_errors({"DOLPHIN_SCAN_INTERVAL_S": "abc", "DOLPHIN_EVENT_TRADER_MAX_SCAN_AGE_S": "soon",
                               "DOLPHIN_SCANNER_BUS": "perhaps"})
    assert errs[0].startswith("DOLPHIN_SCAN_INTERVAL_S='abc'")
    assert any(e.startswith("event_trader: DOLPHIN_EVENT_TRADER_MAX_SCAN_AGE_S='soon'") for e in errs)
    assert any(e.startswith("scanner: DOLPHIN_SCANNER_BUS='perhaps'") for e in errs)


def test_mesh_up_with_a_bad_env_value_prints_the_error_and_starts_nothing(tmp_path):
    inst = tmp_path / "mesh"
    r = subprocess.run([sys.executable, "-m", "ops.mesh", "up", "--instance-dir", str(inst),
                        "--hz-port", str(free_port()), "--venue-port", str(free_port()),
                        "--prefect-port", str(free_port()), "--env", "DOLPHIN_SCAN_INTERVAL_S=abc"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "mesh: configuration error: DOLPHIN_SCAN_INTERVAL_S='abc'" in r.stderr and "Traceback" not in r.stderr
    assert not list(inst.rglob("supervisord.pid")) and not list(inst.rglob("*.sock"))
