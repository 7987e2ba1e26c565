"""PreVote on real processes (docs/raft.md, point 5): a member cut off from its leader,
but not from the rest of its group, asks before it raises its term, and the members that
still hear the leader refuse, so the healthy leader keeps its term and its group.

Uses the chaos harness's network namespaces (root only): the cut is an iptables rule
between two namespaces, nothing outside them is touched.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chaos.cluster import ChaosCluster
from chaos.netns import cut_both
from hakv.core.topology import load_topology
from tests.chaos_support import EXAMPLES, need_root, throwaway_network

GROUP = "g1"


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
            time.sleep(1.0)  # past the first elections of the start-up
            leader, term = _leader_and_term(cluster)
            assert leader is not None and isinstance(term, int)
            cut_off = next(n for n in topology.group(GROUP).owners if n != leader)
            # It still reaches the third member, so stock Raft would let it campaign
            # there with ever higher terms (and, on winning, depose the leader).
            net.apply("cut", cut_both(leader, cut_off))
            time.sleep(3.0)  # three to seven election timeouts
            assert _leader_and_term(cluster) == (leader, term)
            net.heal("cut")
            time.sleep(1.5)
            assert _leader_and_term(cluster) == (leader, term)
            view = ((cluster.query(cut_off) or {}).get("groups") or {}).get(GROUP) or {}
            assert view.get("term") == term  # it never raised its own term either
        finally:
            cluster.stop_all()
