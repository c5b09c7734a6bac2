"""The Prefect flows against a real local Prefect server (the session's, tests/conftest.py) and the embedded member.

The server is ``prefect server start`` on a free port with a temporary PREFECT_HOME (UI on). Flows run
in-process against it (``temporary_settings``), through the manual CLI, and once through a real
``prefect worker`` of the ``dolphin`` pool; their map writes are read back over the bus and their
states and task runs from the server's API.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prod.backtest.synth import generate
from prod.bus import maps
from prod.bus.client import make_client
from prod.flows import bus_io
from prod.settings import load_settings
from tests.helpers import REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.timeout(600)
D1, D2 = "2026-01-01", "2026-01-02"
PY = sys.executable


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("DOLPHIN_FLOW_RETRY_DELAY_S", "0.2")
    monkeypatch.setenv("DOLPHIN_FLOW_HZ_TIMEOUT_S", "3")


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """Two synthetic days (17,280 bars × 50 assets each, ``prod.backtest.synth``) in a data dir."""
    data = tmp_path_factory.mktemp("data")
    generate(data / "vbt_cache_klines", days=2, seed=1)
    return data


@pytest.fixture
def bus(hz_member):
    _, port = hz_member
    c = make_client(load_settings(env={}, hz_members=(f"127.0.0.1:{port}",)), name="flows-test")
    yield c
    c.shutdown()


def _members(hz_member) -> str:
    return f"127.0.0.1:{hz_member[1]}"


def _get(bus, map_name: str, key: str) -> dict | None:
    raw = bus.get_map(map_name).blocking().get(key)
    if raw is None:
        return None
    p = maps.decode(map_name, key, raw)
    return p.to_dict() if isinstance(p, maps.Payload) else p


def _runs(state, expect: dict[str, int] | None = None) -> tuple[object, dict[str, list]]:
    """Return (flow run, {task name: [task runs]}) of a flow's final state, read from the server.

    The server records task runs from the events the flow run emits, a moment after the flow returns: wait
    until the ``expect``-ed number of runs of each task is there, and every run read is in a final state."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    fid = state.state_details.flow_run_id

    def read():
        with get_client(sync_client=True) as c:
            fr = c.read_flow_run(fid)
            trs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fid])))
        out: dict[str, list] = {}
        for tr in trs:
            out.setdefault(tr.name.rsplit("-", 1)[0], []).append(tr)
        done = all(tr.state is not None and tr.state.is_final() for tr in trs)
        enough = all(len(out.get(name, [])) >= n for name, n in (expect or {}).items())
        return (fr, out) if done and enough else None

    return wait_until(read, 30, interval=0.2, what=f"the server's task runs of flow run {fid} ({expect or 'final'})")


def _env(hz_member, data: Path, run_logs: Path, api: str) -> dict:
    return {**os.environ, "PREFECT_API_URL": api, "DOLPHIN_HZ_MEMBERS": _members(hz_member),
            "DOLPHIN_DATA_DIR": str(data), "DOLPHIN_RUN_LOGS": str(run_logs), "DOLPHIN_FLOW_RETRY_DELAY_S": "0.2",
            "DOLPHIN_FLOW_HZ_TIMEOUT_S": "3"}


# ── paper_trade_flow ──────────────────────────────────────────────────────────────────────────
def test_paper_trade_flow_manual_run_writes_state_and_pnl_and_the_next_day_continues(
        prefect_api, hz_member, bus, days, tmp_path, fast_retries):
    run_logs = tmp_path / "run_logs"
    # the manual CLI of the bible (§17.5), as a user runs it
    res = subprocess.run([PY, "-m", "prod.flows.paper_trade", "--config", "prod/configs/blue.yml", "--date", D1],
                         cwd=REPO_ROOT, env=_env(hz_member, days, run_logs, prefect_api), capture_output=True,
                         text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    pnl1 = _get(bus, maps.PNL_BLUE, bus_io.pnl_key("paper_flow", D1))
    latest = _get(bus, maps.STATE_BLUE, bus_io.paper_latest_key("blue"))
    snap1 = _get(bus, maps.STATE_BLUE, bus_io.paper_state_key("blue", D1))
    assert pnl1["date"] == D1 and pnl1["bars"] == 17_280 and pnl1["trades"] > 0 and pnl1["source"] == "parquet"
    assert pnl1["start_capital"] == 25_000.0 and pnl1["capital"] == pytest.approx(25_000.0 + pnl1["pnl"])
    assert latest["date"] == D1 and latest["capital"] == pnl1["capital"] and latest["engine_state"]["capital"] == pnl1["capital"]
    assert snap1 == latest
    # the live trader's keys are untouched
    assert _get(bus, maps.PNL_BLUE, D1) is None and _get(bus, maps.STATE_BLUE, maps.KEY_LATEST) is None
    line = json.loads((run_logs / "paper_logs" / "blue" / "paper_pnl.jsonl").read_text().splitlines()[-1])
    assert line["capital"] == pnl1["capital"] and line["date"] == D1

    # day 2 (in-process) continues day 1's engine; a re-run of day 2 gives the same day
    from prod.flows.paper_trade import paper_trade_flow
    kw = dict(config="prod/configs/blue.yml", date=D2, hz_members=_members(hz_member), data_dir=str(days),
              run_logs=str(run_logs))
    r2 = paper_trade_flow(**kw)
    assert r2["restored_from"] == D1 and r2["start_capital"] == pnl1["capital"]
    again = paper_trade_flow(**kw, return_state=True)
    fr, tasks = _runs(again)
    assert fr.state.is_completed()
    assert set(tasks) >= {"load_config", "load_day_scans", "read_day_context", "restore_state", "run_engine_day",
                          "write_hz_state", "log_pnl"}
    r2b = again.result()
    assert r2b["restored_from"] == D1 and r2b["capital"] == r2["capital"] and r2b["trades"] == r2["trades"]
    assert _get(bus, maps.STATE_BLUE, bus_io.paper_latest_key("blue"))["date"] == D2


def _truncated(days: Path, tmp: Path) -> Path:
    d = tmp / "trunc"
    (d / "vbt_cache_klines").mkdir(parents=True)
    raw = (days / "vbt_cache_klines" / f"{D1}.parquet").read_bytes()
    (d / "vbt_cache_klines" / f"{D1}.parquet").write_bytes(raw[: len(raw) // 2])
    return d


def _gappy(days: Path, tmp: Path) -> Path:
    d = tmp / "gap"
    (d / "vbt_cache_klines").mkdir(parents=True)
    t = pq.read_table(days / "vbt_cache_klines" / f"{D1}.parquet")
    pq.write_table(t.slice(0, 8000), d / "vbt_cache_klines" / f"{D1}.parquet")   # the scanner stopped at 11:06
    return d


@pytest.mark.parametrize("case,expect", [("missing", "no data for 2026-01-01"),
                                         ("truncated", "unreadable Parquet"),
                                         ("partial", "partial day 2026-01-01")])
def test_bad_day_fails_the_run_with_a_named_error_after_its_retries_and_writes_nothing(
        prefect_api, hz_member, bus, days, tmp_path, fast_retries, case, expect):
    from prod.flows.days import DayDataError
    from prod.flows.paper_trade import paper_trade_flow
    data = {"missing": lambda: tmp_path / "empty", "truncated": lambda: _truncated(days, tmp_path),
            "partial": lambda: _gappy(days, tmp_path)}[case]()
    state = paper_trade_flow(config="prod/configs/blue.yml", date=D1, hz_members=_members(hz_member),
                             data_dir=str(data), run_logs=str(tmp_path / "rl"), return_state=True)
    fr, tasks = _runs(state, {"load_day_scans": 1})
    assert fr.state.is_failed()
    assert "DayDataError" in fr.state.message and expect in fr.state.message, fr.state.message
    with pytest.raises(DayDataError, match=expect):
        state.result()
    (load,) = tasks["load_day_scans"]
    assert load.state.is_failed() and load.run_count == 3          # retries=2 (§17.3)
    assert "run_engine_day" not in tasks and "write_hz_state" not in tasks
    assert bus.get_map(maps.PNL_BLUE).blocking().size() == 0 and bus.get_map(maps.STATE_BLUE).blocking().size() == 0


def test_bus_down_fails_the_run_after_the_configured_retries(prefect_api, days, tmp_path, fast_retries, monkeypatch):
    from prod.flows.paper_trade import paper_trade_flow
    monkeypatch.setenv("DOLPHIN_FLOW_HZ_TIMEOUT_S", "1")
    state = paper_trade_flow(config="prod/configs/blue.yml", date=D1, hz_members=f"127.0.0.1:{free_port()}",
                             data_dir=str(days), run_logs=str(tmp_path / "rl"), return_state=True)
    fr, tasks = _runs(state, {"read_day_context": 1})
    assert fr.state.is_failed() and "BusUnavailableError" in fr.state.message, fr.state.message
    (ctx,) = tasks["read_day_context"]
    assert ctx.run_count == 3 and ctx.state.is_failed()
    assert "run_engine_day" not in tasks
    assert not (tmp_path / "rl").exists()                            # nothing logged either


# ── backtest supervisor flow ──────────────────────────────────────────────────────────────────
def test_backtest_flow_nautilus_engine_writes_the_days_result(prefect_api, hz_member, bus, days, fast_retries):
    """``engine="nautilus"`` (§17.2's BacktestEngine + DolphinActor; the .[nautilus] extra): same guards and writes."""
    from prod.nautilus import require_nautilus
    require_nautilus()
    from prod.flows.backtest import backtest_supervisor_flow
    r = backtest_supervisor_flow(date=D1, engine="nautilus", config="prod/configs/blue.yml",
                                 hz_members=_members(hz_member), data_dir=str(days))
    p = _get(bus, maps.PNL_BLUE, bus_io.pnl_key("backtest_flow", D1))
    assert p["runner"] == "nautilus" and p["trades"] == r["trades"] > 0 and p["fees"] > 0
    assert p["open_position"] is False and p["restored_from"] == "initial_capital"
    st = _get(bus, maps.STATE_BLUE, bus_io.STATE_BACKTEST_LATEST)
    assert st["capital"] == r["capital"] and st["date"] == D1
    assert _get(bus, maps.HEARTBEAT, bus_io.HEARTBEAT_BACKTEST)["phase"] == "flow_end"


def test_backtest_flow_runs_then_hibernate_skips_the_engine_and_dry_run_writes_nothing(
        prefect_api, hz_member, bus, days, fast_retries):
    from prod.flows.backtest import backtest_supervisor_flow
    kw = dict(config="prod/configs/blue.yml", hz_members=_members(hz_member), data_dir=str(days))
    r1 = backtest_supervisor_flow(date=D1, **kw)
    p1 = _get(bus, maps.PNL_BLUE, bus_io.pnl_key("backtest_flow", D1))
    st = _get(bus, maps.STATE_BLUE, bus_io.STATE_BACKTEST_LATEST)
    assert p1["trades"] == r1["trades"] > 0 and p1["restored_from"] == "initial_capital"
    assert st["capital"] == r1["capital"] and st["date"] == D1 and st["param_hash"] == r1["config_hash"]
    assert r1["open_position"] is False                              # closed at the end of the day
    hb = _get(bus, maps.HEARTBEAT, bus_io.HEARTBEAT_BACKTEST)
    assert hb["phase"] == "flow_end" and hb["run_date"] == D1
    assert _get(bus, maps.HEARTBEAT, bus_io.HEARTBEAT_PROBE)["run_date"] == D1

    # HIBERNATE (posture from DOLPHIN_SAFETY): the engine is skipped, the result and heartbeat still written
    bus.get_map(maps.SAFETY).blocking().set(maps.KEY_LATEST, maps.encode(maps.SAFETY, maps.KEY_LATEST,
                                                                          {"posture": "HIBERNATE", "Rm": 0.1, "ts": 1.0}))
    state = backtest_supervisor_flow(date=D2, return_state=True, **kw)
    fr, tasks = _runs(state, {"heartbeat": 3})
    r2 = state.result()
    assert fr.state.is_completed() and "run_backtest" not in tasks
    assert [t.state.is_completed() for t in tasks["heartbeat"]] == [True, True, True]
    p2 = _get(bus, maps.PNL_BLUE, bus_io.pnl_key("backtest_flow", D2))
    assert p2["posture"] == "HIBERNATE" and p2["trades"] == 0 and p2["skipped"] == "HIBERNATE"
    assert p2["capital"] == r1["capital"] == r2["capital"] and p2["restored_from"].startswith("latest_backtest@")
    assert _get(bus, maps.HEARTBEAT, bus_io.HEARTBEAT_BACKTEST)["phase"] == "flow_end"

    # --dry-run: config + data validated, nothing on the bus
    size = bus.get_map(maps.PNL_BLUE).blocking().size()
    hb_ts = _get(bus, maps.HEARTBEAT, bus_io.HEARTBEAT_BACKTEST)["ts"]
    dry = backtest_supervisor_flow(date=D1, dry_run=True, **kw)
    assert dry["dry_run"] is True and dry["bars"] == 17_280 and dry["valid_vel_div"] == 17_280
    assert bus.get_map(maps.PNL_BLUE).blocking().size() == size
    assert _get(bus, maps.HEARTBEAT, bus_io.HEARTBEAT_BACKTEST)["ts"] == hb_ts


def test_drifted_config_fails_before_the_engine_runs(prefect_api, hz_member, bus, days, tmp_path, fast_retries):
    from prod.configs import ConfigDriftError
    from prod.flows.backtest import backtest_supervisor_flow
    drifted = tmp_path / "blue_drifted.yml"
    drifted.write_text((REPO_ROOT / "prod/configs/blue.yml").read_text().replace("fixed_tp_pct: 0.0095",
                                                                                  "fixed_tp_pct: 0.02"))
    state = backtest_supervisor_flow(config=str(drifted), date=D1, hz_members=_members(hz_member),
                                     data_dir=str(days), return_state=True)
    fr, tasks = _runs(state, {"validate_champion": 1})
    assert fr.state.is_failed() and "ConfigDriftError" in fr.state.message
    assert "engine.fixed_tp_pct" in fr.state.message, fr.state.message
    with pytest.raises(ConfigDriftError):
        state.result()
    assert tasks["validate_champion"][0].run_count == 1            # retries=0 (§17.2)
    assert not {"load_bar_data", "run_backtest", "write_hz_result"} & set(tasks)
    assert bus.get_map(maps.PNL_BLUE).blocking().size() == 0 and bus.get_map(maps.STATE_BLUE).blocking().size() == 0


# ── MC-forewarner flow ────────────────────────────────────────────────────────────────────────
def test_mc_forewarner_flow_checks_the_one_writer_and_writes_nothing(prefect_api, hz_member, bus, days, tmp_path,
                                                                     fast_retries):
    from prod.configs import load_blue
    from prod.flows.mc_forewarner import McDisagreementError, mc_forewarner_flow
    from tests.mc_fixture import fit_model
    model = fit_model(load_blue(), tmp_path / "model.zip")
    assert model.config_hash == load_blue().champion_hash
    kw = {"hz_members": _members(hz_member), "data_dir": str(days), "model_path": str(tmp_path / "model.zip")}
    state = mc_forewarner_flow(**kw, return_state=True)       # nothing published yet: the run fails, names why
    fr, tasks = _runs(state)
    assert fr.state.is_failed() and "nothing published" in fr.state.message
    with pytest.raises(McDisagreementError):
        state.result()
    assert set(tasks) == {"load_config", "read_day_boost", "assess_config", "read_published"}
    assert _get(bus, maps.FEATURES, maps.KEY_MC_FOREWARNER) is None          # the flow never writes the key
    r = subprocess.run([PY, "-m", "services.mc_forewarner", "--once", "--model", str(tmp_path / "model.zip")],
                       cwd=REPO_ROOT, env={**os.environ, "DOLPHIN_HZ_MEMBERS": _members(hz_member),
                                           "DOLPHIN_DATA_DIR": str(days)}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    published = _get(bus, maps.FEATURES, maps.KEY_MC_FOREWARNER)
    assert published["status"] == "GREEN" and bus_io.read_mc_status(bus, 3.0) == "OK"   # the paper flow's reading
    state = mc_forewarner_flow(**kw, return_state=True)
    fr, _ = _runs(state)
    assert fr.state.is_completed()
    out = state.result()
    assert (out["assessed"]["status"], out["assessed"]["source"]) == ("GREEN", "REAL_MODEL")
    assert out["published"] == published and _get(bus, maps.FEATURES, maps.KEY_MC_FOREWARNER) == published
    state = mc_forewarner_flow(**{**kw, "model_path": str(tmp_path / "absent.zip")}, return_state=True)
    fr, _ = _runs(state)                        # the service published REAL_MODEL; this assessment falls back
    assert fr.state.is_failed() and "published source 'REAL_MODEL' != assessed 'FALLBACK_NO_DATA'" in fr.state.message


# ── deployments, worker, UI ───────────────────────────────────────────────────────────────────
def test_register_lists_the_deployments_with_their_schedules_and_a_worker_runs_one(
        prefect_api, prefect_server, hz_member, bus, days, tmp_path):
    env = _env(hz_member, days, tmp_path / "rl", prefect_api)
    reg = subprocess.run([PY, "-m", "prod.flows", "register"], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=180)
    assert reg.returncode == 0, reg.stdout + reg.stderr
    listed = subprocess.run([PY, "-m", "prod.flows", "list"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = {r["deployment"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert {d: (r["flow"], [s["cron"] for s in r["schedules"]], r["work_pool"]) for d, r in rows.items()} == {
        "dolphin-paper-blue": ("paper_trade_flow", ["5 0 * * *"], "dolphin"),
        "dolphin-paper-green": ("paper_trade_flow", ["5 0 * * *"], "dolphin"),
        "dolphin-backtest-blue": ("backtest_supervisor_flow", ["10 0 * * *"], "dolphin"),
        "dolphin-mc-forewarner": ("mc_forewarner_flow", ["0 */4 * * *"], "dolphin")}
    assert all(s["timezone"] == "UTC" and s["active"] for r in rows.values() for s in r["schedules"])
    assert all(r["concurrency_limit"] == 1 for r in rows.values())
    assert rows["dolphin-paper-green"]["parameters"] == {"config": "prod/configs/green.yml"}
    from prefect import get_client
    with get_client(sync_client=True) as c:
        pool = c.read_work_pool("dolphin")
    assert pool.type == "process" and pool.concurrency_limit == 1
    # registering again updates in place
    from prod.flows import deploy
    assert len(deploy.register()) == 4
    with get_client(sync_client=True) as c:
        assert len([d for d in c.read_deployments() if d.name.startswith("dolphin-")]) == 4

    # the supervised worker's command line, against this server; a triggered run goes through it
    wlog = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([PY, "-m", "prefect", "worker", "start", "--pool", "dolphin", "--type", "process",
                               "--name", "test-worker", "--limit", "1"], cwd=REPO_ROOT,
                              env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1",
                                   "PREFECT_HOME": str(tmp_path / "worker_home")},
                              stdout=wlog, stderr=subprocess.STDOUT)
    try:
        from prefect.deployments import run_deployment
        fr = run_deployment("paper_trade_flow/dolphin-paper-blue", parameters={"date": D1}, timeout=0)

        def final():
            with get_client(sync_client=True) as c:
                r = c.read_flow_run(fr.id)
            return r if r.state.is_final() else None
        done = wait_until(final, 180, interval=1.0, what="the worker to finish the deployment run")
        assert done.state.is_completed(), (done.state, (tmp_path / "worker.log").read_text()[-3000:])
        pnl = _get(bus, maps.PNL_BLUE, bus_io.pnl_key("paper_flow", D1))
        assert pnl["date"] == D1 and pnl["trades"] > 0
        # what MHS M4 can ask: the pool has a live worker
        assert {"name": "test-worker", "status": "ONLINE"}.items() <= next(
            w for w in deploy.live_workers() if w["name"] == "test-worker").items()
        # and MHS asks it over plain HTTP (services.meta_health does not import prefect)
        from urllib.parse import urlparse

        from services.meta_health.main import prefect_workers_online
        u = urlparse(prefect_api)
        # MHS waits 2 s (None: unknown, this cycle); the test gives a busy server time to answer (ci13: None)
        assert prefect_workers_online(u.hostname, u.port, timeout=30) >= 1
        assert prefect_workers_online(u.hostname, u.port, pool="no_such_pool", timeout=30) == 0
        assert prefect_workers_online("127.0.0.1", free_port()) is None
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        wlog.close()


def _chromium_dom(url: str, screenshot: Path | None = None) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian `chromium` is required for the UI test (apt-get install chromium)"
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-dev-shm-usage", "--window-size=1400,900", "--virtual-time-budget=20000"]
    if screenshot is not None:
        subprocess.run(base + [f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout


def test_ui_serves_the_app_and_shows_the_deployments_and_a_completed_run(prefect_api, prefect_server, days, tmp_path):
    import httpx
    base = f"http://127.0.0.1:{prefect_server['port']}"
    r = httpx.get(base + "/", timeout=10)
    assert r.status_code == 200 and "<title>Prefect Server</title>" in r.text and 'id="app"' in r.text
    from prod.flows import deploy
    assert len(deploy.register()) == 4
    from prod.flows.backtest import backtest_supervisor_flow
    backtest_supervisor_flow(date=D1, dry_run=True, data_dir=str(days))      # a completed run to show
    shots = REPO_ROOT / "run_logs"
    shots.mkdir(exist_ok=True)
    dom = _chromium_dom(base + "/deployments", shots / "prefect_ui_deployments.png")
    for name in ("dolphin-paper-blue", "dolphin-paper-green", "dolphin-backtest-blue", "dolphin-mc-forewarner"):
        assert name in dom, name
    runs = _chromium_dom(base + "/runs")
    assert "backtest_supervisor_flow" in runs and "Completed" in runs
    assert (shots / "prefect_ui_deployments.png").stat().st_size > 10_000
