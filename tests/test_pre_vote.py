"""PreVote on real processes (docs/raft.md, point 5): a member cut off from its leader,
but not from the rest of its group, asks before it raises its term, and the members that
still hear the leader refuse, so the healthy leader keeps its term and its group.

The rounds step by step (refused while a leader was heard within the lease, granted
after; a rejoining member does not disrupt) are in tests/testdata/raft/prevote.txt on the
deterministic harness. Here, the claim only real processes show: with real timers and a
real cut, the healthy leader keeps its term. Uses the chaos harness's network namespaces
(root only): the cut is an iptables rule between two namespaces, nothing outside them is
touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.cluster import ChaosCluster
from chaos.netns import cut_both
from hakv.core.topology import load_topology
from tests.chaos_support import EXAMPLES, need_root, throwaway_network
from tests.support import holds, wait_for

GROUP = "g1"


def _view(cluster: ChaosCluster, node: str) -> dict[str, object]:
    return ((cluster.query(node) or {}).get("groups") or {}).get(GROUP) or {}


def _settled(cluster: ChaosCluster, nodes: tuple[str, ...]) -> tuple[str, int] | None:
    """The leader and term once every member names the same ones (start-up elections over)."""
    views = [_view(cluster, n) for n in nodes]
    pairs = {(v.get("leader"), v.get("term")) for v in views}
    if len(pairs) != 1:
        return None
    leader, term = pairs.pop()
    return (leader, term) if isinstance(leader, str) and isinstance(term, int) else None


def _leader_and_term(cluster: ChaosCluster) -> tuple[str | None, int | None]:
    leader = cluster.leader(GROUP)
    if leader is None:
        return None, None
    view = ((cluster.query(leader) or {}).get("groups") or {}).get(GROUP) or {}
    return leader, view.get("term")


@pytest.mark.slow
def test_a_member_cut_off_from_its_leader_alone_does_not_depose_it(tmp_path: Path) -> None:
    need_root()
    topology = load_topology(EXAMPLES / "three-node.toml")
    with throwaway_network(topology.node_ids) as net:
        cluster = ChaosCluster(net, topology, tmp_path / "cluster",
                               env={"HAKV_LOG_LEVEL": "WARNING"})
        try:
            cluster.start_all()
            cluster.wait_quorum([GROUP])
            owners = topology.group(GROUP).owners
            leader, term = wait_for(lambda: _settled(cluster, owners), 15,
                                    what="every member to agree on g1's leader")
            cut_off = next(n for n in owners if n != leader)
            # It still reaches the third member, so stock Raft would let it campaign
            # there with ever higher terms (and, on winning, depose the leader).
            net.apply("cut", cut_both(leader, cut_off))
            # It notices the cut (forgets its silent leader after leader_fallback_timeout)...
            wait_for(lambda: _view(cluster, cut_off).get("leader") is None, 10,
                     interval=0.05, what=f"{cut_off} to lose its leader")
            # ...and through two more maximum election timeouts it asks, is refused, and
            # neither it nor anyone else moves to a new term.
            holds(lambda: _leader_and_term(cluster) == (leader, term)
                  and _view(cluster, cut_off).get("term") == term, 2.0, interval=0.1,
                  what=f"{leader} leads term {term} and {cut_off} stays in it")
            net.heal("cut")
            assert wait_for(lambda: _settled(cluster, owners), 10,
                            what=f"{cut_off} to follow again") == (leader, term)
        finally:
            cluster.stop_all()
