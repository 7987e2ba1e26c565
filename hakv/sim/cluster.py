"""The simulated cluster: the chain topology of the benchmarks, and the ensembles of a scheme.

This module's room: turning a :class:`~hakv.core.topology.Topology` into simulated Raft
ensembles (hakv.sim.model) the way hakv places records, or the way full replication
would. Membership comes from hakv.core.replication (``replication_set``), never from a
re-derivation; where a change goes comes from hakv.core.routing (``route``).

Two schemes over the same topology (the same nodes, groups, owners and apps):

- ``hakv``: one ensemble per resource group over its owners (``GroupRecord``), and the
  cluster ensemble ``_cluster``: the cluster voters vote, every other node follows it
  read-only (``ClusterRecord`` is on every node).
- ``full``: what the patent argues against. One ensemble ``_all`` whose voters are all N
  nodes holds every record: groups, node status, cluster-level records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from hakv.core.ha import AppSpec, HaTuning
from hakv.core.replication import ClusterRecord, GroupRecord, replication_set
from hakv.core.routing import Change, NodeChange, route
from hakv.core.topology import (
    CLUSTER_GROUP,
    GroupSpec,
    NodeSpec,
    RaftTuning,
    Topology,
    default_voters,
)
from hakv.node.process import status_home
from hakv.sim.model import Ensemble, Sim

__all__ = ["FULL_ENSEMBLE", "SCHEMES", "Scheme", "SimCluster", "chain_topology"]

Scheme = Literal["hakv", "full"]
SCHEMES: tuple[Scheme, ...] = ("hakv", "full")
FULL_ENSEMBLE = "_all"
"""The one all-node ensemble of the ``full`` scheme (``_`` ids are never group ids)."""

SIM_APP = AppSpec(start="sim-app")
"""Every simulated group runs an app (an HA application, the point of a group); it is
never started: only hakv.core.ha's decisions about it are."""


def chain_topology(n_nodes: int, owners: int, *, raft: RaftTuning | None = None,
                   ha: HaTuning | None = None) -> Topology:
    """N nodes ``n0..n{N-1}`` and ceil(N / (M-1)) groups ``g0, g1, ...`` of M owners,
    chained like the real-process benchmark: group k owns nodes (M-1)k, (M-1)k+1, ...,
    (M-1)k+M-1 (mod N), in that precedence order, so neighbouring groups share exactly one
    node (for M=3: 2k, 2k+1, 2k+2) and the last group closes the ring through n0. Every
    node is on one or two groups. Cluster voters: the first 3 nodes (hakv's default).

    Node ``i`` listens on a host of its own (10.x.y.z), so 10,000 nodes need no 20,000
    distinct ports. ValueError unless 2 <= M <= N.
    """
    if isinstance(owners, bool) or not isinstance(owners, int) or owners < 2:
        raise ValueError(f"owners must be an integer >= 2, got {owners!r}")
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < owners:
        raise ValueError(f"nodes must be an integer >= owners ({owners}), got {n_nodes!r}")
    nodes = tuple(
        NodeSpec(id=f"n{i}", host=f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}",
                 raft_port=7000, api_port=8000)
        for i in range(n_nodes))
    step = owners - 1
    groups = tuple(
        GroupSpec(id=f"g{k}", owners=tuple(f"n{(step * k + j) % n_nodes}" for j in range(owners)),
                  app=SIM_APP)
        for k in range(math.ceil(n_nodes / step)))
    topology = Topology(cluster=f"sim-{n_nodes}x{owners}", nodes=nodes, groups=groups,
                        raft=raft or RaftTuning(), ha=ha or HaTuning(),
                        cluster_voters=default_voters(n.id for n in nodes))
    topology.validate()
    return topology


class SimCluster:
    """The ensembles of one scheme over a topology, on one :class:`Sim`."""

    def __init__(self, sim: Sim, topology: Topology, scheme: Scheme) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
        self.sim = sim
        self.topology = topology
        self.scheme = scheme
        self.ensembles: dict[str, Ensemble] = {}
        everyone = replication_set(topology, ClusterRecord("sim"))
        all_nodes = tuple(n for n in topology.node_ids if n in everyone)
        if scheme == "hakv":
            for group in topology.groups:
                holders = replication_set(topology, GroupRecord(group.id))
                voters = tuple(o for o in group.owners if o in holders)
                self.ensembles[group.id] = Ensemble(sim, group.id, voters)
            voters = topology.cluster_voters
            voting = set(voters)
            readonly = tuple(n for n in all_nodes if n not in voting)
            self.all_nodes = Ensemble(sim, CLUSTER_GROUP, voters, readonly)
        else:
            self.all_nodes = Ensemble(sim, FULL_ENSEMBLE, all_nodes)
        self.ensembles[self.all_nodes.name] = self.all_nodes
        self.group_ensembles = tuple(e for e in self.ensembles.values() if e is not self.all_nodes)

    def ensemble(self, name: str) -> Ensemble:
        """The ensemble that carries ``name`` (a group id or ``_cluster``) in this scheme."""
        if self.scheme == "full":
            return self.all_nodes
        return self.ensembles[name]

    def of_group(self, group_id: str) -> Ensemble:
        """The ensemble that holds ``group_id``'s records."""
        return self.ensemble(group_id)

    def targets(self, change: Change) -> tuple[Ensemble, ...]:
        """The ensembles a change goes to (patent Fig. 3, hakv.core.routing.route), each once."""
        out: dict[str, Ensemble] = {}
        for name in route(self.topology, change).targets:
            ensemble = self.ensemble(name)
            out.setdefault(ensemble.name, ensemble)
        return tuple(out.values())

    def status_targets(self, node: str) -> tuple[Ensemble, ...]:
        """Where ``node`` writes its own status when it starts, in the order it does.

        hakv: ``hakv.node.process.status_home`` of the groups it owns, in the order
        hakv.node.process.Node._publish_status takes them (sorted): each group that lists it, or
        the cluster ensemble when it owns none (its status has no other home). Those
        groups are the route of its own status report (hakv.core.routing); ValueError if the
        two ever disagree. Full replication: its one status record.
        """
        if self.scheme == "full":
            return (self.all_nodes,)
        names = status_home({g.id for g in self.topology.groups_of(node)})
        routed = {e.name for e in self.targets(NodeChange(node, "status"))}
        if routed and routed != names:
            raise ValueError(f"status of {node}: status_home {sorted(names)} but "
                             f"hakv.core.routing routes it to {sorted(routed)}")
        return tuple(self.ensembles[name] for name in sorted(names))

    def voter_of(self) -> dict[str, list[Ensemble]]:
        """Node -> the ensembles it votes in (where it runs election timers)."""
        out: dict[str, list[Ensemble]] = {n: [] for n in self.topology.node_ids}
        for ensemble in self.ensembles.values():
            for voter in ensemble.voters:
                out[voter].append(ensemble)
        return out

    def member_of(self) -> dict[str, list[Ensemble]]:
        """Node -> the ensembles it is a member of (voter or read-only)."""
        out: dict[str, list[Ensemble]] = {n: [] for n in self.topology.node_ids}
        for ensemble in self.ensembles.values():
            for member in ensemble.members:
                out[member].append(ensemble)
        return out

    def groups_in(self, ensembles: Sequence[Ensemble]) -> tuple[str, ...]:
        """Ids of the groups whose records those ensembles hold, in topology order."""
        names = {e.name for e in ensembles}
        return tuple(g.id for g in self.topology.groups if self.of_group(g.id).name in names)
