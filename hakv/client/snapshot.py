"""Online snapshot and restore of a group (docs/operations.md "Backup and restore")::

    from hakv import Client
    from hakv.client import snapshot

    with Client("127.0.0.1:8202") as c:
        manifest = snapshot.save(c, "220", "220.hakvbackup")   # a live group, at a revision
    backup = snapshot.status("220.hakvbackup")                  # read and check a file
    with Client("127.0.0.1:9202") as c:
        snapshot.restore(c, "220.hakvbackup", group="220")      # into an empty group

``save`` asks an owner for every key in one ``/v1/snapshot`` answer (one LMDB read
transaction after a read barrier: every write acknowledged before it is in) and writes
the backup file (hakv.core.backup) atomically. ``restore`` sends the records through the
group's Raft log in chunks (``/v1/restore``: begin, chunks, commit); they are swapped in
at the commit, all at once. Keys attached to a lease are not in a backup (their holders
are gone when a group needs restoring); neither are sessions, placement or node status.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hakv import errors
from hakv.core import backup

if TYPE_CHECKING:
    from hakv.client.client import Client

__all__ = ["restore", "save", "status"]


def save(client: Client, group: str, path: str | os.PathLike[str], *,
         serializable: bool = False) -> dict[str, Any]:
    """Snapshot ``group`` into the file ``path`` (written to ``path.tmp``, fsynced, then
    renamed); its manifest. ``serializable``: read the answering owner's copy without a
    read barrier (works without quorum; may miss the latest writes)."""
    answer = client._call("/v1/snapshot", {"group": group, "serializable": serializable},
                          write=False)
    try:
        revision, compact = int(answer["revision"]), int(answer["compact_revision"])
        records, owners = answer["records"], [str(o) for o in answer["owners"]]
        source, created = str(answer["source"]), float(answer["created_at"])
        dropped = int(answer["dropped_ephemeral"])
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.InternalError(f"malformed /v1/snapshot answer: {exc!r}") from None
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(tmp, "wb") as out:
            manifest = backup.write(out, group=group, revision=revision,
                                    compact_revision=compact, owners=owners, source=source,
                                    created_at=created, records=records,
                                    dropped_ephemeral=dropped)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise errors.ConfigError(f"cannot write the snapshot to {target}: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def status(path: str | os.PathLike[str]) -> backup.Backup:
    """Read and check the backup file ``path`` (BackupError if it is not sound)."""
    try:
        with open(path, "rb") as f:
            return backup.read(f, str(path))
    except OSError as exc:
        raise errors.BackupError(f"cannot read {path}: {exc.strerror or exc}") from None


def restore(client: Client, source: str | os.PathLike[str] | backup.Backup,
            group: str | None = None, *, force: bool = False) -> dict[str, Any]:
    """Rebuild ``group`` (default: the backup's own) from a backup file (or a checked
    ``Backup``). The group must hold no keys (fresh or wiped owners), else ConflictError
    unless ``force`` (its keys are then replaced). Its revision afterwards is above both
    its own and the backup's, and its watch history starts there (a watcher from an older
    revision gets CompactedError). Answers ``{"revision", "keys", "backup_revision",
    "replaced", "chunks", "seconds"}``."""
    data = source if isinstance(source, backup.Backup) else status(source)
    target = group or data.group
    rid = uuid.uuid4().hex
    started = time.monotonic()

    def step(phase: str, **fields: Any) -> dict[str, Any]:
        return client._call("/v1/restore", {"group": target, "phase": phase, "id": rid,
                                            **fields}, write=False)

    step("begin", revision=data.revision, keys=len(data.records), force=force)
    n = 0
    try:
        for n, records in enumerate(backup.chunks(data.records)):  # noqa: B007
            step("chunk", n=n, records=records)
        chunks = n + 1 if data.records else 0
        result = step("commit", chunks=chunks, keys=len(data.records))
    except BaseException:
        try:
            step("abort")
        except errors.HakvError:
            pass  # best effort: a later begin drops the staged chunks anyway
        raise
    return {**result, "chunks": chunks, "seconds": round(time.monotonic() - started, 3)}
