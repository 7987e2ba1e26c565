"""The pure parts of the recipes (hakv.client.recipe), table-tested: lock/election key
naming and its limits, who holds a queue and whom a contender waits for, leader changes
from watch batches, Op.put with a lease on the wire."""

from __future__ import annotations

import pytest

from hakv.client import Op
from hakv.client.recipe._contention import (
    ELECTION_ROOT,
    LOCK_ROOT,
    Contender,
    contender_key,
    contenders_of,
    holder,
    is_contender,
    predecessor,
    queue_prefix,
    validate_name,
)
from hakv.client.recipe.election import Leader, leader_after
from hakv.client.results import KeyValue
from hakv.client.watch import WatchBatch, WatchEvent
from hakv.core.codec import MAX_KEY_BYTES
from hakv.errors import BadRequestError, RequestTooLargeError

# --------------------------------------------------------------------------- names, keys


@pytest.mark.parametrize(("root", "name", "lease", "key"), [
    (LOCK_ROOT, "deploy", 1, "_hakv/lock/deploy/0000000000000001"),
    (LOCK_ROOT, "a/b", 0xABC, "_hakv/lock/a/b/0000000000000abc"),
    (ELECTION_ROOT, "sched", 2**63 - 1, "_hakv/election/sched/7fffffffffffffff"),
    (LOCK_ROOT, "ünï", 7, "_hakv/lock/ünï/0000000000000007"),
])
def test_contender_key(root: str, name: str, lease: int, key: str) -> None:
    assert contender_key(root, name, lease) == key
    assert is_contender(queue_prefix(root, name), key)


def _longest(root: str) -> int:
    return MAX_KEY_BYTES - len(contender_key(root, "", 0))


@pytest.mark.parametrize(("name", "error", "match"), [
    ("", BadRequestError, "must not be empty"),
    ("a\x00b", BadRequestError, "NUL"),
    (7, BadRequestError, "must be a string"),
    ("x" * (_longest(LOCK_ROOT) + 1), RequestTooLargeError, "names up to 996 bytes"),
    ("é" * (_longest(LOCK_ROOT) // 2 + 1), RequestTooLargeError, "1024-byte key limit"),
])
def test_bad_names_get_typed_errors(name: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        validate_name(LOCK_ROOT, name)  # type: ignore[arg-type]


def test_the_longest_name_fits_exactly() -> None:
    name = "x" * _longest(LOCK_ROOT)
    assert validate_name(LOCK_ROOT, name) == name
    assert len(contender_key(LOCK_ROOT, name, 2**64 - 1).encode()) == MAX_KEY_BYTES


@pytest.mark.parametrize(("key", "ours"), [
    ("_hakv/lock/a/0000000000000001", True),
    ("_hakv/lock/a/", False),                          # the prefix itself
    ("_hakv/lock/a/b/0000000000000001", False),        # the queue of name "a/b"
    ("_hakv/lock/ab/0000000000000001", False),         # the queue of name "ab"
    ("_hakv/lock/a", False),
])
def test_only_direct_children_are_contenders(key: str, ours: bool) -> None:
    assert is_contender(queue_prefix(LOCK_ROOT, "a"), key) is ours


# --------------------------------------------------------------------------- the queue

Q = [Contender(12, "k12"), Contender(5, "k5"), Contender(9, "k9")]


@pytest.mark.parametrize(("queue", "mine", "head", "waits_for"), [
    ([], 3, None, None),
    ([Contender(3, "k3")], 3, 3, None),
    (Q, 5, 5, None),       # lowest create_revision holds
    (Q, 9, 5, 5),          # each waits for the one just before it only (no herd)
    (Q, 12, 5, 9),
    (Q, 13, 5, 12),        # a contender the range does not show yet waits for the last
])
def test_holder_and_predecessor(queue: list[Contender], mine: int, head: int | None,
                                waits_for: int | None) -> None:
    h = holder(queue)
    assert (h.create_revision if h else None) == head
    p = predecessor(queue, mine)
    assert (p.create_revision if p else None) == waits_for


def test_contenders_of_a_range_in_queue_order() -> None:
    prefix = queue_prefix(LOCK_ROOT, "a")
    kvs = [KeyValue(f"{prefix}{i:016x}", f"v{i}", rev, rev, 1)
           for i, rev in ((1, 30), (2, 10), (3, 20))]
    kvs.append(KeyValue(f"{prefix}sub/0000000000000004", "other", 1, 1, 1))
    assert [c.value for c in contenders_of(prefix, kvs)] == ["v2", "v3", "v1"]


# --------------------------------------------------------------------------- observe

P = queue_prefix(ELECTION_ROOT, "e")


def put(name: str, rev: int, value: str, created: int | None = None) -> WatchEvent:
    return WatchEvent("put", P + name, value, rev, created or rev, 1)


def delete(name: str, rev: int) -> WatchEvent:
    return WatchEvent("delete", P + name, None, rev)


def batch(rev: int, *events: WatchEvent, snapshot: bool = False) -> WatchBatch:
    return WatchBatch(rev, list(events), 0, rev, snapshot)


def test_leader_after_each_batch() -> None:
    state: dict[str, Contender] = {}
    steps = [
        (batch(4, snapshot=True), None),
        (batch(5, put("a", 5, "A")), Leader("A", 5, P + "a")),
        (batch(6, put("b", 6, "B")), Leader("A", 5, P + "a")),           # queued behind
        (batch(7, put("a", 7, "A2", created=5)), Leader("A2", 5, P + "a")),  # proclaim
        (batch(8, WatchEvent("put", "elsewhere", "x", 8, 8, 1)), Leader("A2", 5, P + "a")),
        (batch(9, delete("a", 9)), Leader("B", 6, P + "b")),             # resign/expiry
        (batch(10, delete("b", 10)), None),
        (batch(11, put("c", 3, "C"), snapshot=True), Leader("C", 3, P + "c")),  # resync
    ]
    for b, leader in steps:
        assert leader_after(P, state, b) == leader, b.revision


# --------------------------------------------------------------------------- Op.put lease


def test_op_put_carries_a_lease_on_the_wire() -> None:
    op = Op.put("k", "v", lease=42)
    assert op.to_wire() == {"op": "put", "key": "k", "value": "v", "lease": 42}
    assert Op.from_dict(op.to_wire()) == op
    assert Op.put("k", "v").to_wire() == {"op": "put", "key": "k", "value": "v"}


@pytest.mark.parametrize(("build", "match"), [
    (lambda: Op.put("k", "v", lease=0), "lease must be an integer id >= 1"),
    (lambda: Op.put("k", "v", lease=True), "lease must be an integer"),
    (lambda: Op("delete", "k", None, 5), "cannot carry a lease"),
])
def test_op_lease_validated(build: object, match: str) -> None:
    with pytest.raises(BadRequestError, match=match):
        build()  # type: ignore[operator]
