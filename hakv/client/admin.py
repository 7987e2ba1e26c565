"""Operator changes to the cluster records (docs/membership.md): transactions through the
client library, each guarded by ``cluster/epoch`` so two operators never clobber each other."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hakv import errors
from hakv.core.topology import (
    CLUSTER_GROUP,
    DEFAULT_LOAD,
    MIN_OWNERS,
    GroupSpec,
    NodeSpec,
)
from hakv.errors import ConflictError, UnknownGroupError

if TYPE_CHECKING:
    from hakv.client.client import Client, Compare, Op

from hakv.core.membership import (
    EPOCH_KEY,
    GROUPS,
    JOINS,
    MEMBERS,
    NODES,
    PREFIXES,
    RANGE_LIMIT,
    Records,
    _json,
    _need_seeded,
    check_add_node,
    check_group,
    check_remove_node,
    plan_membership,
)

log = logging.getLogger("hakv.core.membership")

CHANGE_ATTEMPTS = 8  # operator changes re-read and retry this often on a concurrent change

# =========================================================================== I/O: operators


def read_records(client: Client) -> Records:
    """The cluster records, read linearizably (the epoch first: see ``_change``)."""
    items: list[tuple[str, str, int]] = []
    for prefix in PREFIXES:
        result = client.range(CLUSTER_GROUP, prefix, limit=RANGE_LIMIT)
        if result.more:
            raise errors.InternalError(f"more than {RANGE_LIMIT} records under {prefix}")
        items += [(kv.key, kv.value, kv.mod_revision) for kv in result.kvs]
    return Records.from_items(items)


def _next_epoch(records: Records) -> str:
    try:
        return str(int(records.epoch or "0") + 1)
    except ValueError:
        return "1"


def _change(client: Client, build: Any) -> dict[str, Any]:
    """Run an operator change as a transaction guarded by the epoch.

    ``build(records) -> (compares, ops, summary)`` validates against freshly read records
    (raising a HakvError to refuse); the transaction applies only if no other change
    happened since the read (``cluster/epoch`` unchanged), else it is rebuilt and retried.
    """
    from hakv.client.client import Compare, Op

    for _ in range(CHANGE_ATTEMPTS):
        records = read_records(client)
        compares, ops, summary = build(records)
        epoch = _next_epoch(records)
        result = client.txn(
            CLUSTER_GROUP,
            [Compare.value(EPOCH_KEY, "==", records.epoch), *compares],
            [*ops, Op.put(EPOCH_KEY, epoch)],
        )
        if result.succeeded:
            return {**summary, "epoch": int(epoch), "revision": result.revision}
        time.sleep(0.05)
    raise ConflictError(
        f"the cluster configuration kept changing under this command ({CHANGE_ATTEMPTS} "
        "attempts); retry")


def add_node(client: Client, spec: NodeSpec) -> dict[str, Any]:
    """Add a node record; the node then starts with ``hakv node --node ID`` (it looks its
    own address up in the cluster records)."""
    from hakv.client.client import Compare, Op

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        check_add_node(records, spec)
        key = NODES + spec.id
        return ([Compare.version(key, "==", 0)], [Op.put(key, _json(spec.to_dict()))],
                {"node": spec.to_dict()})

    return _change(client, build)


def remove_node(client: Client, node_id: str) -> dict[str, Any]:
    """Remove a node record: refused while a group lists it or the node votes anywhere."""
    from hakv.client.client import Compare, Op

    voters = _cluster_voters(client)

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        check_remove_node(records, node_id, voters)
        key = NODES + node_id
        return ([Compare.mod_revision(key, "==", records.revision(key))], [Op.delete(key)],
                {"node": node_id})

    return _change(client, build)


def _cluster_voters(client: Client) -> list[str]:
    status = client.status()
    owners = ((status.get("groups") or {}).get(CLUSTER_GROUP) or {}).get("owners")
    if not isinstance(owners, list):
        raise errors.InternalError("/v1/status did not report the cluster ensemble's voters")
    return [str(o) for o in owners]


def create_group(client: Client, group_id: str, owners: Sequence[str],
                 load: int = DEFAULT_LOAD) -> dict[str, Any]:
    """Create a group: its record and its initial Raft voters (all its owners)."""
    from hakv.client.client import Compare, Op

    owners = list(owners)

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        check_group(records, group_id, owners, load, creating=True)
        spec = GroupSpec(id=group_id, owners=tuple(owners), load=load)
        return (
            [Compare.version(GROUPS + group_id, "==", 0),
             Compare.version(MEMBERS + group_id, "==", 0)],
            [Op.put(GROUPS + group_id, _json(spec.to_dict())),
             Op.put(MEMBERS + group_id, _json({"voters": owners, "term": 0}))],
            {"group": spec.to_dict()},
        )

    return _change(client, build)


def delete_group(client: Client, group_id: str) -> dict[str, Any]:
    """Delete a group: every owner stops its member and deletes the group's data."""
    from hakv.client.client import Compare, Op

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        _need_seeded(records)
        if group_id not in records.groups:
            raise errors.UnknownGroupError(f"group {group_id} does not exist", group=group_id)
        keys = [GROUPS + group_id, MEMBERS + group_id,
                *(k for k in records.revisions if k.startswith(f"{JOINS}{group_id}/"))]
        return ([Compare.mod_revision(GROUPS + group_id, "==", records.revision(GROUPS +
                                                                                group_id))],
                [Op.delete(k) for k in keys],
                {"group": group_id, "owners": list(records.groups[group_id].owners)})

    return _change(client, build)


def set_owners(client: Client, group_id: str, owners: Sequence[str]) -> dict[str, Any]:
    """Change a group's owners; its leader then changes the Raft membership step by step."""
    from hakv.client.client import Compare, Op

    owners = list(owners)

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        spec = records.groups.get(group_id)
        check_group(records, group_id, owners, spec.load if spec else 0, creating=False)
        assert spec is not None
        record = {**records.group_records[group_id], "owners": owners}  # keeps app etc.
        compares = [Compare.mod_revision(GROUPS + group_id, "==",
                                         records.revision(GROUPS + group_id))]
        ops = [Op.put(GROUPS + group_id, _json(record))]
        if group_id not in records.members:
            # Never changed at runtime: its Raft voters are the owners before this change.
            compares.append(Compare.version(MEMBERS + group_id, "==", 0))
            ops.append(Op.put(MEMBERS + group_id,
                              _json({"voters": list(spec.owners), "term": 0})))
        voters = records.voters(group_id)
        steps = plan_membership(voters, owners)
        return compares, ops, {"group": group_id, "owners": owners,
                               "previous_owners": list(spec.owners),
                               "plan": [str(s) for s in steps]}

    return _change(client, build)


def set_app(client: Client, group_id: str, app: Mapping[str, Any],
            fallback: str | None = None, fallback_window: str | None = None) -> dict[str, Any]:
    """Set (or replace) a group's app spec at runtime: the ``[groups.app]`` table of the
    topology file, as a mapping, checked by the same rules. The group's owners pick it up
    from the cluster records within a second (docs/ha.md)."""
    from hakv.client.client import Compare, Op
    from hakv.core import ha

    def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
        if group_id not in records.groups:
            raise UnknownGroupError(f"group {group_id} is not in the cluster records "
                                    "(hakv cluster show lists the groups)", group=group_id)
        where = f"group {group_id}"
        ha.parse_app(dict(app), where)  # TopologyError naming the broken rule
        record = {**records.group_records[group_id], "app": dict(app)}
        if fallback is not None:
            record["fallback"] = fallback
        if fallback_window is not None:
            record["fallback_window"] = fallback_window
        ha.parse_fallback(record, where)
        compares = [Compare.mod_revision(GROUPS + group_id, "==",
                                         records.revision(GROUPS + group_id))]
        return compares, [Op.put(GROUPS + group_id, _json(record))], {
            "group": group_id, "app": record["app"], "fallback": record.get("fallback", "stay"),
            "fallback_window": record.get("fallback_window")}

    return _change(client, build)


def show(client: Client) -> dict[str, Any]:
    """The cluster records as an operator sees them (``hakv cluster show``)."""
    records = read_records(client)
    groups = []
    for gid in sorted(records.groups):
        spec = records.groups[gid]
        voters = records.voters(gid)
        steps = plan_membership(voters, spec.owners) if len(spec.owners) >= MIN_OWNERS else []
        groups.append({
            "id": gid, "owners": list(spec.owners), "load": spec.load,
            "raft_voters": list(voters),
            "pending": [str(s) for s in steps],
            "caught_up": sorted(records.joins.get(gid, ())),
            "state": "stable" if not steps else "changing",
        })
    nodes = []
    for nid in sorted(records.nodes):
        nodes.append({**records.nodes[nid].to_dict(), "groups": records.groups_listing(nid)})
    return {"cluster": records.name, "epoch": int(records.epoch or 0), "nodes": nodes,
            "groups": groups, "problems": list(records.problems)}
