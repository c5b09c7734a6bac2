"""The supervisord config and the mesh driver's rendering of it (parsed by supervisor's own option parser)."""
from __future__ import annotations

from pathlib import Path

from supervisor.options import ServerOptions

from services import mesh
from services.meta_health import CRITICAL_DATA_PROGRAMS, INFORMATIONAL_PROGRAMS


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
        assert p.command.startswith(f"{tmp_path}/supervisor/../.venv/bin/python -m "), p.command
        assert Path(p.stdout_logfile).resolve().parent == (tmp_path / "run_logs" / "supervisor").resolve()
        assert Path(p.directory).resolve() == tmp_path.resolve()
        assert p.autostart == (name != "dolphin:scan_bridge"), name   # trader autostarts (embedded)
    assert Path(opts.server_configs[0]["file"]).resolve() == (tmp_path / "run" / "supervisor.sock").resolve()
    assert "systemctl" not in mesh.CONF.read_text().replace("; ", "")


def test_rendered_instance_config(tmp_path):
    paths = mesh.instance_paths(tmp_path / "inst", 15555, 16666, "embedded", 2.0, {"DOLPHIN_SCAN_INTERVAL_S": "1"})
    opts = _parse(paths.conf)
    progs = _programs(opts)
    assert "--port 15555 " in progs["dolphin_core:hz_member"].command
    assert "--port 16666 " in progs["dolphin_core:venue_sim"].command
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
    for name in ("dolphin_core:hz_member", "dolphin_core:venue_sim", "dolphin:event_trader", "dolphin:scan_bridge"):
        assert progs[name].autostart is False, name
    assert progs["dolphin_data:meta_health"].autostart is True


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
        assert f"[{taken}]" in capsys.readouterr().err
        assert not paths.socket.exists()
    finally:
        srv.close()
