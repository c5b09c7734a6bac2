"""Render the one member config (docker/hazelcast.yaml) for a member on loopback: port, peers, CP size."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import yaml

from prod.settings import REPO_ROOT

MEMBER_YAML = REPO_ROOT / "docker" / "hazelcast.yaml"


@dataclass(frozen=True)
class RealMemberConfig:
    """One real member: where it listens, which peers it joins, how many CP members the cluster has.

    ``cp_members`` 0 runs the CP subsystem in *unsafe* mode (single test member, CP data kept on
    partitions, no Raft); 3 (the cluster profile) forms a Raft CP group of three members, which
    survives the loss of one. ``session_ttl_s``/``heartbeat_s`` override the CP session settings.
    """
    port: int
    peers: tuple[int, ...] = ()          # every member's port on 127.0.0.1 (own port included); () = alone
    cluster_name: str = "dolphin"
    cp_members: int = 0
    host: str = "127.0.0.1"
    heap: str = "512m"
    session_ttl_s: int | None = None
    heartbeat_s: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port}: out of range")
        if self.cp_members not in (0,) and self.cp_members < 3:
            raise ValueError(f"cp_members {self.cp_members}: Hazelcast needs 0 (unsafe mode) or at least 3")
        if self.cp_members > max(1, len(self.members)):
            raise ValueError(f"cp_members {self.cp_members} > {len(self.members)} members: the CP group never forms")
        if not self.cluster_name:
            raise ValueError("cluster_name must not be empty")

    @property
    def members(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.peers) | {self.port}))


def render(cfg: RealMemberConfig, base: Path = MEMBER_YAML) -> str:
    """Return docker/hazelcast.yaml rewritten for ``cfg`` (YAML text for ``-Dhazelcast.config``)."""
    doc = yaml.safe_load(base.read_text())
    hz = copy.deepcopy(doc["hazelcast"])
    hz["cluster-name"] = cfg.cluster_name
    net = hz.setdefault("network", {})
    net["port"] = {"port": cfg.port, "auto-increment": False}
    net["interfaces"] = {"enabled": True, "interfaces": [cfg.host]}
    net.setdefault("join", {}).setdefault("tcp-ip", {})["member-list"] = [f"{cfg.host}:{p}" for p in cfg.members]
    net["join"]["tcp-ip"]["enabled"] = True
    net["join"]["multicast"] = {"enabled": False}
    cp = hz.setdefault("cp-subsystem", {})
    cp["cp-member-count"] = cfg.cp_members
    if cfg.cp_members == 0:
        cp.pop("group-size", None)
    else:
        cp["group-size"] = min(cp.get("group-size", 3), cfg.cp_members)
    if cfg.session_ttl_s is not None:
        cp["session-time-to-live-seconds"] = cfg.session_ttl_s
    if cfg.heartbeat_s is not None:
        cp["session-heartbeat-interval-seconds"] = cfg.heartbeat_s
    props = hz.setdefault("properties", {})
    props.setdefault("hazelcast.phone.home.enabled", False)
    props.setdefault("hazelcast.socket.bind.any", False)
    props.setdefault("hazelcast.shutdownhook.policy", "GRACEFUL")
    # a graceful shutdown waits at most 10 s (default 600 s) for migrations and the CP leave, then terminates.
    # A CP member leaves the CP groups through their majority, so members stopped together (supervisord
    # stops a group at once; `make cluster-stop`) or after a crashed CP member waited on each other until
    # supervisord's SIGKILL at stopwaitsecs (30 s). On its own with a healthy cluster a member stops in ~2 s.
    props.setdefault("hazelcast.graceful.shutdown.max.wait", 10)
    if len(cfg.members) == 1:           # alone on loopback: do not wait for peers that never come
        props.setdefault("hazelcast.wait.seconds.before.join", 0)
        props.setdefault("hazelcast.max.join.seconds", 1)
    return yaml.safe_dump({"hazelcast": hz}, sort_keys=False)
