"""Every DOLPHIN Prometheus metric in one registry, and the per-service ``/metrics`` HTTP endpoint.

Design notes: ``docs/design/prod.md``.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from prometheus_client import (CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, GCCollector,
                               PlatformCollector, ProcessCollector, start_http_server)

from prod.bus import maps
from prod.settings import ConfigError, Settings

log = logging.getLogger(__name__)

# ── ports: metrics_port_base + offset (docs/metrics.md) ──────────────────────────────────────
SERVICE_PORT_OFFSETS: dict[str, int] = {
    "scanner": 0, "scan_bridge": 1, "obf_universe": 2, "exf_fetcher": 3, "acb_processor": 4,
    "safety_watchdog": 5, "meta_health": 6, "event_trader": 7, "mc_forewarner": 8, "web_console": 9,
    "hz_member": 10, "venue_sim": 11, "alerts": 12,
}

POSTURES = ("APEX", "STALKER", "TURTLE", "HIBERNATE", "UNKNOWN")
MHS_STATUSES = ("GREEN", "DEGRADED", "CRITICAL", "DEAD", "UNKNOWN")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
_AGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

SERVICE_INFO = Info("dolphin_service", "The DOLPHIN service behind this endpoint.", registry=REGISTRY)

# scanner / scan path
SCANS = Counter("dolphin_scans", "Eigen scans produced (scanner) or received (consumers).", registry=REGISTRY)
SCAN_NUMBER = Gauge("dolphin_scan_number", "scan_number of the latest scan seen.", registry=REGISTRY)
SCAN_AGE = Gauge("dolphin_scan_age_seconds", "Age of the latest scan (now - its writer timestamp).",
                 registry=REGISTRY)
SCAN_TO_DECISION = Histogram("dolphin_scan_to_decision_seconds",
                             "Scan written to the bus -> trader decision taken.", buckets=_LATENCY_BUCKETS,
                             registry=REGISTRY)
# bus
BUS_OP = Histogram("dolphin_bus_op_seconds", "Duration of one Hazelcast map operation.", ["op", "map"],
                   buckets=_BUS_BUCKETS, registry=REGISTRY)
BUS_ERRORS = Counter("dolphin_bus_op_errors", "Hazelcast map operations that raised.", ["op", "map"],
                     registry=REGISTRY)
LISTENER_LAG = Histogram("dolphin_listener_lag_seconds",
                         "Writer timestamp -> entry-listener callback in this process.", ["map"],
                         buckets=_LATENCY_BUCKETS, registry=REGISTRY)
BAD_PAYLOADS = Counter("dolphin_bad_payloads_dropped", "Malformed inputs dropped, by source.", ["source"],
                       registry=REGISTRY)
HEARTBEAT_AGE = Gauge("dolphin_heartbeat_age_seconds", "Age of each service's last heartbeat.", ["service"],
                      registry=REGISTRY)
# order books
BOOK_STALENESS = Histogram("dolphin_book_staleness_seconds", "Age of an order book when it is used or snapshotted.",
                           buckets=_AGE_BUCKETS, registry=REGISTRY)
BOOK_STALENESS_MAX = Gauge("dolphin_book_staleness_max_seconds", "Oldest book in the latest snapshot.",
                           registry=REGISTRY)
BOOKS = Gauge("dolphin_books", "Order books held in the latest snapshot.", registry=REGISTRY)
# safety and health
POSTURE = Enum("dolphin_posture", "Survival-stack posture.", states=list(POSTURES), registry=REGISTRY)
RM = Gauge("dolphin_rm", "Survival-stack risk multiplier Rm in [0, 1].", registry=REGISTRY)
SAFETY_SENSOR = Gauge("dolphin_safety_sensor", "Survival-stack sensor value.", ["sensor"], registry=REGISTRY)
RM_META = Gauge("dolphin_rm_meta", "Meta-health score rm_meta in [0, 1].", registry=REGISTRY)
MHS_STATUS = Enum("dolphin_meta_status", "Meta-health status.", states=list(MHS_STATUSES), registry=REGISTRY)
MHS_SENSOR = Gauge("dolphin_meta_sensor", "Meta-health sensor score in [0, 1].", ["sensor"], registry=REGISTRY)
PROGRAM_RUNNING = Gauge("dolphin_program_running", "1 if supervisord reports the program RUNNING.", ["program"],
                        registry=REGISTRY)
RESTARTS = Counter("dolphin_service_restarts", "Restarts of a program triggered by meta-health.", ["program"],
                   registry=REGISTRY)
# trading
TRADES = Counter("dolphin_trades", "Paper/live fills.", ["strategy", "side"], registry=REGISTRY)
PNL_DAY = Gauge("dolphin_pnl_day_usdt", "PnL of the current UTC day.", ["strategy"], registry=REGISTRY)
CAPITAL = Gauge("dolphin_capital_usdt", "Account capital.", ["strategy"], registry=REGISTRY)
POSITION_OPEN = Gauge("dolphin_position_open", "1 while a position is open.", ["strategy"], registry=REGISTRY)


# ── endpoint ─────────────────────────────────────────────────────────────────────────────────
@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` server (see :func:`start_metrics`)."""

    service: str
    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving (tests; a service just exits)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


_lock = threading.Lock()
_endpoint: MetricsEndpoint | None = None


def metrics_port(service: str, settings: Settings) -> int:
    """Return the ``/metrics`` port of ``service`` (0 when metrics are disabled).

    Raises :class:`prod.settings.ConfigError` for a service without a port offset (the base is
    capped at 65000 by the settings, so base + offset is always a valid port).
    """
    if service not in SERVICE_PORT_OFFSETS:
        raise ConfigError(f"metrics: no port offset for service {service!r} (known: {sorted(SERVICE_PORT_OFFSETS)})")
    if settings.metrics_port_base == 0:
        return 0
    return settings.metrics_port_base + SERVICE_PORT_OFFSETS[service]


def start_metrics(service_name: str, settings: Settings) -> MetricsEndpoint | None:
    """Serve this process's metrics on the service's port; return the endpoint, or None.

    None means disabled (``metrics_port_base`` 0) or not available (port in use, bind error: logged,
    never raised). A second call in the same process returns the first endpoint.
    """
    global _endpoint
    port = metrics_port(service_name, settings)
    with _lock:
        if _endpoint is not None:
            if _endpoint.service != service_name:
                log.warning("metrics: already serving %s on %s; not starting a second endpoint for %s",
                            _endpoint.service, _endpoint.port, service_name)
            return _endpoint
        SERVICE_INFO.info({"service": service_name, "profile": settings.profile})
        if port == 0:
            log.info("metrics: disabled (DOLPHIN_METRICS_PORT_BASE=0) for %s", service_name)
            return None
        try:
            server, thread = start_http_server(port, addr=settings.metrics_host, registry=REGISTRY)
        except OSError as exc:
            log.error("metrics: %s cannot serve /metrics on %s:%s (%s); running without metrics",
                      service_name, settings.metrics_host, port, exc)
            return None
        _endpoint = MetricsEndpoint(service_name, settings.metrics_host, port, server, thread)
        log.info("metrics: %s serving %s", service_name, _endpoint.url)
        return _endpoint


def stop_metrics() -> None:
    """Stop this process's endpoint, if any (lets a test start another one)."""
    global _endpoint
    with _lock:
        if _endpoint is not None:
            _endpoint.stop()
            _endpoint = None


# ── recording helpers (one line at each instrumentation point) ───────────────────────────────
_SINGLE_KEY_SOURCES = {f"{m}[{k}]" for m, k in (
    (maps.FEATURES, maps.KEY_EIGEN_SCAN), (maps.FEATURES, maps.KEY_ACB_BOOST), (maps.FEATURES, maps.KEY_ACB_STATE),
    (maps.FEATURES, maps.KEY_EXF), (maps.FEATURES, maps.KEY_OBF_UNIVERSE), (maps.FEATURES, maps.KEY_MC_FOREWARNER),
    (maps.FEATURES, maps.KEY_OB_MACRO),
    (maps.SAFETY, maps.KEY_LATEST), (maps.META_HEALTH, maps.KEY_LATEST), (maps.STATE_BLUE, maps.KEY_LATEST))}
_MAX_FREE_SOURCES = 64
_free_sources: set[str] = set()


def payload_source(map_name: str, key: str | None = None) -> str:
    """Return the bounded ``source`` label of a map value: ``MAP[key]`` for single-key sources, else ``MAP``."""
    if key is not None and f"{map_name}[{key}]" in _SINGLE_KEY_SOURCES:
        return f"{map_name}[{key}]"
    return map_name


def bad_payload(source: str) -> None:
    """Count one dropped malformed input from ``source`` (a :func:`payload_source` or e.g. ``venue:depth``).

    At most 64 distinct free-form sources are kept; later ones count under ``other``.
    """
    if source not in _free_sources:
        with _lock:
            if source not in _free_sources and len(_free_sources) >= _MAX_FREE_SOURCES:
                source = "other"
            else:
                _free_sources.add(source)
    BAD_PAYLOADS.labels(source=source).inc()


@contextmanager
def bus_op(op: str, map_name: str) -> Iterator[None]:
    """Time one blocking map operation: ``with bus_op("set", maps.FEATURES): m.set(k, v)``."""
    t0 = time.perf_counter()
    try:
        yield
    except Exception:
        BUS_ERRORS.labels(op=op, map=_map_label(map_name)).inc()
        raise
    finally:
        BUS_OP.labels(op=op, map=_map_label(map_name)).observe(time.perf_counter() - t0)


def _map_label(map_name: str) -> str:
    return "DOLPHIN_FEATURES_SHARD" if map_name in maps.SHARD_MAPS else map_name


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def listener_lag(map_name: str, writer_ts: Any, now: float | None = None) -> None:
    """Record writer timestamp → callback lag for ``map_name`` (ignored when the timestamp is not a number)."""
    ts = _finite(writer_ts)
    if ts is not None:
        LISTENER_LAG.labels(map=_map_label(map_name)).observe(max(0.0, (time.time() if now is None else now) - ts))


def record_scan(scan: Mapping[str, Any], now: float | None = None) -> None:
    """Count a scan and set scan number and age from an ``eigen_scan`` payload."""
    SCANS.inc()
    n = _finite(scan.get("scan_number"))
    if n is not None:
        SCAN_NUMBER.set(n)
    ts = _finite(scan.get("bridge_ts"))
    if ts is not None:
        SCAN_AGE.set(max(0.0, (time.time() if now is None else now) - ts))


def record_safety(payload: Mapping[str, Any]) -> None:
    """Set posture, Rm and each numeric sensor from a ``DOLPHIN_SAFETY[latest]`` payload."""
    posture = payload.get("posture")
    POSTURE.state(posture if posture in POSTURES else "UNKNOWN")
    rm = _finite(payload.get("Rm"))
    if rm is not None:
        RM.set(rm)
    sensors = payload.get("sensors")
    if isinstance(sensors, Mapping):
        for name, v in sensors.items():
            x = _finite(v)
            if x is not None:
                SAFETY_SENSOR.labels(sensor=str(name)[:40]).set(x)


def record_meta_health(report: Mapping[str, Any]) -> None:
    """Set rm_meta, status, each sensor and each program's running flag from an MHS report."""
    rm = _finite(report.get("rm_meta"))
    if rm is not None:
        RM_META.set(rm)
    status = report.get("status")
    MHS_STATUS.state(status if status in MHS_STATUSES else "UNKNOWN")
    for name, v in (report.get("sensors") or {}).items():
        x = _finite(v)
        if x is not None:
            MHS_SENSOR.labels(sensor=str(name)[:40]).set(x)
    for prog, state in (report.get("services") or {}).items():
        PROGRAM_RUNNING.labels(program=str(prog)[:40]).set(1.0 if state == "RUNNING" else 0.0)
    for age_key, age in (report.get("heartbeat_ages_s") or {}).items():
        x = _finite(age)
        if x is not None:
            HEARTBEAT_AGE.labels(service=str(age_key)[:40]).set(x)


def record_restart(program: str) -> None:
    """Count one restart of ``program`` triggered by meta-health."""
    RESTARTS.labels(program=program).inc()


def record_trade(strategy: str, side: str) -> None:
    """Count one fill (``side`` BUY or SELL)."""
    TRADES.labels(strategy=strategy, side=side if side in ("BUY", "SELL") else "OTHER").inc()


def record_pnl(strategy: str, payload: Mapping[str, Any]) -> None:
    """Set day PnL, capital and the open-position flag from a ``DOLPHIN_PNL_*[date]`` payload."""
    for gauge, key in ((PNL_DAY, "pnl"), (CAPITAL, "capital")):
        x = _finite(payload.get(key))
        if x is not None:
            gauge.labels(strategy=strategy).set(x)
    POSITION_OPEN.labels(strategy=strategy).set(0.0 if payload.get("open_position") is None else 1.0)


def record_books(ages_s: list[float]) -> None:
    """Record the ages of the books in one snapshot (histogram, max and count)."""
    finite = [a for a in ages_s if _finite(a) is not None]
    for a in finite:
        BOOK_STALENESS.observe(max(0.0, a))
    BOOKS.set(len(finite))
    BOOK_STALENESS_MAX.set(max(finite) if finite else 0.0)
