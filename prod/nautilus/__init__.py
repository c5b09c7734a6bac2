"""DOLPHIN on NautilusTrader (bible §14, §17.2, §8.3): the optional ``.[nautilus]`` extra.

Nothing here is imported by the native engine, the native backtest or the trader; only
``python -m prod.backtest --engine nautilus`` and the tests under ``tests/*/test_nautilus_*`` reach it.
Import :func:`require_nautilus` first: it turns a missing or out-of-pin ``nautilus_trader`` into one
clear line naming the extra to install.
"""
from __future__ import annotations

from importlib import metadata

PIN_PREFIX = "1.221."                 # pyproject.toml: nautilus = ["nautilus_trader==1.221.*"]
INSTALL_HINT = "pip install -e '.[nautilus]'"


class NautilusUnavailable(RuntimeError):
    """nautilus_trader is absent or outside the ``.[nautilus]`` pin; the message is one line to act on."""


def nautilus_version() -> str | None:
    """The installed nautilus_trader version, None when it is not installed."""
    try:
        return metadata.version("nautilus_trader")
    except metadata.PackageNotFoundError:
        return None


def check_version(version: str | None) -> None:
    """Raise :class:`NautilusUnavailable` unless ``version`` is inside the pin."""
    if version is None:
        raise NautilusUnavailable(f"nautilus_trader is not installed: the Nautilus engine needs the extra, "
                                  f"{INSTALL_HINT}")
    if not version.startswith(PIN_PREFIX):
        raise NautilusUnavailable(f"nautilus_trader {version} is installed but DOLPHIN is pinned to "
                                  f"{PIN_PREFIX}*: {INSTALL_HINT}")


def require_nautilus() -> str:
    """Return the installed version when it is inside the pin; else raise :class:`NautilusUnavailable`."""
    v = nautilus_version()
    check_version(v)
    return v  # type: ignore[return-value]
