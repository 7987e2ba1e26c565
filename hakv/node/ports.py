"""The ports of the node's components: what each one needs from the rest of the process.

A component (bridge, manager and prober, supervisor, API server, reconciler) receives the
ports it uses as constructor arguments, never the ``Node``; ``hakv.node.process`` wires
them, and the node implements them (``Node`` is the group host and the service, the
``ClusterView`` of hakv.node.view the topology view, ``Peers`` of hakv.node.peer the peer
API, ``SystemClock`` below the clock). Each port has an in-memory twin for tests
(tests/twins.py), as hashicorp/raft ships one per interface.

Which component uses which port:

    bridge       GroupHost, TopologyView
    manager      GroupHost, TopologyView, Clock, PeerApi, Allocator, LocalApps
    prober       RaftContact, TopologyView, Clock, PeerApi
    supervisor   GroupHost, TopologyView, Clock
    lessor       GroupHost, Clock
    api          Service, TopologyView, PeerApi, Allocator
    reconciler   MemberControl, AdoptableView, Clock

The protocols name only what the components call; a member of a group is hakv.raft's
``GroupMember``, a store hakv.storage's ``GroupStore``, a completion hakv.raft's
``Completion``, all satisfying these structurally.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hakv.core import ha
from hakv.core.leases import LeaseRecord
from hakv.core.topology import GroupSpec, Topology
from hakv.errors import HakvError

__all__ = ["AdoptableView", "Allocator", "Clock", "Completion", "GroupHost", "LocalApps",
           "Member", "MemberControl", "PeerApi", "PeerUnreachable", "Pending", "RaftContact",
           "RaftMember", "Service", "Store", "SystemClock", "TopologyView"]


# =========================================================================== time


class Clock(Protocol):
    """Time as the components read it: a monotonic clock for intervals and deadlines, the
    wall clock for the times written into commands and records."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    def minute_of_day(self) -> int:
        """Local time of day in minutes (fallback windows, hakv.core.ha.in_window)."""
        ...


class SystemClock:
    """The process's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def minute_of_day(self) -> int:
        local = time.localtime()
        return local.tm_hour * 60 + local.tm_min


# =========================================================================== groups


class Completion(Protocol):
    """A submitted command's (or a read barrier's) outcome, resolved by the raft thread."""

    def done(self) -> bool: ...

    def outcome(self) -> Any:
        """The result once resolved, or raises its error."""
        ...

    def wait(self, timeout: float) -> Any:
        """The result; raises its error, or OutcomeUnknownError after ``timeout``."""
        ...


class Member(Protocol):
    """This node's member of one group's Raft ensemble."""

    def submit(self, payload: bytes,
               on_done: Callable[[], None] | None = None) -> Completion:
        """Propose a command (hakv.core.codec); the completion resolves once it applied here."""
        ...

    def read_barrier(self, on_done: Callable[[], None] | None = None) -> Completion:
        """Resolves once everything committed before the call is applied here."""
        ...

    def leads(self) -> bool: ...

    def status(self) -> dict[str, Any]:
        """role, quorum, leader_address, term, ... (hakv.raft)."""
        ...


class RaftMember(Member, Protocol):
    """A member as runtime membership sees it (the reconciler)."""

    def change_membership(self, action: str, address: str) -> Completion: ...

    def handing_over(self) -> bool: ...


class Store(Protocol):
    """The reads the components make of a group's replicated store (hakv.storage)."""

    def placement(self) -> ha.Placement: ...

    def node_statuses(self) -> dict[str, dict[str, Any]]: ...

    def allocation(self, node: str) -> int: ...

    def events(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]: ...

    def outbox(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]: ...

    def outbox_head(self) -> int: ...

    def inbox(self, limit: int = 10000) -> list[dict[str, Any]]: ...

    def high_water_mark(self, source: str, about: str) -> int: ...

    def get_at(self, key: str) -> tuple[dict[str, Any] | None, int]: ...

    def range_at(self, prefix: str, limit: int) -> tuple[list[dict[str, Any]], bool, int]: ...

    def revision(self) -> int: ...

    def applied_index(self) -> int: ...

    def lease_marks(self) -> tuple[int, int, int]:
        """(lessor term, log index of the last lease change, live leases)."""
        ...

    def lease_table(self) -> dict[int, LeaseRecord]: ...

    def lease(self, lease_id: int, keys: bool = False
              ) -> tuple[LeaseRecord | None, list[str]]: ...


class GroupHost(Protocol):
    """The groups hosted on this node: their members and stores, and the raft thread that
    drives them. ``member``/``member_of``/``store`` include the cluster ensemble."""

    request_timeout: float
    """Seconds a request waits for its commit or its read barrier."""

    def hosted(self) -> list[str]:
        """The resource groups with a member here, sorted (not the cluster ensemble)."""
        ...

    def member(self, group: str) -> Member | None: ...

    def member_of(self, group: str) -> Member:
        """The local member; UnknownGroupError when this node hosts none."""
        ...

    def store(self, group: str) -> Store:
        """The local store; UnknownGroupError when this node hosts none."""
        ...

    def barrier(self, group: str) -> None:
        """Return once everything committed in ``group`` before the call is applied here
        (a linearizable read may follow); NoQuorumError after ``request_timeout``."""
        ...

    def hand_over_leadership(self, group: str, address: str, within: float) -> None:
        """Ask this node's leader of ``group`` to hand leadership to the member at raft
        ``address`` (in the raft thread; nothing if it does not lead)."""
        ...

    def wake(self) -> None:
        """Make the raft thread look at its queues now."""
        ...


class MemberControl(GroupHost, Protocol):
    """Starting and stopping members at runtime (the reconciler)."""

    def host_group(self, group: str, peers: list[str], voter: bool) -> RaftMember:
        """Start a member of ``group``: a voter, or read-only (a new owner catching up)."""
        ...

    def unhost_group(self, group: str, delete_data: bool = False) -> None:
        """Stop ``group``'s member and close its store (and delete its data)."""
        ...

    def raft_member(self, group: str) -> RaftMember | None: ...

    def is_voter(self, group: str) -> bool:
        """Whether the local member votes (False for a read-only one)."""
        ...

    def membership(self, group: str) -> dict[str, Any]:
        """The member's view of the group's Raft configuration (hakv.raft, raft thread)."""
        ...

    def hold_elections(self, group: str) -> None:
        """Start no election before a leader has contacted the member (raft thread)."""
        ...


class RaftContact(Protocol):
    """When raft messages from a peer last reached this node: its sign of life."""

    def last_heard(self, raft_address: str) -> float | None:
        """A ``monotonic`` time, or None if never."""
        ...


# =========================================================================== cluster


class TopologyView(Protocol):
    """The cluster as this node sees it now, and the HA specs of its groups."""

    @property
    def topology(self) -> Topology:
        """Nodes and groups: the file plus the runtime changes of the cluster records."""
        ...

    def group_spec(self, group: str) -> GroupSpec | None:
        """Owners from the current view; app and fallback from the topology file."""
        ...

    def tuning(self) -> ha.HaTuning: ...


class AdoptableView(TopologyView, Protocol):
    def adopt(self, topology: Topology) -> None:
        """Make ``topology`` (the cluster records' nodes and groups) the current view."""
        ...


# =========================================================================== siblings


class Allocator(Protocol):
    """The bridge on this node: it alone decides the load groups place on this node."""

    def allocate(self, group: str, load: int) -> dict[str, Any]:
        """Set the load ``group`` places here; ConflictError when capacity is short."""
        ...


class LocalApps(Protocol):
    """The app supervisor of this node."""

    def local_status(self, group: str) -> dict[str, Any] | None:
        """What the supervisor does for ``group``'s app here (None: nothing)."""
        ...


@dataclass(frozen=True)
class Pending:
    """A request started by ``Service.begin``: ``finish()`` gives the answer (or raises its
    error) once ``completion`` resolved; ``timed_out()`` is the error to answer with if it
    has not by ``deadline`` (a ``time.monotonic`` time)."""

    completion: Completion
    finish: Callable[[], dict[str, Any]]
    timed_out: Callable[[], HakvError]
    deadline: float


class Service(Protocol):
    """The requests the client API serves for the groups hosted here (hakv.node.process)."""

    def hosts(self, group: str) -> bool: ...

    def begin(self, op: str, group: str, body: dict[str, Any],
              on_done: Callable[[], None] | None = None) -> dict[str, Any] | Pending:
        """Start a get, range, put, delete or txn without blocking: the answer, or a
        ``Pending`` whose completion (``on_done`` runs in the raft thread when it
        resolves) leads to the answer."""
        ...

    def serve(self, op: str, group: str, body: dict[str, Any]) -> dict[str, Any]:
        """Serve a request, blocking until its answer (worker threads)."""
        ...

    def health(self) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...


# =========================================================================== peers


class PeerUnreachable(Exception):
    """Another node's API did not answer: no connection, the connection broke or timed out,
    or the answer was not HTTP the API speaks. The request may or may not have arrived."""


class Abort:
    """Lets another thread break off a peer request in flight (a forwarded long-poll
    watch whose client hung up): ``fire()`` shuts the request's connection down, so the
    blocked ``post`` raises PeerUnreachable now instead of at its timeout, and a ``post``
    not started yet raises at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.fired = False

    def attach(self, sock: socket.socket | None) -> None:
        """The connection the request is about to wait on (the peer client calls it)."""
        with self._lock:
            self._sock = sock
            if self.fired:
                _shut(sock)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            _shut(self._sock)


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:  # the plain socket's shutdown, also under TLS: the reader gets EOF or an error
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class PeerApi(Protocol):
    """Other nodes' client APIs (hakv.node.peer)."""

    def post(self, address: str, op: str, body: bytes,
             timeout: float | None = None, on_behalf: str | None = None,
             abort: Abort | None = None) -> tuple[int, bytes]:
        """POST ``body`` to ``/v1/<op>`` at ``address``: (HTTP status, raw answer);
        raises PeerUnreachable. ``on_behalf``: the caller this node forwards for
        (``"user/<name>"``), held to that caller's access rights there. ``abort``: lets
        another thread break the request off (then PeerUnreachable)."""
        ...

    def healthy(self, address: str, node: str, timeout: float) -> bool:
        """Whether ``address`` answers ``/v1/health`` as node ``node``."""
        ...

    def close(self) -> None:
        """Close the calling thread's connections."""
        ...
