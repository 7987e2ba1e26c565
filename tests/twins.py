"""In-memory twins of the node's ports (hakv.node.ports), for deterministic component tests
(importable without pytest, like tests/support.py).

As hashicorp/raft ships ``inmem_transport.go`` beside its transport, every port a node
component receives has a twin here:

    Clock          FakeClock        time moves only when the test says so
    GroupHost,     Groups           members whose Raft log lives in memory: a submitted
    MemberControl,                  command commits and applies at once (or fails with
    RaftContact                     NoQuorumError), into the group's real state machine
                                    (hakv.storage's StoreMachine in a temp dir), so a test
                                    reads the same records a node would
    PeerApi        Peers            other nodes' APIs: who answers at which address, and
                                    what; every call is recorded
    Allocator      Allocations      the bridge's allocation decisions, recorded
    LocalApps      Apps             a supervisor's local view, as set by the test
    Service        Service          the requests a node serves, answered from a dict (or
                                    held until the test releases them); every call recorded
    TopologyView   hakv.node.view.ClusterView itself (plain data, no I/O)
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from hakv import errors
from hakv.core import codec
from hakv.core.topology import CLUSTER_GROUP
from hakv.node.ports import Abort, PeerUnreachable, Pending
from hakv.storage.machine import StoreMachine
from hakv.storage.store import GroupStore

__all__ = ["Allocations", "Apps", "Done", "FakeClock", "Groups", "Later", "Member", "Peers",
           "Service"]


class FakeClock:
    """``monotonic`` and ``wall`` advance together, only through ``advance``."""

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_750_000_000.0,
                 minute_of_day: int = 12 * 60) -> None:
        self._monotonic, self._wall, self._minute = monotonic, wall, minute_of_day

    def monotonic(self) -> float:
        return self._monotonic

    def wall(self) -> float:
        return self._wall

    def minute_of_day(self) -> int:
        return self._minute

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._wall += seconds


class Done:
    """A completion that resolved already (the twin's log commits at once)."""

    def __init__(self, result: Any = None, error: errors.HakvError | None = None) -> None:
        self.result, self.error = result, error

    def done(self) -> bool:
        return True

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result

    def wait(self, timeout: float) -> Any:
        return self.outcome()


class Member:
    """A member whose group's log is in memory: ``submit`` applies the command to the
    group's state machine at once while the member leads with quorum (or ``follows`` a
    leader with quorum); without quorum it fails with NoQuorumError, applying nothing."""

    def __init__(self, group: str, machine: StoreMachine, leader: bool, quorum: bool,
                 voter: bool, peers: list[str]) -> None:
        self.group = group
        self.machine = machine
        self.leader = leader
        self.quorum = quorum
        self.voter = voter
        self.peers = list(peers)
        self.commands: list[dict[str, Any]] = []  # every command applied, decoded
        self.changes: list[tuple[str, str]] = []  # membership changes proposed
        self._index = machine.applied_index()
        self._log_lock = threading.Lock()  # one writer at a time, as the raft thread is

    def submit(self, payload: bytes, on_done: Callable[[], None] | None = None) -> Done:
        if not self.quorum:
            done = Done(error=errors.NoQuorumError(f"group {self.group} has no quorum",
                                                   group=self.group))
        else:
            with self._log_lock:
                self._index += 1
                result = self.machine.apply(self._index, payload)
                self.machine.commit()
                self.commands.append(codec.decode(payload))
            done = Done(result)
        if on_done is not None:
            on_done()
        return done

    def read_barrier(self, on_done: Callable[[], None] | None = None) -> Done:
        done = Done() if self.quorum else Done(error=errors.NoQuorumError(
            f"group {self.group} has no quorum", group=self.group))
        if on_done is not None:
            on_done()
        return done

    def leads(self) -> bool:
        return self.leader

    def status(self) -> dict[str, Any]:
        return {"role": "leader" if self.leader else "follower", "quorum": self.quorum,
                "leader_address": None, "term": 1}

    def change_membership(self, action: str, address: str) -> Done:
        self.changes.append((action, address))
        return Done(True)

    def handing_over(self) -> bool:
        return False

    def ops(self, op: str) -> list[dict[str, Any]]:
        """The applied commands of one kind (``op``), in log order."""
        return [c for c in self.commands if c.get("op") == op]


class Groups:
    """The groups hosted on node ``me``, with in-memory logs (``Member``), state machines
    under ``data_dir``; also the raft thread's contact times (``heard``, by raft address).

    ``add`` hosts a group as the test sets it up; ``host_group``/``unhost_group`` are what
    the reconciler calls, recorded in ``hosted_log``."""

    def __init__(self, me: str, data_dir: str, request_timeout: float = 1.0) -> None:
        self.me = me
        self.data_dir = data_dir
        self.request_timeout = request_timeout
        self.members: dict[str, Member] = {}
        self.heard: dict[str, float] = {}
        self.hosted_log: list[tuple[str, str]] = []  # ("host"|"unhost"|"delete", group)
        self.handovers: list[tuple[str, str, float]] = []
        self.holds: list[str] = []
        self.wakes = 0

    def add(self, group: str, leader: bool = True, quorum: bool = True, voter: bool = True,
            peers: list[str] | None = None) -> Member:
        directory = os.path.join(self.data_dir, group)
        os.makedirs(directory, exist_ok=True)
        member = Member(group, StoreMachine(group, directory), leader, quorum, voter,
                        peers or [])
        self.members[group] = member
        return member

    def close(self) -> None:
        for member in self.members.values():
            member.machine.close()
        self.members.clear()

    # -- GroupHost

    def hosted(self) -> list[str]:
        return sorted(g for g in self.members if g != CLUSTER_GROUP)

    def member(self, group: str) -> Member | None:
        return self.members.get(group)

    def member_of(self, group: str) -> Member:
        member = self.members.get(group)
        if member is None:
            raise errors.UnknownGroupError(f"node {self.me} does not own group {group}")
        return member

    def store(self, group: str) -> GroupStore:
        return self.member_of(group).machine.store

    def barrier(self, group: str) -> None:
        self.member_of(group).read_barrier().wait(self.request_timeout)

    def hand_over_leadership(self, group: str, address: str, within: float) -> None:
        self.handovers.append((group, address, within))

    def wake(self) -> None:
        self.wakes += 1

    # -- MemberControl

    def host_group(self, group: str, peers: list[str], voter: bool) -> Member:
        self.hosted_log.append(("host", group))
        return self.add(group, leader=False, quorum=True, voter=voter, peers=peers)

    def unhost_group(self, group: str, delete_data: bool = False) -> None:
        self.hosted_log.append(("unhost", group))
        member = self.members.pop(group, None)
        if member is not None:
            member.machine.close()
        if delete_data:
            self.hosted_log.append(("delete", group))
            shutil.rmtree(os.path.join(self.data_dir, group), ignore_errors=True)

    def raft_member(self, group: str) -> Member | None:
        return self.members.get(group)

    def is_voter(self, group: str) -> bool:
        member = self.members.get(group)
        return member is not None and member.voter

    def membership(self, group: str) -> dict[str, Any]:
        member = self.member_of(group)
        return {"leader": member.leader, "settled": member.leader, "term": 1,
                "voters": sorted(member.peers)}

    def hold_elections(self, group: str) -> None:
        self.holds.append(group)

    # -- RaftContact

    def last_heard(self, raft_address: str) -> float | None:
        return self.heard.get(raft_address)


class Peers:
    """Other nodes' APIs: ``nodes`` maps an address to the node answering there (absent:
    nothing answers, PeerUnreachable); ``answers`` maps (address, op) to the (status,
    body) it answers with. Every call is recorded in ``posts`` and ``probes``."""

    def __init__(self) -> None:
        self.nodes: dict[str, str] = {}
        self.answers: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.posts: list[tuple[str, str, dict[str, Any]]] = []
        self.raw: list[bytes] = []  # the bodies posted, byte for byte
        self.on_behalf: list[str | None] = []  # whom each post was forwarded for
        self.probes: list[str] = []
        self.closed = 0

    def post(self, address: str, op: str, body: bytes,
             timeout: float | None = None, on_behalf: str | None = None,
             abort: Abort | None = None) -> tuple[int, bytes]:
        if abort is not None and abort.fired:
            raise PeerUnreachable(f"{address}: abandoned")
        self.posts.append((address, op, codec.parse_body(body) if body else {}))
        self.raw.append(body)
        self.on_behalf.append(on_behalf)
        if address not in self.nodes:
            raise PeerUnreachable(f"{address}: connection refused")
        status, answer = self.answers.get((address, op), (200, {}))
        return status, codec.encode(answer)

    def healthy(self, address: str, node: str, timeout: float) -> bool:
        self.probes.append(address)
        return self.nodes.get(address) == node

    def close(self) -> None:
        self.closed += 1


class Allocations:
    """The bridge of this node as the manager sees it: grants every allocation (or raises
    ``refuse``), and records each."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []
        self.refuse: errors.HakvError | None = None

    def allocate(self, group: str, load: int) -> dict[str, Any]:
        self.asked.append((group, load))
        if self.refuse is not None:
            raise self.refuse
        return {"group": group, "load": load}


class Apps:
    """A supervisor's local view of each group's app, as the test sets it."""

    def __init__(self) -> None:
        self.local: dict[str, dict[str, Any]] = {}

    def local_status(self, group: str) -> dict[str, Any] | None:
        return self.local.get(group)


class Later:
    """A completion that resolves when the test says so (``resolve``)."""

    def __init__(self) -> None:
        self.resolved = False

    def resolve(self) -> None:
        self.resolved = True

    def done(self) -> bool:
        return self.resolved

    def outcome(self) -> Any:
        if not self.resolved:
            raise errors.OutcomeUnknownError("not resolved yet")
        return None

    def wait(self, timeout: float) -> Any:
        return self.outcome()


class Service:
    """The requests node ``node`` serves for the groups in ``hosted``, as the test sets
    them: ``answers`` maps (op, group) to the answer (a dict, or a HakvError to raise);
    without one the answer is ``{"op": op, "group": group, "served_by": node}``.

    ``begin`` answers at once, or, while ``hold`` is set, returns a ``Pending`` that only
    ``release`` (run it in the loop's thread, as the raft thread resolves completions)
    resolves; a held request not released within ``timeout`` seconds times out with
    OutcomeUnknownError. Every call is recorded in ``calls`` as (method, op, group, body,
    the calling thread's name)."""

    def __init__(self, node: str = "a", hosted: tuple[str, ...] = ()) -> None:
        self.node = node
        self.hosted = set(hosted)
        self.answers: dict[tuple[str, str], dict[str, Any] | errors.HakvError] = {}
        self.calls: list[tuple[str, str, str, dict[str, Any], str]] = []
        self.hold = False
        self.timeout = 1.0
        self.held: list[tuple[Later, Callable[[], None] | None]] = []
        self._lock = threading.Lock()

    def _record(self, method: str, op: str, group: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((method, op, group, body, threading.current_thread().name))

    def _answer(self, op: str, group: str) -> dict[str, Any]:
        answer = self.answers.get((op, group))
        if isinstance(answer, errors.HakvError):
            raise answer
        if answer is None:
            return {"op": op, "group": group, "served_by": self.node}
        return dict(answer)

    def hosts(self, group: str) -> bool:
        return group in self.hosted

    def begin(self, op: str, group: str, body: dict[str, Any],
              on_done: Callable[[], None] | None = None) -> dict[str, Any] | Pending:
        self._record("begin", op, group, body)
        if not self.hold:
            return self._answer(op, group)
        later = Later()
        self.held.append((later, on_done))
        return Pending(later, lambda: self._answer(op, group),
                       lambda: errors.OutcomeUnknownError(
                           f"no commit within {self.timeout:.1f}s"),
                       time.monotonic() + self.timeout)

    def release(self) -> None:
        """Stop holding; resolve every held request, in the order they began."""
        self.hold = False
        held, self.held = self.held, []
        for later, on_done in held:
            later.resolve()
            if on_done is not None:
                on_done()

    def serve(self, op: str, group: str, body: dict[str, Any]) -> dict[str, Any]:
        self._record("serve", op, group, body)
        return self._answer(op, group)

    def health(self) -> dict[str, Any]:
        self._record("health", "health", "", {})
        return {"ok": True, "node": self.node}

    def status(self) -> dict[str, Any]:
        self._record("status", "status", "", {})
        return {"node": self.node, "groups": {g: {"role": "leader"} for g in self.hosted}}

    def methods(self) -> list[str]:
        """The methods called so far, in order."""
        with self._lock:
            return [c[0] for c in self.calls]
