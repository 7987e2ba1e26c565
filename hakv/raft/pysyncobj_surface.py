"""Every private part of pysyncobj that hakv.raft reads, overrides or replaces, in one
place, with the version it was checked against. tests/test_pysyncobj_surface.py checks
that each one still exists on the installed pysyncobj, and that hakv.raft uses no
name-mangled private missing from this list: a version bump fails there, loudly, before
anything subtle breaks.

Pure data: importing it imports no pysyncobj.
"""

from __future__ import annotations

#: pyproject.toml pins exactly this version.
CHECKED_VERSION = "0.3.17"

#: ``SyncObj`` instance state (``self.__name`` in its source) that GroupMember reads or sets.
SYNCOBJ_STATE = (
    "commandsQueue", "connectedNodes", "lastResponseTime", "leaderCommitIndex",
    "newAppendEntriesTime", "noopIDx", "otherNodes", "pipeNotifier", "raftCommitIndex",
    "raftElectionDeadline", "raftLeader", "raftLog", "raftMatchIndex", "raftNextIndex",
    "raftState", "readonlyNodes", "transferInProgress", "transport",
)

#: ``SyncObj`` private methods GroupMember calls.
SYNCOBJ_CALLED = (
    "callErrCallback", "connectedToAnyone", "deleteEntriesFrom", "doChangeCluster",
    "generateRaftTimeout", "getCurrentLogIndex", "getCurrentLogTerm", "getEntries",
    "onLeaderChanged", "parseChangeClusterRequest", "setState",
)

#: ``SyncObj`` private methods GroupMember overrides (and mostly calls back).
SYNCOBJ_OVERRIDDEN = (
    "onMessageReceived", "onNodeConnected", "onNodeDisconnected",
    "onReadonlyNodeConnected", "onReadonlyNodeDisconnected", "sendAppendEntries",
    "sendNextNodeIdx", "setCurrentTerm",
)

#: Other classes' name-mangled state: (module, class, attribute without the prefix).
OTHER_PRIVATE = (
    ("pysyncobj.tcp_connection", "TcpConnection", "socket"),  # TCP_NODELAY on accept
    ("pysyncobj.tcp_connection", "TcpConnection", "lastReadTime"),  # node heartbeats
    ("pysyncobj.journal", "FileJournal", "journalFile"),  # fdatasync of the journal
    ("pysyncobj.journal", "FileJournal", "metaStorer"),  # fsync of term and vote
    ("pysyncobj.journal", "ResizableFile", "f"),
    ("pysyncobj.fast_queue", "FastQueue", "queue"),  # proposals waiting
    ("pysyncobj.pipe_notifier", "PipeNotifier", "pipeR"),  # unsubscribed on removal
)

#: ``TCPTransport`` internals (single underscore) MuxTransport and NodeListener use.
TRANSPORT_INTERNAL = (
    "_connections", "_onNewIncomingConnection", "_onIncomingMessageReceived",
    "_createServer", "_maybeBind", "_sendSelfAddress",
)

#: Module attributes ``hakv.raft.wire.install`` replaces: (module, attribute).
MODULE_PATCHES = (
    ("pysyncobj.syncobj", "getEncryptor"),
    ("pysyncobj.tcp_connection", "zlib"),
)


def mangled() -> set[str]:
    """Every name-mangled private listed here, as written in hakv.raft's source."""
    names = {f"_SyncObj__{n}" for n in SYNCOBJ_STATE + SYNCOBJ_CALLED + SYNCOBJ_OVERRIDDEN}
    return names | {f"_{cls}__{attr}" for _, cls, attr in OTHER_PRIVATE}
