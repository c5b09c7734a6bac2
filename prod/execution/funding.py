"""The one bookkeeping of a funding fee, shared by the live venue account and the parity replay."""
from __future__ import annotations

from typing import Any, Mapping


def apply_funding(acct: Any, row: Mapping[str, Any]) -> dict:
    """Book one funding fee (``row['income']``, received > 0, paid < 0) into ``acct``'s capital; return the row
    with ``capital_after`` (the journal's ``FUNDING`` payload)."""
    acct.capital += float(row["income"])
    acct.peak_capital = max(acct.peak_capital, acct.capital)
    return {**row, "capital_after": acct.capital}
