"""Register DOLPHIN's deployments on a Prefect server, and list them: ``python -m prod.flows register|list``.

Design notes: ``docs/design/prod.flows.md``.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

POOL = "dolphin"
POOL_CONCURRENCY = 1
TAGS = ("dolphin",)


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    flow_module: str
    flow_attr: str
    cron: str
    parameters: dict[str, Any] = field(default_factory=dict)
    description: str = ""


DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec("dolphin-paper-blue", "prod.flows.paper_trade", "paper_trade_flow", "5 0 * * *",
                   {"config": "prod/configs/blue.yml"}, "Daily paper replay of yesterday, champion SHORT (blue)"),
    DeploymentSpec("dolphin-paper-green", "prod.flows.paper_trade", "paper_trade_flow", "5 0 * * *",
                   {"config": "prod/configs/green.yml"}, "Daily paper replay of yesterday, LONG research (green)"),
    DeploymentSpec("dolphin-backtest-blue", "prod.flows.backtest", "backtest_supervisor_flow", "10 0 * * *",
                   {"config": "prod/configs/blue.yml"}, "Backtest supervisor of yesterday (bible §17.2), blue"),
    DeploymentSpec("dolphin-mc-forewarner", "prod.flows.mc_forewarner", "mc_forewarner_flow", "0 */4 * * *",
                   {"config": "prod/configs/blue.yml"}, "MC-forewarner envelope of the blue config, every 4 h"),
)


def wait_for_api(url: str, timeout_s: float) -> None:
    """Poll ``<url>/health`` until it answers 200; raise RuntimeError naming the URL at timeout."""
    import httpx
    deadline = time.monotonic() + timeout_s
    last: Exception | str = "no answer"
    while True:
        try:
            r = httpx.get(url.rstrip("/") + "/health", timeout=3.0)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise RuntimeError(f"Prefect API {url} not reachable within {timeout_s:g}s ({last})")
        time.sleep(0.5)


def ensure_pool(client: Any) -> Any:
    """Create the ``dolphin`` process pool (or update its concurrency limit); return it."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker
    try:
        pool = client.read_work_pool(POOL)
    except ObjectNotFound:
        return client.create_work_pool(WorkPoolCreate(
            name=POOL, type="process", concurrency_limit=POOL_CONCURRENCY,
            description="DOLPHIN flows (one run at a time, bible §24.6.1)",
            base_job_template=ProcessWorker.get_default_base_job_template()))
    if pool.concurrency_limit != POOL_CONCURRENCY:
        client.update_work_pool(POOL, WorkPoolUpdate(concurrency_limit=POOL_CONCURRENCY))
        pool = client.read_work_pool(POOL)
    return pool


def register() -> list[str]:
    """Create or update the pool and every deployment on the current PREFECT_API_URL; return their ids."""
    import importlib

    from prefect import get_client
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron
    with get_client(sync_client=True) as client:
        ensure_pool(client)
    ids = []
    for spec in DEPLOYMENTS:
        fl = getattr(importlib.import_module(spec.flow_module), spec.flow_attr)
        dep = fl.to_deployment(name=spec.name, schedules=[Cron(spec.cron, timezone="UTC")],
                               parameters=dict(spec.parameters), description=spec.description, tags=list(TAGS),
                               concurrency_limit=1, entrypoint_type=EntrypointType.MODULE_PATH)
        ids.append(str(dep.apply(work_pool_name=POOL)))
    return ids


def list_deployments() -> list[dict]:
    """Return the server's DOLPHIN deployments: name, flow, pool, schedules, concurrency, parameters."""
    from prefect import get_client
    with get_client(sync_client=True) as client:
        out = []
        for d in client.read_deployments():
            if not d.name.startswith("dolphin-"):
                continue
            flow = client.read_flow(d.flow_id)
            out.append({"name": f"{flow.name}/{d.name}", "deployment": d.name, "flow": flow.name,
                        "work_pool": d.work_pool_name, "entrypoint": d.entrypoint,
                        "schedules": [{"cron": getattr(s.schedule, "cron", None),
                                       "timezone": getattr(s.schedule, "timezone", None), "active": s.active}
                                      for s in d.schedules],
                        "concurrency_limit": d.global_concurrency_limit.limit if d.global_concurrency_limit
                        else getattr(d, "concurrency_limit", None),
                        "parameters": d.parameters, "paused": d.paused})
        return sorted(out, key=lambda r: r["deployment"])


def live_workers() -> list[dict]:
    """Return the workers of the ``dolphin`` pool with their status and last heartbeat (for MHS M4)."""
    from prefect import get_client
    with get_client(sync_client=True) as client:
        return [{"name": w.name, "status": str(getattr(w.status, "value", w.status)),
                 "last_heartbeat_time": str(w.last_heartbeat_time)}
                for w in client.read_workers_for_work_pool(POOL)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prod.flows", description="DOLPHIN Prefect deployments")
    ap.add_argument("command", choices=("register", "list", "workers"))
    ap.add_argument("--api-url", default=None, help="Prefect API (default: $PREFECT_API_URL or the embedded server)")
    ap.add_argument("--wait-s", type=float, default=60.0, help="how long to wait for the API to answer")
    args = ap.parse_args(argv)
    import json

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prod.flows.common import api_url
    url = api_url(args.api_url)
    try:
        wait_for_api(url, args.wait_s)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            if args.command == "register":
                ids = register()
                print(f"registered {len(ids)} deployments on pool {POOL!r} at {url}")
                rows = list_deployments()
            elif args.command == "list":
                rows = list_deployments()
            else:
                rows = live_workers()
    except Exception as exc:  # noqa: BLE001 - say what failed and exit non-zero
        print(f"ERROR: {args.command} against {url} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for r in rows:
        print(json.dumps(r, default=str, sort_keys=True))
    return 0
