"""Contract between the embedded member's network core and its data services (IMap, CP, ...).

The core (``server.py``) owns sockets, framing, authentication, the cluster view and the dispatch
table. A *service* owns a piece of state and the handlers for its message types. Keeping this
contract small lets the IMap and CP services evolve without touching the network code.
"""
from __future__ import annotations

import uuid
from typing import Any, Callable, Protocol

from hazelcast.protocol.client_message import OutboundMessage, InboundMessage


class RequestContext(Protocol):
    """What a handler may know about and do with the request it is serving."""

    correlation_id: int
    partition_id: int
    client_uuid: uuid.UUID | None
    connection_id: int

    def send_event(self, msg: OutboundMessage) -> None:
        """Queue an event frame to this client connection (correlation id already set by caller)."""

    def send_to_connection(self, connection_id: int, msg: OutboundMessage) -> None:
        """Queue an event frame to another live connection (dropped if it is gone)."""


class HandlerError(Exception):
    """Raised by a handler to answer with a Hazelcast error response.

    ``class_name`` is the Java exception class the client maps to a Python exception
    (e.g. ``com.hazelcast.core.HazelcastException``, ``java.lang.IllegalMonitorStateException``).
    """

    def __init__(self, class_name: str, message: str):
        super().__init__(message)
        self.class_name = class_name
        self.message = message


# A handler decodes ``msg`` and returns the response message (the core sets the correlation id)
# or None when it answers later through ``ctx`` (e.g. a blocking lock acquisition).
Handler = Callable[[RequestContext, InboundMessage], "OutboundMessage | None"]


class MemberService(Protocol):
    """One stateful service of the member."""

    def handlers(self) -> dict[int, Handler]:
        """Return message type id → handler for every request type this service serves."""

    def tick(self, now: float) -> None:
        """Do time-driven work (TTL expiry, session expiry, lock wait timeouts); called ~every 100 ms."""

    def on_connection_closed(self, connection_id: int, client_uuid: uuid.UUID | None) -> None:
        """Forget listeners and waiters of a closed connection."""

    def snapshot(self) -> dict[str, Any]:
        """Return the durable state as a JSON/pickle-friendly dict (for ``--snapshot-dir``)."""

    def restore(self, state: dict[str, Any]) -> None:
        """Load the state returned by :meth:`snapshot` at start-up."""
