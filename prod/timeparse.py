"""Timestamps from the bus and from files as Unix seconds: floats in s/ms/ns and ISO-8601 strings."""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any


def parse_timestamp(value: Any) -> float | None:
    """Return Unix seconds from a number (s, ms or ns) or an ISO-8601 string; None if unusable.

    Numbers above 1e17 are read as nanoseconds and above 1e11 as milliseconds; zero, negative,
    non-finite and boolean values are unusable. A naive ISO string is read as UTC.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        if not math.isfinite(v) or v <= 0:
            return None
        if v > 1e17:
            return v / 1e9
        if v > 1e11:
            return v / 1e3
        return v
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return None
        try:
            return parse_timestamp(float(s))
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    return None


__all__ = ["parse_timestamp"]
