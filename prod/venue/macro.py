"""Clients of the two non-Binance data sources of ExF: Deribit (DVOL) and alternative.me (fear & greed).

Against the simulator both bases are the venue REST URL; against the real sources use
``https://www.deribit.com`` and ``https://api.alternative.me``.
"""
from __future__ import annotations

import time

from prod.venue import schemas as S
from prod.venue.rest import JsonRestClient


class DeribitClient(JsonRestClient):
    """Deribit public REST: the DVOL index."""

    name = "Deribit REST"

    async def dvol(self, currency: str = "BTC", start_ms: int | None = None, end_ms: int | None = None,
                   resolution: str = "60") -> tuple[S.DvolCandle, ...]:
        """Return Deribit DVOL candles (``/api/v2/public/get_volatility_index_data``)."""
        now = int(time.time() * 1000)
        end = end_ms if end_ms is not None else now + 86_400_000 * 365
        start = start_ms if start_ms is not None else 0
        return S.parse_dvol(await self.get("/api/v2/public/get_volatility_index_data", {
            "currency": currency, "start_timestamp": start, "end_timestamp": end, "resolution": resolution}))


class FearGreedClient(JsonRestClient):
    """alternative.me: the crypto fear & greed index."""

    name = "alternative.me REST"

    async def fear_greed(self, limit: int = 1) -> tuple[S.FearGreed, ...]:
        """Return the latest fear & greed values (newest first) from ``/fng/``."""
        return S.parse_fng(await self.get("/fng/", {"limit": limit, "format": "json"}))
