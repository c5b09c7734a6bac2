"""Execution errors, named by how the caller reacts (retry, reconcile, or give up on the order)."""
from __future__ import annotations


class ExecutionError(Exception):
    """Base class of every error raised by prod.execution."""


class OrderRejected(ExecutionError):
    """The venue refused the request (Binance ``code``/``msg``): nothing happened; do not retry as is."""

    def __init__(self, code: int | None, msg: str, status: int = 400, what: str = ""):
        super().__init__(f"{what}: HTTP {status} code={code} msg={msg!r}")
        self.code, self.msg, self.status = code, msg, status


class UnknownOutcome(ExecutionError):
    """The request may or may not have taken effect (timeout, 5xx, -1006/-1007): query before acting."""


class VenueUnavailable(ExecutionError):
    """The request was not delivered (connection refused, rate limited beyond patience): safe to retry."""


class RateLimited(VenueUnavailable):
    """HTTP 429/418 with ``Retry-After`` seconds longer than we are willing to wait."""

    def __init__(self, status: int, retry_after_s: float, msg: str, what: str = ""):
        super().__init__(f"{what + ': ' if what else ''}HTTP {status} rate limited (Retry-After {retry_after_s:g}s): "
                         f"{msg}")
        self.status, self.retry_after_s = status, retry_after_s


class EntryNotFilled(ExecutionError):
    """An entry order ended with nothing filled (rejected, expired, cancelled): there is no position."""


class EntriesRefused(ExecutionError):
    """The account's preflight refuses this entry (a setting to change, a delisted symbol): nothing was sent."""


class KillSwitchActive(ExecutionError):
    """Entries are halted by the kill switch until it is cleared."""


class DuplicateDecision(ExecutionError):
    """This decision's client order id was sent already (a replayed decision): never a second order."""
