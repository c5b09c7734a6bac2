"""``mesh up --profile cluster``: a member that cannot start ends the wait at once, naming its log."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import real_member_unavailable
from tests.helpers import REPO_ROOT, free_port, free_port_block

pytestmark = pytest.mark.serial        # a cluster mesh under supervisord: never beside another mesh (conftest)


def test_up_fails_fast_naming_the_member_whose_port_is_taken(tmp_path):
    reason = real_member_unavailable()
    if reason:
        pytest.skip(reason)
    base = free_port_block(3)
    args = ["--profile", "cluster", "--hz-members", "3", "--instance-dir", str(tmp_path / "c"), "--hz-port",
            str(base), "--venue-port", str(free_port()), "--prefect-port", str(free_port()),
            "--env", f"DOLPHIN_WEB_PORT={free_port()}"]
    env = {**os.environ, "DOLPHIN_MESH_RECORD": str(tmp_path / "record.json")}
    squatter = socket.socket()
    # hz2's port bound but not listening, as an outgoing connection's local port holds it: the mesh's
    # port check (nothing accepts there) passes, the member's bind fails
    squatter.bind(("127.0.0.1", base + 1))
    try:
        # the timeout is far longer than the test may take: only the dead member can end the wait early
        res = subprocess.run([sys.executable, "-m", "ops.mesh", "up", *args, "--timeout", "900"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=400, env=env)
    finally:
        squatter.close()
        subprocess.run([sys.executable, "-m", "ops.mesh", "down", *args], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=120, env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "exited before" in res.stderr and "hz2.log" in res.stderr, res.stderr
    assert "Address already in use" in (tmp_path / "c" / "logs" / "hz2.log").read_text(errors="replace")
