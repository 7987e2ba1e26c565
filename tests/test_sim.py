"""hakv.sim: the simulation of the patent's claims, checked against counts made by hand.

The hand counts use the rules of hakv/sim/model.py's docstring (what hakv/raft/host.py sends):
a leader's own write costs 2f (an AppendEntries to each of its f reachable followers and
an ack each); a follower's write is forwarded, 2 more (apply_command and its response),
and the leader sends the commit index at once after it, 2f more; an election is a PreVote
round (2 per reachable voter), a vote round (2 each) and the new leader's no-op round
(2f). With read-only followers (the cluster ensemble's), every AppendEntries call goes to
the v reachable voters at once, and the r read-only ones get one call READONLY_LAG (20 ms)
after the first they missed, with everything appended meanwhile and the commit index of
that moment: a leader's own write is still 2v + 2r = 2f, a forwarded one 2 + 2v, its
commit notice to the voters 2v, and the read-only call 2r, entry and commit together
(2 + 2v + 2f). An AppendEntries message carries at most 64 KB of entries (the seed
transactions are about 12 KB each). Messages to a node that is down are not sent. Pure
and fast: no processes.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from hakv.core.ha import HaTuning
from hakv.core.replication import GroupRecord, records_on, replication_set
from hakv.core.seed import seed_transactions
from hakv.core.topology import NodeSpec, Topology, load_topology
from hakv.sim import chain_topology
from hakv.sim.__main__ import main
from hakv.sim.cluster import SIM_APP, SimCluster
from hakv.sim.model import (
    APPEND_ENTRIES_BYTES,
    Ensemble,
    Sim,
    SimParams,
    append_entries_messages,
)
from hakv.sim.report import Config, format_table, run_all, run_config
from hakv.sim.scenarios import (
    node_failure,
    seed_sizes,
    serving,
    serving_under,
    startup,
    steady_load,
    write_costs,
)

ROOT = Path(__file__).resolve().parents[1]
NINE = ROOT / "examples" / "nine-node.toml"
EXACT = SimParams(link_jitter=0.0, msg_cpu=0.0)  # no randomness in delays, no CPU queues


@pytest.fixture(scope="module")
def nine() -> Topology:
    """The patent's nine-node example, each group running an app (Figs. 2A-2H, 4)."""
    topology = load_topology(NINE)
    groups = tuple(dataclasses.replace(g, app=SIM_APP) for g in topology.groups)
    return dataclasses.replace(topology, groups=groups)


def _kinds(pairs: tuple[tuple[str, int], ...]) -> dict[str, int]:
    return dict(pairs)


# --------------------------------------------------------------------------- the topology


def test_chain_topology_has_the_benchmark_shape() -> None:
    # N = 9, M = 3: ceil(9 / 2) = 5 groups (the table), group k = 2k, 2k+1, 2k+2
    # mod 9; the last one closes the ring through n0 and n1.
    t = chain_topology(9, 3)
    assert [g.owners for g in t.groups] == [
        ("n0", "n1", "n2"), ("n2", "n3", "n4"), ("n4", "n5", "n6"), ("n6", "n7", "n8"),
        ("n8", "n0", "n1")]
    assert t.cluster_voters == ("n0", "n1", "n2")
    five = chain_topology(1000, 5)
    assert len(five.groups) == 250
    assert five.groups[1].owners == ("n4", "n5", "n6", "n7", "n8")
    assert five.groups[-1].owners == ("n996", "n997", "n998", "n999", "n0")
    with pytest.raises(ValueError):
        chain_topology(2, 3)
    with pytest.raises(ValueError):
        chain_topology(10, 1)


def test_ensembles_are_the_replication_sets(nine: Topology) -> None:
    cluster = SimCluster(Sim(SimParams(), random.Random(0), nine.node_ids), nine, "hakv")
    for group in nine.groups:
        assert set(cluster.of_group(group.id).members) == replication_set(
            nine, GroupRecord(group.id))
    assert cluster.all_nodes.voters == ("202", "204", "206")
    assert len(cluster.all_nodes.readonly) == 6
    full = SimCluster(Sim(SimParams(), random.Random(0), nine.node_ids), nine, "full")
    assert {full.of_group(g.id).name for g in nine.groups} == {"_all"}
    assert len(full.all_nodes.voters) == 9


# --------------------------------------------------------------------------- the cost model


def _settled(voters: tuple[str, ...], readonly: tuple[str, ...] = ()) -> tuple[Sim, Ensemble]:
    sim = Sim(EXACT, random.Random(0), voters + readonly)
    ensemble = Ensemble(sim, "g", voters, readonly)
    ensemble.install_leader(voters[0], since=-10.0)
    return sim, ensemble


def test_a_write_costs_what_hakv_raft_sends() -> None:
    sim, ensemble = _settled(("a", "b", "c"))
    done: list[float] = []
    ensemble.propose("a", "w", lambda: done.append(sim.now))  # the leader's own: 2 x 2
    sim.run()
    assert ensemble.messages == 4
    # A follower's: forwarded (2), the round (4), the commit index at once (4).
    ensemble.propose("b", "w", lambda: done.append(sim.now))
    sim.run()
    assert ensemble.messages == 4 + 10
    # Commit waits for one ack: out, fsync, back (2 x 0.1 ms + 2 ms).
    assert done[0] == pytest.approx(0.0022)
    # A follower that is down gets nothing, and sends no ack: 2 messages; still a quorum.
    sim.net.set_up("c", False)
    ensemble.propose("a", "w")
    sim.run()
    assert ensemble.messages == 14 + 2 and ensemble.committed == 3


def test_proposals_that_arrive_together_share_a_round() -> None:
    sim, ensemble = _settled(("a", "b", "c"))
    for _ in range(3):
        ensemble.propose("a", "w")  # one round for the three: 4 messages, not 12
    sim.run()
    assert (ensemble.messages, ensemble.rounds, ensemble.committed) == (4, 1, 3)


def test_read_only_followers_ack_but_never_count_for_the_quorum() -> None:
    sim, ensemble = _settled(("a", "b", "c"), readonly=("r1", "r2", "r3"))
    ensemble.propose("a", "w")
    sim.run()
    assert ensemble.messages == 2 * 5  # the entry reaches all five others, five acks
    sim.net.set_up("b", False)
    sim.net.set_up("c", False)
    ensemble.propose("a", "w")  # no voter to send it to: it never commits...
    sim.run()
    assert ensemble.committed == 1 and len(ensemble.stalled) == 1
    # ...but the read-only followers get it 20 ms later all the same (hakv.raft.host
    # send_to_readonly does not wait for the commit): 3 entries, 3 acks.
    assert ensemble.messages == 10 + 6


def test_read_only_followers_get_what_the_voters_got_20_ms_later() -> None:
    # hakv.raft.member GroupMember's sendAppendEntries override, send_to_readonly,
    # readonly_due; hakv.raft.host RaftHost._pass. One ms of CPU a message makes every send
    # visible in the times; no jitter.
    c = 0.001
    params = SimParams(link_jitter=0.0, msg_cpu=c)
    sim = Sim(params, random.Random(0), ("a", "b", "c", "r1", "r2", "r3"))
    ensemble = Ensemble(sim, "_cluster", ("a", "b", "c"), ("r1", "r2", "r3"))
    ensemble.install_leader("a", since=-10.0)
    done: list[float] = []
    p = ensemble.propose("a", "w", lambda: done.append(sim.now))
    sim.run()
    assert p is not None
    # The leader's own write: the round to b and c (4), then the entry to r1..r3 (6).
    assert ensemble.messages == 4 + 6
    # 2 sends (2 ms), out, fsync, back (2.2 ms), one ack read (1 ms): it commits at
    # 5.2 ms, after the voters' round alone.
    assert done == [pytest.approx(0.0022 + 3 * c)]
    commit = done[0]
    assert ensemble.applied_at(p, "a") == commit
    # b and c had it before the commit and apply it when the next heartbeat brings the
    # commit index, 0.1 s after the round began, one link delay later. r1..r3 get their
    # call 20 ms after the voters' (at 22 ms: a is free again, having read b's and c's
    # acks from 5.2 ms), entry and commit index together, in turn.
    assert ensemble.applied_at(p, "b") == pytest.approx(p.round_start + 0.1 + 0.0001)
    assert p.readonly_from == pytest.approx(0.022)
    assert [ensemble.applied_at(p, r) for r in ("r1", "r2", "r3")] == [
        pytest.approx(0.022 + k * c + 0.0001) for k in (1, 2, 3)]
    # r2 forwards a write: 2; the round to the voters: 4; the commit notice to the voters
    # at once: 4; the read-only followers' call, 20 ms after the round, carries entry and
    # commit index: 6. 16 (2 + 2v + 2f).
    before = ensemble.messages
    forwarded = ensemble.propose("r2", "w", lambda: done.append(sim.now))
    sim.run()
    assert ensemble.messages - before == 2 + 4 + 4 + 6
    assert forwarded is not None and forwarded.to_all
    # At 22 ms a is busy until 28 ms with the read-only call (3 sends, 3 acks). r2 sends
    # (1 ms), the request arrives at 23.1 ms, a reads it and answers from 28 ms (2 ms);
    # the round to b and c from 30 ms (2 ms), the ack at 34.2 ms, the commit at 35.2 ms.
    # The read-only call is due 20 ms after the voters' (52 ms); r2 is the second: 2 ms,
    # then one link delay: 54.1 ms.
    assert forwarded.round_start == pytest.approx(0.030)
    assert forwarded.committed_at == pytest.approx(0.0352)
    assert forwarded.readonly_from == pytest.approx(0.052)
    assert done[1] == ensemble.applied_at(forwarded, "r2") == pytest.approx(0.0541)


def test_a_call_stops_filling_followers_after_a_heartbeat_period() -> None:
    # pysyncobj __sendAppendEntries: a follower gets its messages in turn until the call
    # has run for appendEntriesPeriod (0.1 s), then each other follower one; the rest go
    # with the next heartbeat calls. 10 ms a message, no jitter; three entries of L bytes
    # (L = the batch size hakv gives pysyncobj): three messages to each follower.
    c = 0.01
    params = SimParams(link_jitter=0.0, msg_cpu=c)
    readonly = tuple(f"r{i}" for i in range(1, 7))
    sim = Sim(params, random.Random(0), ("a", "b", "c", *readonly))
    ensemble = Ensemble(sim, "_cluster", ("a", "b", "c"), readonly)
    ensemble.install_leader("a", since=-10.0)
    big = APPEND_ENTRIES_BYTES
    assert append_entries_messages([3 * big]) == 1  # one entry: never split
    assert append_entries_messages([big, big, 1]) == 3
    done: list[float] = []
    ensemble.propose("a", "seed", lambda: done.append(sim.now), size=big)
    ensemble.propose("a", "seed", size=big)
    ensemble.propose("a", "seed", size=big)
    sim.run()
    # The voters get all three at once: 6 sends (60 ms); the ack 2.2 ms later, read in
    # 10 ms: the commit at 72.2 ms. The read-only call, due 20 ms after the voters' (80
    # ms), waits for a to read the round's 6 acks (until 132.2 ms); it has run 0.1 s after
    # 10 messages and stops filling after the 11th, in r4's turn (the model fills r4 too:
    # 12), then one to each of r5 and r6 (2): 14 messages. The next heartbeat brings r5
    # and r6 their other 2 each (4; 40 ms is within the period).
    # 2 x (6 + 14 + 4) = 48 = 2 x 8 followers x 3.
    assert done == [pytest.approx(0.0722)]
    assert ensemble.messages == 2 * (6 + 14 + 4) == 2 * 8 * 3
    assert ensemble.caught_up_at > done[0]


def test_an_election_after_the_leader_died() -> None:
    sim, ensemble = _settled(("a", "b", "c"))
    sim.net.set_up("a", False)
    ensemble.leader_lost(last_contact=0.0)
    sim.run()
    # PreVote: 1 question + 1 answer; the vote: 1 + 1; the no-op round: 1 + 1.
    assert ensemble.leader in ("b", "c") and ensemble.messages == 6
    # Timeouts are 0.4-1.0 s; the election itself takes a few milliseconds.
    assert 0.4 < ensemble.leader_since < 1.02


# --------------------------------------------------------------------------- hand counts


def test_startup_of_a_six_node_chain_counted_by_hand() -> None:
    # Groups g0 = n0 n1 n2, g1 = n2 n3 n4, g2 = n4 n5 n0; cluster voters n0 n1 n2, and
    # n3 n4 n5 follow the cluster ensemble read-only. The nodes come up ten seconds
    # apart, so each ensemble elects as soon as its second voter is up.
    t = chain_topology(6, 3)
    boots = {"n0": 0.0, "n1": 10.13, "n2": 20.29, "n3": 30.41, "n4": 40.57, "n5": 50.73}
    up = startup(t, "hakv", EXACT, random.Random(0), boots=boots)
    groups, cluster = _kinds(up.group_by_category), _kinds(up.all_node_by_category)
    # Each group: one election between its first two owners, with one peer each way:
    # PreVote 2 + vote 2 + no-op round 2 = 6; three groups: 18.
    assert groups["election"] == 18
    # Each group's status writes: of its first two owners, the leader's own (one
    # follower up: 2) and the other's, forwarded (2 + 2 + 2 = 6); the third owner's,
    # forwarded with two followers up (2 + 4 + 4 = 10): 18; three groups: 54.
    assert groups["status"] == 54
    # The cluster ensemble: n0 and n1 elect (6). Only its leader seeds the one seed
    # transaction (10 records), at its first look after it won (hakv.node.process
    # _seed_cluster_records), with only the other of n0 and n1 up: 2. The other voters
    # propose nothing. No node status goes there: every node owns a group, its status's
    # home (hakv.node.process.status_home).
    assert cluster["election"] == 6
    assert cluster["seed"] == 2
    assert "status" not in cluster
    assert up.status_writes == 9  # 3 per group
    # The patent's count from hakv.core.replication: 3 groups x 3 owners x 4 messages.
    assert up.formula_messages == 36
    # Every group serves once its third owner's status is in: g2's is n5's, at 50.73 s
    # (+0.5 s publisher pass, + the round).
    assert 51.2 < up.groups_ready < 51.3


def test_a_homeless_nodes_status_goes_to_the_cluster_ensemble() -> None:
    # The six-node chain and n6, which owns no group: its status's home is the cluster
    # ensemble (hakv.node.process.status_home), and hakv.core.replication.startup_messages counts it:
    # 36 for the groups + 2(7-1) = 12.
    t = chain_topology(6, 3)
    extra = NodeSpec(id="n6", host="10.0.0.6", raft_port=7000, api_port=8000)
    t = dataclasses.replace(t, nodes=(*t.nodes, extra))
    boots = {"n0": 0.0, "n1": 10.13, "n2": 20.29, "n3": 30.41, "n4": 40.57, "n5": 50.73,
             "n6": 60.89}
    up = startup(t, "hakv", EXACT, random.Random(0), boots=boots)
    assert up.formula_messages == 36 + 12
    # n6 follows read-only: forwarded (2), the round to the 2 other voters (4), the commit
    # notice to them (4), and 20 ms after the round the call to the 4 read-only followers
    # n3..n6 with entry and commit index (8). It knows the leader a heartbeat after it
    # powered on, so its first try failed and the next pass, 0.5 s later, wrote it; it
    # applies it with that call: 61.39 s + 20 ms.
    assert _kinds(up.all_node_by_category)["status"] == 2 + 4 + 4 + 8
    assert up.status_writes == 9 + 1
    assert 61.41 < up.seconds < 61.42


def test_only_the_cluster_leader_seeds_every_chunk_at_once() -> None:
    # 400 nodes + 200 groups + the cluster's name: 601 records, 60 a transaction: 11.
    t = chain_topology(400, 3)
    assert len(seed_transactions(t)) == 11
    sizes = seed_sizes(t)
    assert sizes == (16360, 16568, 16404, 11567, 8935, 8926, 8885, 8875, 8911, 8756, 336)
    # The leader proposes all 11 at once (hakv.node.process _seed_cluster_records): one round.
    # A message takes entries until they reach 256 KiB (hakv.raft.settings): all eleven
    # (114,523 bytes) in 1 message to each follower.
    assert sum(sizes) == 114_523
    assert append_entries_messages(sizes) == 1
    # Every node but n399 powers on at 0: the leader sends the round to the 398 others up,
    # 1 message and 1 ack each, and no other voter proposes anything.
    boots = {**dict.fromkeys(t.node_ids, 0.0), "n399": 30.0}
    up = startup(t, "hakv", EXACT, random.Random(0), boots=boots)
    cluster = _kinds(up.all_node_by_category)
    assert cluster["seed"] == 398 * 2
    # n399 comes up later and misses the whole log (the no-op and the seed): the next
    # heartbeat (the leader heartbeats on while a member is down: within 0.1 s) brings it
    # all of it in one message (under 256 KiB), in place of an empty heartbeat (1 + 1 ack).
    assert cluster["catch-up"] == 2
    assert 30.0 <= up.records_everywhere <= 30.1


def test_writes_on_the_nine_node_example(nine: Topology) -> None:
    w = write_costs(nine, "hakv", EXACT, random.Random(0))
    # A write to 220 (202 leads; 208 and 214 follow): 2 entries + 2 acks. A cluster-level
    # write: the cluster ensemble's 2 other voters (4), then, committed, its 6 read-only
    # followers (12).
    assert (w.group_write, w.cluster_write) == (4, 16) == (w.formula_group, w.formula_cluster)
    # Both commit after one round trip to one voter: out, fsync, back.
    assert w.group_commit == w.cluster_commit == pytest.approx(0.0022)
    full = write_costs(nine, "full", EXACT, random.Random(0))
    assert (full.group_write, full.cluster_write) == (16, 16)


def test_a_cluster_write_does_not_wait_for_the_read_only_followers() -> None:
    # 20 us a message, no jitter. hakv, whatever N: n0 first reads the 2 acks of the g0
    # write just before (2c, write_costs), then 2 sends (2c), out, fsync, back (2.2 ms),
    # 1 ack read (c); the n-3 read-only followers get it 20 ms after the voters, once it
    # has committed. Full replication: the group write before leaves 199 acks to read,
    # then 199 sends, the round trip and 100 acks read (a majority of 200 is 101, the
    # leader's own vote included): (199 + 199 + 100) c.
    params = SimParams(link_jitter=0.0)
    c = params.msg_cpu
    for n in (50, 200):
        w = write_costs(chain_topology(n, 3), "hakv", params, random.Random(0))
        assert w.cluster_write == 2 * (n - 1)
        assert w.cluster_commit == pytest.approx(0.0022 + 5 * c)
    full = write_costs(chain_topology(200, 3), "full", params, random.Random(0))
    assert full.cluster_commit == pytest.approx(0.0022 + (199 + 199 + 100) * c)


def test_node_208_fails_counted_by_hand(nine: Topology) -> None:
    # The patent's scenario: 208 fails. It follows in 220 (202 leads) and runs and leads
    # 226 (owners 208 > 210 > 212); 202 leads the cluster ensemble, 208 follows it.
    f = node_failure(nine, "hakv", SimParams(), random.Random(0), node="208")
    assert f.reacting == ("220", "226")
    assert f.elections == ("226",)
    # 222 lists 210, where 226's app goes: the bridge on 210 reads 222 (a barrier through
    # its log) and forwards the allocation notice to it. A notice, not a reaction.
    assert f.notified == ("222",)
    assert f.placed == (("226", "210"),)  # by precedence, 208 being down
    # "202, 214, 210 and 212 mark it down" (DESIGN.md): its sphere of influence.
    assert f.stored_on == f.sphere == 4
    kinds = _kinds(f.by_category)
    # 226 elects between 210 and 212: PreVote 2, vote 2, no-op 2.
    assert kinds["election"] == 6
    # Marks: 202 writes "208 down" into 220 (to 214: 2), 226's leader into 226 (2). In the
    # cluster ensemble, 220 is 208's first group (hakv.node.manager.mark_rank 0): 202, which
    # leads the cluster ensemble too, records it at once, its own write, to the voters 204
    # and 206 (4), 20 ms later to the 5 read-only followers up (10): 14. 226's leader
    # (rank 1) looks 0.5 s after it decided, finds it in its copy and skips it; forwarded
    # it would have cost 2 + 4 + the commit notice to the voters, 4, + 10: 20.
    (winner,) = dict(f.elected).values()
    assert (f.cluster_marks, f.cluster_marks_skipped) == (("202",), (winner,))
    assert kinds["mark"] == 2 + 2 + 14
    assert f.all_node_messages == 14
    # Its Fig. 3 route would go through the bridge on 208 itself: down, so not carried.
    assert f.skipped_hops == 2
    if winner == "210":
        # 210 leads 226 and allocates on itself: a barrier in 222 (it follows there:
        # 2 + 4 + 4 = 10), a ReadIndex in 226 (2), the allocation in 226 (2); the notice
        # into 222 (10); the placement (2); 210's report that the app runs (2).
        assert kinds["allocate"] == 10 + 2 + 2
        assert (kinds["bridge"], kinds["place"], kinds["report"]) == (10, 2, 2)
        assert "handover" not in kinds
    else:
        # 212 leads: POST /v1/allocate to 210 and its answer (2), barriers in 222 (10)
        # and 226 (forwarded: 2 + 2 + 2 = 6), the allocation, forwarded (6); the notice
        # (10); the placement (2); 210's report, forwarded (6); then leadership follows
        # the app: TimeoutNow 1, a vote each way 2, 210's no-op round 2.
        assert winner == "212"
        assert kinds["allocate"] == 2 + 10 + 6 + 6
        assert (kinds["bridge"], kinds["place"], kinds["report"]) == (10, 2, 6)
        assert kinds["handover"] == 5
    # Two probers (220's leader, and 226's new one) probe 208 once raft traffic has been
    # missing for half the failure timeout, backing off (0.2 s, 0.4 s, ...) until the mark.
    assert 2 <= kinds["probe"] <= 8
    # The app is placed again once 208's lease has surely expired: at most a renewal
    # interval after the crash it saw the last renewal, plus lease * (1 + drift) + margin
    # (hakv.core.ha.lease_expiry); a manager round and the allocation on top.
    ha = HaTuning()
    assert ha.takeover_wait - ha.renew_interval < f.replace_seconds < ha.takeover_wait + 0.2
    # Replacing 208 for good by the spare 216 (first node outside its sphere, no voter).
    # In 220, which 202 leads with the cluster ensemble: the owner list (202's cluster
    # write: 4 to the voters, 20 ms later 10 to the 5 read-only followers up: 14); 216's
    # status in 220 as a new read-only member, forwarded: 2, the round to 214 (2), the
    # commit notice to it (2), 20 ms after the round the call to 216 (2): 8; its joins/
    # record, forwarded into the cluster ensemble: 2 + 4 + the notice 4 + 10 = 20; +216
    # (2, to 214: 216 votes once it is applied and gets it with the next round); the
    # voters recorded (202's: 4); -208 (to 214 and 216: 4); the voters recorded (4); 226's
    # owner list (4). Those last three cluster writes come within 20 ms: their read-only
    # followers get them in one call (10). 14 + 8 + 20 + 2 + 4 + 4 + 4 + 4 + 10 = 70.
    # In 226, which 210 leads, following the cluster ensemble read-only: 216's status (8),
    # joins/ (20), +216 (2), the voters recorded, forwarded by 210 once it applied +216,
    # after the joins/ call went (2 + 4 + 4 + 10 = 20), -208 (4), the voters recorded
    # (20): 74.
    assert f.replace_steps == (("220", "+216"), ("220", "-208"), ("226", "+216"),
                               ("226", "-208"))
    assert f.replace_node_messages == (14 + 8 + 20 + 2 + 4 + 4 + 4 + 4 + 10) + (
        8 + 20 + 2 + 20 + 4 + 20)


def test_the_first_groups_leader_records_a_failure_in_the_cluster_ensemble(
        nine: Topology) -> None:
    # 208 fails: 202 (leads 220, 208's first group) and 226's new leader both mark it.
    # 202 records it in the cluster ensemble at once (14); 226's leader looks 0.5 s after
    # it decided (hakv.node.manager.MARK_STAGGER), by when 202's mark has reached it (the
    # heartbeat after 202's round brings the commit index, 0.1 s): once, whatever the seed.
    for seed in range(12):
        f = node_failure(nine, "hakv", SimParams(), random.Random(seed), node="208")
        (winner,) = dict(f.elected).values()
        assert (f.cluster_marks, f.cluster_marks_skipped) == (("202",), (winner,))
        assert _kinds(f.by_category)["mark"] == 2 + 2 + 14
        assert f.all_node_messages == 14
    # The chain: n(2k) runs g(k)'s app and is the last owner of g(k-1), its first group,
    # whose leader n(2k-2) records it; n(2k)'s successor in g(k) skips it. Both follow the
    # cluster ensemble read-only: a forwarded write, 2 + 4, the notice to the voters 4, the
    # read-only call 2 x 37 (f = 39 followers up, 2 of them voters, 37 read-only).
    t = chain_topology(41, 3)
    for k in (3, 7, 12):
        x = f"n{2 * k}"
        f = node_failure(t, "hakv", SimParams(), random.Random(k), node=x)
        assert f.cluster_marks == (f"n{2 * k - 2}",)
        assert f.cluster_marks_skipped == (dict(f.elected)[f"g{k}"],)
        assert f.all_node_messages == 2 + 4 + 4 + 2 * 37


def test_node_208_fails_under_full_replication(nine: Topology) -> None:
    f = node_failure(nine, "full", SimParams(), random.Random(0), node="208")
    # One ensemble holds every record: every group's replicas take the writes.
    assert f.reacting == ("220", "222", "224", "226") and f.elections == ()
    assert f.stored_on == 8  # every other node, not just its sphere
    kinds = _kinds(f.by_category)
    # The leader 202 marks 208 down (2 x 7) and places 226's app (2 x 7); 210 reports it
    # running, forwarded: 2 + 14 + 14.
    assert (kinds["mark"], kinds["place"], kinds["report"]) == (14, 14, 30)
    assert f.replace_node_messages == 2 * 14  # each group's owner list, one write


def test_patent_quorum_scenarios_by_hand(nine: Topology) -> None:
    others = [n for n in nine.node_ids if n not in ("202", "208")]
    # Whole cluster restarted, only 202 and 208 up: 220 has 2 of 3 and serves; 222, 224
    # and 226 have at most one owner; the cluster (2 of 9) has no majority.
    hakv = serving_under(nine, "hakv", down=others)
    assert (hakv.serving, hakv.cluster_quorum) == (1, False)
    assert serving_under(nine, "full", down=others).serving == 0
    # Three sides, one per column of Fig. 2A: 220, 222 and 224 each have all their owners
    # on one side; 226 (208 | 210 | 212) has one owner per side. No side has 5 of 9.
    sides = {n: i for i, col in enumerate((("202", "208", "214"), ("204", "210", "216"),
                                           ("206", "212", "218"))) for n in col}
    assert serving_under(nine, "hakv", sides=sides).serving == 3
    assert serving_under(nine, "full", sides=sides).serving == 0
    # 202 204 206 208 210 | 212 214 216 218: 220, 222 and 226 keep 2 owners on the first
    # side, 224 (206 | 212 218) on the second. Full replication: the first side has 5 of
    # 9 and an owner of every group.
    cut = {n: int(n >= "212") for n in nine.node_ids}
    assert serving_under(nine, "hakv", sides=cut).serving == 4
    assert serving_under(nine, "full", sides=cut).serving == 4


# --------------------------------------------------------------------------- steady state


def test_node_heartbeats_of_the_cluster_leader_counted_by_hand() -> None:
    # 1,000 nodes, M = 3: n0 leads the quiet cluster ensemble, g0 (n0 n1 n2) and follows
    # g499 (n998 n999 n0). hakv.raft.host _send_node_heartbeats: a round every 0.2 s; to the
    # peers it votes with (n1, n2: cluster voters and g0; n998, n999: g499) every round,
    # to the 995 others every 4th (0.8 s); each answers at the same cadence:
    # 2 x (4 / 0.2 + 995 / 0.8) = 2,527.5. Its groups, apps renewing every 0.25 s, so 12
    # rounds a second: g0's 2 followers (48) and g499 as a follower (24).
    load = steady_load(chain_topology(1000, 3), "hakv", SimParams())
    assert load.busiest == "n0"
    assert load.busiest_rate == pytest.approx(2 * (4 / 0.2 + 995 / 0.8) + 48 + 24)
    # 2.5 messages a second per node: 10 times the nodes, about 10 times the rate.
    big = steady_load(chain_topology(10000, 3), "hakv", SimParams())
    assert big.busiest_rate == pytest.approx(2 * (4 / 0.2 + 9995 / 0.8) + 48 + 24)


def test_node_heartbeats_on_the_nine_node_example(nine: Topology) -> None:
    # 202 leads the cluster ensemble and 220 (202 208 214); it votes with 204 and 206
    # (cluster voters), 208 and 214 (220): every 0.2 s; 210, 212, 216 and 218 every 0.8 s.
    # 2 x (4 / 0.2 + 4 / 0.8) = 50, and 220's renewals: 12 rounds x 2 followers x 2 = 48.
    load = steady_load(nine, "hakv", SimParams())
    assert (load.busiest, load.busiest_rate) == ("202", pytest.approx(50 + 48))


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("owners", [3, 5])
def test_a_failure_makes_exactly_the_groups_that_list_the_node_react(owners: int) -> None:
    # I6: groups that do not list the failed node see no election, mark or placement.
    t = chain_topology(40, owners)
    for node in ("n4", "n8", "n13", "n21", "n33"):
        f = node_failure(t, "hakv", SimParams(), random.Random(node), node=node)
        listing = tuple(g.id for g in t.groups_of(node))
        assert f.reacting == listing == records_on(t, node).groups
        assert set(f.elections) <= set(listing)
        assert f.stored_on == f.sphere
        # A notice reaches only groups that share a node with a reacting group: one hop.
        near = {g.id for gid in listing for o in t.group(gid).owners for g in t.groups_of(o)}
        assert set(f.notified) <= near - set(listing)


@pytest.mark.parametrize("scheme", ["hakv", "full"])
def test_no_group_serves_on_both_sides_of_a_partition(scheme: str) -> None:
    for owners in (3, 5):
        t = chain_topology(60, owners)
        for seed in range(6):
            for result in serving(t, scheme, random.Random(seed)):
                assert result.split_brain == 0
    # Directly: every ensemble has a quorum on at most one side of random cuts.
    t = chain_topology(60, 3)
    for seed in range(20):
        rng = random.Random(seed)
        sim = Sim(SimParams(), rng, t.node_ids)
        cluster = SimCluster(sim, t, "hakv")
        sim.net.partition({n: rng.randrange(2 + seed % 3) for n in t.node_ids})
        for ensemble in cluster.ensembles.values():
            assert len(ensemble.quorum_sides()) <= 1


def test_with_an_odd_owner_count_every_group_survives_any_two_way_split() -> None:
    t = chain_topology(60, 3)
    results = {r.fault: r for r in serving(t, "hakv", random.Random(3))}
    assert results["split 50/50"].fraction == results["split 60/40"].fraction == 1.0
    full = {r.fault: r for r in serving(t, "full", random.Random(3))}
    assert full["split 50/50"].serving == 0  # no side has 31 of 60


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_table_and_another_seed_differs() -> None:
    first = format_table(run_all([24, 48], [3], seed=7))
    assert first == format_table(run_all([24, 48], [3], seed=7))
    assert first.startswith("| metric | 24 nodes, M=3, hakv | 24 nodes, M=3, full |")
    other = run_config(Config(200, 3, "hakv"), seed=8)
    same = run_config(Config(200, 3, "hakv"), seed=7)
    assert other.failure.node != same.failure.node or other.serving != same.serving


def test_the_output_does_not_depend_on_hash_randomization() -> None:
    def table(hashseed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        return subprocess.run(
            [sys.executable, "-m", "hakv.sim", "--nodes", "30", "--owners", "3,5"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout

    assert table("1") == table("2")


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "12", "--owners", "3", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "| node failure: groups that react | 2 | 6 |" in out
    with pytest.raises(SystemExit):
        main(["--nodes", "2", "--owners", "3"])


def test_constants_match_their_sources() -> None:
    from hakv.node import manager
    from hakv.node import process as node
    from hakv.raft import settings as raft
    from hakv.sim import model, scenarios

    # hakv.raft.host's and hakv.node.manager's constants are imported, not copied.
    assert raft.READONLY_LAG == 0.02  # the hand counts above assume it
    for name in ("PRE_VOTE_LEASE", "NODE_HEARTBEAT", "QUIESCE_AFTER", "READONLY_ROUNDS",
                 "CONNECTION_SILENCE", "READONLY_LAG"):
        assert getattr(model, name) is getattr(raft, name)
    assert scenarios.MARK_STAGGER is manager.MARK_STAGGER
    assert scenarios.mark_rank is manager.mark_rank
    assert SimParams().heartbeat == raft.RaftSettings().heartbeat_period
    # What hakv gives pysyncobj (4 x the command limit + 64 KiB: hakv.raft.settings).
    assert model.APPEND_ENTRIES_BYTES == raft.APPEND_ENTRIES_BATCH_BYTES == 256 * 1024
    # hakv.node.process and hakv.node.manager write these as literals: read them from the source.
    seed = inspect.getsource(node.Node._seed_cluster_records)
    assert f"wait({model.SEED_POLL})" in seed and f"wait({model.PUBLISH_RETRY})" in seed
    # scenarios.seed_sizes encodes each chunk as the node does.
    assert 'client = f"seed-{self.seed_topology.fingerprint()[:16]}"' in seed
    assert 'codec.encode(codec.write_command("txn", body, client, n + 1))' in seed
    assert f"wait({model.PUBLISH_RETRY})" in inspect.getsource(node.Node._publish_status)
    marker = inspect.getsource(manager.Manager._cluster_marker)
    assert f"stopping.wait({scenarios.MARKER_RETRY})" in marker
    request_timeout = inspect.signature(node.Node).parameters["request_timeout"].default
    assert scenarios.REQUEST_TIMEOUT == request_timeout
    # A node's status goes to its groups (the route of its status report), or to the
    # cluster ensemble when it owns none: hakv.node.process.status_home.
    t = chain_topology(9, 3)
    sim = Sim(SimParams(), random.Random(0), t.node_ids)
    cluster = SimCluster(sim, t, "hakv")
    for n in t.node_ids:
        hosted = {g.id for g in t.groups_of(n)}
        assert {e.name for e in cluster.status_targets(n)} == node.status_home(hosted)
    assert node.status_home(set()) == {"_cluster"}
