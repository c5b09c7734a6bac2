"""TUI v3: the live observability terminal (Textual), fed only by Hazelcast entry listeners (bible §28).

Design notes: ``docs/design/observability.md``.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from typing import Callable

from rich.text import Text
from textual.app import App, ComposeResult
from textual import events
from textual.containers import Grid, Horizontal
from textual.widgets import DataTable, Footer, Sparkline, Static
from textual.worker import get_current_worker

from observability.feed import BusFeed
from observability.state import PANELS, TITLES, Decoded, Line, TuiConfig, TuiState, results_footer
from observability.test_results import FILE_NAME, TestResultsError, read_test_results, write_test_results
from prod.settings import Settings, load_settings

log = logging.getLogger("observability.tui")

STYLES = {"ok": "green", "warn": "yellow", "bad": "bold red", "dim": "grey50", "": ""}


def _text(lines: list[Line]) -> Text:
    t = Text()
    for i, line in enumerate(lines):
        if i:
            t.append("\n")
        t.append(line.text, style=STYLES.get(line.style, ""))
    return t


class PanelView(Static):
    """One bordered panel; keeps the plain text it shows in :attr:`plain` (read by tests)."""

    def __init__(self, panel: str):
        super().__init__("", id=f"panel-{panel}", classes="panel")
        self.panel = panel
        self.border_title = TITLES[panel]
        self.plain = ""

    def show(self, lines: list[Line]) -> None:
        plain = "\n".join(line.text for line in lines)
        if plain != self.plain:
            self.plain = plain
            self.update(_text(lines))


def _segments(rows: list[list[Line]]) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    for i, row in enumerate(rows):
        if i:
            t.append("\n")
        for j, seg in enumerate(row):
            if j:
                t.append("  ")
            t.append(seg.text, style=STYLES.get(seg.style, ""))
    return t


class Overview(Static):
    """The compact status rows; keeps their plain text in :attr:`plain` (read by tests)."""

    plain = ""

    def show(self, rows: list[list[Line]]) -> None:
        plain = "\n".join("  ".join(seg.text for seg in row) for row in rows)
        if plain != self.plain:
            self.plain = plain
            self.update(_segments(rows))


TRADE_COLUMNS = ("time UTC", "asset", "side", "entry", "exit", "pnl", "reason")


class TradesTable(DataTable):
    """The last closed trades, newest first; keeps the rows it shows in :attr:`rows_shown`."""

    def __init__(self) -> None:
        super().__init__(id="trades", show_cursor=False, zebra_stripes=True)
        self.rows_shown: list[tuple[str, ...]] = []

    def on_mount(self) -> None:
        self.add_columns(*TRADE_COLUMNS)

    def show(self, rows: list[tuple[str, ...]]) -> None:
        if rows != self.rows_shown:
            self.rows_shown = list(rows)
            self.clear()
            self.add_rows(rows)


class BusLine(Static):
    """The bus status line at the top."""

    plain = ""

    def show(self, line: Line) -> None:
        if line.text != self.plain:
            self.plain = line.text
            self.update(Text(line.text, style=STYLES.get(line.style, "")))


class TestFooter(Static):
    """The last test run's results (one line); keeps the plain text in :attr:`plain`."""

    __test__ = False
    plain = ""

    def show(self, line: Line) -> None:
        if line.text != self.plain:
            self.plain = line.text
            self.update(Text(line.text, style=STYLES.get(line.style, "")))


class _Inbox:
    """Thread-safe coalescing buffer between the bus threads and the UI loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], Decoded] = {}
        self._status: tuple[bool, str] | None = None
        self.ready = threading.Event()

    def put(self, d: Decoded) -> None:
        with self._lock:
            self._values[(d.map_name, d.key)] = d
        self.ready.set()

    def put_status(self, connected: bool, detail: str) -> None:
        with self._lock:
            self._status = (connected, detail)
        self.ready.set()

    def take(self) -> tuple[list[Decoded], tuple[bool, str] | None]:
        with self._lock:
            values, status = list(self._values.values()), self._status
            self._values, self._status = {}, None
            self.ready.clear()
        return values, status


class DolphinTui(App):
    """The live observability terminal."""

    TITLE = "DOLPHIN TUI v3"
    BIG = (120, 40)      # from this size on the detail panels show under the overview
    CSS = """
    #bus { height: 1; padding: 0 1; }
    #overview { height: auto; padding: 0 1; }
    #spark-row { height: 1; }
    #spark-label { width: 30; padding: 0 1; }
    #spark { width: 1fr; height: 1; }
    #trades { height: 1fr; }
    #grid { grid-size: 3; grid-gutter: 0 1; height: 1fr; }
    #grid.-narrow { grid-size: 1; grid-rows: auto; overflow-y: auto; }
    #grid.-narrow .panel { height: auto; }
    #tests { height: 1; padding: 0 1; }
    .panel { border: round $accent; padding: 0 1; height: 100%; overflow-y: auto; }
    """
    BINDINGS = [("q", "quit", "Quit"), ("r", "force_refresh", "Refresh"), ("t", "toggle_tests", "Tests"),
                ("d", "toggle_details", "Details")]

    def __init__(self, settings: Settings, cfg: TuiConfig | None = None, *,
                 clock: Callable[[], float] = time.time, connect_timeout: float = 3.0, retry_s: float = 1.0):
        super().__init__()
        self.settings = settings
        self.state = TuiState(cfg)
        self.clock = clock
        self.inbox = _Inbox()
        self.feed = BusFeed(settings, self.inbox.put, self.inbox.put_status,
                            connect_timeout=connect_timeout, retry_s=retry_s)
        self.views: dict[str, PanelView] = {}
        self.batches = 0
        self._busline: BusLine | None = None
        self._closing = False
        self._details: bool | None = None          # None: by terminal size; d toggles

    def compose(self) -> ComposeResult:
        yield BusLine("bus: connecting", id="bus")
        yield Overview("", id="overview")
        with Horizontal(id="spark-row"):
            yield Static("vel_div", id="spark-label")
            yield Sparkline([], id="spark")
        yield TradesTable()
        with Grid(id="grid"):
            for p in PANELS:
                self.views[p] = PanelView(p)
                yield self.views[p]
        yield TestFooter("tests: reading", id="tests")
        yield Footer()

    def on_mount(self) -> None:
        self._busline = self.query_one("#bus", BusLine)
        self.load_test_results()
        self.apply_layout()
        self.redraw_all()
        self.set_interval(1.0, self.redraw_all)
        self.feed.start()
        self.run_worker(self._pump, thread=True, exclusive=False, name="bus-pump")

    def on_unmount(self) -> None:
        self._closing = True
        self.feed.stop()
        self.inbox.ready.set()

    # ── bus -> UI ────────────────────────────────────────────────────────────────────────────
    def _pump(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled and not self.feed.stopped:
            if not self.inbox.ready.wait(0.5):
                continue
            values, status = self.inbox.take()
            if not values and status is None:
                continue
            try:
                self.call_from_thread(self.apply_batch, values, status)
            except RuntimeError:      # the app is closing
                return

    def _can_draw(self) -> bool:
        # a batch handed over by the pump thread can arrive while the app is shutting down and its
        # widgets are already gone (seen in CI as NoMatches('#bus')): drawing is then skipped
        return not self._closing and self._busline is not None and self._busline.is_attached

    def apply_batch(self, values: list[Decoded], status: tuple[bool, str] | None) -> None:
        """Apply one batch of bus values (UI loop only) and redraw what changed."""
        if not self._can_draw():
            return
        now = self.clock()
        self.batches += 1
        if status is not None:
            self.state.set_bus(status[0], status[1], now)
        touched = {p for d in values if (p := self.state.apply(d, now)) is not None}
        for p in touched:
            self.views[p].show(self.state.lines(p, now))
        self._busline.show(self.state.header(now))
        if touched:
            self.redraw_overview(now)

    def redraw_overview(self, now: float) -> None:
        """Redraw the overview rows, the vel_div sparkline and the trades table."""
        self.query_one("#overview", Overview).show(self.state.overview(now))
        vds = list(self.state.vel_divs)
        spark = self.query_one("#spark", Sparkline)
        if list(spark.data or []) != vds:
            spark.data = vds
        label = "vel_div ?" if not vds else f"vel_div {vds[-1]:+.4f} min {min(vds):+.4f}"
        self.query_one("#spark-label", Static).update(Text(label, style="bold red" if vds and vds[-1] <= -0.02
                                                           else ""))
        self.query_one("#trades", TradesTable).show(self.state.trade_rows())

    # ── layout ───────────────────────────────────────────────────────────────────────────────
    @property
    def big(self) -> bool:
        """True when the terminal is at least :attr:`BIG`."""
        return self.size.width >= self.BIG[0] and self.size.height >= self.BIG[1]

    def apply_layout(self) -> None:
        """Show the detail panels by size (or as ``d`` chose): under the trades when big, instead when small."""
        details = self.big if self._details is None else self._details
        grid = self.query_one("#grid", Grid)
        trades = self.query_one("#trades", TradesTable)
        grid.display = details
        grid.set_class(not self.big, "-narrow")
        trades.display = self.big or not details
        trades.styles.height = (min(self.state.cfg.trades_n, 12) + 1) if (self.big and details) else "1fr"

    def on_resize(self, event: events.Resize) -> None:
        self.apply_layout()

    def action_toggle_details(self) -> None:
        self._details = not (self.big if self._details is None else self._details)
        self.apply_layout()

    def redraw_all(self) -> None:
        if not self._can_draw():
            return
        now = self.clock()
        self._busline.show(self.state.header(now))
        for p, view in self.views.items():
            view.show(self.state.lines(p, now))
        self.redraw_overview(now)

    # ── keys ─────────────────────────────────────────────────────────────────────────────────
    def load_test_results(self) -> None:
        """Read ``run_logs/test_results_latest.json`` into the footer (a bad file is a red line, never a crash)."""
        path = self.settings.run_logs / FILE_NAME
        try:
            doc, err = read_test_results(path), None
        except TestResultsError as exc:
            doc, err = None, str(exc)
        self.query_one("#tests", TestFooter).show(results_footer(doc, err, self.clock()))

    def action_toggle_tests(self) -> None:
        footer = self.query_one("#tests", TestFooter)
        if footer.display:
            footer.display = False
        else:
            self.load_test_results()
            footer.display = True

    def action_force_refresh(self) -> None:
        self.feed.request_refresh()
        self.notify("refresh requested: reading every key once", timeout=2)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, load settings, run the terminal."""
    ap = argparse.ArgumentParser(prog="python -m observability.tui", description=__doc__.splitlines()[0])
    ap.add_argument("--members", help="comma-separated host:port list (default: DOLPHIN_HZ_MEMBERS)")
    ap.add_argument("--cluster", help="cluster name (default: DOLPHIN_HZ_CLUSTER)")
    ap.add_argument("--log-file", help="log file (default: <run_logs>/tui.log); the terminal itself shows no logs")
    ap.add_argument("--hb-warn-s", type=float, default=TuiConfig.hb_warn_s)
    ap.add_argument("--hb-stale-s", type=float, default=TuiConfig.hb_stale_s)
    args = ap.parse_args(argv)
    over: dict = {}
    if args.members:
        over["hz_members"] = tuple(m.strip() for m in args.members.split(",") if m.strip())
    if args.cluster:
        over["hz_cluster"] = args.cluster
    settings = load_settings(env=os.environ, **over)
    log_file = args.log_file or os.path.join(settings.run_logs, "tui.log")
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    # the hazelcast client logs reconnect warnings; they go to the file, never over the screen
    logging.basicConfig(filename=log_file, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    try:
        cfg = TuiConfig(hb_warn_s=args.hb_warn_s, hb_stale_s=args.hb_stale_s)
    except ValueError as exc:
        ap.error(str(exc))
    log.info("TUI start: members=%s cluster=%s cfg=%s log=%s", settings.hz_members, settings.hz_cluster, cfg, log_file)
    app = DolphinTui(settings, cfg)
    app.run()
    app.feed.stop()
    app.feed.join(10)
    return 0


__all__ = ["DolphinTui", "main", "write_test_results"]   # write_test_results: the bible's §28.4 API


if __name__ == "__main__":
    raise SystemExit(main())
