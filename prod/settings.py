"""One typed configuration for every service: embedded-profile defaults, ``DOLPHIN_*`` overrides.

Every service builds a :class:`Settings` with :func:`load_settings` and passes it down. Command-line
flags of a service override the environment (``load_settings(**overrides)``); the environment
overrides the defaults below, which are the embedded profile of shared/ARCHITECTURE.md §2.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent

PROFILES = ("embedded", "cluster")
VENUE_KINDS = ("simulator", "testnet", "mainnet")
MARGIN_TYPES = ("ISOLATED", "CROSSED")

# The 50 scanner symbols (bible §27.7 PRIORITY_SYMBOLS): fixed universe of the correlation scan.
PRIORITY_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "TRXUSDT",
    "AVAXUSDT", "LINKUSDT", "DOTUSDT", "LTCUSDT", "BCHUSDT", "UNIUSDT", "ATOMUSDT", "ETCUSDT",
    "XLMUSDT", "FILUSDT", "APTUSDT", "ARBUSDT", "OPUSDT", "NEARUSDT", "INJUSDT", "AAVEUSDT",
    "SUIUSDT", "SEIUSDT", "TIAUSDT", "RUNEUSDT", "ALGOUSDT", "VETUSDT", "ICPUSDT", "HBARUSDT",
    "SANDUSDT", "MANAUSDT", "AXSUSDT", "GALAUSDT", "APEUSDT", "CHZUSDT", "CRVUSDT", "MKRUSDT",
    "SNXUSDT", "COMPUSDT", "LDOUSDT", "DYDXUSDT", "GRTUSDT", "EGLDUSDT", "THETAUSDT", "FTMUSDT",
    "KAVAUSDT", "ZECUSDT",
)
assert len(PRIORITY_SYMBOLS) == 50 and len(set(PRIORITY_SYMBOLS)) == 50


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range; the message names the source."""


@dataclass(frozen=True)
class Settings:
    """Effective configuration of one DOLPHIN process (immutable)."""

    profile: str = "embedded"
    hz_members: tuple[str, ...] = ("127.0.0.1:5701",)
    hz_cluster: str = "dolphin"
    hz_connect_timeout_s: float = 10.0
    hz_invocation_timeout_s: float = 30.0
    venue_ws: str = "ws://127.0.0.1:8765"
    venue_rest: str = "http://127.0.0.1:8765"
    data_dir: Path = field(default=REPO_ROOT / "data")
    run_logs: Path = field(default=REPO_ROOT / "run_logs")
    scan_interval_s: float = 5.0
    symbols: tuple[str, ...] = PRIORITY_SYMBOLS
    # observability (prod/metrics.py, observability/web): /metrics on metrics_port_base + the service's
    # offset (0 disables metrics); the web console on web_port. Both bind metrics_host / 127.0.0.1.
    metrics_host: str = "127.0.0.1"
    metrics_port_base: int = 9300
    web_port: int = 8088
    # the trading account (prod/execution/preflight.py, docs/execution.md "Go-live checklist"): what the
    # endpoint is (a mainnet URL trades only with venue_mainnet_ok), the margin type and leverage the trader
    # sets on every symbol it may trade, and the USDT it may use: capital = min(wallet available, allocation;
    # None = the engine's initial_capital)
    venue_kind: str = "simulator"
    venue_mainnet_ok: bool = False
    venue_margin_type: str = "ISOLATED"
    venue_leverage: int = 6
    venue_allocation_usdt: float | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"DOLPHIN_PROFILE={self.profile!r}: expected one of {PROFILES}")
        if not self.hz_members:
            raise ConfigError("DOLPHIN_HZ_MEMBERS: at least one member address is required")
        for m in self.hz_members:
            host, _, port = m.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"DOLPHIN_HZ_MEMBERS: {m!r} is not host:port")
        if not self.hz_cluster:
            raise ConfigError("DOLPHIN_HZ_CLUSTER: empty cluster name")
        if not self.venue_ws.startswith(("ws://", "wss://")):
            raise ConfigError(f"DOLPHIN_VENUE_WS={self.venue_ws!r}: must start with ws:// or wss://")
        if not self.venue_rest.startswith(("http://", "https://")):
            raise ConfigError(f"DOLPHIN_VENUE_REST={self.venue_rest!r}: must start with http(s)://")
        if not 0.01 <= self.scan_interval_s <= 3600:
            raise ConfigError(f"DOLPHIN_SCAN_INTERVAL_S={self.scan_interval_s}: must be in [0.01, 3600]")
        if self.metrics_port_base != 0 and not 1024 <= self.metrics_port_base <= 65000:
            raise ConfigError(f"DOLPHIN_METRICS_PORT_BASE={self.metrics_port_base}: must be 0 (off) or in [1024, 65000]")
        if not 1 <= self.web_port <= 65535:
            raise ConfigError(f"DOLPHIN_WEB_PORT={self.web_port}: must be in [1, 65535]")
        if not self.metrics_host:
            raise ConfigError("DOLPHIN_METRICS_HOST: empty host")
        if self.venue_kind not in VENUE_KINDS:
            raise ConfigError(f"DOLPHIN_VENUE_KIND={self.venue_kind!r}: expected one of {VENUE_KINDS}")
        if self.venue_margin_type not in MARGIN_TYPES:
            raise ConfigError(f"DOLPHIN_VENUE_MARGIN_TYPE={self.venue_margin_type!r}: expected one of {MARGIN_TYPES}")
        if isinstance(self.venue_leverage, bool) or not isinstance(self.venue_leverage, int) \
                or not 1 <= self.venue_leverage <= 125:
            raise ConfigError(f"DOLPHIN_VENUE_LEVERAGE={self.venue_leverage!r}: must be an integer in [1, 125]")
        a = self.venue_allocation_usdt
        if a is not None and not (isinstance(a, (int, float)) and 0 < a < 1e12):
            raise ConfigError(f"DOLPHIN_VENUE_ALLOCATION_USDT={a!r}: must be a positive number of USDT")

    @property
    def arrow_dir(self) -> Path:
        return self.data_dir / "arrow_scans"

    def as_log_dict(self) -> dict:
        """Return the settings as a JSON-friendly dict for the start-up log line."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()
                if k != "symbols"} | {"n_symbols": len(self.symbols)}


def _flag(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/true/yes/on or 0/false/no/off")


def _resolve(p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else REPO_ROOT / path


_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "DOLPHIN_PROFILE": ("profile", str),
    "DOLPHIN_HZ_MEMBERS": ("hz_members", lambda s: tuple(x.strip() for x in s.split(",") if x.strip())),
    "DOLPHIN_HZ_CLUSTER": ("hz_cluster", str),
    "DOLPHIN_HZ_CONNECT_TIMEOUT_S": ("hz_connect_timeout_s", float),
    "DOLPHIN_HZ_INVOCATION_TIMEOUT_S": ("hz_invocation_timeout_s", float),
    "DOLPHIN_VENUE_WS": ("venue_ws", str),
    "DOLPHIN_VENUE_REST": ("venue_rest", str),
    "DOLPHIN_DATA_DIR": ("data_dir", _resolve),
    "DOLPHIN_RUN_LOGS": ("run_logs", _resolve),
    "DOLPHIN_SCAN_INTERVAL_S": ("scan_interval_s", float),
    "DOLPHIN_METRICS_HOST": ("metrics_host", str),
    "DOLPHIN_METRICS_PORT_BASE": ("metrics_port_base", int),
    "DOLPHIN_WEB_PORT": ("web_port", int),
    "DOLPHIN_VENUE_KIND": ("venue_kind", lambda s: s.strip().lower()),
    "DOLPHIN_VENUE_MAINNET_OK": ("venue_mainnet_ok", _flag),
    "DOLPHIN_VENUE_MARGIN_TYPE": ("venue_margin_type", lambda s: s.strip().upper()),
    "DOLPHIN_VENUE_LEVERAGE": ("venue_leverage", int),
    "DOLPHIN_VENUE_ALLOCATION_USDT": ("venue_allocation_usdt", float),
    "DOLPHIN_SYMBOLS": ("symbols", lambda s: tuple(x.strip().upper() for x in s.split(",") if x.strip())),
}


def load_settings(env: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Build the effective settings: defaults, then ``DOLPHIN_*`` variables, then ``overrides``.

    Overrides whose value is None are ignored, so argparse results can be passed straight in.
    """
    env = os.environ if env is None else env
    values: dict = {}
    for var, (name, conv) in _ENV.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[name] = conv(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{var}={raw!r}: {exc}") from exc
    known = {f.name for f in dataclasses.fields(Settings)}
    for k, v in overrides.items():
        if k not in known:
            raise ConfigError(f"unknown setting {k!r}")
        if v is not None:
            values[k] = _resolve(v) if k in ("data_dir", "run_logs") and isinstance(v, str) else v
    return Settings(**values)
