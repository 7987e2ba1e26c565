"""The lessor's decisions (hakv.node.lessor) with a fake clock and the GroupHost twin (real
store, in-memory log), and the bound arithmetic of hakv.core.leases: no sockets, no
sleeps; time moves only by FakeClock.advance."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from hakv.core import codec, leases
from hakv.errors import LeaseNotFoundError
from hakv.node.lessor import Lessor
from tests.twins import FakeClock, Groups, Member

G = "220"


class Host:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.groups = Groups("a", str(tmp_path / "groups"))
        self.member = self.groups.add(G)
        self.seq = 0

    def write(self, op: str, **body: Any) -> Any:
        self.seq += 1
        return self.member.submit(codec.encode(codec.write_command(op, body, "app", self.seq))
                                  ).outcome()

    def lessor(self, term: int = 1) -> Lessor:
        set_term(self.member, term)
        return Lessor(self.groups, self.clock, rng=random.Random(7))

    def keys(self) -> list[str]:
        return [kv["key"] for kv in self.groups.store(G).range("", 100)[0]]


def set_term(member: Member, term: int) -> None:
    member.status = lambda: {"role": "leader", "quorum": True,  # type: ignore[method-assign]
                             "leader_address": None, "term": term}


@pytest.fixture
def host(tmp_path: Path) -> Any:
    h = Host(tmp_path)
    yield h
    h.groups.close()


def lessor_ops(member: Member) -> list[str]:
    return [c["op"] for c in member.commands if c["op"] in leases.LESSOR_OPS]


def test_no_leases_no_proposals(host: Host) -> None:
    """An idle group stays quiet: no takeover, no checkpoint while it has no lease."""
    lessor = host.lessor()
    for _ in range(20):
        assert lessor.tick(G) is False
        host.clock.advance(0.5)
    assert lessor_ops(host.member) == []


def test_expires_at_the_ttl_not_before(host: Host) -> None:
    lessor = host.lessor()
    lease = host.write("lease_grant", ttl=2)["id"]
    host.write("put", key="k", value="v", lease=lease)
    assert lessor.tick(G) is True
    assert lessor_ops(host.member) == ["lease_takeover"]
    for _ in range(19):  # 1.9 s in 0.1 s rounds: checkpoints, no expiry
        host.clock.advance(0.1)
        lessor.tick(G)
    assert host.keys() == ["k"] and "lease_expire" not in lessor_ops(host.member)
    host.clock.advance(0.1)
    lessor.tick(G)
    assert host.keys() == [] and lessor_ops(host.member)[-1] == "lease_expire"
    with pytest.raises(LeaseNotFoundError):
        lessor.serve("lease_ttl", G, {"id": lease})


def test_checkpoints_record_the_remaining_time_at_least_every_interval(host: Host) -> None:
    lessor = host.lessor()
    lease = host.write("lease_grant", ttl=30)["id"]
    lessor.tick(G)
    store = host.groups.store(G)
    recorded_at, last = host.clock.monotonic(), 30000
    for _ in range(100):  # 10 s
        host.clock.advance(0.1)
        lessor.tick(G)
        remaining = store.lease(lease)[0].remaining_ms  # type: ignore[union-attr]
        if remaining != last:
            last, recorded_at = remaining, host.clock.monotonic()
            elapsed = 30.0 - remaining / 1000
            assert abs(elapsed - (recorded_at - 1000.0)) < 0.002  # exact, from the deadline
        assert host.clock.monotonic() - recorded_at < leases.CHECKPOINT_INTERVAL
    assert len([op for op in lessor_ops(host.member) if op == "lease_checkpoint"]) <= 10 / 0.6


def test_keepalive_moves_the_deadline(host: Host) -> None:
    lessor = host.lessor()
    lease = host.write("lease_grant", ttl=2)["id"]
    host.write("put", key="k", value="v", lease=lease)
    lessor.tick(G)
    host.clock.advance(1.5)
    assert host.write("lease_keepalive", id=lease) == {"id": lease, "ttl": 2.0}
    lessor.tick(G)  # the next round notices it: deadline = then + ttl
    for _ in range(19):
        host.clock.advance(0.1)
        lessor.tick(G)
    assert host.keys() == ["k"]  # 3.4 s after the grant, 1.9 s after the keepalive
    answer = lessor.serve("lease_ttl", G, {"id": lease, "keys": True})
    assert answer["exact"] and answer["keys"] == ["k"] and answer["granted_ttl"] == 2.0
    assert answer["ttl"] == pytest.approx(0.1, abs=0.001)
    host.clock.advance(0.1)
    lessor.tick(G)
    assert host.keys() == []


def test_a_new_leader_counts_down_from_the_last_checkpoint(host: Host) -> None:
    """The failover of etcd#9395, with the bound: the old lessor checkpoints and dies;
    after an election timeout the new one (term 2) takes over and expires the lease no
    later than ttl + checkpoint interval + election timeout after the last keepalive,
    and well before a full TTL after its takeover (what etcd grants)."""
    ttl, election = 10.0, 1.0
    old = host.lessor(term=1)
    lease = host.write("lease_grant", ttl=ttl)["id"]
    host.write("put", key="k", value="v", lease=lease)
    granted = host.clock.monotonic()
    for _ in range(60):  # 6 s under the old leader
        host.clock.advance(0.1)
        old.tick(G)
    host.clock.advance(election)  # the old leader is dead; an election
    new = host.lessor(term=2)
    took_over = host.clock.monotonic()
    while host.keys():
        new.tick(G)
        host.clock.advance(0.1)
        assert host.clock.monotonic() - took_over < ttl, "the failover restarted the TTL"
    gone = host.clock.monotonic() - granted
    assert ttl <= gone <= leases.expiry_bound(ttl, election)
    assert lessor_ops(host.member).count("lease_takeover") == 2


def test_a_deposed_lessor_stops_once_another_took_over(host: Host) -> None:
    old = host.lessor(term=1)
    lease = host.write("lease_grant", ttl=2)["id"]
    old.tick(G)
    new = host.lessor(term=2)
    new.tick(G)  # takes over in term 2
    set_term(host.member, 1)  # the old leader still believes it leads term 1
    host.clock.advance(5)
    old.tick(G)
    results = [c for c in host.member.commands if c["op"] == "lease_expire"]
    assert results == []  # it saw the later takeover and proposed nothing
    assert host.groups.store(G).lease(lease)[0] is not None


BOUNDS = [
    # ttl, election timeout, leader changes, expected seconds after the last keepalive
    (2.0, 1.0, 0, 2.5),
    (2.0, 1.0, 1, 4.5),
    (60.0, 1.0, 1, 62.5),  # etcd: up to 120 s (a whole TTL more per failover)
    (60.0, 1.0, 2, 64.5),
    (5.0, 3.0, 1, 9.5),
]


@pytest.mark.parametrize("ttl,election,changes,expected", BOUNDS)
def test_expiry_bound(ttl: float, election: float, changes: int, expected: float) -> None:
    assert leases.expiry_bound(ttl, election, leader_changes=changes) == pytest.approx(expected)


SAFE = [
    # sent at, ttl, safe until
    (100.0, 10.0, 109.8),
    (100.0, 1.0, 100.9),  # the 100 ms floor
    (0.0, 60.0, 58.8),
]


@pytest.mark.parametrize("sent,ttl,expected", SAFE)
def test_safe_until_is_before_the_earliest_expiry(sent: float, ttl: float,
                                                  expected: float) -> None:
    assert leases.safe_until(sent, ttl) == pytest.approx(expected)
    assert leases.safe_until(sent, ttl) < sent + ttl


TTLS = [
    # ttl, ms or error
    (1, 1000), (2.5, 2500), (86400, 86_400_000),
    (0.5, "bad_ttl"), (86401, "bad_ttl"), (True, "bad_ttl"), ("5", "bad_ttl"),
    (float("nan"), "bad_ttl"), (None, "bad_ttl"),
]


@pytest.mark.parametrize("ttl,expected", TTLS)
def test_ttl_range(ttl: Any, expected: Any) -> None:
    body = {"ttl": ttl}
    if isinstance(expected, int):
        assert codec.write_command("lease_grant", body, "c", 1)["ttl_ms"] == expected
    else:
        with pytest.raises(Exception) as info:
            codec.write_command("lease_grant", body, "c", 1)
        assert getattr(info.value, "code", None) == expected
        assert "seconds" in str(info.value)
