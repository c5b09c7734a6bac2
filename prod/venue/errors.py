"""Venue client errors, named by how the caller should react (transient / contract / request)."""
from __future__ import annotations


class VenueError(Exception):
    """Base class of every error raised by prod.venue."""


class TransientVenueError(VenueError):
    """Network failure, timeout, 5xx or rate limit: retry later with backoff and jitter."""


class VenueUnreachableError(TransientVenueError):
    """No HTTP answer at all (connection refused or reset, DNS failure, timeout): the venue is not there yet."""


class RateLimitedError(TransientVenueError):
    """HTTP 429/418 from the venue; ``retry_after_s`` is the venue's Retry-After (seconds)."""

    def __init__(self, status: int, retry_after_s: float, msg: str):
        super().__init__(f"HTTP {status} rate limited (Retry-After {retry_after_s:g}s): {msg}")
        self.status = status
        self.retry_after_s = retry_after_s


class VenueRequestError(VenueError):
    """The venue rejected the request (4xx with a ``{"code", "msg"}`` body): fix the request, do not retry."""

    def __init__(self, status: int, code: int | None, msg: str, url: str = ""):
        super().__init__(f"HTTP {status} code={code} msg={msg!r} url={url}")
        self.status = status
        self.code = code
        self.msg = msg
        self.url = url


class MalformedMessage(VenueError):
    """A frame or body does not match the venue schema (contract error: log once, count, drop)."""


class UnknownMessage(MalformedMessage):
    """A well-formed frame of a kind (event type, stream) the decoders do not use: ignored and counted,
    not an error (Binance adds event kinds without notice)."""
