"""Locks on real node processes (hakv.client.recipe.lock, docs/recipes.md "Lock"):
mutual exclusion and FIFO order with growing fencing tokens; a holder killed with -9
loses the lock to the next within the lease bound; a stale holder's guarded write is
rejected once the next holder has the lock; timeouts leave no orphan; reentry and bad
names refused; ``hakv lock`` runs a command with the token and stops it when the lock
is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hakv.client import Client
from hakv.core import leases
from hakv.core.topology import RaftTuning
from hakv.errors import LockLostError, LockTimeoutError, RequestTooLargeError
from tests.support import Acquiring, holds, start_api_cluster, wait_for

pytestmark = pytest.mark.slow

OWNERS = ["n1", "n2", "n3"]
G = "g1"
ELECTION = RaftTuning().election_timeout_max


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    lc = start_api_cluster(tmp_path_factory.mktemp("lock"), OWNERS, {G: OWNERS})
    yield lc
    lc.down()


def client(lc: Any) -> Client:
    return Client(lc.endpoints(), timeout=10)


class Contender(Acquiring):
    """A lock contender in a thread of its own, with its own Client."""

    def __init__(self, lc: Any, name: str, lock_name: str, ttl: float = 5.0) -> None:
        c = client(lc)
        self.lock = c.lock(G, lock_name, ttl=ttl, value=name)
        super().__init__(c, self.lock, timeout=30)


def test_fifo_mutual_exclusion_and_growing_tokens(cluster: Any) -> None:
    name = "fifo"
    with client(cluster) as c:
        first = c.lock(G, name, value="A")
        assert first.acquire(timeout=10) and first.fence is not None
        a_fence = first.fence
        assert first.put("fifo/owner", "A").revision > a_fence
        b = Contender(cluster, "B", name)
        wait_for(lambda: first.contenders() == ["A", "B"], 10, what="B queued")
        c_ = Contender(cluster, "C", name)
        wait_for(lambda: first.contenders() == ["A", "B", "C"], 10, what="C queued")
        holds(lambda: not b.acquired.is_set() and not c_.acquired.is_set(), 0.5,
              what="nobody else holds while A does")
        assert first.release() and first.fence is None
        assert b.acquired.wait(10) and b.result == [True]
        assert not c_.acquired.is_set()  # FIFO: C waits for B, not for A
        b_fence = b.lock.fence
        assert b_fence is not None and b_fence > a_fence
        assert b.lock.put("fifo/owner", "B")  # B's guarded write applies
        with pytest.raises(LockLostError):
            first.put("fifo/owner", "A-again")  # released: A's guarded write does not
        b.close()
        assert c_.acquired.wait(10) and c_.result == [True]
        assert c_.lock.fence is not None and c_.lock.fence > b_fence
        assert c.get(G, "fifo/owner").value == "B"
        assert c_.lock.contenders() == ["C"]
        c_.close()
        assert first.contenders() == []


HOLDER = """
import sys, time
from hakv.client import Client
c = Client(sys.argv[1], timeout=10)
lock = c.lock("g1", sys.argv[2], ttl=float(sys.argv[3]), value="holder")
lock.acquire()
print(lock.fence, flush=True)
time.sleep(120)
"""


def test_a_killed_holder_loses_the_lock_to_the_next_within_the_lease_bound(
        cluster: Any) -> None:
    ttl = 2.0
    name = "killed"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ",".join(cluster.endpoints()), name, str(ttl)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        assert holder.stdout is not None
        holder_fence = int(holder.stdout.readline())
        with client(cluster) as c:
            waiter = Contender(cluster, "W", name)
            wait_for(lambda: c.lock(G, name).contenders() == ["holder", "W"], 10,
                     what="W queued behind the holder")
            holder.kill()
            holder.wait()
            killed = time.monotonic()
            assert waiter.acquired.wait(15) and waiter.result == [True]
            took = time.monotonic() - killed
            # Its last keepalive was at most ttl/3 before the kill; then the bound.
            assert took <= leases.expiry_bound(ttl, ELECTION, leader_changes=0) + 1.0, took
            assert waiter.lock.fence is not None and waiter.lock.fence > holder_fence
            waiter.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_stale_holders_guarded_write_is_rejected(cluster: Any) -> None:
    """A holder that stops keeping its lease alive (as if paused) and comes back after
    the next holder got the lock: its guarded write is rejected, nothing applied."""
    name = "stale"
    with client(cluster) as c:
        stale = c.lock(G, name, ttl=1.5, value="stale")
        assert stale.acquire(timeout=10)
        assert stale.put("stale/data", "from-stale")
        assert stale.lease is not None
        stale.lease.stop_keepalive()  # frozen: no more keepalives
        nxt = Contender(cluster, "next", name)
        assert nxt.acquired.wait(15) and nxt.result == [True]
        assert nxt.lock.fence is not None and stale.fence is not None
        assert nxt.lock.fence > stale.fence
        nxt.lock.put("stale/data", "from-next")
        with pytest.raises(LockLostError):
            stale.put("stale/data", "late-write-from-stale")
        with pytest.raises(LockLostError):
            stale.txn([], compare=[])  # any guarded txn
        assert not stale.is_acquired and stale.lost.is_set()
        assert c.get(G, "stale/data").value == "from-next"
        nxt.close()


def test_timeouts_leave_no_orphan_reentry_and_bad_names_are_refused(cluster: Any) -> None:
    name = "busy"
    with client(cluster) as c:
        held = c.lock(G, name, value="holder")
        assert held.acquire(timeout=10)
        with pytest.raises(RuntimeError, match="not reentrant"):
            held.acquire()
        other = c.lock(G, name, value="other", timeout=0.3)
        t0 = time.monotonic()
        assert other.acquire(timeout=0.3) is False
        assert time.monotonic() - t0 < 3.0
        assert other.acquire(blocking=False) is False
        with pytest.raises(LockTimeoutError), other:
            pass
        assert held.contenders() == ["holder"]  # the waiters left the queue
        assert other.fence is None and not other.is_acquired
        held.release()
        assert not held.release()  # idempotent
        with pytest.raises(RequestTooLargeError):
            c.lock(G, "x" * 1000)


SCRIPT = """
echo "$HAKV_FENCING_TOKEN $HAKV_LOCK_KEY $HAKV_LOCK_GROUP" > "$1"
trap 'kill $!; echo stopped >> "$1"; exit 0' TERM
sleep 60 & wait
"""


def hakv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hakv", *args]


def test_cli_lock_runs_the_command_with_the_token_and_exits_with_its_status(
        cluster: Any, tmp_path: Path) -> None:
    ep = ",".join(cluster.endpoints())
    out = subprocess.run(
        hakv("lock", G, "cli", "-e", ep, "--", "sh", "-c",
             'echo "token=$HAKV_FENCING_TOKEN key=$HAKV_LOCK_KEY"; exit 3'),
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 3, out.stderr
    token, key = (part.split("=", 1)[1] for part in out.stdout.split())
    assert int(token) > 0 and key.startswith("_hakv/lock/cli/")
    with client(cluster) as c:
        assert c.lock(G, "cli").contenders() == []  # released on exit
        busy = c.lock(G, "cli")
        assert busy.acquire(timeout=10)
        out = subprocess.run(hakv("lock", G, "cli", "-e", ep, "--timeout", "0.5", "--",
                                  "true"), capture_output=True, text=True, timeout=30)
        assert out.returncode == 10 and "lock_timeout" in out.stderr, out.stderr
        busy.release()


def test_cli_lock_stops_the_command_when_the_lock_is_lost(cluster: Any,
                                                          tmp_path: Path) -> None:
    ep = ",".join(cluster.endpoints())
    seen, errors = tmp_path / "seen", tmp_path / "stderr"
    with errors.open("w") as stderr:
        proc = subprocess.Popen(
            hakv("lock", G, "lost", "-e", ep, "--ttl", "3", "--grace", "2", "--", "sh",
                 "-c", SCRIPT, "sh", str(seen)),
            stderr=stderr)
    try:
        wait_for(lambda: seen.exists() and seen.read_text().strip(), 15,
                 what="the command to start")
        token, key, group = seen.read_text().split()
        assert group == G and int(token) > 0
        lease_id = int(key.rsplit("/", 1)[1], 16)
        with client(cluster) as c:
            c.lease_revoke(G, lease_id)  # the lock is lost (as an expiry would do)
        revoked = time.monotonic()
        proc.wait(timeout=15)
        err = errors.read_text()
        assert proc.returncode == 9 and "lock_lost" in err, err
        assert time.monotonic() - revoked < 3.0 + 2.0  # a keepalive round, then SIGTERM
        assert seen.read_text().split()[-1] == "stopped"  # it got SIGTERM
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def test_cli_lock_killed_while_waiting_leaves_the_queue_at_once(cluster: Any) -> None:
    """SIGTERM to a ``hakv lock`` still queued: it leaves the queue now (exit 143, the
    command never run), so the next waiter is not held up for the lease's TTL."""
    ep = ",".join(cluster.endpoints())
    with client(cluster) as c:
        busy = c.lock(G, "queued")
        assert busy.acquire(timeout=10)
        proc = subprocess.Popen(hakv("lock", G, "queued", "-e", ep, "--ttl", "60", "--",
                                     "true"), stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(c.lock(G, "queued").contenders()) == 2, 15,
                     what="the CLI queued behind the holder")
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
            assert proc.returncode == 128 + signal.SIGTERM, proc.stderr.read() \
                if proc.stderr else ""
            # Its key went with its revoked lease: only the holder is left (with a 60 s
            # lease it would otherwise stay a minute).
            assert len(c.lock(G, "queued").contenders()) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            busy.release()
