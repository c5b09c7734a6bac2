"""docker/prometheus.yml and docker/grafana-dashboard.json agree with prod.metrics (ports, metric names)."""
from __future__ import annotations

import json
import re

import yaml

from prod import metrics as M
from prod.settings import REPO_ROOT, load_settings


def _exported_names() -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",)}
    names = set()
    for fam in M.REGISTRY.collect():      # labelled metrics have no samples before first use
        names.add(fam.name)
        names.update(fam.name + s for s in suffixes.get(fam.type, ()))
    return names


def test_prometheus_scrapes_every_service_on_its_default_port():
    cfg = yaml.safe_load((REPO_ROOT / "docker/prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in cfg["scrape_configs"]}
    settings = load_settings(env={})
    assert set(targets) == set(M.SERVICE_PORT_OFFSETS)
    for svc, t in targets.items():
        assert t == [f"127.0.0.1:{M.metrics_port(svc, settings)}"], svc


def test_dashboard_queries_only_metrics_that_exist():
    dash = json.loads((REPO_ROOT / "docker/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\b(dolphin_[a-z_]+)", e)}
    assert len(used) >= 15
    missing = used - _exported_names() - {"dolphin_posture"}   # the Enum's label, also its name
    assert not missing, missing
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
