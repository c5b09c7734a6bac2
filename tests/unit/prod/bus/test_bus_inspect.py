"""prod.bus.inspect against the real embedded member: known topics are checked with maps.decode."""
from __future__ import annotations

import io
import subprocess
import sys
import time

from prod.bus import maps
from prod.bus.inspect import inspect
from prod.runtime import Bus
from tests.helpers import REPO_ROOT, free_port


def test_an_invalid_value_of_a_known_topic_is_flagged_and_a_good_one_is_not(hz_member, settings_for):
    _, port = hz_member
    bus = Bus(settings_for(hz_port=port), "t_inspect").start()
    try:
        assert bus.wait_connected(20)
        bus.publish(maps.ACB_BOOST, {"boost": 1.2, "beta": 0.3, "computed_at": time.time()})
        bus.map(maps.FEATURES).blocking().set(maps.KEY_EXF, '{"_pushed_at": "later"}')
        bus.map(maps.FEATURES).blocking().set("free_form_note", "not json at all")
        out = io.StringIO()
        assert inspect(bus.client, maps.FEATURES, maps.KEY_ACB_BOOST, out) == 0
        assert "invalid" not in out.getvalue() and '"boost": 1.2' in out.getvalue()
        out = io.StringIO()
        assert inspect(bus.client, maps.FEATURES, maps.KEY_EXF, out) == 3
        assert out.getvalue().splitlines()[-1] == (
            "invalid: DOLPHIN_FEATURES['exf_latest']: exf_latest._pushed_at must be a number, got str")
        out = io.StringIO()
        assert inspect(bus.client, maps.FEATURES, None, out) == 0
        lines = out.getvalue().splitlines()
        i = next(n for n, ln in enumerate(lines) if ln.split()[0] == maps.KEY_EXF)
        assert "invalid: " in lines[i + 1] and "_pushed_at must be a number" in lines[i + 1]
        j = next(n for n, ln in enumerate(lines) if ln.split()[0] == "free_form_note")
        assert j == len(lines) - 1 or "invalid" not in lines[j + 1]        # free-form keys are not checked
    finally:
        bus.close()


def test_no_member_is_exit_2_with_one_clear_line():
    r = subprocess.run([sys.executable, "-m", "prod.bus.inspect", "--members", f"127.0.0.1:{free_port()}",
                        "--timeout", "1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("inspect:")] == [
        f"inspect: no Hazelcast member answered at {r.args[4]} (cluster 'dolphin')"]
    assert "Traceback" not in r.stderr


def test_an_unknown_map_is_reported_and_not_created_and_json_output_parses(hz_member, settings_for):
    """Regression (issue 20): ``inspect --map NOPE`` used to create the map it was asked about."""
    import json as _json

    from prod.bus.inspect import EXIT_NO_SUCH_MAP, inspect_json

    _, port = hz_member
    bus = Bus(settings_for(hz_port=port), "t_inspect2").start()
    try:
        assert bus.wait_connected(20)
        bus.publish(maps.ACB_BOOST, {"boost": 1.2, "beta": 0.3, "computed_at": 5.0})
        out = io.StringIO()
        assert inspect(bus.client, "NOPE", None, out) == EXIT_NO_SUCH_MAP
        assert out.getvalue().startswith("inspect: no such map 'NOPE'")
        names = [o.name for o in bus.client.get_distributed_objects()]
        assert "NOPE" not in names and maps.FEATURES in names
        out = io.StringIO()
        assert inspect_json(bus.client, maps.FEATURES, maps.KEY_ACB_BOOST, out) == 0
        doc = _json.loads(out.getvalue())
        assert doc["entries"]["acb_boost"]["value"]["boost"] == 1.2 and doc["entries"]["acb_boost"]["invalid"] is None
        out = io.StringIO()
        assert inspect_json(bus.client, None, None, out) == 0
        assert _json.loads(out.getvalue())["maps"][maps.FEATURES] == 1
        out = io.StringIO()
        assert inspect_json(bus.client, "NOPE", None, out) == EXIT_NO_SUCH_MAP
        assert "NOPE" not in [o.name for o in bus.client.get_distributed_objects()]
    finally:
        bus.close()
