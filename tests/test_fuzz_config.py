"""Fuzzing the config files: topology files (hakv.core.topology) and the app specs and
[ha] table in them (hakv.core.ha.spec), TOML read with ``tomllib``, and the same shapes as
JSON (``Topology.from_dict`` reads the cluster records; ``parse_app`` a ``set-app`` spec).

Property: whatever the document, the answer is a Topology (or AppSpec, HaTuning, ...) or a
TopologyError (a ConfigError) whose message names the source, never a KeyError,
TypeError, ValueError, OverflowError, RecursionError or AttributeError. The documents are
valid TOML with wrong types, missing and unknown keys, integers far beyond 64 bits, NaN
and infinities, dates, unicode and duplicate ids; and byte-level mutations of valid
files.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hakv.core.ha.spec import (
    AppSpec,
    HaTuning,
    parse_app,
    parse_fallback,
    parse_ha,
    parse_window,
)
from hakv.core.topology import Topology, load_topology, parse_topology
from hakv.errors import ConfigError, TopologyError
from tests.fuzzing import (
    EDGE_VALUES,
    TEXT,
    fuzz,
    json_values,
    mutate,
    mutate_bytes,
    only_typed,
    sweep,
    toml_document,
    toml_values,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

APP: dict[str, Any] = {
    "start": "exec my-app --serve", "stop": ["/bin/kill", "-TERM", "0"], "check": "true",
    "check_interval": 1.0, "check_timeout": 2.0, "start_timeout": 10, "stop_timeout": 10.5,
    "restart_limit": 2, "env": {"MODE": "primary", "LEVEL": "3"},
}
HA: dict[str, Any] = {"failure_timeout": 1.0, "lease": 1.0, "renew_interval": 0.25,
                      "lease_margin": 0.1, "clock_drift": 0.01, "probe_interval": 0.2}
BASE: dict[str, Any] = {
    "cluster": {"name": "fuzz", "cluster_voters": ["n1", "n2", "n3"]},
    "raft": {"election_timeout_min": 0.4, "election_timeout_max": 1.0,
             "leader_fallback_timeout": 1.0, "connection_retry": 0.5},
    "ha": HA,
    "nodes": [{"id": f"n{i}", "host": "127.0.0.1", "raft_port": 7100 + i,
               "api_port": 8100 + i, "capacity": 10} for i in (1, 2, 3)]
    + [{"id": 4, "host": "::1", "raft_port": 7104, "api_port": 8104}],
    "groups": [{"id": "g1", "owners": ["n1", "n2", "n3"], "load": 1, "fallback": "return",
                "fallback_window": "22:00-06:00", "app": APP},
               {"id": "g2", "owners": ["n2", "4"]}],
}


def _outcome(source: str, fn: Any) -> Any:
    """``fn()``: a result, or None for a TopologyError whose message names ``source``."""
    try:
        return fn()
    except TopologyError as exc:
        assert exc.message.startswith(f"{source}: ") and len(exc.message) > len(source) + 2, \
            exc.message
        return None


def test_the_base_document_is_a_valid_topology() -> None:
    """The fuzzers mutate a document that is valid as TOML and as a dict."""
    topology = parse_topology(toml_document(BASE), "base.toml")
    assert Topology.from_dict(BASE) == topology
    assert topology.group("g1").app is not None and topology.has_node("4")


# --------------------------------------------------------------------------- TOML documents


@fuzz(200)
@given(st.data())
def test_a_mutated_topology_document_is_a_topology_or_a_topology_error(
        data: st.DataObject) -> None:
    doc = mutate(data, BASE, toml_values(), rounds=4)
    if isinstance(doc, dict):
        text = toml_document(doc)
        assert tomllib.loads(text) == doc or _has_nan(doc)  # the writer is faithful
        parsed = _outcome("fuzz.toml", lambda: parse_topology(text, "fuzz.toml"))
        if parsed is not None:
            assert parse_topology(parsed.to_toml()) == parsed  # what is valid round-trips
    _outcome("the records", lambda: Topology.from_dict(doc, "the records"))


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


def test_every_field_set_to_every_kind_of_trouble_is_typed() -> None:
    """Exhaustive: each value of the document (each field of each table, each list
    entry, each table) replaced by each of EDGE_VALUES, or deleted; as a TOML file and as
    the records' dict."""
    count = 0
    for doc in sweep(BASE, EDGE_VALUES):
        if _in_toml(doc):
            _outcome("s.toml", lambda: parse_topology(toml_document(doc), "s.toml"))  # noqa: B023
        _outcome("the records", lambda: Topology.from_dict(doc, "the records"))  # noqa: B023
        count += 1
    assert count > 2000


def test_every_app_and_ha_field_set_to_every_kind_of_trouble_is_typed() -> None:
    for raw in sweep(APP, EDGE_VALUES):
        only_typed(lambda: parse_app(raw, "group g"), TopologyError)  # noqa: B023
    for raw in sweep(HA, EDGE_VALUES):
        only_typed(lambda: parse_ha(raw), TopologyError)  # noqa: B023
    for raw in sweep({"fallback": "return", "fallback_window": "22:00-06:00"}, EDGE_VALUES):
        only_typed(lambda: parse_fallback(raw, "group g"), TopologyError)  # noqa: B023


def _in_toml(value: Any) -> bool:
    """Whether a TOML file can hold ``value``: no null, no lone surrogate (UTF-8 text)."""
    if value is None:
        return False
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return all(_in_toml(k) and _in_toml(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_in_toml(v) for v in value)
    return True


_TOP = ["cluster", "raft", "ha", "nodes", "groups"]


@fuzz(150)
@given(st.dictionaries(st.sampled_from(_TOP) | st.text(max_size=8), toml_values(16),
                       max_size=6))
def test_any_toml_document_is_a_topology_or_a_topology_error(doc: dict[str, Any]) -> None:
    _outcome("any.toml", lambda: parse_topology(toml_document(doc), "any.toml"))


@fuzz(150)
@given(st.data())
def test_any_value_in_any_field_of_a_node_group_or_table_is_typed(
        data: st.DataObject) -> None:
    """Every field of every table set to any TOML value, one or two at a time."""
    doc = mutate(data, BASE, toml_values(6), rounds=2)
    table = data.draw(st.sampled_from(_TOP))
    if isinstance(doc, dict):
        doc[table] = data.draw(toml_values(6) | st.lists(
            st.dictionaries(st.sampled_from(["id", "host", "raft_port", "api_port",
                                             "capacity", "owners", "load", "fallback",
                                             "fallback_window", "app"]),
                            toml_values(6), max_size=6), max_size=3))
        _outcome("f.toml", lambda: parse_topology(toml_document(doc), "f.toml"))


@fuzz(150)
@given(st.text(max_size=300))
def test_any_text_is_a_topology_or_a_topology_error(text: str) -> None:
    _outcome("t.toml", lambda: parse_topology(text, "t.toml"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz-config")


@fuzz(150)
@given(st.data(), st.sampled_from(sorted(p.name for p in EXAMPLES.glob("*.toml"))))
def test_a_mutated_topology_file_loads_or_is_a_topology_error(
        scratch: Path, data: st.DataObject, example: str) -> None:
    """Byte-level damage to the example files (bad UTF-8, broken quotes and brackets,
    repeated tables: duplicate keys and ids), read by load_topology."""
    raw = mutate_bytes(data, (EXAMPLES / example).read_bytes(), rounds=6)
    path = scratch / "topology.toml"
    path.write_bytes(raw)
    _outcome(str(path), lambda: load_topology(path))


# --------------------------------------------------------------------------- app specs, [ha]


@fuzz(150)
@given(st.data())
def test_a_mutated_app_spec_is_an_app_or_a_topology_error(data: st.DataObject) -> None:
    """``[groups.app]`` from TOML, or the same keys as JSON (``hakv group set-app``)."""
    values = data.draw(st.sampled_from([toml_values(6), json_values(6)]))
    raw = mutate(data, APP, values, rounds=3)
    app = only_typed(lambda: parse_app(raw, "group g"), TopologyError)
    if app is not None:
        assert isinstance(app, AppSpec)
        lines = "\n".join(app.to_toml_lines("app"))
        assert parse_app(tomllib.loads(lines)["app"], "group g") == app


@fuzz(150)
@given(json_values(12) | toml_values(12))
def test_any_value_as_an_app_spec_is_typed(raw: Any) -> None:
    only_typed(lambda: parse_app(raw, "group g"), TopologyError)


@fuzz(150)
@given(st.data())
def test_a_mutated_ha_table_is_tuning_or_a_topology_error(data: st.DataObject) -> None:
    raw = mutate(data, HA, toml_values(4) | json_values(4), rounds=3)
    tuning = only_typed(lambda: parse_ha(raw), TopologyError)
    assert tuning is None or isinstance(tuning, HaTuning)


@fuzz(150)
@given(st.dictionaries(st.sampled_from(["fallback", "fallback_window"]) | TEXT,
                       json_values(4) | toml_values(4) | st.sampled_from(["stay", "return"]),
                       max_size=3))
def test_any_fallback_is_a_policy_or_a_topology_error(raw: dict[str, Any]) -> None:
    only_typed(lambda: parse_fallback(raw, "group g"), TopologyError)


_WINDOWISH = st.from_regex(r"\s*[0-9\u0660-\u0669]{1,3}:[0-9]{1,3}\s*-\s*[0-9]{1,3}:[0-9]{2}\s*",
                           fullmatch=True)


@fuzz(150)
@given(st.text(max_size=20) | _WINDOWISH)
def test_any_window_is_minutes_or_a_topology_error(text: str) -> None:
    window = only_typed(lambda: parse_window(text), TopologyError)
    if window is not None:
        start, end = window
        assert 0 <= start < 1440 and 0 <= end < 1440 and start != end


# --------------------------------------------------------------------------- found bugs

HUGE = "9" * 400  # a TOML integer beyond 64 bits: tomllib reads it


@pytest.mark.parametrize(("text", "says"), [
    (f"[raft]\nelection_timeout_min = {HUGE}\n", "election_timeout_min"),
    (f"[ha]\nlease = {HUGE}\n", "lease"),
    (f"[[groups]]\nid = 'g'\nowners = ['a', 'b']\n[groups.app]\nstart = 'x'\n"
     f"check_interval = {HUGE}\n", "check_interval"),
    (f"[[groups]]\nid = 'g'\nowners = ['a', 'b']\n[groups.app]\nstart = 'x'\n"
     f"stop_timeout = -{HUGE}\n", "stop_timeout"),
])
def test_a_number_of_seconds_beyond_a_float_is_a_topology_error(text: str, says: str) -> None:
    """Found by the fuzzers: float() or math.isfinite() of a 400-digit integer raised
    OverflowError (int too large to convert to float)."""
    text = "[cluster]\nname = 'c'\n" + text
    with pytest.raises(TopologyError, match=f"{says} must be a finite number"):
        parse_topology(text, "f.toml")


@pytest.mark.parametrize(("text", "says"), [
    ("a = " + "1" * 5000 + "\n", "integer of more than"),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n", "nested too deeply"),
])
def test_toml_that_tomllib_cannot_read_is_a_topology_error(text: str, says: str) -> None:
    """Found by the fuzzers: tomllib raises ValueError (not TOMLDecodeError) for an integer
    of more than 4300 digits, and RecursionError for deeply nested arrays or tables."""
    with pytest.raises(TopologyError, match=f"f.toml: not valid TOML: .*{says}"):
        parse_topology(text, "f.toml")


def test_an_env_name_that_is_not_a_string_is_a_topology_error() -> None:
    """A Python caller's mapping (hakv.client.admin.set_app takes any Mapping)."""
    with pytest.raises(TopologyError, match="not a valid variable name"):
        parse_app({"start": "x", "env": {5: "v"}}, "group g")


def test_config_errors_are_config_errors() -> None:
    """What a caller catches: every failure above is a ConfigError (exit code 7)."""
    with pytest.raises(ConfigError):
        parse_topology("a = [" * 3000, "f.toml")
