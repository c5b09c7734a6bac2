"""Execution on a Binance-USDT-M-compatible order API: signing, orders, fills, reconcile, kill switch."""
from prod.execution.client import ExecStats, ExecutionClient, OrderIntent
from prod.execution.errors import (DuplicateDecision, EntriesRefused, EntryNotFilled, ExecutionError, KillSwitchActive,
                                   OrderRejected, RateLimited, UnknownOutcome, VenueUnavailable)
from prod.execution.orders import (BadFill, Fill, IllegalTransition, Order, OrderStatus, check_transition,
                                   client_order_id)
from prod.execution.runtime import ExecConfig, ExecutionRuntime
from prod.binance.signing import Credentials, MissingCredentials, sign, signed_query

__all__ = ["BadFill", "Credentials", "DuplicateDecision", "EntriesRefused", "EntryNotFilled", "ExecConfig",
           "ExecStats", "ExecutionClient", "ExecutionError", "ExecutionRuntime", "Fill", "IllegalTransition", "KillSwitchActive",
           "MissingCredentials", "Order", "OrderIntent", "OrderRejected", "OrderStatus", "RateLimited",
           "UnknownOutcome", "VenueUnavailable", "check_transition", "client_order_id", "sign", "signed_query"]
