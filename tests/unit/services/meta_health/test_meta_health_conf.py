"""The supervisord config and the mesh driver's rendering of it (parsed by supervisor's own option parser)."""
from __future__ import annotations

import os
from pathlib import Path

from supervisor.options import ServerOptions

from ops import mesh
from services.meta_health.main import CRITICAL_DATA_PROGRAMS, INFORMATIONAL_PROGRAMS


# CPU priority (nice): the bus and the trader ahead of everything (the scan → decision path), the scanner at the
# default priority, the programs off the latency-critical path behind
NICE = {"dolphin_core:hz_member": -10, "dolphin:event_trader": -10, "dolphin:scan_bridge": -10,
        "dolphin_core:venue_sim": 10, "dolphin_core:prefect": 10, "dolphin_flows:prefect_worker": 10,
        "dolphin_data:mc_forewarner": 10,
        "dolphin_data:exf_fetcher": 5, "dolphin_data:acb_processor": 5, "dolphin_data:obf_universe": 5,
        "dolphin_data:safety_watchdog": 5, "dolphin_data:meta_health": 5, "dolphin_data:web_console": 10}


def _parse(conf: Path) -> ServerOptions:
    opts = ServerOptions()
    opts.realize(args=["-c", str(conf)])
    return opts


def _programs(opts: ServerOptions) -> dict[str, object]:
    return {f"{g.name}:{p.name}": p for g in opts.process_group_configs for p in g.process_configs}


def test_committed_config_has_the_groups_and_relative_paths(tmp_path):
    # parse a byte-identical copy in a scratch tree, so %(here)s-relative paths resolve under tmp_path
    (tmp_path / "supervisor").mkdir()
    (tmp_path / "run_logs" / "supervisor").mkdir(parents=True)
    (tmp_path / "run").mkdir()
    conf = tmp_path / "supervisor" / "dolphin-supervisord.conf"
    conf.write_bytes(mesh.CONF.read_bytes())
    opts = _parse(conf)
    progs = _programs(opts)
    for name in CRITICAL_DATA_PROGRAMS + INFORMATIONAL_PROGRAMS + ("dolphin_data:meta_health",
                                                                   "dolphin_core:hz_member", "dolphin_core:venue_sim",
                                                                   "dolphin_data:mc_forewarner"):
        assert name in progs, name
    assert "dolphin_data:mc_forewarner" not in CRITICAL_DATA_PROGRAMS   # autostart, but MHS never revives it
    for name, p in progs.items():
        exe = "prefect server start " if name == "dolphin_core:prefect" else "python -m "
        # background programs run at a lower CPU priority; the scan → decision path does not
        command = p.command
        if name in NICE:
            assert command.startswith(f"nice -n {NICE[name]} "), (name, command)
            command = command[len(f"nice -n {NICE[name]} "):]
        assert command.startswith(f"{tmp_path}/supervisor/../.venv/bin/{exe}"), p.command
        assert Path(p.stdout_logfile).resolve().parent == (tmp_path / "run_logs" / "supervisor").resolve()
        assert Path(p.directory).resolve() == tmp_path.resolve()
        # the dolphin group is manual (§16.3: the mesh starts the trader); hz_cluster only with --hz-members
        assert p.autostart == (not name.startswith("dolphin:") and not name.startswith("hz_cluster:")), name
    assert Path(opts.server_configs[0]["file"]).resolve() == (tmp_path / "run" / "supervisor.sock").resolve()
    assert "systemctl" not in mesh.CONF.read_text().replace("; ", "")
    # the Prefect server: supervised in dolphin_core, state under data/, port 4200 where MHS's M4 looks
    pf = progs["dolphin_core:prefect"]
    assert pf.priority == 10 and pf.autorestart is not False
    assert "--host 127.0.0.1 --port 4200 " in pf.command + " " and " --ui " in pf.command + " "
    assert pf.environment["PREFECT_SERVER_UI_ENABLED"] == "true"     # the UI at http://127.0.0.1:4200
    assert pf.environment["PREFECT_UI_API_URL"] == "http://127.0.0.1:4200/api"   # the page calls this API
    # the worker of the `dolphin` process pool, against that server (python -m prefect worker start)
    wk = progs["dolphin_flows:prefect_worker"]
    assert "-m prefect worker start --pool dolphin --type process " in wk.command and wk.autorestart is not False
    assert wk.environment["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert Path(pf.environment["PREFECT_HOME"]).resolve() == (tmp_path / "data" / "prefect").resolve()
    assert pf.environment["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert "--prefect-port 4200" in progs["dolphin_data:meta_health"].command
    assert mesh.default_paths().prefect_home == mesh.REPO_ROOT / "data" / "prefect"
    assert mesh.DEFAULT_PREFECT_PORT in mesh.default_paths().ports


def test_rendered_instance_config(tmp_path):
    paths = mesh.instance_paths(tmp_path / "inst", 15555, 16666, "embedded", 2.0, {"DOLPHIN_SCAN_INTERVAL_S": "1"},
                                prefect_port=17777)
    opts = _parse(paths.conf)
    progs = _programs(opts)
    assert "--port 15555 " in progs["dolphin_core:hz_member"].command
    assert "--port 16666 " in progs["dolphin_core:venue_sim"].command
    assert "--port 17777 " in progs["dolphin_core:prefect"].command + " "
    assert "4200" not in progs["dolphin_core:prefect"].command
    assert "--prefect-port 17777" in progs["dolphin_data:meta_health"].command
    assert progs["dolphin_flows:prefect_worker"].environment["PREFECT_API_URL"] == "http://127.0.0.1:17777/api"
    assert progs["dolphin_core:prefect"].environment["PREFECT_UI_API_URL"] == "http://127.0.0.1:17777/api"
    assert progs["dolphin_core:prefect"].autostart is True
    inst = (tmp_path / "inst").resolve()
    assert progs["dolphin_core:prefect"].environment["PREFECT_HOME"] == str(inst / "data" / "prefect")
    assert paths.prefect_home == inst / "data" / "prefect"
    assert paths.ports == (15555, 16666, 17777)
    assert "--check-interval 2 " in progs["dolphin_data:meta_health"].command + " "
    assert progs["dolphin_data:mc_forewarner"].command.endswith("-m services.mc_forewarner --interval-s 14400")
    assert progs["dolphin_data:mc_forewarner"].autostart is True
    assert opts.server_configs[0]["file"] == str((tmp_path / "inst" / "sv.sock").resolve())
    env = progs["dolphin:event_trader"].environment   # [supervisord] environment= reaches every program
    assert env["DOLPHIN_HZ_MEMBERS"] == "127.0.0.1:15555" and env["DOLPHIN_SCAN_INTERVAL_S"] == "1"
    assert env["DOLPHIN_DATA_DIR"] == str((tmp_path / "inst" / "data").resolve())
    assert all(Path(p.stdout_logfile).parent == (tmp_path / "inst" / "logs").resolve() for p in progs.values())


def test_cluster_profile_keeps_core_and_trader_manual(tmp_path):
    paths = mesh.instance_paths(tmp_path / "c", 5701, 8765, "cluster", None, {})
    progs = _programs(_parse(paths.conf))
    for name in ("dolphin_core:hz_member", "dolphin_core:venue_sim", "dolphin_core:prefect", "dolphin:event_trader",
                 "dolphin:scan_bridge"):
        assert progs[name].autostart is False, name
    assert progs["dolphin_data:meta_health"].autostart is True
    assert "--prefect-port 4200" in progs["dolphin_data:meta_health"].command   # the cluster's own Prefect
    assert paths.ports == ()


def test_a_non_default_prefect_port_means_a_rendered_instance():
    parse = mesh.build_parser().parse_args
    assert mesh.is_custom(parse(["up"])) is False
    assert mesh.is_custom(parse(["up", "--prefect-port", "4200"])) is False
    assert mesh.is_custom(parse(["up", "--prefect-port", "14200"])) is True
    assert mesh.is_custom(parse(["status", "--hz-port", "15701"])) is True


def test_cli_prefect_port_reaches_the_rendering_and_the_port_check(tmp_path, capsys):
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        taken = srv.getsockname()[1]
        assert mesh.main(["up", "--instance-dir", str(tmp_path / "q"), "--prefect-port", str(taken),
                          "--timeout", "1"]) == 2
        assert str(taken) in capsys.readouterr().err
        conf = (tmp_path / "q" / "dolphin-supervisord.conf").read_text()
        assert f"--prefect-port {taken}" in conf and f"--host 127.0.0.1 --port {taken} " in conf
        assert (tmp_path / "q" / "data" / "prefect").is_dir()   # PREFECT_HOME made before supervisord starts
        assert not (tmp_path / "q" / "sv.sock").exists()
    finally:
        srv.close()


def test_status_of_a_mesh_that_is_not_running(tmp_path, capsys):
    paths = mesh.instance_paths(tmp_path / "x", 5701, 8765, "embedded", None, {})
    assert mesh.status(paths) == 3
    assert "not running" in capsys.readouterr().out
    assert mesh.down(paths) == 0


def test_up_refuses_when_a_port_is_taken(tmp_path, capsys):
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        taken = srv.getsockname()[1]
        from tests.helpers import free_port
        paths = mesh.instance_paths(tmp_path / "p", taken, free_port(), "embedded", None, {})
        assert mesh.up(paths, timeout=1) == 2
        err = capsys.readouterr().err
        assert f"port {taken} (needed by hz_member) is already in use" in err, err
        assert f"pid {os.getpid()}" in err, err          # the process holding it: this test
        assert not paths.socket.exists()
    finally:
        srv.close()


def test_flow_registration_failure_is_a_warning_naming_the_retry_command(capsys):
    from tests.helpers import free_port
    port = free_port()                                    # nothing listens: the Prefect API is down
    assert mesh.register_flows(port, dict(os.environ), wait_s=1) is False
    err = capsys.readouterr().err
    assert "WARNING: Prefect deployments not registered" in err and f"127.0.0.1:{port}/api" in err
    assert "-m prod.flows register --api-url" in err
