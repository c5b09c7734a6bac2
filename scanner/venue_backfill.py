"""Cold-start history from the venue: 1s kline closes sampled at the scan cadence, aligned to market now.

Design notes: ``docs/design/scanner.md``.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("scanner.venue_backfill")

BATCH = 499           # klines per request: weight 2 on Binance for 100 <= limit < 500, the cheapest per
BATCH_WEIGHT = 2      # row (1000 rows cost 5); tail requests use limit < 100 (weight 1)
CONCURRENCY = 4
MAX_JUMP = 0.5


@dataclass
class VenueHistory:
    """Rows sampled from venue 1s klines; ``rows[k][j]`` is symbol j at market time ``times_ms[k]``."""

    rows: list[list[float | None]]
    times_ms: list[int]
    step_ms: int
    speed: float
    anchor_ms: int              # market time of the newest row (venue serverTime)
    anchor_wall: float          # local monotonic time when ``anchor_ms`` was read
    full: list[str]             # symbols with a price in every row
    partial: dict[str, int]     # symbol -> rows with a price (< N)
    requests: int = 0
    rejected: int = 0


async def venue_speed(rest) -> float:
    """Return market/wall speed from the simulator's ``/sim/status``; 1.0 for a real venue."""
    from prod.venue.errors import VenueError
    try:
        st = await rest.get_json(rest.rest_base, "/sim/status")
    except VenueError as exc:
        log.info("venue backfill: no /sim/status (%s); market time = wall time (speed 1)", exc)
        return 1.0
    sp = st.get("speed") if isinstance(st, dict) else None
    if isinstance(sp, (int, float)) and not isinstance(sp, bool) and math.isfinite(sp) and sp > 0:
        return float(sp)
    log.warning("venue backfill: /sim/status has no usable speed (%r); assuming 1", sp)
    return 1.0


async def server_time(rest) -> int:
    body = await rest.get_json(rest.rest_base, "/fapi/v1/time")
    t = body.get("serverTime") if isinstance(body, dict) else None
    if not isinstance(t, int) or isinstance(t, bool) or t <= 0:
        raise ValueError(f"/fapi/v1/time: bad serverTime {t!r}")
    return t


async def _fetch_range(rest, sym: str, start_ms: int, end_ms: int, counter: list[int]) -> list:
    out: list = []
    st = start_ms
    while st <= end_ms:
        limit = int(min(BATCH, (end_ms - st) // 1000 + 2))
        rows = await rest.klines(sym, "1s", limit=limit, start_ms=st, end_ms=end_ms)
        counter[0] += 1
        if not rows:
            break
        out.extend(rows)
        st = rows[-1].open_time_ms + 1000
        if len(rows) < limit:
            break
    return out


def sample(klines, times_ms: list[int], stale_ms: int) -> tuple[list[float | None], int]:
    """Sample one symbol's kline closes at ``times_ms`` with the rules of this module; (prices, rejected)."""
    if not klines:
        return [None] * len(times_ms), 0
    ot = np.array([k.open_time_ms for k in klines], dtype=np.int64)
    order = np.argsort(ot, kind="stable")
    ot = ot[order]
    close = np.array([klines[i].close for i in order], dtype=np.float64)
    traded = np.array([klines[i].trades > 0 for i in order])
    last_tr = np.maximum.accumulate(np.where(traded, np.arange(ot.size), -1))
    out: list[float | None] = []
    prev: float | None = None
    rejected = 0
    for t in times_ms:
        j = int(np.searchsorted(ot + 1000, t, side="right")) - 1
        p: float | None = None
        if j >= 0:
            lt = int(last_tr[j])
            if lt >= 0 and ot[lt] + 1000 >= t - stale_ms and ot[j] + 1000 >= t - stale_ms:
                c = float(close[j])
                if math.isfinite(c) and c > 0:
                    p = c
        if p is not None and prev is not None and abs(p / prev - 1.0) > MAX_JUMP:
            rejected += 1
            p = None
        out.append(p)
        prev = p
    return out, rejected


async def wait_reachable(rest, timeout_s: float, first_delay_s: float = 0.25, max_delay_s: float = 5.0,
                         clock=time.monotonic) -> bool:
    """Wait until the venue answers ``/fapi/v1/time``; False after ``timeout_s`` without any answer.

    A scanner often starts next to its venue (supervisord starts both at once; a venue restart, a
    network blip): no HTTP answer at all (refused, reset, timed out) is retried with exponential backoff
    instead of giving up the cold-start history for good. Any answer, an error status included (a 5xx,
    a 4xx, a malformed body), returns True at once: :func:`fetch_history` then reports it.
    """
    from prod.venue.errors import VenueError, VenueUnreachableError
    deadline = clock() + timeout_s
    delay, tries = first_delay_s, 0
    while True:
        tries += 1
        try:
            await server_time(rest)
            if tries > 1:
                log.info("venue backfill: venue REST %s answers after %d tries", rest.rest_base, tries)
            return True
        except VenueUnreachableError as exc:
            left = deadline - clock()
            if left <= 0:
                log.warning("venue backfill: venue REST %s unreachable for %.0fs (%s); no venue backfill",
                            rest.rest_base, timeout_s, exc)
                return False
            if tries == 1:
                log.info("venue backfill: venue REST %s not reachable yet (%s); retrying for up to %.0fs",
                         rest.rest_base, exc, timeout_s)
            await asyncio.sleep(min(delay, left))
            delay = min(max_delay_s, delay * 2)
        except (VenueError, ValueError):
            return True


async def fetch_history(rest, symbols: tuple[str, ...], n_rows: int, interval_s: float, stale_s: float,
                        weight_budget: int = 1500, clock=time.monotonic) -> VenueHistory | None:
    """Fetch and sample ``n_rows`` scan rows of venue history ending at market now; None if unavailable."""
    from prod.venue.errors import VenueError, VenueRequestError
    try:
        speed = await venue_speed(rest)
        now0 = await server_time(rest)
    except (VenueError, ValueError) as exc:
        log.warning("venue backfill: venue REST %s unusable (%s); no venue backfill", rest.rest_base, exc)
        return None
    step_ms = int(round(interval_s * speed * 1000))
    if step_ms < 1000:
        log.warning("venue backfill: one scan spans %d ms of market time (interval %.3fs x speed %g), finer "
                    "than 1s klines; no venue backfill", step_ms, interval_s, speed)
        return None
    stale_ms = int(stale_s * speed * 1000)
    span = (n_rows - 1) * step_ms + 1000 + stale_ms
    max_req = max(1, weight_budget // BATCH_WEIGHT)
    per_sym = max(1, (max_req - len(symbols)) // len(symbols))   # keep one tail request per symbol
    if math.ceil(span / 1000 / BATCH) > per_sym:
        log.warning("venue backfill: %d scans need %d s of 1s klines per symbol; weight budget %d allows the "
                    "newest %d s", n_rows, span // 1000, weight_budget, per_sym * BATCH)
        span = per_sym * BATCH * 1000
    counter = [0]
    first = symbols[0]
    klines: dict[str, list] = {}
    failed: dict[str, str] = {}
    try:
        klines[first] = await _fetch_range(rest, first, now0 - span, now0, counter)
    except VenueRequestError as exc:
        if exc.code == -1120:
            log.warning("venue backfill: venue rejects interval=1s (%s); falling back to the archive / cold start "
                        "(windows stay null until filled by live scans)", exc.msg)
            return None
        failed[first] = str(exc)
    except VenueError as exc:
        failed[first] = str(exc)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(sym: str, st: int, et: int, into: dict) -> None:
        async with sem:
            try:
                into.setdefault(sym, []).extend(await _fetch_range(rest, sym, st, et, counter))
            except VenueError as exc:
                failed[sym] = str(exc)

    await asyncio.gather(*(one(s, now0 - span, now0, klines) for s in symbols[1:]))
    # re-anchor at market now: the tail since now0 is fetched so the newest row is fresh
    try:
        anchor = await server_time(rest)
    except (VenueError, ValueError) as exc:
        log.warning("venue backfill: serverTime failed after the history fetch (%s); no venue backfill", exc)
        return None
    anchor_wall = clock()
    tails: dict[str, list] = {}
    tail0 = now0 - now0 % 1000          # the second open at now0 was incomplete: fetch it again
    await asyncio.gather(*(one(s, tail0, anchor, tails) for s in symbols if s not in failed))
    for s, ks in tails.items():
        klines[s] = [k for k in klines.get(s, []) if k.open_time_ms < tail0] + ks
    times = [anchor - (n_rows - 1 - k) * step_ms for k in range(n_rows)]
    cols: list[list[float | None]] = []
    rejected = 0
    for s in symbols:
        if s in failed:
            log.warning("venue backfill: %s klines failed (%s); its rows stay null", s, failed[s])
            cols.append([None] * n_rows)
            continue
        col, rej = sample(klines.get(s, []), times, stale_ms)
        if rej:
            log.warning("venue backfill: %s: %d samples rejected (> %.0f%% jump between scans)", s, rej,
                        100 * MAX_JUMP)
        rejected += rej
        cols.append(col)
    rows = [[cols[j][k] for j in range(len(symbols))] for k in range(n_rows)]
    full = [s for s, c in zip(symbols, cols) if all(p is not None for p in c)]
    partial = {s: sum(p is not None for p in c) for s, c in zip(symbols, cols)
               if any(p is None for p in c)}
    if partial:
        log.warning("venue backfill: %d symbol(s) without a full history (null where missing): %s", len(partial),
                    ", ".join(f"{s}={n}/{n_rows}" for s, n in sorted(partial.items())))
    return VenueHistory(rows, times, step_ms, speed, anchor, anchor_wall, full, partial, counter[0], rejected)
