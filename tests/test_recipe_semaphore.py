"""Semaphores on real node processes (hakv.client.recipe.semaphore, docs/recipes.md
"Semaphore"): many threads, each with its own Client, never more than ``limit`` holding
at once and all of them served; FIFO hand-over when holders release out of order; a
holder killed with -9, or whose lease is revoked, frees its slot for the first waiter
within the lease bound; the limit is agreed (another limit is refused with
SemaphoreLimitError); bad arguments get the lock recipe's errors. Also the pure rule of
who holds and whom a waiter watches."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hakv.client import Client
from hakv.client.recipe._contention import Contender, waits_for
from hakv.client.recipe.semaphore import limit_key
from hakv.core import leases
from hakv.core.topology import RaftTuning
from hakv.errors import (
    BadRequestError,
    LeaseTtlError,
    LockLostError,
    LockTimeoutError,
    RequestTooLargeError,
    SemaphoreLimitError,
)
from tests.support import Acquiring, holds, start_api_cluster, wait_for

pytestmark = pytest.mark.slow

OWNERS = ["n1", "n2", "n3"]
G = "g1"
ELECTION = RaftTuning().election_timeout_max


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    lc = start_api_cluster(tmp_path_factory.mktemp("semaphore"), OWNERS, {G: OWNERS})
    yield lc
    lc.down()


def client(lc: Any) -> Client:
    return Client(lc.endpoints(), timeout=20)


# --------------------------------------------------------------------------- pure rule

Q = [Contender(r, f"k{r}") for r in (3, 5, 8, 13)]


@pytest.mark.parametrize(("mine", "limit", "how", "keys"), [
    (3, 1, "hold", []),
    (5, 1, "deleted", ["k3"]),            # a lock: the predecessor's deletion
    (13, 1, "deleted", ["k8"]),
    (5, 2, "hold", []),                   # one before it, two may hold
    (8, 2, "any", ["k3", "k5"]),          # first waiter: any holder's deletion
    (13, 2, "changed", ["k8"]),           # later waiter: its predecessor, any change
    (13, 4, "hold", []),
    (21, 4, "any", ["k3", "k5", "k8", "k13"]),
])
def test_who_holds_and_whom_a_waiter_watches(mine: int, limit: int, how: str,
                                             keys: list[str]) -> None:
    got_how, got = waits_for(Q, mine, limit)
    assert (got_how, [c.key for c in got]) == (how, keys)


# --------------------------------------------------------------------------- cluster


def test_many_threads_never_more_than_limit_and_everyone_served(cluster: Any) -> None:
    limit, threads_n, rounds = 3, 8, 2
    inside: set[str] = set()
    peak: list[int] = [0]
    guard = threading.Lock()
    served: list[str] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with client(cluster) as c:
                sem = c.semaphore(G, "many", limit, ttl=5, value=f"w{i}")
                for r in range(rounds):
                    assert sem.acquire(timeout=60), f"w{i} round {r}: no slot in 60 s"
                    me = f"w{i}.{r}"
                    with guard:
                        inside.add(me)
                        peak[0] = max(peak[0], len(inside))
                        assert len(inside) <= limit, sorted(inside)
                    holders = sem.holders()
                    assert len(holders) <= limit and f"w{i}" in holders, holders
                    time.sleep(0.5)
                    with guard:
                        inside.remove(me)
                        served.append(me)
                    assert sem.release()
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(90)
    assert not errors, errors
    assert len(served) == threads_n * rounds
    assert peak[0] == limit  # the slots were used, not just handed out one at a time
    with client(cluster) as c:
        assert c.semaphore(G, "many", limit).contenders() == []  # nothing left behind
        assert c.get(G, limit_key("many")).value == str(limit)


class Waiter(Acquiring):
    """A contender in a thread of its own, with its own Client."""

    def __init__(self, lc: Any, name: str, sem_name: str, limit: int,
                 ttl: float = 5.0) -> None:
        c = client(lc)
        self.sem = c.semaphore(G, sem_name, limit, ttl=ttl, value=name)
        super().__init__(c, self.sem, timeout=40)


def test_fifo_hand_over_when_holders_release_out_of_order(cluster: Any) -> None:
    name = "fifo"
    with client(cluster) as c:
        a = c.semaphore(G, name, 2, value="A")
        b = c.semaphore(G, name, 2, value="B")
        assert a.acquire(timeout=10) and b.acquire(timeout=10)
        waiters = []
        for who in "CDE":
            waiters.append(Waiter(cluster, who, name, 2))
            queued = ["A", "B", *(w.sem.value for w in waiters)]
            wait_for(lambda q=queued: a.contenders() == q, 10, what=f"{who} queued")
        w_c, w_d, w_e = waiters
        holds(lambda: not any(w.acquired.is_set() for w in waiters), 0.5,
              what="nobody else gets a slot while A and B hold")
        assert b.release()  # the newer holder first: C (the first waiter) gets B's slot
        assert w_c.acquired.wait(10) and w_c.result == [True]
        holds(lambda: not w_d.acquired.is_set() and not w_e.acquired.is_set(), 0.5,
              what="D and E still wait (A and C hold)")
        assert a.holders() == ["A", "C"]
        # D watched only C's key; C re-put it when it got its slot, so D now watches the
        # holders: A's release (C still holds) admits D.
        assert a.release()
        assert w_d.acquired.wait(10) and w_d.result == [True]
        assert not w_e.acquired.is_set()
        assert w_d.sem.holders() == ["C", "D"]
        w_c.close()
        assert w_e.acquired.wait(10) and w_e.result == [True]
        assert w_d.sem.holders() == ["D", "E"]
        w_d.close()
        w_e.close()
        assert a.contenders() == []


HOLDER = """
import sys, time
from hakv.client import Client
c = Client(sys.argv[1], timeout=10)
sem = c.semaphore("g1", sys.argv[2], 2, ttl=float(sys.argv[3]), value="dead")
assert sem.acquire(timeout=30)
print(sem.key, flush=True)
time.sleep(120)
"""


def test_a_killed_holder_or_a_revoked_lease_frees_the_slot(cluster: Any) -> None:
    ttl, name = 2.0, "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ",".join(cluster.endpoints()), name, str(ttl)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("_hakv/semaphore/killed/")
        with client(cluster) as c:
            lost: list[str] = []
            live = c.semaphore(G, name, 2, ttl=ttl, value="live",
                               on_lost=lambda s: lost.append(s.value))
            assert live.acquire(timeout=10)
            waiters: list[Waiter] = []
            try:
                for who in ("W1", "W2"):  # one after the other: their queue order is known
                    waiters.append(Waiter(cluster, who, name, 2, ttl=ttl))
                    queued = ["dead", "live", *(w.sem.value for w in waiters)]
                    wait_for(lambda q=queued: live.contenders() == q, 10,
                             what=f"{who} queued behind the two holders")
                first, second = waiters
                proc.kill()
                proc.wait()
                killed = time.monotonic()
                assert first.acquired.wait(15) and first.result == [True]
                took = time.monotonic() - killed
                # Its last keepalive was at most ttl/3 before the kill; then the bound.
                assert took <= leases.expiry_bound(ttl, ELECTION, leader_changes=0) + 1.0, \
                    took
                assert not second.acquired.is_set()
                # A holder whose lease is revoked (as an expiry would do) loses its slot
                # at once: the first waiter gets it, the old holder learns it lost it.
                assert live.lease is not None
                c.lease_revoke(G, live.lease.id)
                assert second.acquired.wait(10) and second.result == [True]
                wait_for(lambda: live.lost.is_set(), 10, what="the revoked holder to notice")
                assert lost == ["live"] and not live.is_acquired
                with pytest.raises(LockLostError):
                    live.txn([])
                assert live.holders() == ["W1", "W2"]
            finally:
                live.release()
                for w in waiters:
                    w.sem.cancel()
                    w.thread.join(10)
                    w.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_limit_is_agreed_and_bad_input_is_refused(cluster: Any) -> None:
    name = "agreed"
    with client(cluster) as c:
        held = c.semaphore(G, name, 1, value="only")
        assert held.acquire(timeout=10)
        with pytest.raises(RuntimeError, match="not reentrant"):
            held.acquire()
        other = c.semaphore(G, name, 2, value="greedy")
        with pytest.raises(SemaphoreLimitError, match="has limit '1'") as err:
            other.acquire(timeout=1)
        assert err.value.details == {"stored": "1", "asked": 2}
        assert other.lease is None and held.contenders() == ["only"]  # nothing joined
        same = c.semaphore(G, name, 1, value="same")
        assert same.acquire(blocking=False) is False
        with pytest.raises(LockTimeoutError):
            with c.semaphore(G, name, 1, timeout=0.3):
                pass
        assert held.contenders() == ["only"]  # the timed-out ones left the queue
        # A waiter that finds the stored limit changed under it leaves with the error.
        waiter = Waiter(cluster, "late", name, 1)
        wait_for(lambda: held.contenders() == ["only", "late"], 10, what="late queued")
        c.put(G, limit_key(name), "5")  # what an operator might do by mistake
        held.release()
        assert waiter.acquired.wait(10)
        assert isinstance(waiter.result[0], SemaphoreLimitError)
        assert held.contenders() == []
        waiter.client.close()
        for bad in (0, -1, True, "3", 1.5, 10001):
            with pytest.raises(BadRequestError, match="semaphore limit must be"):
                c.semaphore(G, name, bad)  # type: ignore[arg-type]
        with pytest.raises(LeaseTtlError, match="out of range"):
            c.semaphore(G, name, 2, ttl=0.5)
        with pytest.raises(BadRequestError, match="must not be empty"):
            c.semaphore(G, "", 2)
        with pytest.raises(RequestTooLargeError, match="key limit"):
            c.semaphore(G, "x" * 1000, 2)
