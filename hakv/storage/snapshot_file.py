"""The snapshot file of a group (``groups/<g>/snapshot``): what pysyncobj needs to resume
the Raft log, and a compact copy of the LMDB store. No pickle is written; none is loaded
beyond the restricted reading of an old (v1) file described below.

Format 2 (written since issue 15)::

    b"HAKVSNAP2" | u64 raft bytes | u64 store bytes | sha256(raft part) | sha256(store part)
                 | raft part (JSON, ASCII) | store part (compact LMDB copy, data.mdb)

All integers little-endian; the header is 89 bytes. A reader checks that the file is
exactly as long as its header says and that both checksums match before it returns
anything, so a truncated or bit-flipped file is an error, never a half-restored store.

The raft part is pysyncobj's raft tuple, which its ``serializer`` hook gets
(``SyncObj.__tryLogCompaction``: ``data[1:]`` of ``(None, last, previous, cluster)``):

- ``last`` and ``previous``: the journal entries at the last applied index and the one
  before it, each ``(command: bytes, index: int, term: int)``. pysyncobj compares them
  with its journal's first two entries, adds them to it, and takes ``last[1]`` as its
  last applied index (``SyncObj.__loadDumpFile``). The commands are pysyncobj's own
  (a one-byte type, then its pickle); they are never applied again (their index is at or
  below the applied index) and stay opaque bytes here.
- ``cluster``: the set of the writer's Raft members, ``otherNodes | {selfNode}``:
  pysyncobj ``TCPNode`` objects, identified by their ``host:port`` address, and ``None``
  for the writer itself when it is a read-only member (no address). pysyncobj drops its
  own node from the set and makes the rest its voters (``__updateClusterConfiguration``).

Encoded as::

    {"last": {"command": BASE64, "index": N, "term": N},
     "previous": {"command": BASE64, "index": N, "term": N},
     "members": ["host:port", ..., null]}

Decoding is strict: exactly these keys, no duplicate keys, integers in 0..2**64-1,
``previous`` directly before ``last`` (index + 1, term not above), valid ``host:port``
addresses, no member twice, a raft part of at most ``MAX_RAFT_BYTES``. A member address
becomes a node object through the caller's ``make_node`` (hakv.storage does not import
pysyncobj: hakv.storage.machine passes pysyncobj's ``TCPNode``).

Format 1 (hakv before issue 15; still read, never written)::

    b"HAKVSNAP1" | u64 len | pickle(raft tuple) | u64 len | compact LMDB copy (data.mdb)

A v1 raft part is read without ``pickle.loads``: its opcodes are checked first against
exactly those a pickled raft tuple uses (no REDUCE, INST, OBJ, EXT, PERSID, GLOBAL:
nothing can be called but a class ``find_class`` returns), then a restricted unpickler
loads it. Its ``find_class`` knows one name, ``pysyncobj.node.TCPNode``, and maps it to
an inert stand-in (the pickled state is kept as data: the ``_id`` address); every other
global is refused. The result goes through the same checks as a v2 raft part. v1 has no
checksums: a damaged v1 store part is found only by LMDB when the store is opened.

Every problem is a :class:`~hakv.errors.DataDirError` that names the file, says what is
wrong and what to do: move the file away and restart the node; it fetches a fresh
snapshot from the group's leader if it needs one. (pysyncobj catches the error of its
``deserializer``: it logs it, "failed to load full dump", and goes on without the
snapshot; a snapshot sent by the leader replaces the file.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import pickle
import re
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

from hakv import errors
from hakv.core.codec import strict_loads
from hakv.storage.pickles import pickle_problem

MAGIC_V1 = b"HAKVSNAP1"
MAGIC_V2 = b"HAKVSNAP2"
#: magic, raft part bytes, store part bytes, sha256 of the raft part, sha256 of the store part
HEADER = struct.Struct("<9sQQ32s32s")
_V1_LEN = struct.Struct("<Q")
#: The raft part holds two log entries (each a command of at most hakv.core.codec's
#: MAX_COMMAND_BYTES in pysyncobj's pickle, base64-encoded) and the member addresses:
#: far below this. A header claiming more is corrupt (and is not read into memory).
MAX_RAFT_BYTES = 16 << 20
_INDEX_LIMIT = 1 << 64  # pysyncobj's journal stores index and term as u64
_CHUNK = 1 << 20
_MAX_ADDRESS = 1024
_PORT = re.compile(r"[0-9]{1,5}")

Entry = tuple[bytes, int, int]
RaftData = tuple[Entry, Entry, set[Any]]


class _Malformed(ValueError):
    """A raft part that is not what a genuine raft tuple encodes to (message: why)."""


def _error(where: str, what: str) -> errors.DataDirError:
    return errors.DataDirError(
        f"{where} {what}; move it away and restart the node (it fetches a fresh snapshot "
        "from the group's leader if it needs one)")


def _corrupt(where: str, what: str) -> errors.DataDirError:
    return _error(where, f"is a corrupt hakv snapshot ({what})")


def _truncated(where: str, size: int, expected: int) -> errors.DataDirError:
    return _error(where, f"is a truncated hakv snapshot ({size} of {expected} bytes)")


# --------------------------------------------------------------------------- the raft part


def _checked_address(address: Any) -> str:
    if not isinstance(address, str):
        raise _Malformed(f"a member address is a {type(address).__name__}, not a string")
    host, sep, port = address.rpartition(":")
    if (not sep or not host or len(address) > _MAX_ADDRESS or not _PORT.fullmatch(port)
            or int(port) > 65535 or not host.isprintable()
            or any(c.isspace() for c in host)):
        raise _Malformed(f"member address {address[:80]!r} is not host:port")
    return address


def _checked_int(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value < _INDEX_LIMIT:
        raise _Malformed(f"{what} is not an integer in 0..2**64-1")
    return value


def _checked_entry(entry: Any, what: str) -> Entry:
    if type(entry) is not tuple or len(entry) != 3:
        raise _Malformed(f"{what} entry is not (command, index, term)")
    command, index, term = entry
    if type(command) is not bytes or not command:
        raise _Malformed(f"{what} entry's command is not non-empty bytes")
    return command, _checked_int(index, f"{what} index"), _checked_int(term, f"{what} term")


def _checked_parts(last: Any, previous: Any, members: list[Any]) -> tuple[Entry, Entry]:
    last = _checked_entry(last, "last")
    previous = _checked_entry(previous, "previous")
    if previous[1] + 1 != last[1] or previous[2] > last[2]:
        raise _Malformed(f"entries {previous[1]} (term {previous[2]}) and {last[1]} "
                         f"(term {last[2]}) do not follow each other")
    for member in members:
        if member is not None:
            _checked_address(member)
    if len(set(members)) != len(members):
        raise _Malformed("a member is listed twice")
    return last, previous


def _checked(last: Any, previous: Any, members: list[Any],
             make_node: Callable[[str], Any]) -> RaftData:
    """The raft tuple pysyncobj expects, from parts already decoded from either format."""
    last, previous = _checked_parts(last, previous, members)
    return last, previous, {None if m is None else make_node(m) for m in members}


def _member_address(member: Any) -> str | None:
    if member is None or isinstance(member, str):
        return member
    address = getattr(member, "id", None)  # a pysyncobj node: its id is its address
    if not isinstance(address, str):
        raise _Malformed(f"a cluster member is a {type(member).__name__}, not a node")
    return address


def encode_raft(raft_data: Any) -> bytes:
    """The raft part for pysyncobj's raft tuple ``(last, previous, cluster)`` (module
    docstring). Cluster members are node objects with a ``host:port`` ``id`` (pysyncobj's
    ``TCPNode``), addresses, or ``None``. Raises ``ValueError`` for anything else: a
    snapshot that could not be read back is not written."""
    try:
        last, previous, cluster = raft_data
        members = [_member_address(m) for m in cluster]
        last, previous = _checked_parts(last, previous, members)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a pysyncobj raft tuple: {exc}") from None
    members.sort(key=lambda m: (m is None, m or ""))

    def entry(e: Entry) -> dict[str, Any]:
        return {"command": base64.b64encode(e[0]).decode("ascii"), "index": e[1], "term": e[2]}

    body = {"last": entry(last), "previous": entry(previous), "members": members}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def _object(value: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        raise _Malformed(f"{what} is not an object with exactly {sorted(keys)}")
    return value


def _decoded_entry(value: Any, what: str) -> Any:
    obj = _object(value, {"command", "index", "term"}, what)
    if not isinstance(obj["command"], str):
        raise _Malformed(f"{what} command is not base64 text")
    try:
        command = base64.b64decode(obj["command"].encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _Malformed(f"{what} command is not base64") from None
    return command, obj["index"], obj["term"]


def decode_raft(data: bytes, where: str, make_node: Callable[[str], Any] = str) -> RaftData:
    """pysyncobj's raft tuple from a v2 raft part (strict: module docstring)."""
    try:
        body = strict_loads(data)
        body = _object(body, {"last", "previous", "members"}, "the raft part")
        members = body["members"]
        if not isinstance(members, list):
            raise _Malformed("members is not a list")
        return _checked(_decoded_entry(body["last"], "last"),
                        _decoded_entry(body["previous"], "previous"), members, make_node)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError too
        raise _corrupt(where, f"raft part: {exc}") from None


# --------------------------------------------------------------------------- v1 (pickle)

#: Every opcode pickle (protocol 4 or 5, Python >= 3.11) writes for a raft tuple: tuples,
#: bytes, ints, a set, str, None, and TCPNode objects (class by STACK_GLOBAL, created by
#: NEWOBJ without arguments, state dict by BUILD). Nothing here calls anything but the
#: class that ``find_class`` returns.
_V1_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "NONE",
    "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "TUPLE",
    "EMPTY_SET", "ADDITEMS", "EMPTY_DICT", "SETITEM", "SETITEMS",
    "BININT", "BININT1", "BININT2", "LONG1",
    "SHORT_BINBYTES", "BINBYTES", "BINBYTES8",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
    "MEMOIZE", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET",
    "STACK_GLOBAL", "NEWOBJ", "BUILD",
})
#: The one global a v1 raft tuple names.
_V1_NODE = ("pysyncobj.node", "TCPNode")


class _V1Node:
    """What a pickled ``pysyncobj.node.TCPNode`` loads as here: its pickled state, kept as
    data (``BUILD`` calls ``__setstate__``; nothing else runs)."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _V1Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, where: str) -> None:
        super().__init__(io.BytesIO(data))
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == _V1_NODE:
            return _V1Node
        raise _corrupt(self.where, f"its v1 raft part names the Python global "
                                   f"{module[:80]}.{name[:80]}, which a raft tuple never "
                                   "holds: refused without loading it")


def _v1_address(member: Any) -> str | None:
    if member is None:
        return None
    state = getattr(member, "state", None)
    if not isinstance(member, _V1Node) or not isinstance(state, dict):
        raise _Malformed(f"a cluster member is a {type(member).__name__}, not a TCPNode")
    address = state.get("_id")
    if state.get("_TCPNode__address", address) != address:
        raise _Malformed("a TCPNode's id and address differ")
    return _checked_address(address)


def decode_raft_v1(data: bytes, where: str, make_node: Callable[[str], Any] = str) -> RaftData:
    """pysyncobj's raft tuple from a v1 raft part, a pickle, without unpickling anything
    but what a raft tuple holds (module docstring)."""
    try:
        problem = pickle_problem(data, _V1_OPCODES)  # STACK_GLOBAL: find_class decides
        if problem is not None:
            raise _Malformed(f"{problem}, which a raft tuple never holds: refused without "
                             "loading it")
        raw = _V1Unpickler(data, where).load()
        if type(raw) is not tuple or len(raw) != 3:
            raise _Malformed("not a (last, previous, cluster) tuple")
        last, previous, cluster = raw
        if type(cluster) is not set:
            raise _Malformed("the cluster is not a set")
        members = [_v1_address(m) for m in cluster]
        return _checked(last, previous, members, make_node)
    except errors.DataDirError:
        raise
    except _Malformed as exc:
        raise _corrupt(where, f"v1 raft part: {exc}") from None
    except Exception as exc:  # a malformed pickle fails in many ways; none runs code
        raise _corrupt(where, f"v1 raft part: {type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------- the file


def write(out: BinaryIO, raft_data: Any, store: BinaryIO) -> None:
    """Write a v2 snapshot to ``out`` (seekable, at its start): the raft tuple, then the
    store copy read from ``store``. The header is rewritten last, with the sizes and
    checksums; the caller fsyncs (pysyncobj renames the file into place)."""
    raft = encode_raft(raft_data)
    start = out.tell()
    out.write(HEADER.pack(MAGIC_V2, 0, 0, bytes(32), bytes(32)))
    out.write(raft)
    digest, size = hashlib.sha256(), 0
    while chunk := store.read(_CHUNK):
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
    end = out.tell()
    out.seek(start)
    out.write(HEADER.pack(MAGIC_V2, len(raft), size, hashlib.sha256(raft).digest(),
                          digest.digest()))
    out.seek(end)


def _copy(f: BinaryIO, size: int, out: BinaryIO, where: str, expected: int) -> bytes:
    digest = hashlib.sha256()
    left = size
    while left:
        chunk = f.read(min(left, _CHUNK))
        if not chunk:
            raise _truncated(where, expected - left, expected)
        digest.update(chunk)
        out.write(chunk)
        left -= len(chunk)
    return digest.digest()


def read(f: BinaryIO, where: str, store_out: BinaryIO,
         make_node: Callable[[str], Any] = str) -> RaftData:
    """Read the snapshot ``f`` (``where``: its path, for messages): return pysyncobj's raft
    tuple and write the store copy to ``store_out``. v2 or v1; any problem is a
    ``DataDirError``, raised before the result is returned (``store_out`` may then hold
    part of the copy: the caller drops it)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    magic = f.read(len(MAGIC_V2))
    if magic == MAGIC_V2:
        return _read_v2(f, where, size, store_out, make_node)
    if magic == MAGIC_V1:
        return _read_v1(f, where, size, store_out, make_node)
    if size < len(MAGIC_V2) and MAGIC_V2.startswith(magic) and magic:
        raise _truncated(where, size, HEADER.size)
    raise _error(where, "is not a hakv snapshot")


def _read_v2(f: BinaryIO, where: str, size: int, store_out: BinaryIO,
             make_node: Callable[[str], Any]) -> RaftData:
    if size < HEADER.size:
        raise _truncated(where, size, HEADER.size)
    _, raft_len, store_len, raft_sum, store_sum = HEADER.unpack(
        MAGIC_V2 + f.read(HEADER.size - len(MAGIC_V2)))
    if raft_len > MAX_RAFT_BYTES:
        raise _corrupt(where, f"its header gives the raft part {raft_len} bytes, "
                              f"more than {MAX_RAFT_BYTES}")
    expected = HEADER.size + raft_len + store_len
    if size < expected:
        raise _truncated(where, size, expected)
    if size > expected:
        raise _corrupt(where, f"{size - expected} bytes more than its header says")
    raft = f.read(raft_len)
    if len(raft) != raft_len:
        raise _truncated(where, HEADER.size + len(raft), expected)
    if hashlib.sha256(raft).digest() != raft_sum:
        raise _corrupt(where, "the checksum of its raft part does not match")
    raft_data = decode_raft(raft, where, make_node)
    if _copy(f, store_len, store_out, where, expected) != store_sum:
        raise _corrupt(where, "the checksum of its store part does not match")
    return raft_data


def _read_v1(f: BinaryIO, where: str, size: int, store_out: BinaryIO,
             make_node: Callable[[str], Any]) -> RaftData:
    head = len(MAGIC_V1) + _V1_LEN.size
    if size < head:
        raise _truncated(where, size, head)
    (raft_len,) = _V1_LEN.unpack(f.read(_V1_LEN.size))
    if raft_len > MAX_RAFT_BYTES:
        raise _corrupt(where, f"its header gives the raft part {raft_len} bytes, "
                              f"more than {MAX_RAFT_BYTES}")
    if size < head + raft_len + _V1_LEN.size:
        raise _truncated(where, size, head + raft_len + _V1_LEN.size)
    raft_data = decode_raft_v1(f.read(raft_len), where, make_node)
    (store_len,) = _V1_LEN.unpack(f.read(_V1_LEN.size))
    expected = head + raft_len + _V1_LEN.size + store_len
    if size < expected:
        raise _truncated(where, size, expected)
    if size > expected:
        raise _corrupt(where, f"{size - expected} bytes more than its header says")
    _copy(f, store_len, store_out, where, expected)
    return raft_data
