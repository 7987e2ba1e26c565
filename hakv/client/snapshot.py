"""Online snapshot and restore of a group (docs/operations.md "Backup and restore")::

    from hakv import Client
    from hakv.client import snapshot

    with Client("127.0.0.1:8202") as c:
        manifest = snapshot.save(c, "220", "220.hakvbackup")   # a live group, at a revision
    manifest = snapshot.status("220.hakvbackup")                # check a file all through
    with Client("127.0.0.1:9202") as c:
        snapshot.restore(c, "220.hakvbackup", group="220")      # into an empty group

``save`` asks an owner for every key (one LMDB read transaction after a read barrier:
every write acknowledged before it is in), page by page (``/v1/snapshot``, then the
``cursor`` each page names), and writes the backup file (hakv.core.backup) atomically. ``restore`` sends the records through the
group's Raft log in chunks (``/v1/restore``: begin, chunks, commit); they are swapped in
at the commit, all at once. Keys attached to a lease are not in a backup (their holders
are gone when a group needs restoring); neither are sessions, placement or node status.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
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
    renamed); its manifest. The owner that answers reads every key in one read
    transaction and sends them page by page (``/v1/snapshot`` with the ``cursor`` of the
    previous page); the pages go to a temporary body file as they come, so neither side
    holds the whole group. ``serializable``: read the answering owner's copy without a
    read barrier (works without quorum; may miss the latest writes)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    body_path = target.with_name(target.name + ".body.tmp")
    try:
        answer = client._call("/v1/snapshot", {"group": group, "serializable": serializable},
                              write=False)
        try:
            revision, compact = int(answer["revision"]), int(answer["compact_revision"])
            owners = [str(o) for o in answer["owners"]]
            source, created = str(answer["source"]), float(answer["created_at"])
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.InternalError(f"malformed /v1/snapshot answer: {exc!r}") from None
        with open(body_path, "w+b") as body:
            writer = backup.BackupWriter(body, group=group, revision=revision)
            pages = 0
            while True:
                writer.add(answer.get("records"), _count(answer.get("dropped_ephemeral")))
                pages += 1
                cursor = answer.get("cursor")
                if cursor is None:
                    break
                answer = client._call("/v1/snapshot", {"group": group, "cursor": cursor},
                                      write=False)
            with open(tmp, "wb") as out:
                manifest = writer.finish(out, compact_revision=compact, owners=owners,
                                         source=source, created_at=created)
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise errors.ConfigError(f"cannot write the snapshot to {target}: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        body_path.unlink(missing_ok=True)
    return {**manifest, "pages": pages}


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise errors.InternalError(f"malformed /v1/snapshot answer: dropped_ephemeral "
                                   f"{value!r}")
    return value


def status(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check the backup file ``path`` all through, in bounded memory; its manifest
    (BackupError if it is not sound)."""
    try:
        with open(path, "rb") as f:
            return backup.verify(f, str(path))
    except OSError as exc:
        raise errors.BackupError(f"cannot read {path}: {exc.strerror or exc}") from None


def restore(client: Client, source: str | os.PathLike[str] | backup.Backup,
            group: str | None = None, *, force: bool = False) -> dict[str, Any]:
    """Rebuild ``group`` (default: the backup's own) from a backup file (checked all
    through first, then read again chunk by chunk: any size in bounded memory) or a
    checked ``Backup``. The group must hold no keys (fresh or wiped owners), else
    ConflictError unless ``force`` (its keys are then replaced). Its revision afterwards
    is above both its own and the backup's, and its watch history starts there (a
    watcher from an older revision gets CompactedError). Answers ``{"revision", "keys",
    "backup_revision", "replaced", "group", "chunks", "seconds"}``."""
    if isinstance(source, backup.Backup):
        return _restore(client, source.manifest, iter(source.records), group, force)
    try:
        with open(source, "rb") as f:
            manifest = backup.verify(f, str(source))
            return _restore(client, manifest, backup.records(f, manifest, str(source)),
                            group, force)
    except OSError as exc:
        raise errors.BackupError(f"cannot read {source}: {exc.strerror or exc}") from None


def _restore(client: Client, manifest: dict[str, Any], records: Iterator[backup.Record],
             group: str | None, force: bool) -> dict[str, Any]:
    target = group or str(manifest["group"])
    keys = int(manifest["keys"])
    rid = uuid.uuid4().hex
    started = time.monotonic()

    def step(phase: str, **fields: Any) -> dict[str, Any]:
        return client._call("/v1/restore", {"group": target, "phase": phase, "id": rid,
                                            **fields}, write=False)

    step("begin", revision=int(manifest["revision"]), keys=keys, force=force)
    chunks = 0
    try:
        for n, batch in enumerate(backup.chunks(records)):
            step("chunk", n=n, records=batch)
            chunks = n + 1
        result = step("commit", chunks=chunks, keys=keys)
    except BaseException:
        try:
            step("abort")
        except errors.HakvError:
            pass  # best effort: a later begin drops the staged chunks anyway
        raise
    return {**result, "group": target, "chunks": chunks,
            "seconds": round(time.monotonic() - started, 3)}
