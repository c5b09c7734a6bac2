"""The cluster profile's docker-compose file matches the bus contract the services expect."""

import yaml

from prod.settings import load_settings
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def test_compose_declares_cp_enabled_cluster_with_the_default_cluster_name():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    hz_cfg = yaml.safe_load((ROOT / "docker" / "hazelcast.yaml").read_text())["hazelcast"]
    members = [n for n, s in compose["services"].items() if "hazelcast/hazelcast" in s.get("image", "")]
    assert len(members) >= 3, "the CP subsystem needs at least three members"
    assert hz_cfg["cp-subsystem"]["cp-member-count"] >= 3
    assert hz_cfg["cluster-name"] == load_settings(env={}).hz_cluster
    assert any("management-center" in s.get("image", "") for s in compose["services"].values())
    assert any("prefect" in s.get("image", "") for s in compose["services"].values())
