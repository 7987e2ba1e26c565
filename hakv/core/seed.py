"""Cluster-level records: what the cluster ensemble stores (DESIGN.md point 3). Pure.

The cluster ensemble (group id ``_cluster``) is a small Raft ensemble whose voters are the
topology's ``cluster_voters``; every other node follows it read-only, so a cluster-level
write costs the same for 9 nodes or 1,000. It holds, as ordinary keys of its key space:

    cluster/name          the cluster's name
    nodes/<id>            a node's definition (host, ports, capacity) as JSON
    groups/<id>           a group's definition (ordered owners, load) as JSON

plus each node's status record (kept apart from the key space, as in every group store).
The records are seeded from the topology file by the voter that leads the cluster
ensemble, once, when the cluster first starts (hakv.node.process ``_seed_cluster_records``): each
chunk is a transaction guarded by its own marker key, so the first proposal that applies
writes it and every later one (a new leader's, restarts, an edited file) changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from hakv.core.topology import CLUSTER_GROUP, Topology

SEED_CHUNK = 60  # records per seeding transaction (a txn branch holds at most 64 ops)

__all__ = ["CLUSTER_GROUP", "SEED_CHUNK", "seed_records", "seed_transactions"]


def seed_records(topology: Topology) -> dict[str, str]:
    """The cluster-level records a topology file defines, by key."""
    records = {"cluster/name": topology.cluster}
    for node in topology.nodes:
        records[f"nodes/{node.id}"] = json.dumps(node.to_dict(), sort_keys=True)
    for group in topology.groups:
        records[f"groups/{group.id}"] = json.dumps(group.to_dict(), sort_keys=True)
    return records


def seed_transactions(topology: Topology) -> list[dict[str, Any]]:
    """Transaction bodies (docs/api.md shape) that write ``seed_records`` exactly once."""
    items = sorted(seed_records(topology).items())
    bodies = []
    for start in range(0, len(items), SEED_CHUNK):
        # Markers do not depend on the file's content: the records are seeded once, when
        # the cluster is first started; later edits of the file never overwrite changes
        # made at runtime through the cluster ensemble (docs/membership.md).
        marker = f"seeded/{start // SEED_CHUNK}"
        puts = [{"op": "put", "key": k, "value": v} for k, v in items[start:start + SEED_CHUNK]]
        puts.append({"op": "put", "key": marker, "value": "1"})
        bodies.append({
            "group": CLUSTER_GROUP,
            "compare": [{"key": marker, "target": "version", "op": "==", "value": 0}],
            "success": puts,
            "failure": [],
        })
    return bodies
