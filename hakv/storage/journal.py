"""Checks of a group's Raft journal files before pysyncobj loads them.

A group's directory holds pysyncobj's journal (``raft.journal``) and its meta file
(``raft.journal.meta``: current term, vote, commit index). pysyncobj reads both without a
question: a truncated or bit-flipped journal stops the node with ``struct.error: unpack
requires a buffer of 4 bytes``; a corrupt meta file is silently taken as empty — the node
forgets its term and its vote, and may vote twice in one term (two leaders); and the meta
file and every command in the log are pickles (pysyncobj unpickles a command as it applies
it), so whoever can write them could run code in the node. ``check_group_journal`` runs
first and turns each of these into a ``DataDirError`` that says which file, what is
wrong and what to do; a file that passes loads in pysyncobj without an exception
(tests/test_fuzz_datadir.py holds it to that, with hypothesis-mutated files).

Journal layout (pysyncobj 0.3.17, ``pysyncobj.journal.FileJournal``)::

    0   name     24 bytes   b"PYSYNCOBJ", NUL-padded
    24  version   8 bytes   pysyncobj's version, NUL-padded
    32  format    u32 LE    1
    36  end       u32 LE    offset just past the last record (the records end here)
    40  records: size u32 | index u64 | term u64 | command (size - 16 bytes) | size u32

A command is a type byte (0 regular, 1 no-op, 2 membership, 3 version) and, but for a
no-op, a protocol-2 pickle: of the call ``(funcID, (payload,))`` for a regular one. Each is
checked opcode by opcode; the only globals allowed are ``_codecs.encode`` (how protocol 2
rebuilds bytes) and ``pysyncobj.node.TCPNode`` (membership), both harmless to call.

The file is grown in steps (an mmap), so bytes past ``end`` are unused. The meta file is a
pickle of ``{"currentTerm": int, "votedForNodeId": str | None, "raftCommitIndex": int}``
(any subset); it is decoded by an unpickler that knows no class at all, after every opcode
was checked to be one such a dict needs.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from hakv.errors import DataDirError
from hakv.storage.pickles import pickle_problem

__all__ = ["JournalSummary", "check_group_journal", "read_journal_meta"]

_NAME = b"PYSYNCOBJ"
_NAME_SIZE, _VERSION_SIZE = 24, 8
_FORMAT_OFFSET = _NAME_SIZE + _VERSION_SIZE
_END_OFFSET = _FORMAT_OFFSET + 4
_FIRST_RECORD = _END_OFFSET + 4
_FORMAT = 1
_MAX_META = 64 * 1024
_META_KEYS: dict[str, type | tuple[type, ...]] = {
    "currentTerm": int, "raftCommitIndex": int, "votedForNodeId": (str, type(None))}
#: What a pickled dict of ints, strings and None needs; no opcode that names or calls a
#: global, builds an object or reaches outside the pickle.
_META_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "NONE", "NEWTRUE", "NEWFALSE",
    "EMPTY_DICT", "SETITEM", "SETITEMS", "DICT",
    "BININT", "BININT1", "BININT2", "LONG1", "INT", "LONG",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
    "MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT", "BINGET", "LONG_BINGET", "GET",
})


@dataclass(frozen=True)
class JournalSummary:
    """What the check found: records, their index range and last term; the meta."""

    records: int
    first_index: int | None
    last_index: int | None
    last_term: int
    meta: dict[str, Any]


def _fix(path: str, group: str) -> str:
    directory = os.path.dirname(path)
    return (f"restore {directory} from a backup of this node, or move it away (keep it for "
            f"inspection) and start the node: it rejoins group {group} with an empty log "
            "and catches up from the other owners — safe only while they hold a quorum "
            "without this node (it forgets the votes it cast)")


def read_journal_meta(path: str, group: str = "?") -> dict[str, Any]:
    """The meta file's dict (empty if the file does not exist), decoded without loading
    any class; DataDirError if it is anything but such a dict."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_META + 1)
    except OSError as exc:
        raise DataDirError(f"{path} (the raft term and vote of group {group}) cannot be "
                           f"read: {exc.strerror or exc}") from None
    where = f"{path} (the raft term and vote of group {group})"
    if len(data) > _MAX_META:
        raise DataDirError(f"{where} is larger than {_MAX_META} bytes: not a meta file; "
                           + _fix(path, group))
    try:
        problem = pickle_problem(data, _META_OPCODES)
        if problem is not None:
            raise ValueError(f"{problem}, which the meta file never holds (refused without "
                             "loading it)")
        meta = _NoClassUnpickler(io.BytesIO(data)).load()
    except (ValueError, EOFError, pickle.UnpicklingError, IndexError, KeyError,
            struct.error, TypeError, RecursionError, MemoryError) as exc:
        raise DataDirError(f"{where} is corrupt ({exc}); " + _fix(path, group)) from None
    if not isinstance(meta, dict):
        raise DataDirError(f"{where} holds a {type(meta).__name__}, not the meta dict; "
                           + _fix(path, group))
    for key, value in meta.items():
        want = _META_KEYS.get(key) if isinstance(key, str) else None
        if want is None:
            raise DataDirError(f"{where} has an unknown entry {key!r}; " + _fix(path, group))
        if not isinstance(value, want) or isinstance(value, bool) \
                or (isinstance(value, int) and value < 0):
            raise DataDirError(f"{where}: {key} = {value!r} is not a valid value; "
                               + _fix(path, group))
    return meta


#: What pysyncobj's log commands pickle (protocol 2): a call ``(funcID, (payload,))`` whose
#: bytes are rebuilt by ``_codecs.encode``, membership changes holding a TCPNode, versions.
_COMMAND_OPCODES = _META_OPCODES | frozenset({
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "APPEND", "APPENDS",
    "LIST", "EMPTY_SET", "ADDITEMS", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "BINSTRING", "SHORT_BINSTRING", "BINFLOAT", "GLOBAL", "REDUCE", "NEWOBJ", "BUILD"})
#: The only globals a command names: both harmless to call.
_COMMAND_GLOBALS = frozenset({"_codecs encode", "pysyncobj.node TCPNode"})
_COMMAND_TYPES = (0, 1, 2, 3)  # pysyncobj's REGULAR, NO_OP, MEMBERSHIP, VERSION


def _command_problem(command: bytes) -> str | None:
    """Why a log command is not one pysyncobj writes (None: it is): its type byte, then
    (but for a no-op) a pickle of only the opcodes and globals above, nothing after it."""
    if not command or command[0] not in _COMMAND_TYPES:
        return f"command type {command[:1].hex() or 'missing'}"
    if command[0] == 1:
        return None if len(command) == 1 else "a no-op with data"
    return pickle_problem(command[1:], _COMMAND_OPCODES, _COMMAND_GLOBALS)


class _NoClassUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the meta file names {module}.{name}: refused")


def check_group_journal(directory: str, group: str = "?") -> JournalSummary:
    """Check ``directory``/raft.journal and its meta file (absent: a new member, fine);
    DataDirError naming the file, the offset and what to do when either is damaged."""
    path = os.path.join(directory, "raft.journal")
    meta = read_journal_meta(path + ".meta", group)
    if not os.path.exists(path):
        return JournalSummary(0, None, None, 0, meta)
    where = f"{path} (the raft log of group {group})"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DataDirError(f"{where} cannot be read: {exc.strerror or exc}") from None

    def bad(what: str) -> DataDirError:
        return DataDirError(f"{where} is damaged: {what}; " + _fix(path, group))

    if len(data) < _FIRST_RECORD:
        raise bad(f"{len(data)} bytes, shorter than its {_FIRST_RECORD}-byte header "
                  "(truncated)")
    if data[:_NAME_SIZE].rstrip(b"\0") != _NAME:
        raise bad("it does not start with pysyncobj's header (not a raft journal)")
    fmt, end = struct.unpack_from("<II", data, _FORMAT_OFFSET)
    if fmt != _FORMAT:
        raise bad(f"journal format {fmt}, this hakv reads {_FORMAT}")
    if not _FIRST_RECORD <= end <= len(data):
        raise bad(f"its header says the records end at byte {end}, but the file has "
                  f"{len(data)} bytes (truncated or overwritten)")
    offset, records, first, last, last_term = _FIRST_RECORD, 0, None, None, 0
    while offset < end:
        if offset + 4 > end:
            raise bad(f"a record at byte {offset} is cut off at the end of the log")
        (size,) = struct.unpack_from("<I", data, offset)
        if size < 16 or offset + size + 8 > end:
            raise bad(f"the record at byte {offset} claims {size} bytes, beyond the end of "
                      f"the log at byte {end}" if size >= 16 else
                      f"the record at byte {offset} claims {size} bytes, fewer than its "
                      "16-byte index and term")
        (trailer,) = struct.unpack_from("<I", data, offset + 4 + size)
        if trailer != size:
            raise bad(f"the record at byte {offset} starts with size {size} and ends with "
                      f"{trailer}")
        index, term = struct.unpack_from("<QQ", data, offset + 4)
        problem = _command_problem(data[offset + 20: offset + 4 + size])
        if problem is not None:  # pysyncobj unpickles commands as it applies them
            raise bad(f"the record at byte {offset} (index {index}) holds {problem}, which "
                      "no command pysyncobj writes does (refused without loading it)")
        if last is not None and index != last + 1:
            raise bad(f"the record at byte {offset} has index {index} after {last}")
        if term < last_term:
            raise bad(f"the record at byte {offset} has term {term} after term {last_term}")
        first = index if first is None else first
        last, last_term = index, term
        records += 1
        offset += size + 8
    if last_term > meta.get("currentTerm", 0):  # a member's term is never below its log's
        raise DataDirError(
            f"{path}.meta (the raft term and vote of group {group}) "
            + ("is missing" if not meta else f"says term {meta.get('currentTerm', 0)}")
            + f", but the log holds entries of term {last_term}: the term and vote were "
            "lost; " + _fix(path, group))
    return JournalSummary(records, first, last, last_term, meta)
