"""MHS and a real supervisord over XML-RPC: program states, a restart that works, one that fails (the report
names it under ``restart_outcomes``; the operator alerts announce it, tests/integration/test_alerts.py)."""
from __future__ import annotations

import sys

import pytest

from prod.runtime import Bus
from prod.settings import load_settings
from services.meta_health import main as mh
from services.meta_health.supervisor_rpc import SupervisorRPC, SupervisorUnreachable
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


def test_a_failed_restart_is_reported_with_supervisords_answer(sv, tmp_path):
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
    assert out[SCANNER]["detail"].startswith("restart FAILED (start: fault") and "scanner" in out[SCANNER]["detail"]
    assert isinstance(out[SCANNER]["at"], float) and out[SCANNER]["at"] >= rep["timestamp"] - 120
    assert s_v.states()[SCANNER] in ("FATAL", "BACKOFF", "EXITED"), out


def test_states_and_restarts_over_xmlrpc_match_what_supervisorctl_shows(sv):
    s_v, _flag = sv
    rpc = SupervisorRPC(str(s_v.conf), timeout_s=10)
    st = rpc.states()
    assert {p: x.state for p, x in st.items()} == s_v.states() == {EXF: "RUNNING", SCANNER: "RUNNING"}
    assert st[EXF].pid and st[EXF].pid > 0
    s_v.ctl("stop", EXF)
    assert rpc.states()[EXF].state == "STOPPED" and rpc.states()[EXF].pid is None
    assert rpc.restart(EXF) == (True, "restarted (it was not running)")
    assert s_v.states()[EXF] == "RUNNING"
    pid = rpc.states()[EXF].pid
    assert rpc.restart(EXF) == (True, "restarted")
    assert rpc.states()[EXF].pid not in (None, pid)


def test_an_unreachable_supervisord_is_an_error_not_an_empty_answer(tmp_path):
    with pytest.raises(SupervisorUnreachable, match="missing.conf"):
        SupervisorRPC(str(tmp_path / "missing.conf")).states()
    conf = tmp_path / "sv.conf"
    conf.write_text(f"[supervisorctl]\nserverurl=unix://{tmp_path / 'nobody.sock'}\n")
    with pytest.raises(SupervisorUnreachable):
        SupervisorRPC(str(conf), timeout_s=2).states()
    ok, text = SupervisorRPC(str(conf), timeout_s=2).restart(EXF)
    assert not ok and text.startswith("restart FAILED (supervisord unreachable)")
