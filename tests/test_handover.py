"""Leadership hand-over (``GroupMember.hand_over_leadership``): proposals wait while the
target catches up and takes over, but a target that dies must not stall the group for the
whole hand-over window (a runner killed just after leadership was handed to it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hakv.raft.host import RaftHost
from hakv.raft.member import GroupMember
from hakv.raft.settings import RaftSettings
from hakv.raft.wire import NodeListener
from tests.support import MemoryMachine, free_ports

pytestmark = pytest.mark.slow

HANDOVER_WINDOW = 5.0


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[RaftHost]]:
    settings = RaftSettings()
    addresses = [f"127.0.0.1:{port}" for port in free_ports(3)]
    started: list[RaftHost] = []
    for address in addresses:
        host = RaftHost("127.0.0.1", int(address.rsplit(":", 1)[1]), b"\x01")
        peers = [a for a in addresses if a != address]
        directory = tmp_path / address.replace(":", "_")
        directory.mkdir()

        def factory(listener: NodeListener, poller: object, address: str = address,
                    peers: list[str] = peers, directory: Path = directory) -> GroupMember:
            return GroupMember("g", address, peers, MemoryMachine(), str(directory), listener,
                               poller, settings)

        host.add_member(factory)
        host.start()
        started.append(host)
    try:
        yield started
    finally:
        for host in started:
            host.stop()


def _leader(hosts: list[RaftHost], timeout: float = 20.0) -> RaftHost:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for host in hosts:
            st = host.members["g"].status()
            if st["role"] == "leader" and st["quorum"]:
                return host
        time.sleep(0.05)
    raise AssertionError("no leader elected")


def test_a_handover_to_a_target_that_dies_gives_up_at_once(hosts: list[RaftHost]) -> None:
    leader = _leader(hosts)
    member = leader.members["g"]
    member.submit(b"\x01").wait(10)
    target = next(h for h in hosts if h is not leader)
    # The target dies at the moment leadership is being handed to it.
    target.stop()
    leader.call_in_loop(lambda: member.hand_over_leadership(target.listener.address,
                                                            HANDOVER_WINDOW))
    started = time.monotonic()
    member.submit(b"\x02").wait(HANDOVER_WINDOW + 5)
    took = time.monotonic() - started
    assert took < 1.5, f"a write waited {took:.1f}s for a hand-over to a dead node"
    assert not member.handing_over()


def _following(host: RaftHost, leader: RaftHost, timeout: float = 10.0) -> None:
    """Wait until ``host`` follows ``leader`` in its term with every committed entry
    applied (a hand-over gives up at once on a target not yet connected)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine, theirs = host.members["g"].status(), leader.members["g"].status()
        if (mine["role"] == "follower" and mine["term"] == theirs["term"]
                and mine["raft_applied"] >= theirs["commit_index"]):
            return
        time.sleep(0.05)
    raise AssertionError("the target never caught up with the leader")


def test_a_handover_to_a_live_target_moves_leadership(hosts: list[RaftHost]) -> None:
    leader = _leader(hosts)
    member = leader.members["g"]
    member.submit(b"\x01").wait(10)
    target = next(h for h in hosts if h is not leader)
    _following(target, leader)
    leader.call_in_loop(lambda: member.hand_over_leadership(target.listener.address,
                                                            HANDOVER_WINDOW))
    assert _leader([target], timeout=HANDOVER_WINDOW) is target
    target.members["g"].submit(b"\x02").wait(10)
