"""Every private part of pysyncobj that hakv.raft reads, overrides or replaces, in one
place, with the version it was checked against. tests/test_pysyncobj_surface.py checks
that each one still exists on the installed pysyncobj, and that hakv.raft uses exactly
the name-mangled privates listed here: a version bump fails there, loudly, before
anything subtle breaks. No test names them (checked there too): tests go through
GroupMember's one-line accessors (hakv.raft.member, section "pysyncobj state").

Pure data: importing it imports no pysyncobj.
"""

from __future__ import annotations

#: pyproject.toml pins exactly this version.
CHECKED_VERSION = "0.3.17"

#: ``SyncObj`` instance state (``self.__name`` in its source) that GroupMember reads or sets.
#: Outside its hot paths GroupMember reads and sets these through the one-line accessors of
#: its "pysyncobj state" section, and so do the tests (``raftLastApplied`` only they set).
SYNCOBJ_STATE = (
    "commandsQueue", "lastResponseTime", "leaderCommitIndex", "newAppendEntriesTime",
    "noopIDx", "otherNodes", "pipeNotifier", "raftCommitIndex", "raftElectionDeadline",
    "raftLastApplied", "raftLeader", "raftLog", "raftMatchIndex", "raftNextIndex",
    "raftState", "readonlyNodes", "transferInProgress", "transport",
)

#: ``SyncObj`` private methods GroupMember calls. (The log's last index and term it reads
#: from the journal, ``GroupMember.last_log_index``/``last_log_term``; whether a node is
#: connected through the public ``isNodeConnected``.)
SYNCOBJ_CALLED = (
    "callErrCallback", "connectedToAnyone", "deleteEntriesFrom", "doChangeCluster",
    "generateRaftTimeout", "getEntries", "onLeaderChanged", "parseChangeClusterRequest",
    "setState",
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
    # TlsConnection (hakv.raft.tls): TLS between the socket and pysyncobj's buffers.
    ("pysyncobj.tcp_connection", "TcpConnection", "writeBuffer"),
    ("pysyncobj.tcp_connection", "TcpConnection", "readBuffer"),
    ("pysyncobj.tcp_connection", "TcpConnection", "trySendBuffer"),
    ("pysyncobj.tcp_connection", "TcpConnection", "processRead"),
    ("pysyncobj.tcp_connection", "TcpConnection", "processParseMessage"),
    ("pysyncobj.tcp_connection", "TcpConnection", "processConnection"),
    ("pysyncobj.tcp_connection", "TcpConnection", "recvBufferSize"),
    ("pysyncobj.tcp_connection", "TcpConnection", "fileno"),
    ("pysyncobj.tcp_connection", "TcpConnection", "poller"),
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
    # MuxTransport.addNode over TLS rebuilds pysyncobj's outgoing connection:
    "_onOutgoingConnected", "_onMessageReceived", "_onDisconnected", "_syncObj",
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
