"""Request signing for Binance-USDT-M-compatible trading APIs: credentials from the environment, HMAC-SHA256.

A signed request carries the API key in the ``X-MBX-APIKEY`` header and ``timestamp``, ``recvWindow``
and ``signature`` parameters; the signature is the hex HMAC-SHA256 of the exact query string (all
other parameters, in the order sent) under the API secret. :class:`Credentials` never shows the
secret (not in ``repr``, not in logs) and is never serialised.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlencode

ENV_KEY = "DOLPHIN_VENUE_API_KEY"
ENV_SECRET = "DOLPHIN_VENUE_API_SECRET"
# the venue simulator's default account (standins/venue_sim); used only when the environment says so
SIM_DEFAULT = ("dolphin-sim-key", "dolphin-sim-secret")


class MissingCredentials(RuntimeError):
    """DOLPHIN_VENUE_API_KEY / DOLPHIN_VENUE_API_SECRET are not set: trading cannot start."""


@dataclass(frozen=True)
class Credentials:
    """An API key and its secret; ``repr`` shows the first 4 characters of the key only."""

    api_key: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.api_key or not self.secret:
            raise MissingCredentials("empty API key or secret")

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key[:4]}…, secret=<hidden>)"

    __str__ = __repr__

    def __reduce__(self):  # pragma: no cover - refuse pickling a secret
        raise TypeError("Credentials are not serialisable")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Credentials":
        """Read DOLPHIN_VENUE_API_KEY / DOLPHIN_VENUE_API_SECRET; raise MissingCredentials naming them."""
        env = os.environ if env is None else env
        key, secret = env.get(ENV_KEY, ""), env.get(ENV_SECRET, "")
        if not key or not secret:
            missing = [n for n, v in ((ENV_KEY, key), (ENV_SECRET, secret)) if not v]
            raise MissingCredentials(f"set {' and '.join(missing)} in the environment (never in a file or map)")
        return cls(key, secret)


def sign(secret: str, payload: str) -> str:
    """Return the hex HMAC-SHA256 of ``payload`` under ``secret`` (Binance's SIGNED endpoint rule)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def encode_params(params: Mapping[str, Any]) -> str:
    """URL-encode ``params`` in order, dropping None and writing booleans as ``true``/``false``."""
    items = []
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        items.append((k, str(v)))
    return urlencode(items)


def signed_query(params: Mapping[str, Any], secret: str, timestamp_ms: int, recv_window_ms: int = 5000) -> str:
    """Return ``params&recvWindow=..&timestamp=..&signature=..`` ready to send."""
    q = encode_params({**params, "recvWindow": recv_window_ms, "timestamp": timestamp_ms})
    return f"{q}&signature={sign(secret, q)}"
