"""A resource group's replicated state: the LMDB store seen as a Raft state machine.

Snapshots (Raft log compaction and catch-up of lagging followers) are one file, format 2
(hakv.storage.snapshot_file has the details; no pickle is written):

    b"HAKVSNAP2" | u64 raft len | u64 store len | sha256(raft) | sha256(store)
                 | raft tuple as JSON | compact LMDB copy (data.mdb)

The raft tuple is pysyncobj's (last entry, previous entry, cluster members). Lengths and
checksums are checked before anything is used: a truncated, corrupt or hostile file is a
``DataDirError``, never a partly restored store, let alone code run. Old ``HAKVSNAP1``
files (a pickled raft tuple) are still read, by a restricted unpickler that loads only a
raft tuple's data; they are never written.

On load the store is replaced only when the snapshot is *ahead* of it: after kill -9 the
store may be ahead of the journal's commit index (RAFT-NOTES.md: trust LMDB), and every
replica applying the same prefix of the log holds the same state, so a more advanced
store is never wrong.

Store commits are not fsynced one by one (that fsync was the largest single cost of a
write): everything since the last snapshot is in the fsynced Raft journal anyway. A
process crash (kill -9) loses nothing, the kernel's page cache survives it. An OS crash
could leave the store torn, so the store records the boot it was opened in
(``state.boot``); opened again after a reboot without a clean stop, it is set aside and
rebuilt from the last snapshot and the Raft journal.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

from hakv.storage import snapshot_file
from hakv.storage.store import GroupStore

log = logging.getLogger("hakv.storage.machine")


def current_boot_id() -> str:
    """Changes with every boot of the machine (Linux); a constant elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def _write_marker(path: str, boot_id: str, clean: bool) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"boot_id": boot_id, "clean": clean}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class StoreMachine:
    """Adapts ``GroupStore`` to ``hakv.raft.member.StateMachine``."""

    def __init__(self, group: str, directory: str) -> None:
        self.group = group
        self.directory = directory
        self.state_path = os.path.join(directory, "state")
        self.marker_path = os.path.join(directory, "state.boot")
        self.boot_id = current_boot_id()
        self._set_aside_if_torn()
        _write_marker(self.marker_path, self.boot_id, clean=False)
        self.store = GroupStore(self.state_path, group, durable_commits=False)
        #: Makes a member address read from a snapshot into what the caller wants (the
        #: address itself by default; hakv.raft.member makes pysyncobj nodes of them).
        self.make_node: Callable[[str], Any] = str

    def _set_aside_if_torn(self) -> None:
        try:
            with open(self.marker_path, encoding="utf-8") as f:
                marker = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            marker = {}
        if not isinstance(marker, dict):
            marker = {}
        if marker.get("clean") or marker.get("boot_id") == self.boot_id:
            return
        if os.path.exists(self.state_path):
            aside = f"{self.state_path}.torn-{int(os.path.getmtime(self.state_path))}"
            log.warning("group %s: the machine restarted since the store was last used "
                        "without a clean stop; moving it to %s and rebuilding it from the "
                        "snapshot and the Raft journal", self.group, aside)
            os.rename(self.state_path, aside)

    def apply(self, index: int, payload: bytes) -> Any:
        return self.store.apply(index, payload)

    def commit(self) -> None:
        self.store.commit()

    def applied_index(self) -> int:
        return self.store.applied_index()

    def write_snapshot(self, path: str, raft_data: Any) -> None:
        with tempfile.TemporaryDirectory(dir=self.directory, prefix=".snap-") as tmp:
            copy = os.path.join(tmp, "copy")
            self.store.snapshot_to(copy)
            with open(path, "wb") as out, open(_data_file(copy), "rb") as src:
                snapshot_file.write(out, raft_data, src)
                out.flush()
                os.fsync(out.fileno())

    def read_snapshot(self, path: str) -> Any:
        with open(path, "rb") as f, \
                tempfile.TemporaryDirectory(dir=self.directory, prefix=".restore-") as tmp:
            copy = os.path.join(tmp, "copy")
            os.makedirs(copy)
            with open(os.path.join(copy, "data.mdb"), "wb") as out:
                raft_data = snapshot_file.read(f, path, out, self.make_node)
            snap = GroupStore(copy, self.group)
            try:
                ahead = snap.applied_index() > self.store.applied_index()
            finally:
                snap.close()
            if ahead:
                self.store.restore_from(copy)
        return raft_data

    def close(self) -> None:
        self.store.close()  # syncs
        _write_marker(self.marker_path, self.boot_id, clean=True)


def _data_file(copy: str) -> str:
    if os.path.isdir(copy):
        return os.path.join(copy, "data.mdb")
    return copy
