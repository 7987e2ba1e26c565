"""Fuzzing the watch and lease request bodies: hakv.core.watch (``/v1/watch`` bodies and
the HAKV_WATCH_RETENTION setting), hakv.core.leases (grant, keepalive, revoke and ttl
bodies, the lessor's log commands), and the node's watch hub (hakv.node.watch.WatchHub)
that reads a ``/v1/watch`` body from raw bytes.

Property: any JSON value in any field gives a validated request or a HakvError (a 4xx
on the wire) with a message, never another exception.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hakv.core import leases
from hakv.core import watch as core
from hakv.core.topology import parse_topology
from hakv.errors import BadRequestError, HakvError, LeaseTtlError
from hakv.node.view import ClusterView
from hakv.node.watch import WatchHub
from tests.fuzzing import (
    EDGE_VALUES,
    TEXT,
    fuzz,
    json_objects,
    json_values,
    mutate,
    only_typed,
    sweep,
)
from tests.twins import Peers

WATCH_FIELDS = ["group", "key", "prefix", "start_revision", "prev_kv", "timeout", "limit",
                "watch_id"]
VALID_WATCH: dict[str, Any] = {"group": "g1", "prefix": "app/", "start_revision": 5,
                               "prev_kv": True, "timeout": 2.5, "limit": 100,
                               "watch_id": "w-1"}


# --------------------------------------------------------------------------- watches


def _check_watch(body: Any) -> None:
    if not isinstance(body, dict):
        return
    request = only_typed(lambda: core.watch_request(body), HakvError)
    if request is not None:
        assert isinstance(request.group, str) and request.group
        assert 0 <= request.timeout <= core.MAX_TIMEOUT
        assert 1 <= request.limit <= core.MAX_LIMIT
        assert request.start is None or 1 <= request.start


@fuzz(200)
@given(json_objects(WATCH_FIELDS))
def test_any_watch_body_is_a_request_or_typed(body: dict[str, Any]) -> None:
    _check_watch(body)


@fuzz(200)
@given(st.data())
def test_a_valid_watch_body_with_fields_changed_is_a_request_or_typed(
        data: st.DataObject) -> None:
    _check_watch(mutate(data, VALID_WATCH, json_values(6), rounds=3))


def test_every_watch_and_lease_field_set_to_every_kind_of_trouble_is_typed() -> None:
    """Exhaustive: each field of a valid body replaced by each of EDGE_VALUES, or deleted."""
    for body in sweep(VALID_WATCH, EDGE_VALUES, json_only=True):
        _check_watch(body)
    for body in sweep({**VALID_WATCH, "key": "k"}, EDGE_VALUES, json_only=True):
        body.pop("prefix", None)
        _check_watch(body)
    for op, body in [("lease_grant", {"ttl": 10, "id": 5}), ("lease_grant", {"ttl_ms": 5000}),
                     ("lease_keepalive", {"id": 5}), ("lease_revoke", {"id": 5})]:
        for changed in sweep(body, EDGE_VALUES, json_only=True):
            only_typed(lambda: leases.write_fields(op, changed), HakvError)  # noqa: B023
    for body in sweep({"id": 5, "keys": True, "serializable": False, "lease": 5}, EDGE_VALUES,
                      json_only=True):
        only_typed(lambda: leases.ttl_request(body), HakvError)  # noqa: B023
        only_typed(lambda: leases.optional_lease(body), HakvError)  # noqa: B023
    for value in EDGE_VALUES:
        if not isinstance(value, str):
            continue
        for name in ("seconds", "revisions", "bytes", "interval"):
            only_typed(lambda: core.retention_from(f"{name}={value}"),  # noqa: B023
                       BadRequestError)
    for value in ["inf", "-inf", "nan", "1e400"]:
        for name in ("seconds", "revisions", "bytes", "interval"):
            only_typed(lambda: core.retention_from(f"{name}={value}"),  # noqa: B023
                       BadRequestError)


@fuzz(200)
@given(st.lists(st.tuples(st.sampled_from(["seconds", "revisions", "bytes", "interval"])
                          | st.text(max_size=6),
                          st.sampled_from(["0", "-1", "1e400", "-1e400", "inf", "-inf",
                                           "nan", "NaN", "1e18", "0.5", "5", " 7 ", "",
                                           "0x10", "1_000", "\u0665"]) | st.text(max_size=6)),
                max_size=4), st.sampled_from([",", ", ", ",,"]))
def test_any_retention_setting_is_finite_or_a_bad_request(
        parts: list[tuple[str, str]], sep: str) -> None:
    text = sep.join(f"{name}={value}" for name, value in parts)
    got = only_typed(lambda: core.retention_from(text), BadRequestError)
    if got is not None:
        retention, interval = got
        assert math.isfinite(retention.seconds) and retention.seconds >= 0
        assert retention.min_revisions >= 0 and retention.max_bytes >= 1
        assert math.isfinite(interval) and interval > 0


@pytest.mark.parametrize("text", ["seconds=nan", "revisions=inf", "bytes=1e400",
                                  "interval=inf", "seconds=-inf", "revisions=nan"])
def test_a_retention_setting_that_is_not_a_finite_number_is_a_bad_request(text: str) -> None:
    """Found by the fuzzers: ``revisions=inf`` raised OverflowError (int of infinity),
    ``seconds=nan`` was accepted (NaN compares false with every bound) and would have
    kept no history at all by age."""
    with pytest.raises(BadRequestError, match="HAKV_WATCH_RETENTION"):
        core.retention_from(text)


# --------------------------------------------------------------------------- leases

LEASE_FIELDS = ["id", "ttl", "ttl_ms", "keys", "serializable", "lease", "group"]


@fuzz(200)
@given(st.sampled_from(sorted(leases.WRITE_OPS)) | TEXT, json_objects(LEASE_FIELDS))
def test_any_lease_write_body_is_fields_or_typed(op: str, body: dict[str, Any]) -> None:
    fields = only_typed(lambda: leases.write_fields(op, body), HakvError)
    if fields is not None:
        assert set(fields) <= {"id", "ttl_ms"}
        if "ttl_ms" in fields:
            assert 1000 <= fields["ttl_ms"] <= 86_400_000


@fuzz(200)
@given(json_objects(LEASE_FIELDS))
def test_any_lease_ttl_body_or_put_lease_is_typed(body: dict[str, Any]) -> None:
    request = only_typed(lambda: leases.ttl_request(body), HakvError)
    if request is not None:
        assert 1 <= request["id"] <= leases.MAX_LEASE_ID
    lease = only_typed(lambda: leases.optional_lease(body), HakvError)
    assert lease is None or 0 <= lease <= leases.MAX_LEASE_ID


@fuzz(200)
@given(json_values(8))
def test_any_ttl_or_lease_id_is_a_number_or_typed(value: Any) -> None:
    ms = only_typed(lambda: leases.ttl_ms(value), LeaseTtlError)
    assert ms is None or 1000 <= ms <= 86_400_000
    only_typed(lambda: leases.lease_id(value), BadRequestError)


@fuzz(150)
@given(st.data(), st.sampled_from([
    leases.takeover_command(3), leases.checkpoint_command(3, [(1, 2, 500), (2, 9, 0)]),
    leases.expire_command(3, [(1, 2), (7, 8)])]))
def test_a_mutated_lessor_command_is_a_command_or_typed(
        data: st.DataObject, cmd: dict[str, Any]) -> None:
    changed = mutate(data, cmd, json_values(6), rounds=3)
    only_typed(lambda: leases.validate_lessor_command(changed), HakvError)


@pytest.mark.parametrize("ttl", [10**400, -(10**400), 10**309], ids=["e400", "-e400", "e309"])
def test_a_ttl_beyond_a_float_is_a_ttl_error(ttl: int) -> None:
    """Found by the fuzzers: math.isfinite of a 400-digit JSON integer raised
    OverflowError (an untyped 500 on ``/v1/lease_grant``)."""
    with pytest.raises(LeaseTtlError, match="out of range"):
        leases.write_fields("lease_grant", json.loads(json.dumps({"ttl": ttl})))


# --------------------------------------------------------------------------- the watch hub


@pytest.fixture(scope="module")
def hub() -> Iterator[WatchHub]:
    """A hub that hosts no group: a valid watch is forwarded (the twin Peers answer
    nothing: unavailable, or unknown_group for a group the topology lacks)."""
    topology = parse_topology(
        "[cluster]\nname = 'w'\n" + "".join(
            f"[[nodes]]\nid = '{n}'\nhost = '127.0.0.1'\nraft_port = {7001 + i}\n"
            f"api_port = {8001 + i}\n" for i, n in enumerate("abc"))
        + "[[groups]]\nid = 'g1'\nowners = ['a', 'b', 'c']\n")

    def no_store(group: str) -> Any:
        raise AssertionError("a hub that hosts nothing read a store")

    watches = WatchHub(ClusterView(topology), Peers(), lambda fn: fn(),
                       hosts=lambda group: False, store=no_store, barrier=lambda group: None,
                       hosted=lambda: [], workers=1, max_forwarded=4)
    yield watches
    watches.close()


def _begin(hub: WatchHub, raw: bytes) -> tuple[int, dict[str, Any]]:
    """``hub.begin(raw)``: the (status, body) it replies, within 5 s."""
    got: list[tuple[int, bytes]] = []
    done = threading.Event()

    def reply(status: int, payload: bytes) -> None:
        got.append((status, payload))
        done.set()

    hub.begin(raw, reply)
    assert done.wait(5.0), f"no reply to {raw[:80]!r}"
    assert len(got) == 1
    status, payload = got[0]
    return status, json.loads(payload)


@fuzz(150)
@given(st.binary(max_size=120)
       | json_values(8).map(lambda v: json.dumps(v).encode())
       | json_objects(WATCH_FIELDS).map(lambda v: json.dumps(v).encode()))
def test_the_hub_answers_any_watch_body_with_a_typed_error(hub: WatchHub, raw: bytes) -> None:
    status, body = _begin(hub, raw)
    assert status in (400, 404, 413, 503), (status, body)
    assert body["error"]["code"] != "internal" and body["error"]["message"]


def test_the_hub_answers_a_deeply_nested_watch_body_with_a_bad_request(
        hub: WatchHub) -> None:
    """A body of 100,000 ``[`` makes json.loads raise RecursionError, which escapes
    WatchHub.begin; the API server's catch-all then answers 500 ``internal`` instead of
    400 ``bad_request``."""
    status, body = _begin(hub, b"[" * 100_000)
    assert (status, body["error"]["code"]) == (400, "bad_request")
