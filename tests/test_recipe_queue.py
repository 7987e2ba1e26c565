"""The priority queue on real node processes (hakv.client.recipe.queue, docs/recipes.md
"Queue"): one consumer gets items in priority-then-put order; several concurrent
consumers (each with its own Client) and producers: every item to exactly one consumer;
``get(timeout)`` returns None in time when empty, a blocked ``get`` wakes up on a put
(a watch, not polling); ``len`` beyond one range's 10000 keys; bad input refused."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from hakv.client import Client, Op
from hakv.client.recipe.queue import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    QUEUE_ROOT,
    item_key,
    parse_item,
)
from hakv.errors import BadRequestError, RequestTooLargeError
from tests.support import holds, start_api_cluster, wait_for

pytestmark = pytest.mark.slow

OWNERS = ["n1", "n2", "n3"]
G = "g1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    lc = start_api_cluster(tmp_path_factory.mktemp("queue"), OWNERS, {G: OWNERS})
    yield lc
    lc.down()


def client(lc: Any) -> Client:
    return Client(lc.endpoints(), timeout=20)


@pytest.mark.parametrize(("priority", "seq"), [
    (0, 1), (MIN_PRIORITY, 1), (MAX_PRIORITY, 2**64 - 1), (-1, 7), (5, 2**40)])
def test_item_keys_sort_by_priority_then_seq(priority: int, seq: int) -> None:
    p = "_hakv/queue/q/"
    key = item_key(p, priority, seq)
    assert parse_item(p, key) == (priority, seq)
    assert item_key(p, priority, seq) < item_key(p, priority, seq + 1) or seq == 2**64 - 1
    if priority < MAX_PRIORITY:
        assert key < item_key(p, priority + 1, 0)
    assert parse_item(p, p + "seq") is None
    assert parse_item("_hakv/queue/", key) is None  # queue "q"'s item is not the root's


def test_one_consumer_gets_priority_then_fifo_order(cluster: Any) -> None:
    with client(cluster) as c:
        q = c.queue(G, "order")
        assert len(q) == 0
        puts = [("a", 5), ("b", 0), ("c", 5), ("d", -3), ("e", 0), ("f", MAX_PRIORITY),
                ("g", MIN_PRIORITY), ("h", 0)]
        for value, priority in puts:
            q.put(value, priority=priority)
        assert len(q) == len(puts)
        # A second producer object (its own sequence hint) keeps the order too.
        c.queue(G, "order").put("i", 0)
        got = [q.get(timeout=5) for _ in range(len(puts) + 1)]
        assert got == ["g", "d", "b", "e", "h", "i", "a", "c", "f"]
        assert len(q) == 0
        t0 = time.monotonic()
        assert q.get(timeout=0) is None
        assert q.get(timeout=0.5) is None
        waited = time.monotonic() - t0
        assert 0.5 <= waited < 3.0, waited


def test_a_blocked_get_wakes_up_on_a_put(cluster: Any) -> None:
    with client(cluster) as c, client(cluster) as consumer_client:
        q = c.queue(G, "wake")
        got: list[str | None] = []
        done = threading.Event()

        def consume() -> None:
            got.append(consumer_client.queue(G, "wake").get())  # no timeout: blocks
            done.set()

        threading.Thread(target=consume, daemon=True).start()
        holds(lambda: not done.is_set(), 1.0, what="get blocks while the queue is empty")
        # Puts into other keys of the group, and into a queue whose name extends this
        # one, do not hand it anything.
        c.put(G, "unrelated", "x")
        c.queue(G, "wake/er").put("not for you")
        holds(lambda: not done.is_set(), 0.5, what="still empty for this queue")
        put_at = time.monotonic()
        q.put("job")
        assert done.wait(10) and got == ["job"]
        assert time.monotonic() - put_at < 5.0
        assert c.queue(G, "wake/er").get(timeout=5) == "not for you"


def test_every_item_to_exactly_one_of_several_concurrent_consumers(cluster: Any) -> None:
    name, producers, per_producer, consumers = "work", 2, 30, 4
    total = producers * per_producer
    taken: dict[int, list[str]] = {i: [] for i in range(consumers)}
    errors: list[BaseException] = []
    all_put = threading.Event()
    count_lock = threading.Lock()
    received = [0]

    def produce(p: int) -> None:
        try:
            with client(cluster) as c:
                q = c.queue(G, name)
                for i in range(per_producer):
                    q.put(f"p{p}-{i}", priority=i % 3)
        except BaseException as exc:
            errors.append(exc)

    def consume(i: int) -> None:
        try:
            with client(cluster) as c:
                q = c.queue(G, name)
                while True:
                    value = q.get(timeout=1.0)
                    if value is None:
                        if all_put.is_set() and received[0] >= total:
                            return
                        if all_put.is_set() and len(q) == 0:
                            return
                        continue
                    taken[i].append(value)
                    with count_lock:
                        received[0] += 1
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    for t in workers:
        t.start()
    makers = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in makers:
        t.start()
    for t in makers:
        t.join(60)
    all_put.set()
    for t in workers:
        t.join(60)
    assert not errors, errors
    everything = [v for vs in taken.values() for v in vs]
    expected = {f"p{p}-{i}" for p in range(producers) for i in range(per_producer)}
    assert len(everything) == total, sorted(everything)  # nothing twice, nothing lost
    assert set(everything) == expected
    assert sum(1 for vs in taken.values() if vs) >= 2  # they really competed
    with client(cluster) as c:
        assert len(c.queue(G, name)) == 0


def test_len_beyond_one_range_and_bad_input(cluster: Any) -> None:
    name = "big"
    prefix = f"{QUEUE_ROOT}{name}/"
    with client(cluster) as c:
        q = c.queue(G, name)
        # 10040 items written directly in their layout, 40 per txn (a put of each would
        # take minutes): one range cannot hold them all.
        n, batch = 10040, 40
        for start in range(1, n + 1, batch):
            c.txn(G, [], [Op.put(item_key(prefix, 0, s), "v")
                          for s in range(start, min(start + batch, n + 1))])
        c.put(G, f"{prefix}seq", str(n))
        assert c.range(G, prefix, limit=10000).more
        assert len(q) == n
        q.put("urgent", priority=-1)
        assert q.get(timeout=5) == "urgent"
        assert q.get(timeout=5) == "v" and len(q) == n - 1
        assert parse_item(prefix, q.put("last")) == (0, n + 2)
        with pytest.raises(BadRequestError, match="must be an integer"):
            q.put("x", priority=1.5)  # type: ignore[arg-type]
        with pytest.raises(BadRequestError, match="must be in"):
            q.put("x", priority=MAX_PRIORITY + 1)
        with pytest.raises(BadRequestError, match="must be a string"):
            q.put(7)  # type: ignore[arg-type]
        with pytest.raises(RequestTooLargeError):
            q.put("x" * 40000)
        for bad in (-1, "1", float("nan")):
            with pytest.raises(BadRequestError, match="timeout must be"):
                q.get(timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(BadRequestError, match="must not be empty"):
            c.queue(G, "")
        with pytest.raises(RequestTooLargeError, match="key limit"):
            c.queue(G, "x" * 990)
        wait_for(lambda: len(q) == n, 5, what="the count after the puts and gets")
