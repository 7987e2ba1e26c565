"""Offline dump of a node's data dir: what this node stores, readable while it is down.

Layout of a data dir (written by hakv.node.process, documented in docs/storage.md)::

    DIR/node.json                       {"format": 1, "cluster", "node", "topology_fingerprint"}
    DIR/groups/<group>/state/           LMDB store of the group (hakv.storage.store)
    DIR/groups/<group>/raft.journal     Raft log, term and vote
    DIR/groups/<group>/snapshot*        last snapshot (may be absent)

``inspect_data_dir`` reads node.json and each group's store (through
:func:`hakv.storage.store.inspect_store`, read-only) and never writes anything. Every way a directory
can fail to be a hakv data dir is a :class:`~hakv.errors.DataDirError` whose message says
what is wrong and what to do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hakv.errors import DataDirError, HakvError

__all__ = ["DATA_FORMAT", "inspect_data_dir"]

DATA_FORMAT = 1


def _read_node_json(root: Path) -> dict[str, Any]:
    meta_path = root / "node.json"
    if not meta_path.exists():
        entries = sorted(os.listdir(root))
        if not entries:
            raise DataDirError(
                f"{root} is empty: no hakv node has used it as its data dir yet "
                "(give the --data-dir of a node that has run)"
            )
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        inner = [e for e in entries if (root / e / "node.json").is_file()]
        hint = (
            f"; its subdirectories are data dirs: try {root / inner[0]}"
            if inner
            else "; give the --data-dir of a hakv node"
        )
        raise DataDirError(
            f"{root} is not a hakv data dir: it has no node.json (it holds: {shown}){hint}"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataDirError(
            f"{meta_path} is unreadable or corrupt ({exc}); restore it from a backup, or move "
            "the data dir away so the node resyncs from its peers"
        ) from None
    if not isinstance(meta, dict):
        raise DataDirError(f"{meta_path} is corrupt: expected a JSON object, got {meta!r:.80}")
    if meta.get("format") != DATA_FORMAT:
        raise DataDirError(
            f"{meta_path} has data format {meta.get('format')!r}; this hakv reads format "
            f"{DATA_FORMAT} (a data dir of another hakv version, or not hakv's)"
        )
    for key in ("cluster", "node"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise DataDirError(f"{meta_path} is corrupt: {key!r} missing or not a string")
    return meta


def _raft_files(group_dir: Path) -> dict[str, Any]:
    journal = group_dir / "raft.journal"
    return {
        "journal_bytes": journal.stat().st_size if journal.is_file() else None,
        "snapshots": sorted(p.name for p in group_dir.glob("snapshot*")),
    }


def inspect_data_dir(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What the node whose data dir is ``path`` stores::

        {"node": id, "cluster": name, "topology_fingerprint": hex | None,
         "groups": [group ids, sorted],
         "group_stores": {gid: hakv.storage.store.inspect_store(...) or {"group", "error"}},
         "raft": {gid: {"journal_bytes": n | None, "snapshots": [names]}},
         "node_status": []}

    A group whose store cannot be read (missing ``state/``, corrupt LMDB) does not fail
    the whole dump: its entry in ``group_stores`` carries ``error`` instead.
    Raises DataDirError when ``path`` is not a readable hakv data dir.
    """
    root = Path(path)
    if not root.exists():
        raise DataDirError(
            f"{root} does not exist; give the --data-dir of a hakv node "
            "(a local cluster keeps them in DIR/data/<node>)"
        )
    if not root.is_dir():
        raise DataDirError(f"{root} is not a directory; give the --data-dir of a hakv node")
    meta = _read_node_json(root)

    groups_dir = root / "groups"
    group_ids: list[str] = []
    if groups_dir.is_dir():
        group_ids = sorted(p.name for p in groups_dir.iterdir() if p.is_dir())
    elif groups_dir.exists():
        raise DataDirError(f"{groups_dir} is not a directory: the data dir is damaged")

    from hakv.storage.store import inspect_store  # lmdb only when needed

    stores: dict[str, Any] = {}
    raft: dict[str, Any] = {}
    for gid in group_ids:
        group_dir = groups_dir / gid
        raft[gid] = _raft_files(group_dir)
        state = group_dir / "state"
        if not state.is_dir():
            stores[gid] = {"group": gid, "error": f"{state} is missing (never written?)"}
            continue
        try:
            stores[gid] = inspect_store(state)
        except HakvError as exc:
            stores[gid] = {"group": gid, "error": exc.message}

    cluster_state = Path(path) / "cluster" / "state"
    cluster_store: dict[str, Any] | None = None
    if cluster_state.is_dir():
        try:
            cluster_store = inspect_store(cluster_state)
        except HakvError as exc:
            cluster_store = {"group": "_cluster", "error": exc.message}

    fingerprint = meta.get("topology_fingerprint")
    return {
        "node": meta["node"],
        "cluster": meta["cluster"],
        "topology_fingerprint": fingerprint if isinstance(fingerprint, str) else None,
        "groups": group_ids,
        "group_stores": stores,
        "raft": raft,
        # Ids of the nodes whose status records this node stores: its sphere of influence.
        "node_status": sorted({n for st in stores.values()
                               for n in st.get("node_status", {})}),
        # This node's copy of the cluster ensemble (voter or read-only follower).
        "cluster_store": cluster_store,
    }
