"""Operator operations on a cluster, reached as ``client.admin`` (docs/api.md "Admin")::

    from hakv import Client
    from hakv.core.topology import NodeSpec

    with Client("127.0.0.1:8202,127.0.0.1:8208") as c:
        c.admin.show()                                      # nodes and groups on record
        c.admin.add_node(NodeSpec("230", "10.0.0.30", 7230, 8230))
        c.admin.create_group("240", ["202", "208", "230"])
        c.admin.placement("220").placement.node             # where group 220's app runs
        c.admin.move("220", "208")                          # stop it there, start it on 208
        c.admin.events(group="220")                         # placement and status changes

Two kinds of operation:

- **Cluster records** (docs/membership.md): nodes, groups, owners, app specs. Each change
  is a transaction on the cluster ensemble guarded by ``cluster/epoch``, so two operators
  never clobber each other: a concurrent change makes it re-read the records and retry
  (ConflictError after ``CHANGE_ATTEMPTS``). It answers a summary dict holding the new
  ``epoch`` and the ``revision`` of the write; the nodes apply it within a second.
- **HA** (docs/ha.md): a group's placement record and events, through the group's owners.
  Reads are linearizable; when the group has no quorum they fall back to the answering
  node's local copy and say so (``local_view_of``). ``move``, ``maintenance`` and
  ``cleanup`` are commands through the group's Raft log.

Errors are the client's (hakv.errors): UnknownGroupError, BadRequestError (a move to a
node that is not an owner, a group without an app), TopologyError naming the broken rule
of the records, ConflictError, and the retry/failover outcomes of :class:`~hakv.Client`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hakv import errors
from hakv.client import snapshot
from hakv.client.results import parse
from hakv.client.txn import Compare, Op
from hakv.core import access, ha
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
from hakv.core.topology import CLUSTER_GROUP, DEFAULT_LOAD, MIN_OWNERS, GroupSpec, NodeSpec
from hakv.errors import ConflictError, NoQuorumError, UnknownGroupError

if TYPE_CHECKING:
    from hakv.client.client import Client

__all__ = ["CHANGE_ATTEMPTS", "Admin", "HaActionResult", "PlacementView", "read_records"]

CHANGE_ATTEMPTS = 8  # operator changes re-read and retry this often on a concurrent change

# (compares, operations, summary) of one change, built from freshly read records
_Build = Callable[[Records], tuple[list[Compare], list[Op], dict[str, Any]]]


def read_records(client: Client) -> Records:
    """The cluster records, read linearizably (the epoch first: see ``Admin._change``).
    Also used by the nodes' reconciler, which holds a plain Client."""
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


# --------------------------------------------------------------------------- HA results


@dataclass(frozen=True)
class PlacementView:
    """Where a group's app runs, and the facts behind it: one node's ``/v1/placement``.

    ``placement``: the placement record (``node``, ``state``, fencing ``token``, ``reason``,
    ``time``, ``maintenance``, ``target`` of a move, ``failed_on``); ``owners`` in
    precedence order; ``leader`` and ``quorum`` as the answering node sees the group;
    ``has_app``: the group has an app to manage; ``local_view_of``: None for a linearizable
    read, else the node whose local copy this is (the group had no quorum). ``answer``: the
    whole answer, which also holds ``node_status`` (by node), ``app`` (the spec),
    ``fallback``, ``fallback_window``, ``ha`` (the tuning), ``local`` (the answering
    node's supervisor) and ``decision`` (the leader's latest HA decision).
    """

    group: str
    placement: ha.Placement
    owners: tuple[str, ...]
    leader: str | None
    quorum: bool
    has_app: bool
    local_view_of: str | None
    answer: Mapping[str, Any]

    @classmethod
    def from_wire(cls, answer: Mapping[str, Any], local: bool = False) -> PlacementView:
        """From a ``/v1/placement`` answer (``local``: read from the node's local copy)."""
        return cls(
            group=str(answer["group"]),
            placement=ha.Placement.from_dict(answer.get("placement")),
            owners=tuple(str(o) for o in answer.get("owners") or ()),
            leader=answer.get("leader"),
            quorum=bool(answer.get("quorum")),
            has_app=bool(answer.get("app")),
            local_view_of=str(answer.get("node")) if local else None,
            answer=dict(answer),
        )

    def facts(self) -> ha.PlacementFacts:
        """What :func:`hakv.core.ha.explain_placement` needs (TopologyError if the app
        spec on record breaks a rule)."""
        raw = self.answer
        app = ha.parse_app(raw["app"], f"group {self.group}") if raw.get("app") else None
        return ha.PlacementFacts(
            group=self.group, owners=self.owners, placement=self.placement,
            statuses=raw.get("node_status") or {}, quorum=raw.get("quorum"),
            leader=self.leader, app=app, fallback=raw.get("fallback", "stay"),
            fallback_window=raw.get("fallback_window"),
            tuning=ha.HaTuning(**raw.get("ha", {})))

    def explain(self) -> str:
        """In plain words: why the app runs where it runs, and where it would go next."""
        text = ha.explain_placement(self.facts())
        if self.local_view_of is not None:
            text += (f"\n(The group has no quorum: this is node {self.local_view_of}'s local "
                     "copy of its records.)")
        return text

    def to_dict(self) -> dict[str, Any]:
        """The answer as sent, plus ``local_view`` (bool): the JSON of ``hakv group
        placement``."""
        return {**self.answer, "local_view": self.local_view_of is not None}


@dataclass(frozen=True)
class HaActionResult:
    """The outcome of ``move``, ``maintenance`` or ``cleanup``: ``applied`` is False when
    the placement record already said so or refused it (``why``); ``placement``: the record
    after the command; ``answer``: the whole answer."""

    group: str
    applied: bool
    placement: ha.Placement
    why: str | None
    answer: Mapping[str, Any]

    @classmethod
    def from_wire(cls, answer: Mapping[str, Any]) -> HaActionResult:
        why = answer.get("why")
        return cls(group=str(answer["group"]), applied=bool(answer.get("applied")),
                   placement=ha.Placement.from_dict(answer.get("placement")),
                   why=None if why is None else str(why), answer=dict(answer))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.answer)


# --------------------------------------------------------------------------- Admin


class Admin:
    """Operator operations over ``client`` (see the module docstring); ``client.admin``."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"Admin({self.client!r})"

    # ---- cluster records: read

    def records(self) -> Records:
        """The cluster records as they are (nodes, groups, Raft voters, epoch), read
        linearizably: :class:`hakv.core.membership.Records`."""
        return read_records(self.client)

    def show(self) -> dict[str, Any]:
        """The cluster records as an operator sees them (``hakv cluster show``)::

            {"cluster": name, "epoch": int,
             "nodes": [{"id", "host", "raft_port", "api_port", "capacity",
                        "groups": [ids]}, ...],
             "groups": [{"id", "owners", "load", "raft_voters", "pending": [Raft steps],
                         "caught_up": [nodes], "state": "stable" | "changing"}, ...],
             "problems": [unreadable record keys]}
        """
        records = self.records()
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

    # ---- cluster records: change

    def add_node(self, spec: NodeSpec) -> dict[str, Any]:
        """Add a node record; then start the node (``hakv node --node ID``: it looks its
        own address up in the records). Answers ``{"node": spec as a dict, "epoch",
        "revision"}``; TopologyError if the id or an address is taken."""
        def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
            check_add_node(records, spec)
            key = NODES + spec.id
            return ([Compare.version(key, "==", 0)], [Op.put(key, _json(spec.to_dict()))],
                    {"node": spec.to_dict()})

        return self._change(build)

    def remove_node(self, node_id: str) -> dict[str, Any]:
        """Remove a node record: refused while a group lists the node or it votes in the
        cluster ensemble. Answers ``{"node": id, "epoch", "revision"}``."""
        voters = self._cluster_voters()

        def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
            check_remove_node(records, node_id, voters)
            key = NODES + node_id
            return ([Compare.mod_revision(key, "==", records.revision(key))], [Op.delete(key)],
                    {"node": node_id})

        return self._change(build)

    def create_group(self, group_id: str, owners: Sequence[str],
                     load: int = DEFAULT_LOAD) -> dict[str, Any]:
        """Create a group: its record and its initial Raft voters (all its ``owners``, in
        precedence order, at least 2); each owner starts its member within a second.
        Answers ``{"group": the group record, "epoch", "revision"}``."""
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

        return self._change(build)

    def delete_group(self, group_id: str) -> dict[str, Any]:
        """Delete a group: every owner stops its member and deletes the group's data.
        Answers ``{"group": id, "owners": [...], "epoch", "revision"}``."""
        def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
            _need_seeded(records)
            if group_id not in records.groups:
                raise UnknownGroupError(f"group {group_id} does not exist", group=group_id)
            keys = [GROUPS + group_id, MEMBERS + group_id,
                    *(k for k in records.revisions if k.startswith(f"{JOINS}{group_id}/"))]
            revision = records.revision(GROUPS + group_id)
            return ([Compare.mod_revision(GROUPS + group_id, "==", revision)],
                    [Op.delete(k) for k in keys],
                    {"group": group_id, "owners": list(records.groups[group_id].owners)})

        return self._change(build)

    def set_owners(self, group_id: str, owners: Sequence[str]) -> dict[str, Any]:
        """Change a group's owners; its leader then changes the Raft voters one step at a
        time (follow with :meth:`show`). Answers ``{"group", "owners", "previous_owners",
        "plan": [Raft steps], "epoch", "revision"}``."""
        owners = list(owners)

        def build(records: Records) -> tuple[list[Compare], list[Op], dict[str, Any]]:
            spec = records.groups.get(group_id)
            check_group(records, group_id, owners, spec.load if spec else 0, creating=False)
            assert spec is not None  # check_group refuses an unknown group
            record = {**records.group_records[group_id], "owners": owners}  # keeps app etc.
            compares = [Compare.mod_revision(GROUPS + group_id, "==",
                                             records.revision(GROUPS + group_id))]
            ops = [Op.put(GROUPS + group_id, _json(record))]
            if group_id not in records.members:
                # Never changed at runtime: its Raft voters are the owners before this change.
                compares.append(Compare.version(MEMBERS + group_id, "==", 0))
                ops.append(Op.put(MEMBERS + group_id,
                                  _json({"voters": list(spec.owners), "term": 0})))
            steps = plan_membership(records.voters(group_id), owners)
            return compares, ops, {"group": group_id, "owners": owners,
                                   "previous_owners": list(spec.owners),
                                   "plan": [str(s) for s in steps]}

        return self._change(build)

    def set_app(self, group_id: str, app: Mapping[str, Any], fallback: str | None = None,
                fallback_window: str | None = None) -> dict[str, Any]:
        """Set (or replace) a group's app at runtime: ``app`` is the ``[groups.app]`` table
        of a topology file as a mapping, checked by the same rules (TopologyError naming
        the broken one); ``fallback`` "stay" or "return" and ``fallback_window``
        ("HH:MM-HH:MM"), None: unchanged. The owners pick it up within a second
        (docs/ha.md). Answers ``{"group", "app", "fallback", "fallback_window", "epoch",
        "revision"}``."""
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
                "group": group_id, "app": record["app"],
                "fallback": record.get("fallback", "stay"),
                "fallback_window": record.get("fallback_window")}

        return self._change(build)

    # ---- HA

    def groups(self) -> list[str]:
        """The ids of the resource groups (not the internal ``_``-groups) that at least one
        reachable endpoint owns, sorted: what :meth:`events` covers without a group."""
        st = self.client.cluster_status()
        return sorted(g for g in st.get("groups", {}) if not g.startswith("_"))

    def placement(self, group: str) -> PlacementView:
        """Where ``group``'s app runs, its state and fencing token, and the facts the HA
        manager decides on (:class:`PlacementView`)."""
        answer, local = self._read("placement", {"group": group})
        return parse("/v1/placement", lambda: PlacementView.from_wire(answer, local))

    def explain_placement(self, group: str) -> str:
        """In plain words: why ``group``'s app runs where it runs, and where it would go
        next (``hakv explain placement``)."""
        return self.placement(group).explain()

    def events(self, group: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Placement changes and node status changes of ``group`` (None: every group of
        :meth:`groups`), at most ``limit`` per group, oldest first (time, group, log
        index). Each event is a dict: ``kind`` ("placement" or "node_status"), ``time``
        (Unix seconds), ``group``, ``index`` (log index), ``node``, ``state``, ``reason``;
        a placement event also has ``action`` and ``token``, a node status event ``by``.
        ``local_view_of`` (a node id) marks events read from that node's local copy
        because the group had no quorum."""
        out: list[dict[str, Any]] = []
        for gid in [group] if group else self.groups():
            answer, local = self._read("events", {"group": gid, "limit": limit})
            for event in answer.get("events", []):
                event.setdefault("group", gid)
                if local:
                    event["local_view_of"] = answer.get("node")
                out.append(event)
        out.sort(key=lambda e: (e.get("time", 0), e.get("group", ""), e.get("index", 0)))
        return out

    def move(self, group: str, target: str, reason: str | None = None) -> HaActionResult:
        """Move ``group``'s app to the owner ``target``: stopped where it runs, then started
        there with a new fencing token. Already there: ``placement.node == target`` and no
        ``placement.target``. BadRequestError if ``target`` is not an owner or the group
        has no app."""
        return self._action(group, {"action": "move", "target": target}, reason)

    def maintenance(self, group: str, on: bool, reason: str | None = None) -> HaActionResult:
        """Stop (``on``) or resume managing ``group``'s app: in maintenance hakv neither
        checks, restarts, moves nor fails it over, and leaves it running. ``applied`` is
        False when it already was so."""
        return self._action(group, {"action": "maintenance", "on": on}, reason)

    def cleanup(self, group: str, reason: str | None = None) -> HaActionResult:
        """Forget the nodes where ``group``'s app failed beyond its restart limit: every
        live owner may run it again."""
        return self._action(group, {"action": "cleanup"}, reason)

    # ---- online snapshot and restore (hakv.client.snapshot; docs/operations.md)

    def snapshot_save(self, group: str, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Snapshot the live ``group`` into the backup file ``path``; its manifest."""
        return snapshot.save(self.client, group, path)

    def snapshot_restore(self, path: str | os.PathLike[str], group: str | None = None,
                         force: bool = False) -> dict[str, Any]:
        """Rebuild ``group`` (default: the backup's) from the backup file ``path``."""
        return snapshot.restore(self.client, path, group, force=force)

    # ---- users and roles (hakv.core.access; docs/security.md "Access control")

    def users(self) -> dict[str, list[str]]:
        """Every user with a record: name -> role names."""
        return {k[len(access.USERS):]: access.user_record(v)["roles"]
                for k, v in self._auth(access.USERS).items()}

    def roles(self) -> dict[str, list[dict[str, Any]]]:
        """Every role: name -> grants ``{"group", "prefix", "verbs"}``."""
        return {k[len(access.ROLES):]: access.role_record(v)["grants"]
                for k, v in self._auth(access.ROLES).items()}

    def add_user(self, name: str, roles: Sequence[str] = ()) -> dict[str, Any]:
        """A user record for identity ``hakv://user/<name>`` (its client certificate comes
        from ``hakv certs client NAME``); ConflictError if it exists."""
        access.check_name(name, "user")
        record = access.user_record({"roles": list(roles)})
        return self._put_auth(access.USERS + name, record, new=True)

    def remove_user(self, name: str) -> dict[str, Any]:
        return self._delete_auth(access.USERS + access.check_name(name, "user"), "user")

    def grant_role(self, user: str, role: str) -> dict[str, Any]:
        """Give ``user`` the grants of ``role`` (the role must exist)."""
        self._get_auth(access.ROLES + access.check_name(role, "role"), "role")
        return self._update_auth(access.USERS + access.check_name(user, "user"), "user",
                                 lambda r: {"roles": sorted({*r["roles"], role})},
                                 access.user_record)

    def revoke_role(self, user: str, role: str) -> dict[str, Any]:
        return self._update_auth(access.USERS + access.check_name(user, "user"), "user",
                                 lambda r: {"roles": [x for x in r["roles"] if x != role]},
                                 access.user_record)

    def add_role(self, name: str) -> dict[str, Any]:
        access.check_name(name, "role")
        return self._put_auth(access.ROLES + name, {"grants": []}, new=True)

    def remove_role(self, name: str) -> dict[str, Any]:
        return self._delete_auth(access.ROLES + access.check_name(name, "role"), "role")

    def grant(self, role: str, group: str, verbs: Sequence[str],
              prefix: str = "") -> dict[str, Any]:
        """Let ``role`` do ``verbs`` on ``group`` (``"*"``: every group), on keys under
        ``prefix`` only if given (hakv.core.access.VERBS)."""
        new = access.grant(group, verbs, prefix)

        def change(record: dict[str, Any]) -> dict[str, Any]:
            kept = [g for g in record["grants"]
                    if (g["group"], g["prefix"]) != (new["group"], new["prefix"])]
            return {"grants": [*kept, new]}

        return self._update_auth(access.ROLES + access.check_name(role, "role"), "role",
                                 change, access.role_record)

    def revoke(self, role: str, group: str, prefix: str | None = None) -> dict[str, Any]:
        """Drop ``role``'s grants on ``group`` (only the one on ``prefix`` if given)."""
        def change(record: dict[str, Any]) -> dict[str, Any]:
            return {"grants": [g for g in record["grants"] if not (
                g["group"] == group and (prefix is None or g["prefix"] == prefix))]}

        return self._update_auth(access.ROLES + access.check_name(role, "role"), "role",
                                 change, access.role_record)

    def create_token(self, user: str, ttl: float | None = None,
                     verbs: list[str] | None = None) -> dict[str, Any]:
        """A bearer token for ``user`` (valid ``ttl`` seconds, or until revoked): the answer's
        ``token`` is shown this once (the record keeps its SHA-256); ``id`` revokes it.
        ``verbs``: a scoped token, limited to these verbs (and to the user's grants)."""
        token, token_id, record = access.new_token(user, time.time(), ttl, os.urandom(36),
                                                   verbs)
        res = self._put_auth(access.TOKENS + token_id, record, new=True)
        return {"id": token_id, "token": token, "user": user, "expires": record["expires"],
                "verbs": record.get("verbs"), "revision": res["revision"]}

    def tokens(self) -> dict[str, dict[str, Any]]:
        """Every token: id -> ``{"user", "expires", "verbs"}`` (never the secret; verbs
        None: all of the user's)."""
        return {k[len(access.TOKENS):]: {"user": v.get("user"), "expires": v.get("expires"),
                                         "verbs": v.get("verbs")}
                for k, v in self._auth(access.TOKENS).items()}

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token (by its id): refused on every node within ~0.25 s + replication."""
        return self._delete_auth(access.TOKENS + token_id, "token")

    def _auth(self, prefix: str) -> dict[str, Any]:
        kvs = self.client.range(CLUSTER_GROUP, prefix, limit=RANGE_LIMIT).kvs
        return {kv.key: json.loads(kv.value) for kv in kvs}

    def _get_auth(self, key: str, what: str) -> tuple[dict[str, Any], int]:
        try:
            kv = self.client.get(CLUSTER_GROUP, key)
        except errors.NotFoundError:
            raise errors.NotFoundError(
                f"no {what} {key.rsplit('/', 1)[-1]!r}: add it first "
                f"(`hakv {what} add NAME`)") from None
        return json.loads(kv.value), kv.mod_revision

    def _put_auth(self, key: str, record: dict[str, Any], new: bool) -> dict[str, Any]:
        try:
            result = self.client.put(CLUSTER_GROUP, key, json.dumps(record, sort_keys=True),
                                     if_mod_revision=0 if new else None)
        except ConflictError:
            raise ConflictError(f"{key.split('/')[1][:-1]} {key.rsplit('/', 1)[-1]!r} "
                                "exists already") from None
        return {"key": key, **record, "revision": result.revision}

    def _update_auth(self, key: str, what: str,
                     change: Callable[[dict[str, Any]], dict[str, Any]],
                     validate: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        for _ in range(CHANGE_ATTEMPTS):
            record, revision = self._get_auth(key, what)
            updated = validate(change(validate(record)))
            try:
                result = self.client.put(CLUSTER_GROUP, key,
                                         json.dumps(updated, sort_keys=True),
                                         if_mod_revision=revision)
            except ConflictError:
                continue  # changed meanwhile: read it again
            return {"key": key, **updated, "revision": result.revision}
        raise ConflictError(f"{what} record {key} kept changing; try again")

    def _delete_auth(self, key: str, what: str) -> dict[str, Any]:
        result = self.client.delete(CLUSTER_GROUP, key)
        if not result.deleted:
            raise errors.NotFoundError(f"no {what} {key.rsplit('/', 1)[-1]!r}")
        return {"key": key, "deleted": True, "revision": result.revision}

    # ---- machinery (the client's transport: Admin is part of the client library)

    def _read(self, op: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """A linearizable read; without quorum, a node's local copy. (answer, local?)"""
        try:
            return self.client._call(f"/v1/{op}", body, write=False), False
        except NoQuorumError:
            return self.client._call(f"/v1/{op}", {**body, "serializable": True},
                                     write=False), True

    def _action(self, group: str, body: dict[str, Any], reason: str | None) -> HaActionResult:
        request = {"group": group, **body}
        if reason is not None:
            request["reason"] = reason
        answer = self.client._call("/v1/ha", request, write=True)
        return parse("/v1/ha", lambda: HaActionResult.from_wire(answer))

    def _cluster_voters(self) -> list[str]:
        status = self.client.status()
        owners = ((status.get("groups") or {}).get(CLUSTER_GROUP) or {}).get("owners")
        if not isinstance(owners, list):
            raise errors.InternalError("/v1/status did not report the cluster ensemble's voters")
        return [str(o) for o in owners]

    def _change(self, build: _Build) -> dict[str, Any]:
        """Run an operator change as a transaction guarded by the epoch.

        ``build(records) -> (compares, ops, summary)`` validates against freshly read
        records (raising a HakvError to refuse); the transaction applies only if no other
        change happened since the read (``cluster/epoch`` unchanged), else it is rebuilt
        and retried.
        """
        for _ in range(CHANGE_ATTEMPTS):
            records = self.records()
            compares, ops, summary = build(records)
            epoch = _next_epoch(records)
            result = self.client.txn(
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
