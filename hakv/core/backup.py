"""Online backups of a group: the backup file format and the restore commands (issue 16).

Pure: no sockets, threads or databases. The client writes and reads backup files with
:func:`write` and :func:`read`; the nodes validate the ``restore`` commands that go
through a group's Raft log with :func:`restore_command` (hakv.storage.store applies them).

The file (``hakv snapshot save``; docs/operations.md "Backup and restore")::

    HAKVBACKUP1\\n
    {manifest, compact JSON}\\n
    [key, value, create_revision, mod_revision, version]\\n     one line per key, by key
    ...

The manifest holds ``format`` (1), ``group``, ``revision`` (the group's revision the keys
were read at, in one LMDB read transaction), ``compact_revision`` (of the watch history
there), ``owners``, ``source`` (the node that read them), ``created_at`` (epoch s),
``keys`` (lines in the body), ``dropped_ephemeral`` (keys attached to a lease, left out:
their holders are gone once the group is restored), ``body_bytes`` and ``sha256`` (of the
body). No pickle, nothing is evaluated: a reader checks the magic, the manifest's exact
fields and types, the body's length and checksum, and every record (types, limits, keys
strictly ascending, revisions consistent) before it returns anything. A truncated,
corrupt or hostile file is a :class:`hakv.errors.BackupError`, never a crash.

Restore goes through the group's Raft log in three kinds of command, ``{"op": "restore",
"phase": ...}``: ``begin`` (id, revision, keys, force), ``chunk`` (id, n, records: a list
of record lists as in the file, keys ascending, at most :data:`CHUNK_BYTES` encoded) and
``commit`` (id, chunks, keys), plus ``abort`` (id). Chunks are staged; ``commit`` swaps
them in atomically (hakv.storage.store ``_restore``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from hakv.core.codec import MAX_INT, MAX_KEY_BYTES, MAX_VALUE_BYTES, strict_loads
from hakv.errors import BackupError, BadRequestError

MAGIC = b"HAKVBACKUP1\n"
FORMAT = 1
#: A manifest line longer than this is not one (owners are a handful of short ids).
MAX_MANIFEST_BYTES = 1 << 20
#: A body bigger than this is refused before it is read (restore holds the records in
#: memory; save streams any size).
MAX_BODY_BYTES = 1 << 30
#: Records per restore chunk are packed up to this weight: bytes of JSON, each byte above
#: 0x7f counted twice. pysyncobj pickles a command with protocol 2, which stores bytes as
#: latin-1 text in UTF-8: a byte above 0x7f takes two. An entry of 64 KiB or more goes
#: through pysyncobj's chunked transmission, which loses data (its last piece is cut by
#: the wrong length); 40 KiB of weight stays well below (and below codec's 48 KiB).
CHUNK_BYTES = 40 * 1024
MAX_CHUNK_RECORDS = 10000
RESTORE_OP = "restore"
PHASES = ("begin", "chunk", "commit", "abort")
_ID = re.compile(r"[0-9a-zA-Z_-]{1,64}")
_MANIFEST_FIELDS = {
    "format": int, "group": str, "revision": int, "compact_revision": int, "owners": list,
    "source": str, "created_at": float, "keys": int, "dropped_ephemeral": int,
    "body_bytes": int, "sha256": str,
}
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

Record = tuple[str, str, int, int, int]  # key, value, create_revision, mod_revision, version


class _Malformed(ValueError):
    """A record or field that is not what hakv writes (message: why)."""


@dataclass(frozen=True)
class Backup:
    """A backup read back and checked: its manifest and its records (by key)."""

    manifest: dict[str, Any]
    records: list[Record]

    @property
    def group(self) -> str:
        return str(self.manifest["group"])

    @property
    def revision(self) -> int:
        return int(self.manifest["revision"])


# --------------------------------------------------------------------------- records


def _int(value: Any, what: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= MAX_INT:
        raise _Malformed(f"{what} is not an integer in {low}..{MAX_INT}")
    return value


def _utf8(text: Any, what: str) -> int:
    if not isinstance(text, str):
        raise _Malformed(f"{what} is not a string")
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise _Malformed(f"{what} is not valid UTF-8 text") from None


def check_record(item: Any) -> Record:
    """A record ``[key, value, create_revision, mod_revision, version]``, checked against
    the limits of docs/api.md; ``_Malformed`` (a ValueError) says what is wrong."""
    if type(item) is not list or len(item) != 5:
        raise _Malformed("a record is not [key, value, create_revision, mod_revision, version]")
    key, value, create, mod, version = item
    size = _utf8(key, "a key")
    if not 1 <= size <= MAX_KEY_BYTES or "\x00" in key:
        raise _Malformed(f"key {key[:80]!r} is empty, too long or contains NUL")
    if _utf8(value, f"the value of {key[:80]!r}") > MAX_VALUE_BYTES:
        raise _Malformed(f"the value of {key[:80]!r} exceeds {MAX_VALUE_BYTES} bytes")
    create = _int(create, f"create_revision of {key[:80]!r}", 1)
    mod = _int(mod, f"mod_revision of {key[:80]!r}", 1)
    version = _int(version, f"version of {key[:80]!r}", 1)
    if create > mod:
        raise _Malformed(f"{key[:80]!r} was created after its last change")
    return key, value, create, mod, version


def check_records(items: Any, after: str | None, revision: int) -> list[Record]:
    """Records in strictly ascending key order (above ``after``), none changed after
    ``revision``."""
    if type(items) is not list:
        raise _Malformed("records is not a list")
    out: list[Record] = []
    last = after
    for item in items:
        rec = check_record(item)
        if last is not None and rec[0] <= last:
            raise _Malformed(f"key {rec[0][:80]!r} is out of order or repeated")
        if rec[3] > revision:
            raise _Malformed(f"key {rec[0][:80]!r} changed at revision {rec[3]}, after the "
                             f"backup's revision {revision}")
        last = rec[0]
        out.append(rec)
    return out


def encode_record(record: Sequence[Any]) -> bytes:
    return _ENCODER.encode(list(record)).encode("utf-8")


_ASCII = bytes(range(128))


def weight(data: bytes) -> int:
    """``data``'s size in a pysyncobj log entry: bytes above 0x7f count twice."""
    return len(data) + len(data.translate(None, _ASCII))


def chunks(records: Iterable[Sequence[Any]], budget: int = CHUNK_BYTES
           ) -> Iterator[list[list[Any]]]:
    """The records in lists of at most ``budget`` of :func:`weight` (one record alone
    may be more: a stored record came in one replicated command)."""
    batch: list[list[Any]] = []
    size = 0
    for record in records:
        n = weight(encode_record(record)) + 1
        if batch and (size + n > budget or len(batch) >= MAX_CHUNK_RECORDS):
            yield batch
            batch, size = [], 0
        batch.append(list(record))
        size += n
    if batch:
        yield batch


# --------------------------------------------------------------------------- the file


class BackupWriter:
    """A backup written as its records arrive, page by page (an online snapshot is read in
    pages: hakv.node.snapshots): ``add`` checks each page (by key, none changed after the
    revision) and appends its lines to ``body`` (a binary file), hashing them; ``finish``
    writes the file to ``out`` — magic, manifest, then ``body`` copied — and returns the
    manifest. A page that could not be read back is refused (BadRequestError): nothing
    unreadable is ever written."""

    def __init__(self, body: BinaryIO, *, group: str, revision: int) -> None:
        self.body, self.group, self.revision = body, group, revision
        self.keys = self.body_bytes = self.dropped_ephemeral = 0
        self._digest = hashlib.sha256()
        self._last: str | None = None

    def add(self, records: Any, dropped_ephemeral: int = 0) -> None:
        try:
            checked = check_records(records, self._last, self.revision)
        except _Malformed as exc:
            raise BadRequestError(f"cannot write a backup of group {self.group}: {exc}") from None
        for rec in checked:
            line = encode_record(rec) + b"\n"
            self._digest.update(line)
            self.body.write(line)
            self.body_bytes += len(line)
        if checked:
            self._last = checked[-1][0]
        self.keys += len(checked)
        self.dropped_ephemeral += dropped_ephemeral

    def finish(self, out: BinaryIO, *, compact_revision: int, owners: Sequence[str],
               source: str, created_at: float) -> dict[str, Any]:
        manifest = {
            "format": FORMAT, "group": self.group, "revision": self.revision,
            "compact_revision": compact_revision, "owners": list(owners), "source": source,
            "created_at": float(created_at), "keys": self.keys,
            "dropped_ephemeral": self.dropped_ephemeral,
            "body_bytes": self.body_bytes, "sha256": self._digest.hexdigest(),
        }
        _check_manifest(manifest)
        out.write(MAGIC)
        out.write(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("ascii"))
        out.write(b"\n")
        self.body.seek(0)
        while chunk := self.body.read(1 << 20):
            out.write(chunk)
        return manifest


def write(out: BinaryIO, *, group: str, revision: int, compact_revision: int,
          owners: Sequence[str], source: str, created_at: float,
          records: Iterable[Sequence[Any]], dropped_ephemeral: int = 0) -> dict[str, Any]:
    """Write a backup of ``records`` (all at once) to ``out``; its manifest
    (``BackupWriter`` with the body in memory)."""
    writer = BackupWriter(io.BytesIO(), group=group, revision=revision)
    writer.add([list(r) for r in records], dropped_ephemeral)
    return writer.finish(out, compact_revision=compact_revision, owners=owners,
                         source=source, created_at=created_at)


def _loads(data: bytes) -> Any:
    return strict_loads(data)


def _check_manifest(m: Any) -> dict[str, Any]:
    if not isinstance(m, dict) or set(m) != set(_MANIFEST_FIELDS):
        raise _Malformed(f"the manifest is not an object with exactly {sorted(_MANIFEST_FIELDS)}")
    for name, kind in _MANIFEST_FIELDS.items():
        value = m[name]
        if kind is float:
            ok = type(value) in (int, float) and 0 <= value < 1e11
        elif kind is int:
            ok = type(value) is int and 0 <= value <= MAX_INT
        else:
            ok = type(value) is kind
        if not ok:
            raise _Malformed(f"manifest field {name!r} is not a valid {kind.__name__}")
    if m["format"] != FORMAT:
        raise _Malformed(f"format {m['format']}, this hakv reads format {FORMAT}")
    if not m["group"] or len(m["group"]) > 128:
        raise _Malformed("the manifest's group is empty or too long")
    if not all(isinstance(o, str) and 0 < len(o) <= 128 for o in m["owners"]) \
            or len(m["owners"]) > 64:
        raise _Malformed("the manifest's owners are not a short list of node ids")
    if not re.fullmatch(r"[0-9a-f]{64}", m["sha256"]):
        raise _Malformed("the manifest's sha256 is not 64 hex digits")
    if m["compact_revision"] > m["revision"]:
        raise _Malformed("the manifest's compact_revision is above its revision")
    if m["body_bytes"] > MAX_BODY_BYTES:
        raise _Malformed(f"the manifest gives the body {m['body_bytes']} bytes, more than "
                         f"{MAX_BODY_BYTES}")
    return m


def _manifest(f: BinaryIO, where: str) -> dict[str, Any]:
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        if magic and MAGIC.startswith(magic):
            raise BackupError(f"{where} is a truncated hakv backup (it ends in the magic line)")
        raise BackupError(f"{where} is not a hakv backup (no {MAGIC.strip().decode()} "
                          "line at its start)")
    line = f.readline(MAX_MANIFEST_BYTES + 1)
    if not line.endswith(b"\n"):
        if len(line) > MAX_MANIFEST_BYTES:
            raise BackupError(f"{where} is a corrupt hakv backup (its manifest line is "
                              f"longer than {MAX_MANIFEST_BYTES} bytes)")
        raise BackupError(f"{where} is a truncated hakv backup (it ends in its manifest)")
    try:
        return _check_manifest(_loads(line))
    except (ValueError, RecursionError) as exc:  # JSON, UTF-8 and _Malformed
        raise BackupError(f"{where} is a corrupt hakv backup (manifest: {exc})") from None


def _lines(f: BinaryIO, size: int) -> Iterator[bytes]:
    """The ``size`` bytes of body at ``f``'s position, line by line (the last one as it
    is, newline or not), read in blocks: a body of any size in bounded memory."""
    left, rest = size, b""
    while left > 0:
        block = f.read(min(left, 1 << 20))
        if not block:
            break
        left -= len(block)
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from (line + b"\n" for line in lines)
    if rest:
        yield rest


def _records(f: BinaryIO, where: str, manifest: dict[str, Any]) -> Iterator[Record]:
    last: str | None = None
    try:
        for raw in _lines(f, manifest["body_bytes"]):
            if not raw.endswith(b"\n"):
                raise _Malformed("the body does not end with a newline")
            rec = check_records([_loads(raw[:-1])], last, manifest["revision"])[0]
            last = rec[0]
            yield rec
    except (ValueError, RecursionError) as exc:
        raise BackupError(f"{where} is a corrupt hakv backup (records: {exc})") from None


def verify(f: BinaryIO, where: str) -> dict[str, Any]:
    """Check the backup ``f`` all through — magic, manifest, body length and checksum,
    every record — in bounded memory; its manifest, or a BackupError saying what is
    wrong. ``records(f, manifest, where)`` then reads the records back."""
    manifest = _manifest(f, where)
    expected = manifest["body_bytes"]
    start = f.tell()
    digest, seen = hashlib.sha256(), 0
    while block := f.read(min(1 << 20, expected + 1 - seen)):
        digest.update(block)
        seen += len(block)
        if seen > expected:
            raise BackupError(f"{where} is a corrupt hakv backup (bytes after its body)")
    if seen < expected:
        raise BackupError(f"{where} is a truncated hakv backup (body of {seen} of "
                          f"{expected} bytes)")
    if f.read(1):
        raise BackupError(f"{where} is a corrupt hakv backup (bytes after its body)")
    if digest.hexdigest() != manifest["sha256"]:
        raise BackupError(f"{where} is a corrupt hakv backup (the checksum of its body does "
                          "not match its manifest)")
    f.seek(start)
    keys = sum(1 for _ in _records(f, where, manifest))
    if keys != manifest["keys"]:
        raise BackupError(f"{where} is a corrupt hakv backup ({keys} records, its "
                          f"manifest says {manifest['keys']})")
    f.seek(start)
    return manifest


def records(f: BinaryIO, manifest: dict[str, Any], where: str) -> Iterator[Record]:
    """The records of a backup ``verify`` accepted, ``f`` where ``verify`` left it."""
    return _records(f, where, manifest)


def read(f: BinaryIO, where: str) -> Backup:
    """Read and check the backup ``f`` (``where``: its name, for messages), records and
    all, in memory. Any problem is a BackupError saying what, raised before anything is
    returned."""
    manifest = verify(f, where)
    return Backup(manifest, list(records(f, manifest, where)))


# --------------------------------------------------------------------------- restore


def restore_command(body: Any) -> dict[str, Any]:
    """A validated, normalized ``restore`` command from a request body (or a decoded log
    entry): BadRequestError otherwise."""
    if not isinstance(body, dict):
        raise BadRequestError("a restore request is a JSON object")
    phase, rid = body.get("phase"), body.get("id")
    if not isinstance(phase, str) or phase not in PHASES:
        raise BadRequestError(f"phase: expected one of {', '.join(PHASES)}, got {phase!r}")
    if not isinstance(rid, str) or not _ID.fullmatch(rid):
        raise BadRequestError("id: expected 1..64 letters, digits, '_' or '-'")
    cmd: dict[str, Any] = {"op": RESTORE_OP, "phase": phase, "id": rid}
    try:
        if phase == "begin":
            cmd["revision"] = _int(body.get("revision"), "revision")
            cmd["keys"] = _int(body.get("keys"), "keys")
            force = body.get("force", False)
            if not isinstance(force, bool):
                raise _Malformed("force is not true or false")
            cmd["force"] = force
        elif phase == "chunk":
            cmd["n"] = _int(body.get("n"), "n")
            records = body.get("records")
            if type(records) is not list or not 1 <= len(records) <= MAX_CHUNK_RECORDS:
                raise _Malformed(f"records is not a list of 1..{MAX_CHUNK_RECORDS} records")
            cmd["records"] = [list(r) for r in check_records(records, None, MAX_INT)]
        elif phase == "commit":
            cmd["chunks"] = _int(body.get("chunks"), "chunks")
            cmd["keys"] = _int(body.get("keys"), "keys")
    except _Malformed as exc:
        raise BadRequestError(f"restore {phase}: {exc}") from None
    return cmd


def records_after(records: list[list[Any]], after: str | None, revision: int) -> None:
    """Check a staged chunk against the restore it belongs to (BadRequestError)."""
    try:
        check_records(records, after, revision)
    except _Malformed as exc:
        raise BadRequestError(f"restore chunk: {exc}") from None


__all__ = ["CHUNK_BYTES", "MAGIC", "RESTORE_OP", "Backup", "BackupWriter", "Record",
           "check_record",
           "chunks", "read", "records", "records_after", "restore_command", "verify", "write"]
