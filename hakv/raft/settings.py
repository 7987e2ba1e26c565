"""Timing of the Raft layer: ``RaftSettings`` (one member's timeouts) and the fixed
constants of PreVote, quiescence, node heartbeats and the read-only followers' lag.

The one place these numbers are written down: the member, the host, the pure trackers
(hakv.raft.readindex, prevote, quiesce, handover), the deterministic harness
(tests/raft_harness.py) and the simulator (hakv.sim) all read them here. Importing this
module does not import pysyncobj (``to_conf`` does, when called), so the trackers and
the harness stay free of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hakv.core.codec import MAX_COMMAND_BYTES

# PreVote (hakv.raft.prevote): a member refuses while it heard from a live leader within
# PRE_VOTE_LEASE election timeouts (minimum): short of the timeout itself, so that a dead
# leader's followers, whose last contact differs by a few ms, all grant.
PRE_VOTE_LEASE = 0.75
# Quiescence (hakv.raft.quiesce), in heartbeat periods: a leader stops heartbeating a group
# that has been idle, with every follower caught up, for QUIESCE_AFTER periods; a follower
# calls its leader quiet after FOLLOWER_QUIET periods without AppendEntries. Node
# heartbeats go every NODE_HEARTBEAT periods; a peer heard from within CONTACT_FRESH node
# heartbeats counts as in contact; a node heartbeat moves a quiet follower's election
# deadline a fresh Raft timeout plus QUIET_SLACK node heartbeats ahead (so one late node
# heartbeat is no election: a quiet group's leader failure is detected up to that much
# later).
QUIESCE_AFTER = 3.0
FOLLOWER_QUIET = 2.5
NODE_HEARTBEAT = 2.0
CONTACT_FRESH = 3.0
QUIET_SLACK = 2.0
STEP_ASIDE = 0.0004  # seconds (RaftHost step_aside; 0 = off)
QUIET_TICK = 0.5  # seconds between housekeeping ticks of a quiet member (on a shared grid)
MIN_POLL = 0.001  # seconds: the shortest sleep of an idle raft loop (see RaftHost._pass)
#: Seconds read-only followers wait for what the voters got: entries proposed meanwhile go
#: to them together (on one machine, each message to N-3 read-only followers wakes N-3
#: processes; back-to-back cluster writes then paid that herd once per write).
READONLY_LAG = 0.02
READONLY_ROUNDS = 4  # node-heartbeat rounds between two to a peer met only read-only
#: Seconds a connection may read nothing before pysyncobj drops it: 3 node heartbeats to a
#: read-only peer (READONLY_ROUNDS x 0.2 s), so a late one never drops a live connection
#: (which wakes the quiet ensemble and makes more work on a busy node).
CONNECTION_SILENCE = 2.5
#: pysyncobj's appendEntriesBatchSizeBytes: the bytes of entries one AppendEntries carries.
#: An entry whose pickled command reaches it is sent by pysyncobj's chunked "transmission",
#: which is broken (0.3.17 ends the transfer by the command's length, not the pickle's, so
#: a follower unpickles a cut-off entry and its raft thread dies: a 47 KB txn of non-ASCII
#: values stopped a group). hakv never lets it happen: the check is on the pickled call,
#: and protocol-2 pickling at most doubles a command (every byte >= 0x80 takes two), so a
#: command of MAX_COMMAND_BYTES stays far below this (tests/test_large_entries.py).
APPEND_ENTRIES_BATCH_BYTES = 4 * MAX_COMMAND_BYTES + 64 * 1024


@dataclass(frozen=True)
class RaftSettings:
    """Timing of one member. Defaults step a partitioned leader down within ~1 s."""

    election_timeout_min: float = 0.4
    election_timeout_max: float = 1.0
    leader_fallback_timeout: float = 1.0
    connection_retry: float = 0.5
    heartbeat_period: float = 0.1
    log_compaction_entries: int = 20000
    log_compaction_seconds: float = 600.0
    unsafe_stock_replication: bool = False  # tests only: re-enables pysyncobj's data loss
    # Cluster secret: authenticates raft traffic, does not encrypt it (never printed).
    secret: str | None = field(default=None, repr=False)

    def to_conf(self, journal: str, snapshot: str, serializer: Callable[..., Any],
                deserializer: Callable[..., Any], bind_address: str) -> Any:
        """pysyncobj's ``SyncObjConf`` for these settings (builds it, opens nothing)."""
        from pysyncobj import SyncObjConf  # here, so that importing settings loads no pysyncobj

        return SyncObjConf(
            autoTick=False,
            appendEntriesUseBatch=False,
            appendEntriesBatchSizeBytes=APPEND_ENTRIES_BATCH_BYTES,
            commandsWaitLeader=False,
            dynamicMembershipChange=True,
            raftMinTimeout=self.election_timeout_min,
            raftMaxTimeout=self.election_timeout_max,
            appendEntriesPeriod=self.heartbeat_period,
            leaderFallbackTimeout=self.leader_fallback_timeout,
            connectionRetryTime=self.connection_retry,
            connectionTimeout=max(CONNECTION_SILENCE, self.election_timeout_max),
            journalFile=journal,
            fullDumpFile=snapshot,
            serializer=serializer,
            deserializer=deserializer,
            logCompactionMinEntries=self.log_compaction_entries,
            logCompactionMinTime=self.log_compaction_seconds,
            bindAddress=bind_address or None,
            pollerType="poll",
            password=self.secret,
        )
