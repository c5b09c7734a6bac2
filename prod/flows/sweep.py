"""The ``sweep`` flow: strategy parameters × day windows, each cell one backtest, on a Dask cluster.

    python -m prod.flows.sweep --data DIR --grid-file prod/configs/sweeps/todo1_vd_exit.yml [--workers 2]

Design notes: ``docs/design/prod.flows.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import html
import itertools
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from prod.alpha.params import AcbParams, EngineParams, ParamError
from prod.backtest.data import list_day_files
from prod.configs import ConfigError, load_config

FLOW = "sweep"
log = logging.getLogger("dolphin.flows.sweep")
METRICS = ("trades", "roi_pct", "max_drawdown_pct", "profit_factor", "sharpe", "win_rate_pct", "final_capital")
EXIT_COLUMNS = {"FIXED_TP": "exits_tp", "MAX_HOLD": "exits_max_hold", "STOP_LOSS": "exits_stop",
                "SUBDAY_ACB_NORMALIZATION": "exits_subday_acb", "VD_ADVERSE_TURN": "exits_vd",
                "TF_EXHAUST": "exits_tf_exhaust", "TF_FLIP": "exits_tf_flip"}


class SweepError(ValueError):
    """The sweep cannot run (empty grid, bad parameter, no data); the message names the cause."""


@dataclass(frozen=True)
class SweepSpec:
    """Everything the flow needs, validated: the parameter sets, the windows and the backtest options."""

    config: Path
    data: Path
    param_sets: tuple[dict[str, Any], ...]
    windows: tuple[tuple[str, str, int], ...]          # (date_from, date_to, days)
    exf: Path | None = None
    exf_history: Path | None = None
    mc_model: Path | None = None
    survival: bool = False
    varied: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- grid parsing
def _scalar(text: str) -> Any:
    return yaml.safe_load(text)


def parse_grid_arg(item: str) -> tuple[str, list[Any]]:
    """``name=v1,v2,...`` → (name, [values]) with YAML scalars (``true``, ``0.02``, ``120``)."""
    if "=" not in item:
        raise SweepError(f"--grid {item!r}: expected name=v1,v2,...")
    name, vals = item.split("=", 1)
    name = name.strip()
    values = [_scalar(v.strip()) for v in vals.split(",") if v.strip() != ""]
    if not name:
        raise SweepError(f"--grid {item!r}: no parameter name")
    return name, values


def _check_name(name: str) -> None:
    if name.startswith("acb."):
        known = set(AcbParams.__dataclass_fields__)
        if name[4:] not in known:
            raise SweepError(f"unknown ACB parameter {name!r} (known: {sorted(known)})")
    elif name not in EngineParams.__dataclass_fields__ or name == "direction":
        raise SweepError(f"unknown engine parameter {name!r} (see prod/alpha/params.py EngineParams)")


def _sample(dom: Any, name: str, rng: np.random.Generator) -> Any:
    if isinstance(dom, list):
        return dom[int(rng.integers(0, len(dom)))]
    lo, hi = float(dom["low"]), float(dom["high"])
    if not lo <= hi:
        raise SweepError(f"{name}: low {lo} > high {hi}")
    if dom.get("log"):
        if lo <= 0:
            raise SweepError(f"{name}: log range needs low > 0")
        x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        x = rng.uniform(lo, hi)
    return int(round(x)) if dom.get("int") else float(x)


def param_sets(params: Mapping[str, Any], search: str = "grid", samples: int = 0, seed: int = 0
               ) -> list[dict[str, Any]]:
    """Expand the parameter domains into parameter sets (grid: every combination; random: ``samples`` draws)."""
    if not params:
        raise SweepError("empty grid: no parameters to sweep (give --grid name=v1,v2 or a grid file's params)")
    for name, dom in params.items():
        _check_name(name)
        if isinstance(dom, list):
            if not dom:
                raise SweepError(f"empty grid: parameter {name!r} has no values")
        elif isinstance(dom, dict):
            if search != "random" or not {"low", "high"} <= set(dom):
                raise SweepError(f"{name}: a {{low, high}} range is for search: random only")
        else:
            raise SweepError(f"{name}: expected a list of values or a {{low, high}} range, got {dom!r}")
    names = list(params)
    if search == "grid":
        return [dict(zip(names, combo)) for combo in itertools.product(*(params[n] for n in names))]
    if search != "random":
        raise SweepError(f"search {search!r}: expected grid or random")
    if samples < 1:
        raise SweepError("empty grid: random search with samples < 1")
    rng = np.random.default_rng(seed)
    return [{n: _sample(params[n], n, rng) for n in names} for _ in range(samples)]


def day_windows(data: Path, days: int, step: int | None = None, max_windows: int | None = None,
                date_from: dt.date | None = None, date_to: dt.date | None = None) -> list[tuple[str, str, int]]:
    """Consecutive windows of ``days`` day files (start every ``step`` files): ``[(from, to, days)]``."""
    if days < 1 or (step is not None and step < 1):
        raise SweepError(f"window days {days} / step {step}: must be >= 1")
    files = list_day_files(Path(data), date_from, date_to) if Path(data).is_dir() else []
    if not files:
        raise SweepError(f"no data: no YYYY-MM-DD.parquet day files in {data}")
    if len(files) < days:
        raise SweepError(f"no data: {len(files)} day file(s) in {data}, fewer than one {days}-day window")
    step = step or days
    out = [(files[i][0], files[i + days - 1][0], days) for i in range(0, len(files) - days + 1, step)]
    return out[:max_windows] if max_windows else out


def config_doc(base_config: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The YAML document of the base config with ``overrides`` applied, validated by the engine's parameters."""
    cfg = load_config(base_config, allow_drift=True)
    eng = {k: v for k, v in cfg.engine.to_dict().items() if k != "direction"}
    acb = cfg.acb.to_dict()
    for k, v in overrides.items():
        if k.startswith("acb."):
            acb[k[4:]] = v
        else:
            eng[k] = v
    try:
        EngineParams.from_dict({**eng, "direction": cfg.direction}, "sweep")
        AcbParams.from_dict(acb, "sweep")
    except ParamError as exc:
        raise SweepError(f"parameter set {dict(overrides)}: {exc}") from None
    return {"strategy": cfg.strategy, "direction": "SHORT" if cfg.direction < 0 else "LONG", "engine": eng,
            "acb": acb}


def build_spec(config: Path, data: Path, grid_file: Path | None = None, grid: Sequence[str] = (),
               search: str | None = None, samples: int | None = None, seed: int | None = None,
               window_days: int | None = None, window_step: int | None = None, max_windows: int | None = None,
               date_from: dt.date | None = None, date_to: dt.date | None = None, exf: Path | None = None,
               exf_history: Path | None = None, mc_model: Path | None = None, survival: bool | None = None
               ) -> SweepSpec:
    """Validate the inputs into a :class:`SweepSpec` (:class:`SweepError` naming the cause)."""
    doc: dict[str, Any] = {}
    if grid_file is not None:
        try:
            doc = yaml.safe_load(Path(grid_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SweepError(f"grid file {grid_file}: {exc}") from None
        if not isinstance(doc, dict):
            raise SweepError(f"grid file {grid_file}: expected a mapping with params/windows/backtest")
        unknown = set(doc) - {"search", "samples", "seed", "params", "windows", "backtest", "description"}
        if unknown:
            raise SweepError(f"grid file {grid_file}: unknown key(s) {sorted(unknown)}")
    params = dict(doc.get("params") or {})
    for item in grid:
        name, values = parse_grid_arg(item)
        params[name] = values
    search = search or doc.get("search", "grid")
    samples = samples if samples is not None else int(doc.get("samples", 0))
    seed = seed if seed is not None else int(doc.get("seed", 0))
    win = doc.get("windows") or {}
    bt = doc.get("backtest") or {}
    sets = param_sets(params, search, samples, seed)
    try:
        for s in sets:
            config_doc(config, s)
    except ConfigError as exc:
        raise SweepError(f"--config: {exc}") from None
    windows = day_windows(data, window_days or int(win.get("days", 1)), window_step or win.get("step"),
                          max_windows or win.get("max"), date_from, date_to)

    def _path(v: Any) -> Path | None:
        return None if v in (None, "") else Path(v).resolve()

    bt_paths = {"--exf-history": (exf_history or bt.get("exf_history"), Path.is_dir),
                "--mc-model": (mc_model or bt.get("mc_model"), Path.is_file), "--exf": (exf or bt.get("exf"), None)}
    for flag, (v, ok) in bt_paths.items():
        if v not in (None, "") and ok is not None and not ok(Path(v)):
            raise SweepError(f"{flag} {v}: no such {'directory' if ok is Path.is_dir else 'file'}")
    varied = tuple(n for n in params if len({json.dumps(s[n], sort_keys=True) for s in sets}) > 1)
    return SweepSpec(config=Path(config).resolve(), data=Path(data).resolve(), param_sets=tuple(sets),
                     windows=tuple(windows), exf=_path(exf or bt.get("exf")),
                     exf_history=_path(exf_history or bt.get("exf_history")),
                     mc_model=_path(mc_model or bt.get("mc_model")),
                     survival=bool(survival if survival is not None else bt.get("survival", False)), varied=varied,
                     meta={"search": search, "samples": samples, "seed": seed, "grid_file": str(grid_file or ""),
                           "description": doc.get("description", "")})


# ---------------------------------------------------------------- one cell
def run_cell(spec: SweepSpec, set_id: int, window_id: int) -> dict[str, Any]:
    """Backtest parameter set ``set_id`` on window ``window_id``; return the table row."""
    from prod.backtest.runner import BacktestOptions, run_backtest
    params = spec.param_sets[set_id]
    d0, d1, ndays = spec.windows[window_id]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dolphin_sweep_") as tmp:
        cfg_path = Path(tmp) / "config.yml"
        cfg_path.write_text(yaml.safe_dump(config_doc(spec.config, params), sort_keys=True), encoding="utf-8")
        res = run_backtest(BacktestOptions(
            config=cfg_path, data=spec.data, date_from=dt.date.fromisoformat(d0), date_to=dt.date.fromisoformat(d1),
            summary=Path(tmp) / "summary.json", png=False, allow_drift=True, exf=spec.exf,
            exf_history=spec.exf_history, mc_model=spec.mc_model, survival=spec.survival))
    s = res.summary
    row: dict[str, Any] = {"set_id": set_id, "window_id": window_id, "date_from": d0, "date_to": d1, "days": s["days"],
                           "bars": s["bars"], "config_hash": s["config_hash"]}
    row.update({f"p.{k}": v for k, v in params.items()})
    row.update({m: s[m] for m in METRICS})
    reasons = s.get("exit_reasons") or {}
    row.update({col: int(reasons.get(r, 0)) for r, col in EXIT_COLUMNS.items()})
    row["exit_reasons"] = json.dumps(reasons, sort_keys=True)
    row["mc_days_by_status"] = json.dumps(s["mc"]["days_by_status"], sort_keys=True)
    row["wall_s"] = time.perf_counter() - t0
    return row


@task(name="sweep_backtest", retries=0, cache_policy=NO_CACHE)
def sweep_backtest(spec: SweepSpec, cells: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Backtest a batch of (parameter set, window) cells in one task; return their rows."""
    return [run_cell(spec, i, w) for i, w in cells]


def auto_batch(cells: int, workers: int) -> int:
    """Cells per task: about four tasks per worker (fewer task runs, fewer Prefect API round trips; four per
    worker keeps the workers busy to the end), at least one cell."""
    return max(1, cells // (4 * max(1, workers)))


# ---------------------------------------------------------------- outputs
def write_table(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write the rows (sorted by set, window) as one Parquet table; every row has the same columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = sorted(rows, key=lambda r: (r["set_id"], r["window_id"]))
    cols = list(rows[0])
    table = pa.table({c: [r.get(c) for r in rows] for c in cols})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def _color(v: float | None, lo: float, hi: float, scale: str) -> str:
    """Cell colour: ``div`` green above 0 / red below, ``red`` white→red with the value, ``blue`` white→blue."""
    if v is None or not math.isfinite(v):
        return "#eee"
    if scale == "div":
        m = max(abs(lo), abs(hi)) or 1.0
        x = max(-1.0, min(1.0, v / m))
        g = 255 - int(150 * abs(x))
        return f"rgb({g},255,{g})" if x >= 0 else f"rgb(255,{g},{g})"
    x = 0.0 if hi == lo else (v - lo) / (hi - lo)
    g = 255 - int(160 * x)
    return f"rgb(255,{g},{g})" if scale == "red" else f"rgb({g},{g},255)"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:,.4g}"
    return html.escape("" if v is None else str(v))


def _heat(title: str, row_labels: list[str], col_labels: list[str], cells: list[list[float | None]],
          scale: str) -> str:
    vals = [v for r in cells for v in r if v is not None and math.isfinite(v)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 0.0)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in col_labels)
    body = "".join(
        f"<tr><th>{html.escape(rl)}</th>"
        + "".join(f'<td style="background:{_color(v, lo, hi, scale)}">{_fmt(v)}</td>' for v in r)
        + "</tr>" for rl, r in zip(row_labels, cells))
    return f"<h3>{html.escape(title)}</h3><table class=heat><tr><th></th>{head}</tr>{body}</table>"


_METRIC_STYLE = {"roi_pct": ("ROI %", "div"), "max_drawdown_pct": ("max drawdown %", "red"),
                 "sharpe": ("Sharpe", "div"), "trades": ("trades", "blue"),
                 "profit_factor": ("profit factor", "blue"), "win_rate_pct": ("win rate %", "blue")}


def write_report(spec: SweepSpec, rows: list[dict[str, Any]], path: Path, timing: Mapping[str, Any]) -> Path:
    """Self-contained HTML (no script): per metric a parameter set × window heat map with the mean over windows,
    and for exactly two varied parameters a pivot of the mean over windows."""
    by = {(r["set_id"], r["window_id"]): r for r in rows}
    nsets, nwin = len(spec.param_sets), len(spec.windows)
    labels = [", ".join(f"{k}={spec.param_sets[i][k]}" for k in (spec.varied or spec.param_sets[i])) or f"set {i}"
              for i in range(nsets)]
    wlabels = [f"{a}..{b}" if a != b else a for a, b, _ in spec.windows] + ["mean"]
    parts = []
    for m, (title, scale) in _METRIC_STYLE.items():
        cells = []
        for i in range(nsets):
            vs = [by.get((i, w), {}).get(m) for w in range(nwin)]
            fin = [float(v) for v in vs if v is not None and math.isfinite(float(v))]
            cells.append([None if v is None else float(v) for v in vs] + [float(np.mean(fin)) if fin else None])
        parts.append(_heat(f"{title} — parameter set × window", labels, wlabels, cells, scale))
    if len(spec.varied) == 2:
        a, b = spec.varied
        av = sorted({json.dumps(s[a]) for s in spec.param_sets}, key=lambda x: json.loads(x))
        bv = sorted({json.dumps(s[b]) for s in spec.param_sets}, key=lambda x: json.loads(x))
        for m in ("roi_pct", "max_drawdown_pct"):
            cells = []
            for x in av:
                line = []
                for y in bv:
                    vals = [float(r[m]) for r in rows
                            if json.dumps(spec.param_sets[r["set_id"]][a]) == x
                            and json.dumps(spec.param_sets[r["set_id"]][b]) == y and r[m] is not None]
                    line.append(float(np.mean(vals)) if vals else None)
                cells.append(line)
            parts.append(_heat(f"{_METRIC_STYLE[m][0]}, mean over windows — {a} (rows) × {b} (columns)",
                               [f"{a}={x}" for x in av], [f"{b}={y}" for y in bv], cells, _METRIC_STYLE[m][1]))
    e = html.escape
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DOLPHIN sweep {e(str(spec.meta.get('grid_file') or ''))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse;margin:.4em 0 1.4em}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:13px}}th{{background:#f3f3f3;text-align:left}}
.muted{{color:#888}}</style></head><body>
<h1>DOLPHIN sweep</h1>
<p class="muted">{e(str(spec.meta.get('description') or ''))}</p>
<p>config {e(str(spec.config))} · data {e(str(spec.data))} · {nsets} parameter set(s) × {nwin} window(s) ·
search {e(str(spec.meta.get('search')))} · sub-day ACB {e(str(spec.exf_history or 'off'))} ·
MC gate {e(str(spec.mc_model or 'off'))} · survival {spec.survival}</p>
<p>{timing.get('backtests')} backtests, {timing.get('backtest_days')} backtest-days in {_fmt(timing.get('wall_s'))} s
({_fmt(timing.get('backtest_days_per_s'))} backtest-days/s) on {e(str(timing.get('runner')))}</p>
{''.join(parts)}
</body></html>
"""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- the flow
@flow(name="sweep", log_prints=True)
def sweep_flow(spec: SweepSpec, out: str, batch: int = 1) -> dict[str, Any]:
    """Submit every (parameter set, window) backtest to the flow's task runner, ``batch`` cells per task; write the
    table and the report."""
    if not spec.param_sets or not spec.windows:
        raise SweepError("empty grid or no windows")
    if batch < 1:
        raise SweepError(f"batch {batch}: must be >= 1")
    t0 = time.perf_counter()
    cells = [(i, w) for i in range(len(spec.param_sets)) for w in range(len(spec.windows))]
    futures = [sweep_backtest.submit(spec, cells[k:k + batch]) for k in range(0, len(cells), batch)]
    rows = [r for f in futures for r in f.result()]
    wall = time.perf_counter() - t0
    bdays = sum(int(r["days"]) for r in rows)
    out_p = Path(out)
    table = write_table(rows, out_p.with_suffix(".parquet"))
    timing = {"backtests": len(rows), "tasks": len(futures), "backtest_days": bdays, "wall_s": wall,
              "backtest_days_per_s": bdays / wall if wall > 0 else None, "runner": _runner_name()}
    report = write_report(spec, rows, out_p.with_suffix(".html"), timing)
    log.info("sweep: %d backtests, %d backtest-days in %.1f s (%.2f backtest-days/s) -> %s", len(rows), bdays, wall,
             timing["backtest_days_per_s"] or 0.0, table)
    return {"table": str(table), "report": str(report), **timing}


def _runner_name() -> str:
    try:
        from prefect.context import FlowRunContext
        ctx = FlowRunContext.get()
        tr = ctx.task_runner if ctx is not None else None
        if tr is not None and hasattr(tr, "_cluster") and getattr(tr, "_cluster", None) is not None:
            return f"{type(tr).__name__} {tr._cluster!r}"
        return type(tr).__name__ if tr is not None else "?"
    except Exception:  # noqa: BLE001 - a label for the report only
        return "?"


def task_runner(workers: int = 2, address: str | None = None):
    """A DaskTaskRunner: the cluster at ``address``, else a local cluster of ``workers`` single-thread processes."""
    from prefect_dask import DaskTaskRunner
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": int(workers), "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": ":0"})


def run_sweep(spec: SweepSpec, out: Path, workers: int = 2, address: str | None = None,
              batch: int | None = None) -> dict[str, Any]:
    """Run the flow on a Dask task runner (see :func:`task_runner`); ``batch`` cells per task (default:
    :func:`auto_batch` for ``workers``)."""
    cells = len(spec.param_sets) * len(spec.windows)
    b = batch if batch is not None else auto_batch(cells, workers)
    return sweep_flow.with_options(task_runner=task_runner(workers, address))(spec, str(out), b)


def _date(s: str) -> dt.date:
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: expected YYYY-MM-DD") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.flows.sweep",
                                 description="DOLPHIN sweep flow: parameters x day windows on a Dask task runner")
    ap.add_argument("--data", required=True, type=Path, help="directory of YYYY-MM-DD.parquet day files")
    ap.add_argument("--config", type=Path, default=Path("prod/configs/blue.yml"), help="base strategy YAML")
    ap.add_argument("--grid-file", type=Path, help="YAML grid (prod/configs/sweeps/*.yml)")
    ap.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                    help="a parameter and its values (repeatable; adds to / overrides the grid file)")
    ap.add_argument("--search", choices=("grid", "random"), help="grid (default) or random")
    ap.add_argument("--samples", type=int, help="random search: parameter sets to draw")
    ap.add_argument("--seed", type=int, help="random search seed")
    ap.add_argument("--window-days", type=int, help="days per window (default 1)")
    ap.add_argument("--window-step", type=int, help="day files between window starts (default = window days)")
    ap.add_argument("--max-windows", type=int, help="use at most this many windows")
    ap.add_argument("--from", dest="date_from", type=_date, help="first date (inclusive)")
    ap.add_argument("--to", dest="date_to", type=_date, help="last date (inclusive)")
    ap.add_argument("--exf", type=Path, help="daily external factors JSON (default <data>/exf_daily.json)")
    ap.add_argument("--exf-history", type=Path, help="exf_fetcher history (data/exf): sub-day ACB in every backtest")
    ap.add_argument("--mc-model", type=Path, help="MC-forewarner model: the daily §12 gate in every backtest")
    ap.add_argument("--survival", action="store_true", default=None, help="survival-stack posture in every backtest")
    ap.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default 2)")
    ap.add_argument("--address", help="a running Dask scheduler (tcp://host:8786) instead of a local cluster")
    ap.add_argument("--batch", type=int, help="cells per Prefect task (default: about 4 tasks per worker)")
    ap.add_argument("--out", type=Path, help="output path without suffix (default run_logs/sweeps/sweep_<UTC time>)")
    ap.add_argument("--api-url", help="Prefect API (default: $PREFECT_API_URL, else a temporary local server)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers < 1 or (args.batch is not None and args.batch < 1):
        print("sweep: --workers and --batch must be >= 1", file=sys.stderr)
        return 2
    try:
        spec = build_spec(args.config, args.data, args.grid_file, args.grid, args.search, args.samples, args.seed,
                          args.window_days, args.window_step, args.max_windows, args.date_from, args.date_to,
                          args.exf, args.exf_history, args.mc_model, args.survival)
    except SweepError as exc:
        print(f"sweep: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("run_logs/sweeps") / f"sweep_{dt.datetime.now(dt.timezone.utc):%Y%m%d_%H%M%S}"
    print(f"sweep: {len(spec.param_sets)} parameter set(s) x {len(spec.windows)} window(s) = "
          f"{len(spec.param_sets) * len(spec.windows)} backtests", file=sys.stderr)
    url = args.api_url or os.environ.get("PREFECT_API_URL")
    try:
        if url:
            from prefect.settings import PREFECT_API_URL, temporary_settings
            with temporary_settings(updates={PREFECT_API_URL: url}):
                result = run_sweep(spec, out, args.workers, args.address, args.batch)
        else:
            result = run_sweep(spec, out, args.workers, args.address, args.batch)
    except Exception as exc:  # noqa: BLE001 - the run is Failed in Prefect; say why and exit non-zero
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
