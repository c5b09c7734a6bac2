"""Shared hypothesis strategies and the fuzz profile of tests/unit/fuzz.

The profile is chosen by ``HYPOTHESIS_PROFILE`` (``fuzz``, the default: 200 examples a property,
what ``make test`` runs; ``deep``: 5000 examples for a longer hunt, minutes: run it with
``--timeout 0``). It is applied with
``@FUZZ`` on each fuzz test only, so the other hypothesis tests keep their own settings.
"""
from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("fuzz", max_examples=200, deadline=None, suppress_health_check=_QUIET)
settings.register_profile("deep", max_examples=5000, deadline=None, suppress_health_check=_QUIET)
FUZZ = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "fuzz"))

# numbers a hostile writer can put in JSON: NaN/inf, huge ints (beyond float and int64), -0.0, bools
nasty_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 2**64, 0, -0.0, 1e308, 5e-324, True, False]),
)
scalars = st.one_of(st.none(), st.booleans(), nasty_numbers, st.text(max_size=20),
                    st.sampled_from(["", "nan", "inf", "-1", "1e400", "0x10", "BUY", "NEW", "TRADE", "USDT"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)), max_leaves=12)


def to_json(v) -> str:
    """JSON text of ``v`` as a careless writer would send it (NaN and Infinity allowed)."""
    return json.dumps(v, allow_nan=True)


# raw map/frame values: bytes, text, JSON text of anything, deep nesting, non-string types
raw_values = st.one_of(
    st.binary(max_size=64), st.text(max_size=64), json_values.map(to_json), json_values,
    st.integers(1, 200_000).map(lambda n: "[" * n), st.integers(1, 5000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.sampled_from(["9" * 5000, "-" + "9" * 400, "1e999", "NaN", "[NaN]", '{"a": Infinity}', "\ud800", "null"]),
)
