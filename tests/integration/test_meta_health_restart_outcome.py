"""A restart MHS triggers that fails, against a real supervisord: the report names it under
``restart_outcomes`` (the operator alerts announce it, tests/integration/test_alerts.py)."""
from __future__ import annotations

import sys

import pytest

from prod.runtime import Bus
from prod.settings import load_settings
from services.meta_health import main as mh
from tests.helpers import free_port, wait_until
from tests.integration.tiny_supervisor import IDLE, TinySupervisor

SCANNER = "dolphin_data:scanner"
EXF = "dolphin_data:exf_fetcher"


@pytest.fixture
def sv(tmp_path):
    """A tiny supervisord whose scanner runs only while a flag file exists (so a restart can fail)."""
    flag = tmp_path / "scanner-may-start"
    flag.touch()
    s = TinySupervisor(tmp_path / "sv")
    gated = (f'{sys.executable} -c "import os, sys, time; os.path.exists(\'{flag}\') or sys.exit(3); '
             f'time.sleep(3600)"')
    text = s.conf.read_text()
    old = f"[program:scanner]\ncommand={IDLE}\nautostart=true\nautorestart=false\nstartsecs=0\n"
    assert old in text
    s.conf.write_text(text.replace(old, f"[program:scanner]\ncommand={gated}\nautostart=true\nautorestart=false\n"
                                        "startsecs=1\nstartretries=0\n"))
    s.start()
    yield s, flag
    s.shutdown()


def test_a_failed_restart_is_reported_with_supervisorctls_answer(sv, tmp_path):
    s_v, flag = sv
    run_logs = tmp_path / "run_logs"
    run_logs.mkdir()
    s = load_settings(env={}, run_logs=str(run_logs), hz_members=(f"127.0.0.1:{free_port()}",))
    svc = mh.MetaHealthService(mh.MHSConfig(settings=s, supervisor_conf=str(s_v.conf), prefect_port=0),
                               Bus(s, "meta_health"))      # bus never started: no member in this test
    s_v.ctl("stop", SCANNER, EXF)
    flag.unlink()                                          # the scanner can no longer start
    rep = svc.check()
    assert rep["restart_outcomes"] == {}                   # restarts run in threads: no answer yet
    assert sorted(p for p, _ in svc.recovery.fired) == [EXF, SCANNER]
    for t in svc.recovery.threads:
        t.join(60)
    wait_until(lambda: s_v.states()[EXF] == "RUNNING", 20, 0.1, what="exf_fetcher revived")
    rep = svc.check()
    assert set(rep["programs"]) == set(s_v.states())        # every program supervisord runs, for the consoles
    assert rep["programs"][EXF] == "RUNNING"
    out = rep["restart_outcomes"]
    assert out[EXF]["ok"] is True and out[EXF]["detail"].startswith("restarted")
    assert out[SCANNER]["ok"] is False, out
    assert out[SCANNER]["detail"].startswith("restart FAILED (supervisorctl exit") and "ERROR" in out[SCANNER]["detail"]
    assert isinstance(out[SCANNER]["at"], float) and out[SCANNER]["at"] >= rep["timestamp"] - 120
    assert s_v.states()[SCANNER] in ("FATAL", "BACKOFF", "EXITED"), out
