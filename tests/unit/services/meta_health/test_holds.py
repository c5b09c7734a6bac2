"""Maintenance holds, the pure part: names, expiry, the file format and its errors."""
from __future__ import annotations

import json

import pytest

from services.meta_health import holds as H
from services.meta_health import main as mh

CRIT, INFO = mh.CRITICAL_DATA_PROGRAMS, mh.INFORMATIONAL_PROGRAMS


def test_bare_and_qualified_names_resolve_to_the_same_program():
    assert H.resolve_program("scanner", CRIT, INFO) == H.resolve_program("dolphin_data:scanner", CRIT, INFO) \
        == "dolphin_data:scanner"


@pytest.mark.parametrize("name, needle", [("scaner", "unknown program 'scaner'"), ("dolphin:event_trader",
                                          "never auto-restarted"), ("scan_bridge", "never auto-restarted")])
def test_names_that_cannot_be_held_are_refused_with_the_list(name, needle):
    with pytest.raises(H.HoldError) as e:
        H.resolve_program(name, CRIT, INFO)
    assert needle in str(e.value) and "dolphin_data:exf_fetcher" in str(e.value)


def test_hold_expires_and_release_removes_it(tmp_path):
    p = tmp_path / H.HOLDS_FILE
    H.add_hold(p, "dolphin_data:scanner", reason="r", minutes=1, now=1000.0, by="me")
    H.add_hold(p, "dolphin_data:exf_fetcher", reason="", minutes=None, now=1000.0, by="me")
    allh = H.read_holds(p)
    assert sorted(H.active_holds(allh, 1059.0)) == ["dolphin_data:exf_fetcher", "dolphin_data:scanner"]
    assert sorted(H.active_holds(allh, 1060.0)) == ["dolphin_data:exf_fetcher"]
    assert H.remove_hold(p, "dolphin_data:exf_fetcher", 1001.0)["by"] == "me"
    assert H.remove_hold(p, "dolphin_data:exf_fetcher", 1001.0) is None
    assert list(H.read_holds(p)) == ["dolphin_data:scanner"]
    H.add_hold(p, "dolphin_data:acb_processor", reason="", minutes=None, now=2000.0, by="me")
    assert list(H.read_holds(p)) == ["dolphin_data:acb_processor"]     # the expired one dropped at the edit


@pytest.mark.parametrize("minutes", [0, -1, float("nan"), float("inf")])
def test_a_non_positive_or_non_finite_expiry_is_refused(tmp_path, minutes):
    with pytest.raises(H.HoldError, match="--minutes"):
        H.add_hold(tmp_path / H.HOLDS_FILE, "dolphin_data:scanner", reason="", minutes=minutes, now=1.0, by="me")


@pytest.mark.parametrize("text", ["{not json", "[]", '{"holds": []}',
                                  '{"holds": {"dolphin_data:scanner": {"since": "yesterday"}}}',
                                  '{"holds": {"dolphin_data:scanner": {"since": 1, "until": true}}}'])
def test_a_malformed_holds_file_is_an_error_naming_the_file(tmp_path, text):
    p = tmp_path / H.HOLDS_FILE
    p.write_text(text)
    with pytest.raises(H.HoldError) as e:
        H.read_holds(p)
    assert str(e.value).startswith(str(p))


def test_a_missing_holds_file_is_no_holds(tmp_path):
    assert H.read_holds(tmp_path / H.HOLDS_FILE) == {}


def test_programs_to_restart_skips_held_programs():
    states = {p: "STOPPED" for p in CRIT}
    assert mh.programs_to_restart(states, held={"dolphin_data:scanner": {}}) == \
        [p for p in CRIT if p != "dolphin_data:scanner"]


def test_the_cli_writes_a_file_mhs_reads(tmp_path, capsys):
    assert mh.main(["hold", "acb_processor", "--reason", "x", "--run-logs", str(tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dolphin_data:acb_processor"]["reason"] == "x"
    assert H.read_holds(tmp_path / H.HOLDS_FILE) == printed
    assert mh.main(["hold", "acb_processor", "--run-logs", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
