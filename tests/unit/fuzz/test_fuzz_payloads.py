"""Fuzz every bus payload schema (prod.bus.payloads through the topics of prod.bus.maps).

Well-formed values, generated from each payload's own annotations, round-trip through
``Topic.encode``/``Topic.decode`` unchanged; garbage (random JSON, wrong types, NaN/inf, missing and
extra fields, huge numbers, bytes, deep nesting) is either a valid payload of the topic's type or a
:class:`PayloadError` — never another exception.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prod.bus import maps
from prod.bus import payloads as pl
from prod.bus.payloads import Payload, PayloadError
from tests.unit.fuzz.strategies import FUZZ, json_values, nasty_numbers, raw_values, to_json

TOPICS = [maps.EIGEN_SCAN, maps.ACB_BOOST, maps.ACB_STATE, maps.EXF, maps.OBF_UNIVERSE, maps.MC_FOREWARNER,
          maps.SAFETY_LATEST, maps.KILL_SWITCH, maps.META_HEALTH_LATEST, maps.STATE_LATEST, maps.STATE_DAY,
          maps.PNL_BLUE_DAY, maps.HEARTBEATS, maps.FLOW_PNL_BLUE, maps.OB_SHARDS[0]]

finite = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
finite_json = st.recursive(st.none() | st.booleans() | finite | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=4), max_leaves=6)


@functools.lru_cache(maxsize=None)
def _valid(tp: Any) -> st.SearchStrategy:
    """A strategy of JSON values that satisfy annotation ``tp`` (the schema's own rules)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[st.none() if a is type(None) else _valid(a) for a in args])
    if tp is Any:
        return finite_json
    if tp is float:
        return finite
    if tp is int:
        return st.integers()
    if tp is str:
        return st.text(max_size=12)
    if tp is bool:
        return st.booleans()
    if origin is list or tp is list:
        return st.lists(_valid(args[0] if args else Any), max_size=4)
    if origin is dict or tp is dict:
        return st.dictionaries(st.text(max_size=6), _valid(args[1] if len(args) == 2 else Any), max_size=4)
    raise AssertionError(f"no strategy for {tp}")


# value rules that live in __post_init__, not in the annotations
OVERRIDES: dict[type, dict[str, st.SearchStrategy]] = {
    pl.AcbBoost: {"boost": st.floats(1e-9, 1e9), "beta": st.floats(0, 1e9)},
    pl.Safety: {"posture": st.sampled_from(pl.Safety.POSTURES)},
    pl.McForewarner: {"status": st.sampled_from(pl.McForewarner.STATUSES)},
}


@functools.lru_cache(maxsize=None)
def _fields(cls: type[Payload]) -> tuple[tuple[str, bool, st.SearchStrategy], ...]:
    """(name, optional, strategy) of every declared field, once per payload type."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
                  OVERRIDES.get(cls, {})[f.name] if f.name in OVERRIDES.get(cls, {}) else _valid(hints[f.name]))
                 for f in dataclasses.fields(cls) if f.name != "extra")


@st.composite
def well_formed(draw, cls: type[Payload]) -> dict:
    hints = cls._hints()
    out: dict[str, Any] = {}
    for name, optional, strategy in _fields(cls):
        if optional and draw(st.booleans()):
            continue
        out[name] = draw(strategy)
    if cls is pl.EigenScan:
        out["asset_prices"] = draw(st.lists(st.none() | finite, min_size=len(out["assets"]),
                                            max_size=len(out["assets"])))
    extra = draw(st.dictionaries(st.text(max_size=6).filter(lambda k: k not in hints and k != "_v"),
                                 finite_json, max_size=2))
    return {**extra, **out}


@FUZZ
@given(topic=st.sampled_from(TOPICS), data=st.data())
def test_well_formed_payload_round_trips(topic, data):
    obj = data.draw(well_formed(topic.type))
    p = topic.type.from_dict(obj, "fuzz")
    back = topic.decode(topic.encode(p, "k" if topic.key is None else None), "k" if topic.key is None else None)
    assert back == p
    assert back.to_dict() == p.to_dict()


def _is_bad_number(v: Any) -> bool:
    return isinstance(v, float) and not math.isfinite(v)


@st.composite
def mutated(draw, cls: type[Payload]) -> Any:
    """A well-formed payload with one hostile edit: a field dropped, retyped, made NaN/huge, or an extra."""
    obj = draw(well_formed(cls))
    how = draw(st.sampled_from(["drop", "retype", "number", "extra", "nest"]))
    keys = sorted(obj)
    if how == "drop" and keys:
        obj.pop(draw(st.sampled_from(keys)))
    elif how == "retype" and keys:
        obj[draw(st.sampled_from(keys))] = draw(json_values)
    elif how == "number" and keys:
        obj[draw(st.sampled_from(keys))] = draw(nasty_numbers)
    elif how == "extra":
        obj[draw(st.text(max_size=6))] = draw(json_values)
    else:
        obj = draw(st.sampled_from([[obj], {"wrapped": obj}, obj.get(keys[0]) if keys else None]))
    return draw(st.sampled_from([to_json(obj), to_json(obj).encode(), obj]))


def _decode_only_payload_error(topic, raw) -> None:
    key = "k" if topic.key is None else None
    try:
        p = topic.decode(raw, key)
    except PayloadError:
        return
    assert isinstance(p, topic.type)
    assert not any(_is_bad_number(v) for v in p.to_dict().values())


@FUZZ
@given(topic=st.sampled_from(TOPICS), data=st.data())
def test_mutated_payload_is_decoded_or_rejected_with_payload_error(topic, data):
    _decode_only_payload_error(topic, data.draw(mutated(topic.type)))


@FUZZ
@given(topic=st.sampled_from(TOPICS), raw=raw_values)
def test_garbage_raises_only_payload_error(topic, raw):
    _decode_only_payload_error(topic, raw)


@FUZZ
@given(map_name=st.sampled_from([maps.FEATURES, maps.SAFETY, maps.STATE_BLUE, maps.PNL_BLUE, maps.HEARTBEAT,
                                 maps.META_HEALTH, maps.SHARD_MAPS[3], "OTHER_MAP"]),
       key=st.sampled_from(["latest_eigen_scan", "acb_boost", "latest", "kill_switch", "2026-01-01",
                            "paper_flow_2026-01-01", "BTCUSDT", "free_form"]),
       raw=raw_values)
def test_maps_decode_of_any_map_and_key_raises_only_payload_error(map_name, key, raw):
    try:
        v = maps.decode(map_name, key, raw)
    except PayloadError:
        return
    assert isinstance(v, (Payload, dict))


def test_huge_integer_in_a_float_field_is_a_payload_error():
    """Regression (issue 17 fuzzing): 10**400 in a float field leaked OverflowError from math.isfinite."""
    raw = '{"boost": %d, "beta": 0.1, "computed_at": 1}' % 10**400
    with pytest.raises(PayloadError, match="boost"):
        maps.ACB_BOOST.decode(raw)


def test_deeply_nested_value_is_a_payload_error():
    """Regression (issue 17 fuzzing): a 100k-deep JSON array leaked RecursionError from json.loads."""
    with pytest.raises(PayloadError, match="DOLPHIN_FEATURES"):
        maps.EXF.decode("[" * 100_000)
