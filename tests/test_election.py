"""Leader election on real node processes (hakv.client.recipe.election, docs/recipes.md
"Election"): campaign / leader / proclaim / resign with growing tokens, and an observer
that sees every change exactly once and in order across a kill -9 of the group's Raft
leader; ``hakv elect`` becomes leader, prints its token, resigns on SIGTERM; ``hakv elect
--observe`` prints the changes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest

from hakv.client import Client, Leader
from hakv.errors import LeadershipLostError, LockTimeoutError
from tests.support import leader_of, start_api_cluster, wait_for, wait_healthy

pytestmark = pytest.mark.slow

OWNERS = ["n1", "n2", "n3"]
G = "g1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    lc = start_api_cluster(tmp_path_factory.mktemp("election"), OWNERS, {G: OWNERS})
    yield lc
    lc.down()


def client(lc: Any) -> Client:
    return Client(lc.endpoints(), timeout=20)


def test_campaign_proclaim_resign_and_observe_every_change_once_across_a_leader_kill(
        cluster: Any) -> None:
    name = "sched"
    c1, c2, c3 = client(cluster), client(cluster), client(cluster)
    e1, e2 = c1.election(G, name, ttl=5), c2.election(G, name, ttl=5)
    seen: list[Leader | None] = []
    observation = c3.election(G, name).observe(poll_timeout=1)

    def watch() -> None:
        for leader in observation:
            seen.append(leader)

    observer = threading.Thread(target=watch, daemon=True)
    observer.start()
    wait_for(lambda: seen == [None], 10, what="the observer's first item (no leader)")

    t1 = e1.campaign("A")
    assert e1.is_leader and e1.leader() == Leader("A", t1, e1.key or "")
    won: list[int] = []
    second = threading.Thread(target=lambda: won.append(e2.campaign("B")), daemon=True)
    second.start()
    wait_for(lambda: [x.value for x in e1.contenders()] == ["A", "B"], 10,
             what="B queued")
    with pytest.raises(LockTimeoutError):
        c3.election(G, name).campaign("C", timeout=0.3)
    e1.proclaim("A2")
    assert e1.leader() == Leader("A2", t1, e1.key or "")  # same term, same token

    raft_leader = leader_of(cluster.endpoints(), G)
    assert raft_leader in OWNERS
    cluster.kill(raft_leader)
    try:
        assert e1.resign()  # through the survivors, across the election of the group
        second.join(20)
        assert won and won[0] > t1 and e2.is_leader
        with pytest.raises(LeadershipLostError):
            e1.proclaim("A3")  # no longer leader: refused, nothing written
        e2.proclaim("B2")
    finally:
        cluster.start(raft_leader, wait=0)
        wait_healthy(cluster, [raft_leader])
    assert e2.resign() and not e2.resign()
    expected = [None, Leader("A", t1, e1.key or ""), Leader("A2", t1, e1.key or ""),
                Leader("B", won[0], e2.key or ""), Leader("B2", won[0], e2.key or ""), None]
    wait_for(lambda: len(seen) >= len(expected), 20, what="every change observed")
    observation.close()
    assert seen == expected
    assert e1.leader() is None
    for c in (c1, c2, c3):
        c.close()


def hakv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hakv", *args]


def test_cli_elect_leads_until_sigterm_and_observe_prints_changes(cluster: Any) -> None:
    ep = ",".join(cluster.endpoints())
    observer = subprocess.Popen(hakv("elect", G, "cli", "--observe", "--json", "--count",
                                     "3", "-e", ep), stdout=subprocess.PIPE, text=True)
    assert observer.stdout is not None
    first = observer.stdout.readline()  # the observer is watching: no leader yet
    assert json.loads(first) == {"leader": None}, first
    candidate = subprocess.Popen(hakv("elect", G, "cli", "node-7", "--ttl", "5", "-e", ep),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert candidate.stdout is not None
        line = candidate.stdout.readline()
        assert line.startswith(f"leader of cli in group {G}: node-7 (fencing token "), line
        token = int(line.rsplit(" ", 1)[1].rstrip(")\n"))
        with client(cluster) as c:
            assert c.election(G, "cli").leader() == Leader(
                "node-7", token, wait_for(lambda: c.election(G, "cli").leader(), 5).key)
            candidate.send_signal(signal.SIGTERM)
            assert candidate.wait(10) == 0, candidate.stderr.read() if candidate.stderr else ""
            # Resigned (revoked), not left to expire: gone well within its 5 s TTL.
            wait_for(lambda: c.election(G, "cli").leader() is None, 2.5, interval=0.05,
                     what="the office to be free after the resignation")
        out, _ = observer.communicate(timeout=10)
        lines = [json.loads(x)["leader"] for x in out.splitlines()]
        assert lines == [{"value": "node-7", "token": token, "key": lines[0]["key"]}, None]
    finally:
        for p in (candidate, observer):
            if p.poll() is None:
                p.kill()
                p.wait()
