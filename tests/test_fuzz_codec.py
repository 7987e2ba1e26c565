"""Fuzzing the request/record codec (hakv.core.codec): what a client sends and what the
Raft log hands back to the store.

Properties: any bytes, any JSON body, any mutation of a valid command either decode and
validate, or raise a HakvError with a message, never another exception (an untyped one
would be a 500 on the API and an ``internal`` result inside apply); every valid command
survives encode -> decode -> validate unchanged and encodes to the same bytes again.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hakv.core import codec, leases
from hakv.core import ha as core_ha
from hakv.errors import BadRequestError, HakvError, LeaseTtlError, RequestTooLargeError
from tests.fuzzing import (
    EDGE_VALUES,
    TEXT,
    fuzz,
    json_objects,
    json_values,
    mutate,
    mutate_bytes,
    only_typed,
    sweep,
)

# --------------------------------------------------------------------------- valid input

KEYS = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
               min_size=1, max_size=24)
VALUES = st.text(max_size=40)
IDS = st.text(min_size=1, max_size=64)
REVISIONS = st.integers(0, codec.MAX_INT)
LEASE_IDS = st.integers(1, leases.MAX_LEASE_ID)
CLIENTS = st.text(min_size=1, max_size=codec.MAX_CLIENT_ID)
SEQS = st.integers(1, codec.MAX_INT)
SMALL_DATA = st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8)
                             | st.booleans() | st.none(), max_size=4)


def _put_body() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"key": KEYS, "value": VALUES},
        optional={"if_mod_revision": REVISIONS, "lease": LEASE_IDS | st.just(0)})


COMPARES = st.fixed_dictionaries({
    "key": KEYS, "op": st.sampled_from(sorted(codec.COMPARE_OPS)),
}).flatmap(lambda c: st.one_of(
    st.fixed_dictionaries({"target": st.just("value"), "value": VALUES | st.none()}),
    st.fixed_dictionaries({"target": st.sampled_from(["version", "mod_revision",
                                                      "create_revision"]),
                           "value": REVISIONS})).map(lambda rest: {**c, **rest}))
TXN_OPS = st.one_of(
    st.fixed_dictionaries({"op": st.just("put"), "key": KEYS, "value": VALUES},
                          optional={"lease": LEASE_IDS}),
    st.fixed_dictionaries({"op": st.sampled_from(["delete", "get"]), "key": KEYS}))

BODIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "put": _put_body(),
    "delete": st.fixed_dictionaries({"key": KEYS}),
    "txn": st.fixed_dictionaries({
        "compare": st.lists(COMPARES, max_size=3),
        "success": st.lists(TXN_OPS, max_size=3),
        "failure": st.lists(TXN_OPS, max_size=3)}),
    "notify": st.fixed_dictionaries({"about": IDS, "kind": IDS, "data": SMALL_DATA}),
    "allocation": st.fixed_dictionaries({"node": IDS, "load": REVISIONS}),
    "lease_grant": st.fixed_dictionaries(
        {"ttl": st.integers(1, 86400) | st.floats(1.0, 86400.0)}, optional={"id": LEASE_IDS}),
    "lease_keepalive": st.fixed_dictionaries({"id": LEASE_IDS}),
    "lease_revoke": st.fixed_dictionaries({"id": LEASE_IDS}),
}
assert set(BODIES) == set(codec.WRITE_OPS), "a write op without a fuzzed body"

WRITES = st.sampled_from(sorted(BODIES)).flatmap(
    lambda op: st.tuples(st.just(op), BODIES[op], CLIENTS, SEQS))


def _store_validate(raw: dict[str, Any]) -> Any:
    """What GroupStore._apply (hakv.storage.store) does with a decoded log entry, short of
    applying it: pick the validator by op, run it."""
    op = raw.get("op")
    if op == "barrier":
        return codec.validate_command(raw)
    if op == codec.NODE_STATUS_OP:
        return codec.validate_node_status(raw)
    if op == codec.FORWARDED_OP:
        return codec.validate_forwarded(raw)
    if op == core_ha.PLACEMENT_OP:
        return core_ha.validate_command(raw)
    if op in leases.LESSOR_OPS:
        return leases.validate_lessor_command(raw)
    client, seq = codec.client_and_seq(raw)
    if client is None or seq is None:
        return None
    return codec.validate_command(raw)


def _valid_commands() -> st.SearchStrategy[dict[str, Any]]:
    """Commands the log carries: client writes, barriers, node status, forwarded changes,
    the lessor's commands."""
    writes = WRITES.map(lambda w: codec.write_command(*w))
    return st.one_of(
        writes,
        st.just(dict(codec.BARRIER)),
        st.builds(codec.node_status_command, IDS, SMALL_DATA,
                  st.floats(0, 2e9, allow_nan=False)),
        st.builds(codec.node_status_forget_command, IDS),
        st.builds(lambda s, i, a, k, d: codec.forwarded_command(
            s, i, {"about": a, "kind": k, "data": d}),
            IDS, st.integers(1, codec.MAX_INT), IDS, IDS, SMALL_DATA),
        st.builds(leases.takeover_command, REVISIONS),
        st.builds(leases.checkpoint_command, REVISIONS,
                  st.lists(st.tuples(LEASE_IDS, REVISIONS, REVISIONS), max_size=3)),
        st.builds(leases.expire_command, REVISIONS,
                  st.lists(st.tuples(LEASE_IDS, REVISIONS), max_size=3)),
    )


# --------------------------------------------------------------------------- round trips


@fuzz(150)
@given(WRITES)
def test_every_valid_write_round_trips_through_the_log(
        write: tuple[str, dict[str, Any], str, int]) -> None:
    cmd = codec.write_command(*write)
    data = codec.encode(cmd)
    decoded = codec.decode(data)
    assert decoded == cmd
    again = codec.validate_command(decoded)
    assert again == cmd
    assert codec.encode(again) == data  # deterministic: replicas store the same bytes


@fuzz(200)
@given(_valid_commands())
def test_every_valid_log_command_decodes_and_validates(cmd: dict[str, Any]) -> None:
    decoded = codec.decode(codec.encode(cmd))
    assert decoded == cmd
    assert _store_validate(decoded) is not None


# --------------------------------------------------------------------------- arbitrary input


@fuzz(250)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_decode_of_any_bytes_is_a_command_or_a_bad_request(data: bytes) -> None:
    cmd = only_typed(lambda: codec.decode(data), BadRequestError)
    if cmd is not None:
        assert isinstance(cmd, dict) and isinstance(cmd["op"], str)
        only_typed(lambda: _store_validate(cmd), HakvError)


@fuzz(200)
@given(st.data(), _valid_commands())
def test_a_mutated_log_entry_decodes_and_validates_or_raises_typed(
        data: st.DataObject, cmd: dict[str, Any]) -> None:
    raw = mutate_bytes(data, codec.encode(cmd))
    decoded = only_typed(lambda: codec.decode(raw), BadRequestError)
    if decoded is not None:
        only_typed(lambda: _store_validate(decoded), HakvError)


@fuzz(250)
@given(st.data(), _valid_commands())
def test_a_structurally_mutated_command_validates_or_raises_typed(
        data: st.DataObject, cmd: dict[str, Any]) -> None:
    changed = mutate(data, cmd, json_values())
    encoded = json.dumps(changed).encode()  # what a log entry could hold: any JSON
    decoded = only_typed(lambda: codec.decode(encoded), BadRequestError)
    if decoded is not None:
        result = only_typed(lambda: _store_validate(decoded), HakvError)
        if isinstance(result, dict) and result.get("op") in codec.WRITE_OPS:
            _replicates(result)  # what validates is a command the store can replicate


@fuzz(250)
@given(st.binary(max_size=300) | json_values().map(lambda v: json.dumps(v).encode()))
def test_parse_body_of_any_bytes_is_an_object_or_typed(raw: bytes) -> None:
    body = only_typed(lambda: codec.parse_body(raw), (BadRequestError, RequestTooLargeError))
    if body is not None:
        assert isinstance(body, dict)


_WRITE_FIELDS = ["key", "value", "if_mod_revision", "lease", "compare", "success",
                 "failure", "about", "kind", "data", "node", "load", "ttl", "ttl_ms", "id",
                 "client", "seq", "group", "op"]


@fuzz(250)
@given(st.sampled_from(sorted(codec.WRITE_OPS)) | TEXT, json_objects(_WRITE_FIELDS),
       json_values(4), json_values(4))
def test_write_command_of_any_body_is_a_command_or_typed(
        op: str, body: dict[str, Any], client: Any, seq: Any) -> None:
    cmd = only_typed(lambda: codec.write_command(op, body, client, seq), HakvError)
    if cmd is not None:
        _replicates(cmd)


def _replicates(cmd: dict[str, Any]) -> None:
    """A validated command encodes (or is refused with a typed error: too large, or a
    lone surrogate in free-form ``data``), and what it encodes to decodes and validates
    back to the same bytes (compared as bytes: NaN is not equal to itself)."""
    data = only_typed(lambda: codec.encode(cmd), (BadRequestError, RequestTooLargeError))
    if data is not None:
        assert codec.encode(codec.validate_command(codec.decode(data))) == data


@fuzz(250)
@given(st.data(), WRITES)
def test_a_valid_request_with_one_field_changed_is_a_command_or_typed(
        data: st.DataObject, write: tuple[str, dict[str, Any], str, int]) -> None:
    op, body, client, seq = write
    body = mutate(data, body, json_values(6))
    if not isinstance(body, dict):
        body = {"body": body}
    cmd = only_typed(lambda: codec.write_command(op, body, client, seq), HakvError)
    if cmd is not None:
        _replicates(cmd)


@fuzz(200)
@given(json_values(6), json_values(4))
def test_unhashable_or_odd_op_names_are_bad_requests(op: Any, body: Any) -> None:
    """An op (or compare op, target, txn op) that is a list or an object is a bad request,
    not a TypeError from a set lookup."""
    only_typed(lambda: codec.write_command(op, {}, "c", 1), BadRequestError)
    only_typed(lambda: codec.read_request(op, {"key": "k"}), BadRequestError)
    only_typed(lambda: codec.validate_command({"op": op, "client": "c", "seq": 1}),
               BadRequestError)
    only_typed(lambda: codec.write_command("txn", {
        "compare": [{"key": "k", "target": op, "op": body, "value": 1}]}, "c", 1),
        BadRequestError)
    only_typed(lambda: codec.write_command("txn", {"success": [{"op": op, "key": "k"}]},
                                           "c", 1), BadRequestError)


@fuzz(200)
@given(st.sampled_from(["get", "range"]) | TEXT,
       json_objects(["key", "prefix", "limit", "serializable", "group"]))
def test_read_request_of_any_body_is_a_read_or_typed(op: str, body: dict[str, Any]) -> None:
    read = only_typed(lambda: codec.read_request(op, body), HakvError)
    if read is not None:
        assert read["op"] == op and isinstance(read["serializable"], bool)


@fuzz(150)
@given(json_values(8))
def test_client_and_seq_of_anything_is_typed(body: Any) -> None:
    got = only_typed(lambda: codec.client_and_seq(body), BadRequestError)
    if got is not None:
        client, seq = got
        assert client is None or isinstance(client, str)
        assert seq is None or type(seq) is int


@fuzz(150)
@given(json_objects(["op", "node", "status", "time", "forget", "source", "source_index",
                     "about", "kind", "data", "term", "leases", "action"]))
def test_leader_and_node_commands_of_any_shape_are_typed(cmd: dict[str, Any]) -> None:
    for validate in (codec.validate_node_status, codec.validate_forwarded,
                     leases.validate_lessor_command, codec.validate_command):
        only_typed(lambda: validate(cmd), HakvError)  # noqa: B023 (called at once)


# --------------------------------------------------------------------------- exhaustive sweep

EXAMPLE_BODIES: dict[str, dict[str, Any]] = {
    "put": {"key": "k", "value": "v", "if_mod_revision": 3, "lease": 7},
    "delete": {"key": "k"},
    "txn": {"compare": [{"key": "k", "target": "value", "op": "==", "value": "v"},
                        {"key": "k", "target": "mod_revision", "op": "<", "value": 9}],
            "success": [{"op": "put", "key": "k", "value": "w", "lease": 7}],
            "failure": [{"op": "get", "key": "k"}, {"op": "delete", "key": "j"}]},
    "notify": {"about": "n1", "kind": "down", "data": {"since": 1.5}},
    "allocation": {"node": "n1", "load": 2},
    "lease_grant": {"ttl": 10, "id": 5},
    "lease_keepalive": {"id": 5},
    "lease_revoke": {"id": 5},
}
assert set(EXAMPLE_BODIES) == set(codec.WRITE_OPS)


def test_every_field_of_every_request_set_to_every_kind_of_trouble_is_typed() -> None:
    """Exhaustive: each field (and list entry, and nested field) of a valid request of
    each op replaced by each of EDGE_VALUES, or deleted; then the same for the log
    commands the store re-validates."""
    for op, body in EXAMPLE_BODIES.items():
        for changed in sweep({**body, "client": "c", "seq": 1}, EDGE_VALUES, json_only=True):
            cmd = only_typed(lambda: codec.write_command(  # noqa: B023
                op, changed, changed.get("client"), changed.get("seq")), HakvError)  # noqa: B023
            if cmd is not None:
                _replicates(cmd)
        for changed in sweep(body, EDGE_VALUES, json_only=True):
            only_typed(lambda: codec.read_request("range", changed), HakvError)  # noqa: B023
    commands = [codec.write_command(op, body, "c", 1) for op, body in EXAMPLE_BODIES.items()]
    commands += [codec.node_status_command("n1", {"state": "up"}, 5.0),
                 codec.forwarded_command("g1", 4, {"about": "n1", "kind": "down"}),
                 leases.checkpoint_command(2, [(1, 2, 3)]), leases.expire_command(2, [(1, 2)])]
    placements = [core_ha.record.command("place", 5.0, expect_token=0, expect_renewals=0,
                                         node="n1"),
                  core_ha.record.command("report", 5.0, node="n1", token=1, state="running"),
                  core_ha.record.command("maintenance", 5.0, on=True)]
    # (hakv.core.ha.record with integers beyond a float: a test below)
    fits_a_float = [v for v in EDGE_VALUES if not (type(v) is int and abs(v) > 1e308)]
    for cmd, values in [*((c, EDGE_VALUES) for c in commands),
                        *((c, fits_a_float) for c in placements)]:
        for changed in sweep(cmd, values, json_only=True):
            entry = json.dumps(changed).encode()  # what a log entry could hold
            only_typed(lambda: _store_validate(codec.decode(entry)), HakvError)  # noqa: B023


# --------------------------------------------------------------------------- found bugs

HUGE = 10**400  # 401 digits: json.loads reads it (its cap is 4300 digits)


@pytest.mark.parametrize("body", [
    {"compare": [{"key": "k", "target": [], "op": "==", "value": 1}]},
    {"compare": [{"key": "k", "target": "version", "op": {}, "value": 1}]},
    {"success": [{"op": ["put"], "key": "k", "value": "v"}]},
    {"failure": [{"op": {"x": 1}, "key": "k"}]},
])
def test_a_txn_with_a_list_or_object_as_op_or_target_is_a_bad_request(
        body: dict[str, Any]) -> None:
    """Found by the fuzzers: ``target not in COMPARE_TARGETS`` raised TypeError
    (unhashable type) on a JSON list; the API answered 500 internal."""
    with pytest.raises(BadRequestError, match=r"expected one of"):
        codec.write_command("txn", body, "c", 1)


def test_a_command_with_a_list_as_op_is_a_bad_request() -> None:
    with pytest.raises(BadRequestError, match="op"):
        codec.validate_command({"op": ["put"], "client": "c", "seq": 1})
    with pytest.raises(BadRequestError, match="op"):
        codec.read_request([], {})  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", [HUGE, -HUGE], ids=["huge", "minus-huge"])
def test_a_lease_ttl_beyond_a_float_is_a_ttl_error(ttl: int) -> None:
    """Found by the fuzzers: ``{"ttl": 1000...0}`` (401 digits) raised OverflowError
    (int too large to convert to float) in math.isfinite."""
    body = json.loads(f'{{"ttl": {ttl}}}')
    with pytest.raises(LeaseTtlError, match="out of range"):
        codec.write_command("lease_grant", body, "c", 1)


def test_a_placement_command_with_a_time_beyond_a_float_is_a_bad_request() -> None:
    """A log entry ``{"op": "placement", "action": "maintenance", "time": 1e400 as an
    integer, "on": true}`` raises OverflowError in hakv.core.ha.validate_command; the
    store's apply turns it into an ``internal`` result instead of ``bad_request``."""
    entry = b'{"op": "placement", "action": "maintenance", "on": true, "time": 1%s}' % (
        b"0" * 400)
    with pytest.raises(BadRequestError, match="time"):
        _store_validate(codec.decode(entry))


def test_a_node_status_with_a_time_that_is_not_a_finite_float_is_a_bad_request() -> None:
    """Found by the sweep: ``time`` = a 401-digit integer raised OverflowError in
    validate_node_status (and NaN or Infinity were stored as they came)."""
    for when in (b"1" + b"0" * 400, b"NaN", b"-Infinity"):
        with pytest.raises(BadRequestError, match="finite"):
            codec.validate_node_status(codec.decode(
                b'{"op": "node_status", "node": "n1", "status": {}, "time": %s}' % when))


def test_deeply_nested_or_huge_json_is_a_bad_request_everywhere() -> None:
    deep = b"[" * 100_000
    with pytest.raises(BadRequestError):
        codec.decode(deep)
    with pytest.raises((BadRequestError, RequestTooLargeError)):
        codec.parse_body(deep[: codec.MAX_REQUEST_BYTES])
    with pytest.raises(BadRequestError):
        codec.parse_body(b'{"a": ' + b"1" * 5000 + b"}")
    nested: Any = {}
    for _ in range(5000):  # deeper than json can write: a caller's dict, not the wire's
        nested = {"x": nested}
    with pytest.raises(BadRequestError, match="data"):
        codec.write_command("notify", {"about": "a", "kind": "k", "data": nested}, "c", 1)
    with pytest.raises(BadRequestError, match="status"):
        codec.validate_node_status({"node": "n", "status": nested, "time": 1})


def test_edge_strings_are_typed_in_every_text_field() -> None:
    for text in ["\ud800", "a\x00", "x" * 1025, ""]:
        with pytest.raises(HakvError):
            codec.write_command("put", {"key": text, "value": "v"}, "c", 1)
    with pytest.raises(BadRequestError, match="surrogate"):
        codec.write_command("put", {"key": "k", "value": "\ud800"}, "c", 1)
    with pytest.raises(BadRequestError, match="surrogate"):
        codec.client_and_seq({"client": "\udfff", "seq": 1})
