"""Quiescence: an idle group's leader stops heartbeating, and one node heartbeat per pair
of nodes keeps the group alive instead, however many groups the two share. Pure: no
socket, no clock read, no pysyncobj; ``now`` is an argument.

Leader side (``Quiescence``): quiet once the group has been idle, with every follower
caught up and in contact (``followers_caught_up``), for ``QUIESCE_AFTER`` heartbeat
periods; awake at once on any work. Follower side: a leader is *quiet* after
``FOLLOWER_QUIET`` heartbeat periods without AppendEntries (``hears_quiet_leader``), and a
node heartbeat from it moves the follower's election deadline (``quiet_election_deadline``).
Elections and step-downs only serve liveness, so a wrong guess here can delay a failover
but never lose data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from hakv.raft.settings import (
    CONTACT_FRESH,
    FOLLOWER_QUIET,
    NODE_HEARTBEAT,
    QUIESCE_AFTER,
    QUIET_SLACK,
    QUIET_TICK,
)


def tick_after(now: float, period: float) -> float:
    """The next housekeeping instant: on a grid shared by all members of the node, so quiet
    groups are ticked together in one wake-up rather than each in its own."""
    return (math.floor(now / period) + 1) * period


def node_heartbeat_period(heartbeat_period: float) -> float:
    """Seconds between two rounds of node heartbeats."""
    return NODE_HEARTBEAT * heartbeat_period


def followers_caught_up(now: float, *, last_index: int, commit_index: int, applied: int,
                        voters: Iterable[tuple[int, float]],
                        readonly: Iterable[tuple[int, bool]],
                        heartbeat_period: float) -> bool:
    """Whether a leader's log is settled: everything committed and applied here, every
    voter (``(match index, last heard)``) holding it and heard from within
    ``CONTACT_FRESH`` node heartbeats, every read-only follower (``(match index, its node's
    address known)``) holding it and reachable by node heartbeats (they neither vote nor
    answer node heartbeats)."""
    if commit_index != last_index or applied != last_index:
        return False
    fresh = now - CONTACT_FRESH * node_heartbeat_period(heartbeat_period)
    return (all(match >= last_index and heard > fresh for match, heard in voters)
            and all(match >= last_index and known for match, known in readonly))


def hears_quiet_leader(now: float, last_append: float, heartbeat_period: float) -> bool:
    """Follower side: whether its leader looks quiesced (no AppendEntries for
    ``FOLLOWER_QUIET`` heartbeat periods), so node heartbeats tell it we still follow."""
    return now - last_append > FOLLOWER_QUIET * heartbeat_period


def quiet_election_deadline(now: float, raft_timeout: float, heartbeat_period: float) -> float:
    """A follower's election deadline after a node heartbeat from its quiet leader: a
    fresh Raft timeout plus ``QUIET_SLACK`` node heartbeats (one late node heartbeat is
    no election)."""
    return now + raft_timeout + QUIET_SLACK * node_heartbeat_period(heartbeat_period)


def quiet_leader_next_tick(now: float, oldest_response: float,
                           leader_fallback_timeout: float) -> float:
    """When to tick a quiesced leader: on the shared ``QUIET_TICK`` grid, or when it would
    step down for want of answers (its oldest follower contact plus the fallback)."""
    fallback = max(now + 0.001, oldest_response + leader_fallback_timeout)
    return min(tick_after(now, QUIET_TICK), fallback)


class Quiescence:
    """A leader's quiet state. ``update`` each tick; ``reset`` when a peer (re)connects or
    goes away (heartbeat at once: a restarted follower learns its leader from
    AppendEntries, not from node heartbeats)."""

    def __init__(self) -> None:
        self.quiesced = False
        self._since: float | None = None  # idle since (None: busy)

    def update(self, now: float, idle: bool, heartbeat_period: float) -> float | None:
        """Take this tick's idleness; the new time of the next AppendEntries round to set
        (quiet: past the next housekeeping tick; woken: at once), or None to leave it."""
        if idle:
            if self._since is None:
                self._since = now
            quiet = now - self._since >= QUIESCE_AFTER * heartbeat_period
        else:
            quiet = False
            self._since = None
        was, self.quiesced = self.quiesced, quiet
        if quiet:
            return now + QUIET_TICK + 1.0
        if was:
            return 0.0  # heartbeat again at once
        return None

    def reset(self) -> None:
        self._since = None
