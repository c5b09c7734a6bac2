"""Hazelcast client factory from :class:`prod.settings.Settings`.

Every connection (the services' :class:`prod.runtime.Bus`, the console, the tools) is made here, so members, cluster
name, timeouts and reconnect policy are
set in one place and switching to a real cluster is a configuration change only.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import hazelcast
from hazelcast.config import ReconnectMode

from prod.settings import Settings

log = logging.getLogger(__name__)


def make_client(settings: Settings, *, name: str | None = None, near_cache: dict | None = None,
                cluster_connect_timeout: float | None = None, **extra: Any) -> hazelcast.HazelcastClient:
    """Connect a Hazelcast client to the members in ``settings`` and return it.

    The client reconnects by itself (async reconnect mode, unbounded cluster-connect retries unless
    ``cluster_connect_timeout`` is given), so a restarted member is picked up without a restart.
    """
    kwargs: dict[str, Any] = dict(
        cluster_members=list(settings.hz_members),
        cluster_name=settings.hz_cluster,
        client_name=name or f"dolphin-{os.getpid()}",
        reconnect_mode=ReconnectMode.ON,
        cluster_connect_timeout=(settings.hz_connect_timeout_s if cluster_connect_timeout is None
                                 else cluster_connect_timeout),
        invocation_timeout=settings.hz_invocation_timeout_s,
        connection_timeout=5.0,
        retry_initial_backoff=0.2,
        retry_max_backoff=2.0,
        retry_jitter=0.2,
    )
    if near_cache:
        kwargs["near_caches"] = near_cache
    kwargs.update(extra)
    return hazelcast.HazelcastClient(**kwargs)
