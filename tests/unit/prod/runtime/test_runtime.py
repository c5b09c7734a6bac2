"""prod.runtime: config from flags and variables, RateLog, atomic writes, the manual clock."""
from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from prod.runtime import ConfigError, ManualClock, RateLog, atomic_write, atomic_write_json, build_config
from prod.runtime.config import config_log_dict
from prod.settings import Settings


@dataclass(frozen=True)
class DemoConfig:
    ENV_PREFIX: ClassVar[str] = "DOLPHIN_DEMO_"
    settings: Settings
    interval_s: float = 5.0
    retries: int = 3
    name: str = "x"
    once: bool = False
    out: Path | None = None
    max_age_s: float = field(default=10.0, metadata={"flags": ("--max-age",)})
    api_secret: str = field(default="", metadata={"secret": True})

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError("interval_s must be > 0")


def test_defaults_then_environment_then_flags():
    cfg, _ = build_config(DemoConfig, "demo", [], env={})
    assert (cfg.interval_s, cfg.retries, cfg.once, cfg.out) == (5.0, 3, False, None)
    cfg, _ = build_config(DemoConfig, "demo", [], env={"DOLPHIN_DEMO_INTERVAL_S": "2.5", "DOLPHIN_DEMO_ONCE": "true"})
    assert cfg.interval_s == 2.5 and cfg.once is True
    cfg, _ = build_config(DemoConfig, "demo", ["--interval-s", "1", "--no-once", "--out", "a/b"],
                          env={"DOLPHIN_DEMO_INTERVAL_S": "2.5", "DOLPHIN_DEMO_ONCE": "true"})
    assert cfg.interval_s == 1.0 and cfg.once is False and cfg.out == Path("a/b")


def test_common_flags_land_on_settings_and_override_the_environment():
    cfg, _ = build_config(DemoConfig, "demo", ["--hz-members", "10.0.0.1:5701, 10.0.0.2:5702"],
                          env={"DOLPHIN_HZ_MEMBERS": "127.0.0.1:9999", "DOLPHIN_HZ_CLUSTER": "prod"})
    assert cfg.settings.hz_members == ("10.0.0.1:5701", "10.0.0.2:5702")
    assert cfg.settings.hz_cluster == "prod"


def test_flag_alias_from_field_metadata():
    cfg, _ = build_config(DemoConfig, "demo", ["--max-age", "3"], env={})
    assert cfg.max_age_s == 3.0


@pytest.mark.parametrize("argv, env, names", [
    (["--interval-s", "abc"], {}, "--interval-s='abc'"),
    ([], {"DOLPHIN_DEMO_RETRIES": "1.5"}, "DOLPHIN_DEMO_RETRIES='1.5'"),
    ([], {"DOLPHIN_DEMO_ONCE": "perhaps"}, "DOLPHIN_DEMO_ONCE='perhaps'"),
    ([], {"DOLPHIN_DEMO_INTERVAL_S": "nan"}, "DOLPHIN_DEMO_INTERVAL_S='nan'"),
    ([], {"DOLPHIN_SCAN_INTERVAL_S": "abc"}, "DOLPHIN_SCAN_INTERVAL_S='abc'"),
    (["--hz-members", "nohost"], {}, "DOLPHIN_HZ_MEMBERS"),
])
def test_a_bad_value_is_a_config_error_naming_its_source(argv, env, names):
    with pytest.raises(ConfigError) as ei:
        build_config(DemoConfig, "demo", argv, env=env)
    assert names in str(ei.value)


def test_a_value_the_config_rejects_is_a_config_error_naming_the_service():
    with pytest.raises(ConfigError, match="demo: interval_s must be > 0"):
        build_config(DemoConfig, "demo", ["--interval-s", "-1"], env={})


def test_log_dict_masks_secrets_and_summarises_settings():
    cfg, _ = build_config(DemoConfig, "demo", [], env={"DOLPHIN_DEMO_API_SECRET": "hunter2"})
    d = config_log_dict(cfg)
    assert d["api_secret"] == "***" and "hunter2" not in repr(d)
    assert d["settings"]["hz_cluster"] == "dolphin" and "symbols" not in d["settings"]


def test_ratelog_logs_once_per_interval_and_counts_the_rest(caplog):
    rl = RateLog(logging.getLogger("t.ratelog"), interval_s=3600)
    with caplog.at_level(logging.WARNING, "t.ratelog"):
        assert rl.warning("k", "bad %s", 1) is True
        assert rl.warning("k", "bad %s", 2) is False
        assert rl.warning("k", "bad %s", 3) is False
        assert rl.warning("other", "other") is True
    assert [r.getMessage() for r in caplog.records] == ["bad 1", "other"]
    assert rl.suppressed("k") == 2


def test_ratelog_reports_suppressed_count_when_the_interval_has_passed(caplog):
    now = [0.0]
    rl = RateLog(logging.getLogger("t.ratelog2"), interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "t.ratelog2"):
        for _ in range(5):
            rl.warning("k", "again")
        now[0] = 10.0
        rl.warning("k", "again")
    assert [r.getMessage() for r in caplog.records] == ["again", "again (+4 similar suppressed)"]


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "d" / "f.json"
    atomic_write_json(p, {"a": 1})
    atomic_write(p, b"second")
    assert p.read_bytes() == b"second"
    assert [x.name for x in p.parent.iterdir()] == ["f.json"]


def test_atomic_write_json_refuses_nan_and_keeps_the_old_file(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_json(p, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(p, {"a": float("nan")})
    assert p.read_text() == '{\n  "a": 1\n}' and len(list(tmp_path.iterdir())) == 1


def test_manual_clock_moves_only_when_waited_on():
    c, stop = ManualClock(100.0), threading.Event()
    assert c.time() == 100.0
    assert c.wait(stop, 5.0) is False and c.time() == 105.0 and c.monotonic() == 5.0
    stop.set()
    assert c.wait(stop, 5.0) is True and c.time() == 105.0


def test_config_is_frozen():
    cfg, _ = build_config(DemoConfig, "demo", [], env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.retries = 4


@dataclass(frozen=True)
class OwnIntervalConfig:
    settings: Settings
    interval_s: float = field(default=10.0, metadata={"flags": ("--interval",)})


def test_a_service_flag_wins_over_a_common_alias_of_the_same_name():
    cfg, _ = build_config(OwnIntervalConfig, "own", ["--interval", "3"], env={})
    assert cfg.interval_s == 3.0 and cfg.settings.scan_interval_s == 5.0
    cfg, _ = build_config(DemoConfig, "demo", ["--interval", "0.5"], env={})
    assert cfg.settings.scan_interval_s == 0.5


def test_a_percent_sign_in_a_field_help_still_formats_help():
    import argparse

    from prod.runtime.config import add_flags

    @dataclass(frozen=True)
    class PctConfig:
        stop_pct: float = field(default=0.12, metadata={"help": "stop this far away (12% by default)"})

    ap = argparse.ArgumentParser(prog="x")
    add_flags(ap, PctConfig)
    assert "12% by default" in ap.format_help()


def test_the_signal_handler_never_waits_on_the_stop_events_lock():
    """A signal can land while the main thread, inside ``stop.wait()``, holds the event's own lock: the handler
    must return at once (``stop.set()`` in the handler would wait for itself forever), and ``stop`` is set after."""
    import signal as _signal

    from prod.runtime.service import signal_stopper
    from tests.helpers import wait_until
    stop = threading.Event()
    handler = signal_stopper(stop, logging.getLogger("test-signal"), "svc")
    done = threading.Event()
    with stop._cond:                       # what stop.wait() holds between its wake-up and its return
        t = threading.Thread(target=lambda: (handler(_signal.SIGTERM, None), done.set()), daemon=True)
        t.start()
        assert done.wait(5), "the handler blocked on the stop event's lock"
        assert not stop.is_set()
    wait_until(stop.is_set, 5, what="stop set once the lock is free")
