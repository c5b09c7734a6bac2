"""asyncio helpers for services whose ``run(cfg, bus, clock, stop)`` drives an event loop."""
from __future__ import annotations

import asyncio
import threading


async def stop_event(stop: threading.Event) -> asyncio.Event:
    """Return an :class:`asyncio.Event` of the running loop that is set once ``stop`` is set.

    ``Service.main`` hands ``run`` a :class:`threading.Event` (set by SIGTERM/SIGINT); a coroutine
    awaits the returned event instead. A daemon thread waits on ``stop`` and sets it thread-safely.
    """
    astop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if stop.is_set():
        astop.set()
        return astop

    def _bridge() -> None:
        stop.wait()
        try:
            loop.call_soon_threadsafe(astop.set)
        except RuntimeError:          # the loop already ended
            pass

    threading.Thread(target=_bridge, name="aio-stop", daemon=True).start()
    return astop
