"""The TUI's test footer (bible §28.4): read on mount, `t` hides it, `t` again re-reads the file."""
from __future__ import annotations

import asyncio
import time

from observability.test_results import FILE_NAME, category, write_test_results
from observability.tui import DolphinTui
from tests.helpers import free_port


async def _wait_for(pilot, pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_footer_shows_the_last_run_and_t_rereads_it(settings_for):
    settings = settings_for(hz_port=free_port())          # no member: the footer needs none
    settings.run_logs.mkdir(parents=True, exist_ok=True)
    path = settings.run_logs / FILE_NAME
    write_test_results({"unit": {**category(120, 120), "skipped": 0}, "integration": category(39, 40, failed=1),
                        "e2e": category(None, None)}, path)

    async def scenario() -> None:
        app = DolphinTui(settings, connect_timeout=0.5, retry_s=0.5)
        async with app.run_test(size=(200, 50)) as pilot:
            footer = app.query_one("#tests")
            await _wait_for(pilot, lambda: "integration 39/40 FAIL" in footer.plain, 5, "footer from file")
            assert "unit 120/120 PASS" in footer.plain and "e2e N/A" in footer.plain
            assert footer.display
            await pilot.press("t")
            await _wait_for(pilot, lambda: not footer.display, 5, "footer hidden")
            write_test_results({"unit": category(121, 121), "integration": category(40, 40)}, path)
            await pilot.press("t")
            await _wait_for(pilot, lambda: footer.display and "integration 40/40 PASS" in footer.plain, 5,
                            "footer re-read on t")
            path.write_text('{"_run_at": "2026-')          # truncated by hand: a red line, no crash
            await pilot.press("t")
            await pilot.press("t")
            await _wait_for(pilot, lambda: "malformed JSON" in footer.plain, 5, "error line")
            assert str(path) in footer.plain
            await pilot.press("q")

    asyncio.run(scenario())
