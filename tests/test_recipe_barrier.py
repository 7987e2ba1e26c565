"""Barriers on real node processes (hakv.client.recipe.barrier, docs/recipes.md
"Barrier", "Double barrier"): removing a barrier releases every waiter (each with its own
Client) and nobody before; ``wait(timeout)`` answers False while it is up; a double
barrier admits nobody until ``count`` have entered and lets nobody leave until all have
left; a participant killed with -9 does not block the others' leave beyond its lease;
too many participants, timeouts and bad arguments."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hakv.client import Client
from hakv.client.recipe.barrier import DoubleBarrier
from hakv.core import leases
from hakv.core.topology import RaftTuning
from hakv.errors import BadRequestError, ConflictError, LeaseTtlError, RequestTooLargeError
from tests.support import holds, start_api_cluster, wait_for

pytestmark = pytest.mark.slow

OWNERS = ["n1", "n2", "n3"]
G = "g1"
ELECTION = RaftTuning().election_timeout_max


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    lc = start_api_cluster(tmp_path_factory.mktemp("barrier"), OWNERS, {G: OWNERS})
    yield lc
    lc.down()


def client(lc: Any) -> Client:
    return Client(lc.endpoints(), timeout=20)


class InThread:
    """``fn(client)`` in a thread of its own with its own Client; ``done`` once it
    returned (``result``: its value or exception)."""

    def __init__(self, lc: Any, fn: Any) -> None:
        self.client = client(lc)
        self.fn = fn
        self.done = threading.Event()
        self.result: list[Any] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result.append(self.fn(self.client))
        except BaseException as exc:
            self.result.append(exc)
        self.done.set()


def test_removing_the_barrier_releases_every_waiter(cluster: Any) -> None:
    with client(cluster) as c:
        gate = c.barrier(G, "gate")
        assert gate.wait(timeout=5) is True  # not up: at once
        assert gate.create() is True
        assert gate.create() is False  # up already
        assert gate.exists() and c.barrier(G, "gat").exists() is False  # no prefix mix
        t0 = time.monotonic()
        assert gate.wait(timeout=0.5) is False
        assert 0.5 <= time.monotonic() - t0 < 3.0
        waiters = [InThread(cluster, lambda cl: cl.barrier(G, "gate").wait())
                   for _ in range(5)]
        holds(lambda: not any(w.done.is_set() for w in waiters), 1.0,
              what="nobody passes while the barrier is up")
        assert gate.remove() is True
        removed = time.monotonic()
        for w in waiters:
            assert w.done.wait(10) and w.result == [True]
        assert time.monotonic() - removed < 10
        assert gate.remove() is False and not gate.exists()
        # A removal releases the waiters even if the barrier is raised again at once.
        gate.create()
        w = InThread(cluster, lambda cl: cl.barrier(G, "gate").wait(timeout=30))
        time.sleep(0.5)  # let it start watching
        assert gate.remove() and gate.create()
        assert w.done.wait(10) and w.result == [True]
        assert gate.remove()
        for t in [*waiters, w]:
            t.client.close()


def participant(name: str, count: int, tag: str, ttl: float = 5.0) -> Any:
    """For InThread: enter double barrier ``name``; the result is (barrier, entered)."""
    def run(cl: Client) -> tuple[DoubleBarrier, bool]:
        db = cl.double_barrier(G, name, count, ttl=ttl, value=tag)
        return db, db.enter(timeout=30)
    return run


def test_double_barrier_admits_nobody_until_count_and_lets_nobody_out_until_all(
        cluster: Any) -> None:
    name, count = "round", 3
    with client(cluster) as c:
        view = c.double_barrier(G, name, count)
        entering = [InThread(cluster, participant(name, count, f"p{i}")) for i in range(2)]
        wait_for(lambda: len(view.participants()) == 2, 10, what="two participants in")
        holds(lambda: not any(p.done.is_set() for p in entering), 1.0,
              what="nobody is admitted with 2 of 3")
        last = c.double_barrier(G, name, count, value="p2")
        assert last.enter(timeout=10) is True  # the third: admitted at once
        for p in entering:
            assert p.done.wait(10), "not admitted after the third entered"
            assert p.result[0][1] is True
        assert sorted(view.participants()) == ["p0", "p1", "p2"]

        dbs: list[DoubleBarrier] = [p.result[0][0] for p in entering]
        leaving = [InThread(cluster, lambda _cl, db=db: db.leave(timeout=30)) for db in dbs]
        holds(lambda: not any(p.done.is_set() for p in leaving), 1.0,
              what="nobody leaves while p2 is still in")
        assert view.participants() in (["p2"], ["p0", "p2"], ["p1", "p2"], ["p0", "p1", "p2"])
        assert last.leave(timeout=10) is True
        for p in leaving:
            assert p.done.wait(10) and p.result == [True]
        assert view.participants() == []
        assert c.range(G, "_hakv/double_barrier/round/").kvs == []  # the flag too
        # The next round works the same way.
        again = [InThread(cluster, participant(name, count, f"q{i}")) for i in range(3)]
        for p in again:
            assert p.done.wait(15) and p.result[0][1] is True
        outs = [InThread(cluster, lambda _cl, p=p: p.result[0][0].leave(timeout=30))
                for p in again]
        for p in outs:
            assert p.done.wait(15) and p.result == [True]
        for p in [*entering, *leaving, *again, *outs]:
            p.client.close()


PARTICIPANT = """
import sys, time
from hakv.client import Client
c = Client(sys.argv[1], timeout=10)
db = c.double_barrier("g1", sys.argv[2], 2, ttl=float(sys.argv[3]), value="doomed")
assert db.enter(timeout=30)
print("in", flush=True)
time.sleep(120)
"""


def test_a_dead_participant_does_not_block_the_others_forever(cluster: Any) -> None:
    ttl, name = 2.0, "doomed"
    with client(cluster) as c:
        proc = subprocess.Popen(
            [sys.executable, "-c", PARTICIPANT, ",".join(cluster.endpoints()), name,
             str(ttl)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        try:
            me = c.double_barrier(G, name, 2, ttl=ttl, value="alive")
            assert me.enter(timeout=20)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "in"
            leaving = InThread(cluster, lambda _cl: me.leave(timeout=30))
            holds(lambda: not leaving.done.is_set(), 0.5,
                  what="no way out while the other participant is in")
            proc.kill()
            proc.wait()
            killed = time.monotonic()
            assert leaving.done.wait(15) and leaving.result == [True]
            took = time.monotonic() - killed
            assert took <= leases.expiry_bound(ttl, ELECTION, leader_changes=0) + 1.0, took
            assert me.participants() == []
            leaving.client.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_too_many_participants_timeouts_and_bad_arguments(cluster: Any) -> None:
    name = "full"
    with client(cluster) as c:
        lone = c.double_barrier(G, name, 2, value="lone")
        t0 = time.monotonic()
        assert lone.enter(timeout=0.5) is False  # alone: not admitted, and left again
        assert 0.5 <= time.monotonic() - t0 < 5.0
        assert lone.participants() == [] and lone.key is None
        a = InThread(cluster, participant(name, 2, "a"))
        b = c.double_barrier(G, name, 2, value="b")
        wait_for(lambda: b.participants() == ["a"], 10, what="a in")
        assert b.enter(timeout=10)
        assert a.done.wait(10) and a.result[0][1] is True
        with pytest.raises(RuntimeError, match="entered already"):
            b.enter()
        with pytest.raises(ConflictError, match="already has 2 participant"):
            c.double_barrier(G, name, 2, value="third").enter(timeout=5)
        assert sorted(b.participants()) == ["a", "b"]  # the third left nothing behind
        out = InThread(cluster, lambda _cl: a.result[0][0].leave(timeout=30))
        assert b.leave(timeout=10) and out.done.wait(10) and out.result == [True]
        # Every participant of a round asks for the same count (agreed through a key).
        first = c.double_barrier(G, "agreed", 3, value="three")
        in_first = InThread(cluster, lambda _cl: first.enter(timeout=30))
        wait_for(lambda: first.participants() == ["three"], 10, what="the first one in")
        with pytest.raises(ConflictError, match="has count '3'") as err:
            c.double_barrier(G, "agreed", 2, value="two").enter(timeout=5)
        assert err.value.details == {"stored": "3", "asked": 2}
        assert first.participants() == ["three"]  # the mismatched one left nothing
        rest = [c.double_barrier(G, "agreed", 3, value=tag) for tag in ("x", "y")]
        entering = [InThread(cluster, lambda _cl, d=d: d.enter(timeout=30)) for d in rest]
        for t in [in_first, *entering]:
            assert t.done.wait(15) and t.result == [True]
        leaving = [InThread(cluster, lambda _cl, d=d: d.leave(timeout=30))
                   for d in [first, *rest]]
        for t in leaving:
            assert t.done.wait(15) and t.result == [True]
        assert c.range(G, "_hakv/double_barrier/agreed/").kvs == []  # the count went too
        for t in [in_first, *entering, *leaving]:
            t.client.close()
        for bad in (0, -2, True, "2"):
            with pytest.raises(BadRequestError, match="count must be"):
                c.double_barrier(G, name, bad)  # type: ignore[arg-type]
        with pytest.raises(LeaseTtlError):
            c.double_barrier(G, name, 2, ttl=100000)
        with pytest.raises(BadRequestError, match="must not contain NUL"):
            c.barrier(G, "a\x00b")
        with pytest.raises(RequestTooLargeError):
            c.barrier(G, "x" * 1020)
        assert c.barrier(G, "x" * (1024 - len("_hakv/barrier/"))).create()  # fits exactly
        with pytest.raises(RequestTooLargeError):
            c.double_barrier(G, "x" * 1000, 2)
        for t in (a, out):
            t.client.close()
