"""The cluster topology: nodes, resource groups and their ordered owner lists.

A topology is read from a TOML file (see ``examples/nine-node.toml``)::

    [cluster]
    name = "patent-example"
    cluster_voters = ["202", "204", "206"]   # optional; default: the first 3 node ids

    [raft]                                   # optional; seconds
    election_timeout_min = 0.4
    election_timeout_max = 1.0
    leader_fallback_timeout = 1.0
    connection_retry = 0.5

    [[nodes]]
    id = "202"
    host = "127.0.0.1"
    raft_port = 7202
    api_port = 8202
    capacity = 10                            # optional, load units

    [[groups]]
    id = "220"
    owners = ["202", "208", "214"]           # ordered: precedence for failover
    load = 1                                 # optional
    fallback = "stay"                        # optional: or "return" [+ fallback_window]
    [groups.app]                             # optional: the group's app (docs/ha.md)
    start = "exec my-app --serve"

    [ha]                                     # optional; seconds (docs/ha.md)
    failure_timeout = 1.0
    lease = 1.0

Everything here is pure: plain frozen data in, answers out. The only I/O is reading the
file in :func:`load_topology`. Every problem with a topology is a
:class:`~hakv.errors.TopologyError` whose message names the broken rule and the offending
id, key or port, so an operator can fix the file from the message alone.

Two rules go beyond "the file is well formed", and are worth the why:

- ids (node and group) are restricted to ``[A-Za-z0-9_][A-Za-z0-9._-]*`` (at most 64
  characters) because they end up in data-dir paths, LMDB names and URLs; ``../x`` or
  ``a/b`` as an id would escape a data dir.
- the same ``(host, port)`` may appear only once across all raft and api ports: two listeners
  on one address is a start-up failure that is much harder to read than this message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from hakv.core.config import as_float, check_keys, toml_str, toml_value, type_name
from hakv.core.ha.spec import (
    AppSpec,
    HaTuning,
    ha_toml_lines,
    parse_app,
    parse_fallback,
    parse_ha,
)
from hakv.core.quorum import majority
from hakv.errors import TopologyError, UnknownGroupError

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_LOAD",
    "GroupSpec",
    "NodeSpec",
    "RaftTuning",
    "Topology",
    "default_voters",
    "file_order",
    "has_room",
    "load_topology",
    "parse_topology",
]

DEFAULT_CAPACITY = 10
DEFAULT_LOAD = 1
DEFAULT_VOTER_COUNT = 3
MIN_OWNERS = 2
MIN_PORT = 1
MAX_PORT = 65535
MAX_ID_LENGTH = 64
HEARTBEAT_PERIOD = 0.1
"""Seconds between a Raft leader's heartbeats (hakv.raft.host.RaftSettings.heartbeat_period)."""

CLUSTER_GROUP = "_cluster"
"""Id of the cluster ensemble: cluster-level records, voters from ``cluster_voters``."""

_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")

_TOP_KEYS = ("cluster", "raft", "ha", "nodes", "groups")
_CLUSTER_KEYS = ("name", "cluster_voters")
_RAFT_KEYS = (
    "election_timeout_min",
    "election_timeout_max",
    "leader_fallback_timeout",
    "connection_retry",
)
_NODE_KEYS = ("id", "host", "raft_port", "api_port", "capacity")
_GROUP_KEYS = ("id", "owners", "load", "fallback", "fallback_window", "app")


def _fail(rule: str, message: str, **details: Any) -> TopologyError:
    """Build (not raise) a TopologyError; ``rule`` is a stable tag for callers and tests."""
    return TopologyError(message, rule=rule, **details)


def _join_host_port(host: str, port: int) -> str:
    # An IPv6 literal needs brackets, or "::1:7202" is ambiguous.
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _id_problem(value: object) -> str | None:
    """Why ``value`` is not a usable id, or None if it is."""
    if not isinstance(value, str):
        return f"must be a string, got {type_name(value)}"
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    if not _ID_RE.match(value):
        return (
            "may only contain letters, digits, '_', '.' and '-' and must not start with "
            "'.' or '-' (ids are used in paths and URLs)"
        )
    return None


def _host_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {type_name(value)}"
    if not value:
        return "must not be empty"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return "must not contain whitespace or control characters"
    return None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def default_voters(node_ids: Iterable[str]) -> tuple[str, ...]:
    """The cluster ensemble's voters when the file names none: the first 3 nodes.

    With fewer than 3 nodes the count is rounded down to an odd number (2 nodes -> 1 voter),
    so the default is always a valid voter set.
    """
    ids = tuple(node_ids)
    count = min(DEFAULT_VOTER_COUNT, len(ids))
    if count % 2 == 0:
        count -= 1
    return ids[: max(count, 0)]


def has_room(capacity: int, held: int, load: int) -> bool:
    """Whether a group may place ``load`` on a node of ``capacity`` while the other groups
    hold ``held`` of it: the rule the node's bridge applies to every allocation (I7), and
    that ``hakv explain`` applies to a failover."""
    return held + load <= capacity


def file_order(ids: Iterable[str], order: Iterable[str]) -> list[str]:
    """``ids`` in the order of ``order`` (a topology's node or group ids: file order), then
    the ids ``order`` lacks, sorted; each id once.

    Linear (sets, not list lookups): at 10,000 nodes a list lookup per id took 0.4 s per
    membership view, on every node at every cluster-record change.
    """
    wanted = set(ids)
    known = [i for i in dict.fromkeys(order) if i in wanted]
    return known + sorted(wanted.difference(known))


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class NodeSpec:
    """One node: where its Raft members and its client API listen, and what it can carry."""

    id: str
    host: str
    raft_port: int
    api_port: int
    capacity: int = DEFAULT_CAPACITY

    @property
    def raft_address(self) -> str:
        """``host:raft_port`` (IPv6 literals bracketed)."""
        return _join_host_port(self.host, self.raft_port)

    @property
    def api_address(self) -> str:
        """``host:api_port`` (IPv6 literals bracketed)."""
        return _join_host_port(self.host, self.api_port)

    def fits(self, held: int, load: int) -> bool:
        """:func:`has_room` on this node's capacity."""
        return has_room(self.capacity, held, load)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "raft_port": self.raft_port,
            "api_port": self.api_port,
            "capacity": self.capacity,
        }


@dataclass(frozen=True)
class GroupSpec:
    """One resource group: its owners in failover precedence order, and the load it puts
    on the node that runs it."""

    id: str
    owners: tuple[str, ...]
    load: int = DEFAULT_LOAD
    # HA (docs/ha.md): the app the group runs, and where it goes when a better owner returns.
    app: AppSpec | None = None
    fallback: str = "stay"
    fallback_window: str | None = None

    def __post_init__(self) -> None:
        # Accept any iterable (a list from JSON, say) but store a tuple: hashable, immutable.
        if not isinstance(self.owners, tuple):
            object.__setattr__(self, "owners", tuple(self.owners))

    @property
    def quorum_size(self) -> int:
        """Owners that must be up and connected for the group to serve: a strict majority."""
        return majority(len(self.owners))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "owners": list(self.owners), "load": self.load}
        if self.fallback != "stay":
            out["fallback"] = self.fallback
        if self.fallback_window is not None:
            out["fallback_window"] = self.fallback_window
        if self.app is not None:
            out["app"] = self.app.to_dict()
        return out


@dataclass(frozen=True)
class RaftTuning:
    """Raft timing, in seconds; shared by every ensemble of the cluster."""

    election_timeout_min: float = 0.4
    election_timeout_max: float = 1.0
    leader_fallback_timeout: float = 1.0
    connection_retry: float = 0.5

    def validate(self) -> None:
        """Raise TopologyError unless every value is a finite number > 0 and min < max."""
        for key in _RAFT_KEYS:
            value = getattr(self, key)
            if not _is_number(value):
                raise _fail(
                    "raft_type",
                    f"[raft] {key} must be a number of seconds, got {type_name(value)}",
                    key=key,
                )
            if not math.isfinite(as_float(value)) or value <= 0:
                raise _fail(
                    "raft_positive",
                    f"[raft] {key} must be a finite number of seconds > 0, got {value!r}",
                    key=key,
                )
        if self.election_timeout_min >= self.election_timeout_max:
            raise _fail(
                "raft_election_range",
                f"[raft] election_timeout_min ({self.election_timeout_min!r}) must be less "
                f"than election_timeout_max ({self.election_timeout_max!r}); Raft picks a "
                "random timeout in between",
            )
        if self.election_timeout_min <= 3 * HEARTBEAT_PERIOD:
            raise _fail(
                "raft_election_too_short",
                f"[raft] election_timeout_min ({self.election_timeout_min!r}) must exceed 3 "
                f"heartbeat periods ({3 * HEARTBEAT_PERIOD:.1f}s), or followers would start "
                "elections between two heartbeats of a healthy leader",
            )
        if self.leader_fallback_timeout <= HEARTBEAT_PERIOD:
            raise _fail(
                "raft_fallback_too_short",
                f"[raft] leader_fallback_timeout ({self.leader_fallback_timeout!r}) must "
                f"exceed the heartbeat period ({HEARTBEAT_PERIOD}s)",
            )

    def to_dict(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in _RAFT_KEYS}


@dataclass(frozen=True)
class Topology:
    """The whole cluster: its nodes, its resource groups, Raft timing and cluster voters.

    Construct with :func:`parse_topology` / :func:`load_topology` / :meth:`from_dict`
    (which validate); a hand-built ``Topology`` is only checked when you call
    :meth:`validate`.
    """

    cluster: str
    nodes: tuple[NodeSpec, ...]
    groups: tuple[GroupSpec, ...]
    raft: RaftTuning
    cluster_voters: tuple[str, ...]
    ha: HaTuning = HaTuning()

    def __post_init__(self) -> None:
        for name in ("nodes", "groups", "cluster_voters"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    # ---- indexes (built once; the dataclass is frozen so they never go stale)

    @cached_property
    def _nodes_by_id(self) -> dict[str, NodeSpec]:
        return {node.id: node for node in reversed(self.nodes)}  # first definition wins

    @cached_property
    def _groups_by_id(self) -> dict[str, GroupSpec]:
        return {group.id: group for group in reversed(self.groups)}

    @cached_property
    def _groups_by_node(self) -> dict[str, tuple[GroupSpec, ...]]:
        by_node: dict[str, list[GroupSpec]] = {}
        for group in self.groups:
            for owner in dict.fromkeys(group.owners):
                by_node.setdefault(owner, []).append(group)
        return {node: tuple(groups) for node, groups in by_node.items()}

    # ---- queries

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(node.id for node in self.nodes)

    @property
    def group_ids(self) -> tuple[str, ...]:
        return tuple(group.id for group in self.groups)

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id; TopologyError if there is none."""
        try:
            return self._nodes_by_id[node_id]
        except KeyError:
            raise _fail(
                "unknown_node",
                f"node {node_id} is not in the topology (nodes: {', '.join(self.node_ids)})",
                node=node_id,
            ) from None

    def has_node(self, node_id: str) -> bool:
        return node_id in self._nodes_by_id

    def group(self, group_id: str) -> GroupSpec:
        """The group with this id; UnknownGroupError (a client-facing error) if none."""
        try:
            return self._groups_by_id[group_id]
        except KeyError:
            known = ", ".join(self.group_ids) or "none"
            raise UnknownGroupError(
                f"group {group_id} is not in the topology (groups: {known})",
                group=group_id,
            ) from None

    def has_group(self, group_id: str) -> bool:
        return group_id in self._groups_by_id

    def groups_of(self, node_id: str) -> tuple[GroupSpec, ...]:
        """The groups whose owner list includes ``node_id``, in file order."""
        self.node(node_id)
        return self._groups_by_node.get(node_id, ())

    def sphere_of_influence(self, node_id: str) -> frozenset[str]:
        """Every node that shares a group with ``node_id``, itself included.

        This is where the node's own status is replicated. A node on no group still has
        itself in its sphere.
        """
        sphere = {node_id}
        for group in self.groups_of(node_id):
            sphere.update(group.owners)
        return frozenset(sphere)

    def shared_nodes(self) -> dict[str, tuple[str, ...]]:
        """Nodes on two or more groups (the bridges) -> the ids of those groups.

        Keys in node file order, group ids in group file order.
        """
        shared: dict[str, tuple[str, ...]] = {}
        for node in self.nodes:
            groups = self._groups_by_node.get(node.id, ())
            if len(groups) >= 2 and node.id not in shared:
                shared[node.id] = tuple(group.id for group in groups)
        return shared

    # ---- validation

    def validate(self) -> None:
        """Raise TopologyError naming the first broken rule; return None if all hold."""
        if not isinstance(self.cluster, str) or not self.cluster.strip():
            raise _fail(
                "cluster_name",
                '[cluster] name is missing or empty; add name = "<cluster name>" under [cluster]',
            )
        if not self.nodes:
            raise _fail("no_nodes", "the topology has no nodes; add at least one [[nodes]] table")
        self._validate_nodes()
        self._validate_ports()
        self._validate_groups()
        self.raft.validate()
        self.ha.validate()
        self._validate_voters()

    def _validate_nodes(self) -> None:
        seen: set[str] = set()
        for node in self.nodes:
            problem = _id_problem(node.id)
            if problem:
                raise _fail("node_id", f"node id {node.id!r} {problem}", node=str(node.id))
            if node.id in seen:
                raise _fail(
                    "duplicate_node",
                    f"node {node.id} is defined twice; node ids must be unique",
                    node=node.id,
                )
            seen.add(node.id)
            problem = _host_problem(node.host)
            if problem:
                raise _fail("node_host", f"node {node.id}: host {problem}", node=node.id)
            for key in ("raft_port", "api_port"):
                port = getattr(node, key)
                if not _is_int(port):
                    raise _fail(
                        "node_field_type",
                        f"node {node.id}: {key} must be an integer, got {type_name(port)}",
                        node=node.id,
                        key=key,
                    )
                if not MIN_PORT <= port <= MAX_PORT:
                    raise _fail(
                        "port_range",
                        f"node {node.id}: {key} {port} is out of range {MIN_PORT}..{MAX_PORT}",
                        node=node.id,
                        key=key,
                        port=port,
                    )
            if not _is_int(node.capacity) or node.capacity < 0:
                raise _fail(
                    "node_capacity",
                    f"node {node.id}: capacity must be an integer >= 0, got {node.capacity!r}",
                    node=node.id,
                )

    def _validate_ports(self) -> None:
        users: dict[tuple[str, int], str] = {}
        for node in self.nodes:
            for key in ("raft_port", "api_port"):
                port = getattr(node, key)
                address = (node.host, port)
                user = f"node {node.id} ({key})"
                if address in users:
                    raise _fail(
                        "port_clash",
                        f"port clash: {_join_host_port(node.host, port)} is used by "
                        f"{users[address]} and by {user}; every raft_port and api_port "
                        "must be a distinct host:port",
                        node=node.id,
                        port=port,
                    )
                users[address] = user

    def _validate_groups(self) -> None:
        seen: set[str] = set()
        for group in self.groups:
            problem = _id_problem(group.id)
            if problem:
                raise _fail("group_id", f"group id {group.id!r} {problem}", group=str(group.id))
            if group.id.startswith("_"):
                raise _fail(
                    "reserved_group_id",
                    f"group id {group.id!r} starts with '_', which is reserved for hakv's own "
                    f"ensembles (the cluster ensemble is {CLUSTER_GROUP!r}); rename the group",
                    group=group.id,
                )
            if group.id in seen:
                raise _fail(
                    "duplicate_group",
                    f"group {group.id} is defined twice; group ids must be unique",
                    group=group.id,
                )
            seen.add(group.id)
            if not _is_int(group.load) or group.load < 0:
                raise _fail(
                    "group_load",
                    f"group {group.id}: load must be an integer >= 0, got {group.load!r}",
                    group=group.id,
                )
            if len(group.owners) < MIN_OWNERS:
                listed = ", ".join(map(str, group.owners)) or "none"
                raise _fail(
                    "too_few_owners",
                    f"group {group.id} has {_plural(len(group.owners), 'owner')} ({listed}); "
                    f"a group needs at least {MIN_OWNERS} owners",
                    group=group.id,
                )
            owners_seen: set[str] = set()
            for owner in group.owners:
                if owner in owners_seen:
                    raise _fail(
                        "duplicate_owner",
                        f"group {group.id} lists owner {owner} twice; each node may appear "
                        "once in an owner list",
                        group=group.id,
                        node=owner,
                    )
                owners_seen.add(owner)
                if owner not in self._nodes_by_id:
                    raise _fail(
                        "unknown_owner",
                        f"group {group.id} lists owner {owner}, which is not a node of the "
                        f'topology; add [[nodes]] id = "{owner}" or fix the owner list',
                        group=group.id,
                        node=owner,
                    )

    def _validate_voters(self) -> None:
        voters = self.cluster_voters
        if not voters:
            raise _fail(
                "voters_empty",
                "cluster_voters is empty; list 1, 3 or 5 node ids (or leave it out for the "
                "first 3 nodes)",
            )
        seen: set[str] = set()
        for voter in voters:
            if voter in seen:
                raise _fail(
                    "duplicate_voter",
                    f"cluster_voters lists {voter} twice",
                    node=voter,
                )
            seen.add(voter)
            if voter not in self._nodes_by_id:
                raise _fail(
                    "unknown_voter",
                    f"cluster_voters lists {voter}, which is not a node of the topology",
                    node=voter,
                )
        if len(voters) % 2 == 0:
            raise _fail(
                "voters_even",
                f"cluster_voters has {len(voters)} members ({', '.join(voters)}); it needs an "
                "odd number (1, 3, 5, ...) so that a majority is well defined",
            )

    # ---- serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; shaped like the TOML file, and accepted back by :meth:`from_dict`."""
        return {
            "cluster": {"name": self.cluster, "cluster_voters": list(self.cluster_voters)},
            "raft": self.raft.to_dict(),
            "ha": self.ha.to_dict(),
            "nodes": [node.to_dict() for node in self.nodes],
            "groups": [group.to_dict() for group in self.groups],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Topology:
        """Build and validate from the file's shape (a parsed TOML or :meth:`to_dict`)."""
        try:
            topology = _from_raw(data)
            topology.validate()
        except TopologyError as err:
            details = {**err.details, "source": source}
            raise TopologyError(f"{source}: {err.message}", **details) from None
        return topology

    def fingerprint(self) -> str:
        """sha256 (hex) of the cluster name, nodes and groups, in a canonical form.

        Independent of key order, whitespace and the order of [[nodes]] / [[groups]] tables
        in the file; owner order counts (it is failover precedence). Raft tuning and
        cluster_voters are not included.
        """
        canonical = {
            "cluster": self.cluster,
            "nodes": sorted((node.to_dict() for node in self.nodes), key=lambda d: d["id"]),
            "groups": sorted((group.to_dict() for group in self.groups), key=lambda d: d["id"]),
        }
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def to_toml(self) -> str:
        """A topology file that :func:`parse_topology` reads back to an equal Topology."""
        lines = [
            "# hakv topology; see examples/nine-node.toml for the format",
            "",
            "[cluster]",
            f"name = {toml_str(self.cluster)}",
            f"cluster_voters = {toml_value(self.cluster_voters)}",
            "",
            "[raft]",
        ]
        lines += [f"{key} = {toml_value(float(getattr(self.raft, key)))}" for key in _RAFT_KEYS]
        lines += ["", *ha_toml_lines(self.ha)]
        for node in self.nodes:
            lines += [
                "",
                "[[nodes]]",
                f"id = {toml_str(node.id)}",
                f"host = {toml_str(node.host)}",
                f"raft_port = {node.raft_port}",
                f"api_port = {node.api_port}",
                f"capacity = {node.capacity}",
            ]
        for group in self.groups:
            lines += [
                "",
                "[[groups]]",
                f"id = {toml_str(group.id)}",
                f"owners = {toml_value(group.owners)}",
                f"load = {group.load}",
            ]
            if group.fallback != "stay":
                lines.append(f"fallback = {toml_str(group.fallback)}")
            if group.fallback_window is not None:
                lines.append(f"fallback_window = {toml_str(group.fallback_window)}")
            if group.app is not None:
                lines += group.app.to_toml_lines("groups.app")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- TOML in


def _table(data: Mapping[str, Any], key: str, *, required: bool) -> Mapping[str, Any]:
    if key not in data:
        if required:
            raise _fail("missing_table", f"missing [{key}] table")
        return {}
    value = data[key]
    if not isinstance(value, Mapping):
        raise _fail(
            "shape",
            f"{key} must be a table ([{key}]), got {type_name(value)}",
            key=key,
        )
    return value


def _array_of_tables(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise _fail(
            "shape",
            f"{key} must be an array of tables ([[{key}]] sections), got {type_name(value)}",
            key=key,
        )
    return value


def _id_value(value: object, where: str, key: str) -> str:
    """An id field: a string, or an integer (converted: ``id = 202`` means "202")."""
    if _is_int(value):
        return str(value)
    if isinstance(value, str):
        return value
    raise _fail(
        "field_type",
        f"{where}: {key} must be a string (or an integer), got {type_name(value)}",
        key=key,
    )


def _id_list(value: object, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail(
            "field_type",
            f"{where}: {key} must be an array of node ids, got {type_name(value)}",
            key=key,
        )
    return tuple(_id_value(item, where, f"{key} entry") for item in value)


def _required(table: Mapping[str, Any], key: str, where: str, expected: str) -> Any:
    if key not in table:
        raise _fail("missing_field", f"{where}: field {key!r} is missing ({expected})", key=key)
    return table[key]


def _int_field(table: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    if key not in table and default is not None:
        return default
    value = _required(table, key, where, "expected an integer")
    if not _is_int(value):
        raise _fail(
            "field_type",
            f"{where}: {key} must be an integer, got {type_name(value)}",
            key=key,
        )
    return int(value)


def _node_from_raw(raw: Mapping[str, Any], index: int) -> NodeSpec:
    position = f"[[nodes]] #{index + 1}"
    node_id = _id_value(_required(raw, "id", position, "expected a string"), position, "id")
    where = f"node {node_id}"
    check_keys(raw, _NODE_KEYS, where)
    host = _required(raw, "host", where, "expected a string")
    if not isinstance(host, str):
        raise _fail(
            "field_type", f"{where}: host must be a string, got {type_name(host)}", key="host"
        )
    return NodeSpec(
        id=node_id,
        host=host,
        raft_port=_int_field(raw, "raft_port", where),
        api_port=_int_field(raw, "api_port", where),
        capacity=_int_field(raw, "capacity", where, DEFAULT_CAPACITY),
    )


def _group_from_raw(raw: Mapping[str, Any], index: int) -> GroupSpec:
    position = f"[[groups]] #{index + 1}"
    group_id = _id_value(_required(raw, "id", position, "expected a string"), position, "id")
    where = f"group {group_id}"
    check_keys(raw, _GROUP_KEYS, where)
    owners = _id_list(
        _required(raw, "owners", where, "expected an array of node ids"), where, "owners"
    )
    fallback, window = parse_fallback(raw, where)
    app = parse_app(raw["app"], where) if "app" in raw else None
    return GroupSpec(id=group_id, owners=owners, load=_int_field(raw, "load", where, DEFAULT_LOAD),
                     app=app, fallback=fallback, fallback_window=window)


def _raft_from_raw(raw: Mapping[str, Any]) -> RaftTuning:
    check_keys(raw, _RAFT_KEYS, "[raft]")
    values: dict[str, float] = {}
    for key in _RAFT_KEYS:
        if key in raw:
            value = raw[key]
            if not _is_number(value):
                raise _fail(
                    "field_type",
                    f"[raft] {key} must be a number of seconds, got {type_name(value)}",
                    key=key,
                )
            if not math.isfinite(as_float(value)):
                raise _fail(
                    "raft_positive",
                    f"[raft] {key} must be a finite number of seconds > 0, got "
                    f"{type_name(value)}",
                    key=key,
                )
            values[key] = float(value)
    return RaftTuning(**values)


def _from_raw(data: Mapping[str, Any]) -> Topology:
    """The file's shape -> Topology, checking keys and types (not the cross-field rules)."""
    if not isinstance(data, Mapping):
        raise _fail("shape", f"a topology must be a table, got {type_name(data)}")
    check_keys(data, _TOP_KEYS, "top level")
    cluster = _table(data, "cluster", required=True)
    check_keys(cluster, _CLUSTER_KEYS, "[cluster]")
    name = cluster.get("name", "")
    if not isinstance(name, str):
        raise _fail(
            "field_type",
            f"[cluster] name must be a string, got {type_name(name)}",
            key="name",
        )
    raft = _raft_from_raw(_table(data, "raft", required=False))
    ha = parse_ha(_table(data, "ha", required=False))
    nodes = tuple(_node_from_raw(raw, i) for i, raw in enumerate(_array_of_tables(data, "nodes")))
    groups = tuple(
        _group_from_raw(raw, i) for i, raw in enumerate(_array_of_tables(data, "groups"))
    )
    if "cluster_voters" in cluster:
        voters = _id_list(cluster["cluster_voters"], "[cluster]", "cluster_voters")
    else:
        voters = default_voters(node.id for node in nodes)
    return Topology(cluster=name, nodes=nodes, groups=groups, raft=raft, cluster_voters=voters,
                    ha=ha)


def parse_topology(text: str, source: str = "<string>") -> Topology:
    """Parse and validate topology TOML; every problem is a TopologyError naming ``source``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise TopologyError(f"{source}: not valid TOML: {err}", source=source) from None
    except ValueError as err:  # not a TOMLDecodeError: int() of a 4301+ digit integer
        what = ("an integer of more than 4300 digits; no topology value needs one, fix that "
                "number" if "digits" in str(err) else str(err))
        raise TopologyError(f"{source}: not valid TOML: {what}", source=source) from None
    except RecursionError:
        raise TopologyError(
            f"{source}: not valid TOML: arrays or inline tables nested too deeply for the "
            "TOML reader; a topology nests at most a few levels", source=source) from None
    return Topology.from_dict(data, source=source)


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """Read, parse and validate a topology file; every problem is a TopologyError."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TopologyError(f"{source}: topology file does not exist", source=source) from None
    except IsADirectoryError:
        raise TopologyError(
            f"{source}: is a directory, not a topology file", source=source
        ) from None
    except UnicodeDecodeError as err:
        raise TopologyError(
            f"{source}: not a text file (not UTF-8 at byte {err.start})", source=source
        ) from None
    except OSError as err:
        raise TopologyError(
            f"{source}: cannot read topology file: {err.strerror or err}", source=source
        ) from None
    return parse_topology(text, source=source)
