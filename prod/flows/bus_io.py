"""Every Hazelcast read and write the Prefect flows make, in one small module.

Design notes: ``docs/design/prod.flows.md``.
"""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Any, Iterator, Sequence

from prod.bus import maps
from prod.settings import Settings

log = logging.getLogger("dolphin.flows.bus")

POSTURES = ("APEX", "STALKER", "TURTLE", "HIBERNATE")
STATE_BACKTEST_LATEST = maps.KEY_STATE_BACKTEST_LATEST
HEARTBEAT_BACKTEST = "backtest_flow_heartbeat"
HEARTBEAT_PROBE = "backtest_flow_probe"


class BusUnavailableError(RuntimeError):
    """Hazelcast could not be reached or did not answer in time (transient: the task retries)."""


def pnl_map(strategy: str) -> str:
    """Return the PnL map of ``strategy`` (blue or green)."""
    return {"blue": maps.PNL_BLUE, "green": maps.PNL_GREEN}[strategy]


def pnl_key(flow: str, date: str) -> str:
    return maps.flow_pnl_key(flow, date)


def paper_state_key(strategy: str, date: str) -> str:
    return maps.paper_flow_state_key(strategy, date)


def paper_latest_key(strategy: str) -> str:
    return maps.paper_flow_state_key(strategy, "latest")


@contextlib.contextmanager
def connect(settings: Settings, timeout_s: float, name: str) -> Iterator[Any]:
    """Yield a connected client (shut down on exit); :class:`BusUnavailableError` when unreachable."""
    from prod.bus.client import make_client
    try:
        client = make_client(settings, name=name, cluster_connect_timeout=timeout_s,
                             invocation_timeout=max(1.0, timeout_s))
    except Exception as exc:  # noqa: BLE001 - the client raises IllegalStateError and others
        raise BusUnavailableError(f"Hazelcast {','.join(settings.hz_members)} (cluster {settings.hz_cluster}) "
                                  f"unreachable within {timeout_s:g}s: {exc}") from None
    try:
        yield client
    finally:
        client.shutdown()


def _within(fut: Any, timeout: float, what: str) -> Any:
    done = threading.Event()
    fut.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout):
        raise BusUnavailableError(f"{what}: no answer within {timeout:g}s")
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001
        raise BusUnavailableError(f"{what}: {exc!r}") from None


def read(client: Any, map_name: str, key: str, timeout: float) -> dict | None:
    """Read and validate ``map_name[key]``; None when absent. A malformed value raises PayloadError."""
    raw = _within(client.get_map(map_name).get(key), timeout, f"get {map_name}[{key!r}]")
    return None if raw is None else _as_dict(maps.decode(map_name, key, raw))


def _as_dict(p: Any) -> dict:
    return p.to_dict() if isinstance(p, maps.Payload) else p


def read_posture(client: Any, timeout: float) -> tuple[str, str]:
    """Return (posture, source): CP AtomicReference, then the map, APEX when neither has one (§14.6)."""
    try:
        raw = _within(client.cp_subsystem.get_atomic_reference(maps.SAFETY_ATOMIC_REF).get(), timeout,
                      f"CP AtomicReference {maps.SAFETY_ATOMIC_REF}")
        if raw is not None:
            p = maps.SAFETY_LATEST.decode(raw).posture
            if p in POSTURES:
                return p, "cp-atomic-ref"
            log.error("ignored unknown posture %r in the CP AtomicReference", p)
    except (BusUnavailableError, maps.PayloadError) as exc:
        log.warning("posture from the CP AtomicReference unavailable (%s); trying the map", exc)
    try:
        st = read(client, maps.SAFETY, maps.KEY_LATEST, timeout)
    except maps.PayloadError as exc:
        log.error("ignored bad %s[latest]: %s", maps.SAFETY, exc)
        st = None
    if st is not None and st["posture"] in POSTURES:
        return st["posture"], "map"
    return "APEX", "default"


def read_acb(client: Any, timeout: float) -> tuple[float, float]:
    """Return today's (boost, beta) from ``acb_boost``; (1.0, 0.0) when absent or malformed."""
    try:
        p = read(client, maps.FEATURES, maps.KEY_ACB_BOOST, timeout)
    except maps.PayloadError as exc:
        log.error("ignored bad acb_boost: %s", exc)
        return 1.0, 0.0
    if p is None:
        return 1.0, 0.0
    boost, beta = float(p["boost"]), float(p["beta"])
    if not (math.isfinite(boost) and boost > 0 and math.isfinite(beta) and beta >= 0):
        log.error("ignored out-of-range acb_boost boost=%r beta=%r", boost, beta)
        return 1.0, 0.0
    return boost, beta


def read_mc_status(client: Any, timeout: float) -> str | None:
    """Return the MC-forewarner status as the engine names it (OK/ORANGE/RED; §28.6's GREEN is OK), None when
    absent or malformed."""
    try:
        p = read(client, maps.FEATURES, maps.KEY_MC_FOREWARNER, timeout)
    except maps.PayloadError as exc:
        log.error("ignored bad mc_forewarner_latest: %s", exc)
        return None
    s = None if p is None else p.get("status")
    return {"GREEN": "OK", "OK": "OK", "ORANGE": "ORANGE", "RED": "RED"}.get(s) if isinstance(s, str) else None


def write_all(client: Any, writes: Sequence[tuple[str, str, dict]], timeout: float) -> None:
    """Encode every (map, key, payload) first, then write them in order, each confirmed by the member."""
    encoded = [(m, k, maps.encode(m, k, p)) for m, k, p in writes]
    for m, k, text in encoded:
        _within(client.get_map(m).set(k, text), timeout, f"set {m}[{k!r}]")


def heartbeat(client: Any, key: str, timeout: float, **fields: Any) -> dict:
    """Write ``DOLPHIN_HEARTBEAT[key]`` = {service, ts, iso, ...} and wait for the member to confirm."""
    now = time.time()
    payload = {"service": key, "ts": now, "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), **fields}
    write_all(client, [(maps.HEARTBEAT, key, payload)], timeout)
    return payload
