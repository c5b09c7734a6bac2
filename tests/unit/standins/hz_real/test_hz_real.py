"""The real-member runner: config rendering, mesh rendering of a local cluster, clear errors without a hang."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from ops import mesh
from standins.hz_real.config import RealMemberConfig, render
from tests.helpers import REPO_ROOT, free_port


def test_single_member_renders_unsafe_cp_on_loopback():
    doc = yaml.safe_load(render(RealMemberConfig(port=5799, session_ttl_s=5, heartbeat_s=1)))["hazelcast"]
    assert doc["cluster-name"] == "dolphin"
    assert doc["network"]["port"] == {"port": 5799, "auto-increment": False}
    assert doc["network"]["join"]["tcp-ip"]["member-list"] == ["127.0.0.1:5799"]
    assert doc["cp-subsystem"]["cp-member-count"] == 0 and "group-size" not in doc["cp-subsystem"]
    assert doc["cp-subsystem"]["session-time-to-live-seconds"] == 5
    assert doc["cp-subsystem"]["locks"]["DOLPHIN_ACB_LOCK"]["lock-acquire-limit"] == 0
    assert doc["properties"]["hazelcast.map.invalidation.batch.enabled"] is False


def test_three_members_render_one_cp_group_of_three():
    doc = yaml.safe_load(render(RealMemberConfig(port=5702, peers=(5701, 5702, 5703), cp_members=3)))["hazelcast"]
    assert doc["network"]["join"]["tcp-ip"]["member-list"] == [f"127.0.0.1:{p}" for p in (5701, 5702, 5703)]
    assert doc["cp-subsystem"]["cp-member-count"] == 3 and doc["cp-subsystem"]["group-size"] == 3
    # a graceful stop is bounded well inside supervisord's stopwaitsecs (30 s), where SIGKILL would end it
    assert doc["properties"]["hazelcast.shutdownhook.policy"] == "GRACEFUL"
    assert 0 < doc["properties"]["hazelcast.graceful.shutdown.max.wait"] < 30


@pytest.mark.parametrize("kw", [dict(port=0), dict(port=5701, cp_members=2, peers=(5701, 5702)),
                                dict(port=5701, cp_members=3), dict(port=5701, cluster_name="")])
def test_bad_member_config_is_refused(kw):
    with pytest.raises(ValueError):
        RealMemberConfig(**kw)


def test_mesh_renders_a_local_cluster_and_defers_the_rest(tmp_path):
    paths = mesh.instance_paths(tmp_path / "c", 26701, 26711, "cluster", None, {}, hz_members=3, prefect_port=26712)
    text = paths.conf.read_text()
    sections = {name: body for name, body in
                (chunk.split("]", 1) for chunk in text.split("\n[program:")[1:])}
    for i, prog in enumerate(("hz1", "hz2", "hz3")):
        assert f"--port {26701 + i} --peers 26701,26702,26703 --cp-members 3" in sections[prog]
        assert "autostart=true" in sections[prog] and f"{tmp_path / 'c'}/hz_real" in sections[prog]
    assert all("autostart=false" in body for name, body in sections.items() if not name.startswith("hz"))
    assert paths.hz_cluster == (26701, 26702, 26703)
    assert paths.env["DOLPHIN_HZ_MEMBERS"] == "127.0.0.1:26701,127.0.0.1:26702,127.0.0.1:26703"
    assert "dolphin_data:acb_processor" in paths.deferred and "dolphin_core:venue_sim" in paths.deferred
    assert not any(p.endswith((":hz_member", ":event_trader", ":scan_bridge")) for p in paths.deferred)
    assert set(paths.ports) == {26701, 26702, 26703, 26711, 26712}


def test_hz_members_needs_the_cluster_profile():
    res = subprocess.run([sys.executable, "-m", "ops.mesh", "up", "--hz-members", "3"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "needs --profile cluster" in res.stderr


def _run_cli(tmp_path, *args: str, path: str, home=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path, "DOLPHIN_HZ_JAR_CACHE": str(tmp_path / "jar-cache")}
    if home:          # Maven reads settings and its local repository under user.home
        env["MAVEN_OPTS"] = f"-Duser.home={home}"
    return subprocess.run([sys.executable, "-m", "standins.hz_real", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def test_missing_java_or_maven_is_one_clear_line(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    res = _run_cli(tmp_path, "--fetch-only", path=str(empty))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("hz_real: `mvn` not found on PATH: install Apache Maven")
    res = _run_cli(tmp_path, "--port", str(free_port()), path=str(empty))
    assert res.returncode == 2 and "`java` not found on PATH: install a Java 17+ runtime" in res.stderr


@pytest.mark.skipif(shutil.which("mvn") is None, reason="needs mvn")
def test_jar_download_failure_names_the_cause_without_a_hang(tmp_path):
    home = tmp_path / "home"
    (home / ".m2").mkdir(parents=True)
    (home / ".m2" / "settings.xml").write_text(       # every download goes to a closed local port
        "<settings><mirrors><mirror><id>dead</id><mirrorOf>*</mirrorOf>"
        f"<url>http://127.0.0.1:{free_port()}/maven2</url></mirror></mirrors></settings>")
    t0 = time.monotonic()
    res = _run_cli(tmp_path, "--fetch-only", path=os.environ["PATH"], home=home)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "downloading com.hazelcast:hazelcast:5.3.8 with `mvn dependency:copy` failed" in res.stderr
    assert time.monotonic() - t0 < 100
    assert not (tmp_path / "jar-cache" / "hazelcast-5.3.8.jar").exists()


def test_unreachable_member_is_reported_at_once(tmp_path):
    t0 = time.monotonic()
    res = _run_cli(tmp_path, "--check", f"127.0.0.1:{free_port()}", "--timeout", "2", path=os.environ["PATH"])
    assert res.returncode == 2 and "no Hazelcast member accepts connections on 127.0.0.1:" in res.stderr
    assert time.monotonic() - t0 < 30
