"""Flags and ``DOLPHIN_*`` variables onto one frozen service config.

Design notes: ``docs/design/prod.runtime.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

from prod.settings import ConfigError, Settings, load_settings

_COMMON = (
    ("--hz-members", "hz_members", "comma-separated host:port list (DOLPHIN_HZ_MEMBERS)"),
    ("--hz-cluster", "hz_cluster", "cluster name (DOLPHIN_HZ_CLUSTER)"),
    ("--venue-ws", "venue_ws", "venue websocket base URL (DOLPHIN_VENUE_WS)"),
    ("--venue-rest", "venue_rest", "venue REST base URL (DOLPHIN_VENUE_REST)"),
    ("--data-dir", "data_dir", "durable data directory (DOLPHIN_DATA_DIR)"),
    ("--run-logs", "run_logs", "run_logs directory (DOLPHIN_RUN_LOGS)"),
    ("--scan-interval-s", "scan_interval_s", "scan cadence in seconds (DOLPHIN_SCAN_INTERVAL_S; alias --interval)"),
    ("--symbols", "symbols", "comma-separated scanner symbols (DOLPHIN_SYMBOLS)"),
)

_COMMON_ALIASES = {"--scan-interval-s": ("--interval",)}


def env_prefix(cls: type, service: str) -> str:
    """Return the variable prefix of ``cls``'s fields (its ``ENV_PREFIX`` or ``DOLPHIN_<SERVICE>_``)."""
    return getattr(cls, "ENV_PREFIX", None) or f"DOLPHIN_{service.upper()}_"


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _converter(tp: Any):
    tp, optional = _unwrap_optional(tp)
    origin = typing.get_origin(tp)

    def conv(raw: str) -> Any:
        if optional and raw.strip().lower() in ("", "none", "null"):
            return None
        if tp is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected a boolean (true/false), got {raw!r}")
        if tp is int:
            return int(raw)
        if tp is float:
            v = float(raw)
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError(f"not a finite number: {raw!r}")
            return v
        if tp is str:
            return raw
        if tp is Path:
            return Path(raw)
        if origin is tuple:
            args = typing.get_args(tp)
            item = _converter(args[0]) if args else str
            return tuple(item(x.strip()) for x in raw.split(",") if x.strip())
        raise ValueError(f"unsupported config type {tp!r}")
    return conv, tp


def service_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """Return the (field, resolved type) pairs of ``cls`` that are settable (all but ``settings``)."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)
            if f.name != "settings" and f.init and f.metadata.get("cli", True)]


def add_flags(ap: argparse.ArgumentParser, cls: type) -> None:
    """Add the common flags and one flag per field of ``cls`` to ``ap`` (all default to None)."""
    own_names = {n for f, _ in service_fields(cls)
                 for n in (f"--{f.name.replace('_', '-')}", *f.metadata.get("flags", ()))}
    common = ap.add_argument_group("mesh settings (override DOLPHIN_* variables)")
    for flag, dest, help_ in _COMMON:
        aliases = [a for a in _COMMON_ALIASES.get(flag, ()) if a not in own_names]   # a service's own flag wins
        common.add_argument(flag, *aliases, dest=f"settings__{dest}", default=None,
                            metavar=dest.upper(), help=help_)
    own = ap.add_argument_group("service settings")
    for f, tp in service_fields(cls):
        base, _ = _unwrap_optional(tp)
        names = [f"--{f.name.replace('_', '-')}", *f.metadata.get("flags", ())]
        help_ = f.metadata.get("help", "") + (f" (default {f.default!r})"
                                              if f.default is not dataclasses.MISSING else "")
        help_ = help_.replace("%", "%%")     # argparse %-formats help: a literal "12%" must not break --help
        if base is bool:
            own.add_argument(*names, dest=f.name, default=None, action=argparse.BooleanOptionalAction, help=help_)
        else:
            own.add_argument(*names, dest=f.name, default=None, metavar=f.name.upper(), help=help_)
    ap.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (default INFO)")


def _settings_from(ns: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    over: dict[str, Any] = {}
    for flag, dest, _ in _COMMON:
        raw = getattr(ns, f"settings__{dest}", None)
        if raw is None:
            continue
        if dest in ("hz_members", "symbols"):
            val: Any = tuple(x.strip() for x in raw.split(",") if x.strip())
            if dest == "symbols":
                val = tuple(x.upper() for x in val)
        elif dest == "scan_interval_s":
            try:
                val = float(raw)
            except ValueError as exc:
                raise ConfigError(f"{flag}={raw!r}: {exc}") from exc
        else:
            val = raw
        over[dest] = val
    try:
        return load_settings(env=env, **over)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


def config_from(cls: type, service: str, ns: argparse.Namespace, env: Mapping[str, str],
                settings: Settings | None = None) -> Any:
    """Build ``cls`` from parsed flags ``ns`` and the environment ``env`` (see the module docstring)."""
    settings = _settings_from(ns, env) if settings is None else settings
    prefix = env_prefix(cls, service)
    values: dict[str, Any] = {}
    for f, tp in service_fields(cls):
        conv, _ = _converter(tp)
        flag_raw = getattr(ns, f.name, None)
        var = prefix + f.name.upper()
        if flag_raw is not None:
            if isinstance(flag_raw, bool):
                values[f.name] = flag_raw
                continue
            source, raw = f"--{f.name.replace('_', '-')}", flag_raw
        elif env.get(var) not in (None, ""):
            source, raw = var, env[var]
        else:
            continue
        try:
            values[f.name] = conv(str(raw))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{service}: {source}={raw!r}: {exc}") from exc
    try:
        return cls(settings=settings, **values)
    except ConfigError as exc:
        raise ConfigError(f"{service}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{service}: {exc}") from exc


def build_config(cls: type, service: str, argv: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None, description: str | None = None,
                 ) -> tuple[Any, argparse.Namespace]:
    """Parse ``argv`` and ``env`` into a ``cls`` instance; return it and the parsed flags."""
    ap = argparse.ArgumentParser(prog=f"python -m {getattr(cls, 'MODULE', 'services.' + service)}",
                                 description=description)
    add_flags(ap, cls)
    ns = ap.parse_args(argv)
    return config_from(cls, service, ns, os.environ if env is None else env), ns


def check_environment(env: Mapping[str, str], services: Sequence[tuple[str, type]]) -> list[str]:
    """Return the configuration errors the variables in ``env`` would give (empty when all parse).

    Checks the mesh-wide settings and, for each ``(service, ConfigCls)``, every ``<ENV_PREFIX><FIELD>``
    variable that is set, so a mesh can refuse a bad value once, before it starts any program.
    """
    errors: list[str] = []
    try:
        load_settings(env=env)
    except ConfigError as exc:
        errors.append(str(exc))
    for service, cls in services:
        prefix = env_prefix(cls, service)
        for f, tp in service_fields(cls):
            var = prefix + f.name.upper()
            raw = env.get(var)
            if raw in (None, ""):
                continue
            conv, _ = _converter(tp)
            try:
                conv(str(raw))
            except (TypeError, ValueError) as exc:
                errors.append(f"{service}: {var}={raw!r}: {exc}")
    return errors


def config_log_dict(cfg: Any) -> dict:
    """Return ``cfg`` as a JSON-friendly dict for the start-up line (settings summarised, no secrets)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, Settings):
            out[f.name] = v.as_log_dict()
        elif f.metadata.get("secret"):
            out[f.name] = "***" if v else v
        elif isinstance(v, Path):
            out[f.name] = str(v)
        else:
            out[f.name] = v
    return out


__all__ = ["ConfigError", "build_config", "check_environment", "config_from", "add_flags", "config_log_dict", "env_prefix",
           "service_fields"]
