"""hakv.core.replication and hakv.core.explain on the patent's nine-node example (DESIGN.md, Figs. 2A-2H).

Every sphere of influence and replication set listed in DESIGN.md is a row below; message
counts are checked against the formulas in hakv.core.replication's docstrings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hakv.core.explain import explain_group, explain_node, failure_effects
from hakv.core.replication import (
    ClusterCopy,
    ClusterRecord,
    GroupRecord,
    NodeStatusRecord,
    StartupMessages,
    WriteMessages,
    cluster_startup_messages,
    cluster_startup_messages_full,
    comparison_table,
    main,
    messages_per_write,
    messages_per_write_full,
    records_on,
    replication_of,
    replication_set,
    startup_messages,
    write_messages,
)
from hakv.core.topology import CLUSTER_GROUP, Topology, load_topology
from hakv.errors import TopologyError, UnknownGroupError

NINE = Path(__file__).resolve().parents[1] / "examples" / "nine-node.toml"
ALL_NINE = frozenset(str(n) for n in range(202, 219, 2))


@pytest.fixture(scope="module")
def nine() -> Topology:
    return load_topology(NINE)


def _set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --------------------------------------------------------------------------- DESIGN.md tables

# DESIGN.md "The canonical example": a group's records live on its owners only.
GROUP_REPLICATION = [
    ("220", "202 208 214"),
    ("222", "204 210 216"),
    ("224", "206 212 218"),
    ("226", "208 210 212"),
]

# DESIGN.md "Spheres of influence" (patent Figs. 2B-2G: spheres 228-238).
SPHERES = [
    ("202", "202 208 214"),
    ("214", "202 208 214"),
    ("204", "204 210 216"),
    ("216", "204 210 216"),
    ("206", "206 212 218"),
    ("218", "206 212 218"),
    ("208", "202 208 210 212 214"),
    ("210", "204 208 210 212 216"),
    ("212", "206 208 210 212 218"),
]


@pytest.mark.parametrize(
    ("group", "owners"), GROUP_REPLICATION, ids=[g for g, _ in GROUP_REPLICATION]
)
def test_group_records_are_replicated_on_the_owners_only(
    nine: Topology, group: str, owners: str
) -> None:
    assert replication_set(nine, GroupRecord(group)) == _set(owners)


@pytest.mark.parametrize(("node", "sphere"), SPHERES, ids=[n for n, _ in SPHERES])
def test_node_status_is_replicated_on_the_sphere_of_influence(
    nine: Topology, node: str, sphere: str
) -> None:
    assert replication_set(nine, NodeStatusRecord(node)) == _set(sphere)


def test_cluster_records_are_replicated_on_every_node(nine: Topology) -> None:
    assert replication_set(nine, ClusterRecord("node_added 220")) == ALL_NINE


# --------------------------------------------------------------------------- the ensembles


@pytest.mark.parametrize(
    ("record", "ensembles", "cluster"),
    [
        (GroupRecord("226"), ("226",), ClusterCopy.NONE),
        (NodeStatusRecord("202"), ("220",), ClusterCopy.ALSO),
        (NodeStatusRecord("208"), ("220", "226"), ClusterCopy.ALSO),
        (ClusterRecord("networks"), (CLUSTER_GROUP,), ClusterCopy.ONLY),
    ],
    ids=["group-226", "status-202", "status-208", "cluster"],
)
def test_each_record_is_carried_by_its_ensembles(
    nine: Topology, record: GroupRecord, ensembles: tuple[str, ...], cluster: ClusterCopy
) -> None:
    got = replication_of(nine, record)
    assert (got.ensembles, got.cluster) == (ensembles, cluster)


def test_the_owners_of_a_nodes_status_ensembles_are_exactly_its_sphere(nine: Topology) -> None:
    for node in nine.node_ids:
        got = replication_of(nine, NodeStatusRecord(node))
        owners = {o for gid in got.ensembles for o in nine.group(gid).owners}
        assert owners == got.nodes, node


# --------------------------------------------------------------------------- records_on

# node -> (groups it stores, nodes whose status it stores, cluster role)
RECORDS_ON = [
    ("202", "220", "202 208 214", "voter"),
    ("204", "222", "204 210 216", "voter"),
    ("206", "224", "206 212 218", "voter"),
    ("208", "220 226", "202 208 210 212 214", "follower"),
    ("210", "222 226", "204 208 210 212 216", "follower"),
    ("212", "224 226", "206 208 210 212 218", "follower"),
    ("214", "220", "202 208 214", "follower"),
    ("216", "222", "204 210 216", "follower"),
    ("218", "224", "206 212 218", "follower"),
]


@pytest.mark.parametrize(
    ("node", "groups", "status", "role"), RECORDS_ON, ids=[r[0] for r in RECORDS_ON]
)
def test_records_on_a_node(nine: Topology, node: str, groups: str, status: str, role: str) -> None:
    got = records_on(nine, node)
    assert (got.groups, got.node_status, got.cluster, got.cluster_role) == (
        tuple(groups.split()), tuple(status.split()), True, role
    )


def test_records_on_is_the_inverse_of_replication_set(nine: Topology) -> None:
    for node in nine.node_ids:
        held = records_on(nine, node)
        for gid in nine.group_ids:
            assert (gid in held.groups) == (node in replication_set(nine, GroupRecord(gid)))
        for other in nine.node_ids:
            assert (other in held.node_status) == (
                node in replication_set(nine, NodeStatusRecord(other))
            )


def test_records_on_has_the_inspect_json_shape(nine: Topology) -> None:
    assert records_on(nine, "210").to_dict() == {
        "node": "210",
        "groups": ["222", "226"],
        "node_status": ["204", "208", "210", "212", "216"],
        "cluster": True,
        "cluster_role": "follower",
    }


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda t: replication_set(t, GroupRecord("230")), UnknownGroupError),
        (lambda t: replication_set(t, NodeStatusRecord("299")), TopologyError),
        (lambda t: records_on(t, "299"), TopologyError),
    ],
    ids=["unknown-group", "unknown-node-status", "records-on-unknown-node"],
)
def test_unknown_ids_are_refused(
    nine: Topology, call: Callable[[Topology], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(nine)


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("m", "expected"), [(1, 0), (2, 2), (3, 4), (5, 8)], ids=["M=1", "M=2", "M=3", "M=5"]
)
def test_messages_per_write_of_a_group_is_2_times_followers(m: int, expected: int) -> None:
    assert messages_per_write(m) == expected


@pytest.mark.parametrize(
    ("n", "expected"), [(9, 16), (100, 198), (1000, 1998)], ids=["N=9", "N=100", "N=1000"]
)
def test_messages_per_write_of_one_ensemble_over_all_nodes(n: int, expected: int) -> None:
    assert messages_per_write_full(n) == expected


def test_a_write_is_entry_and_ack_to_each_follower_and_the_commit_rides_on_the_next() -> None:
    assert write_messages(3) == WriteMessages(3, 2, 2, 0, 0)
    assert (write_messages(3).commit_path, write_messages(3).total) == (4, 4)


def test_a_group_of_3_in_a_1000_node_cluster_writes_500_times_cheaper() -> None:
    assert messages_per_write_full(1000) / messages_per_write(3) == pytest.approx(499.5)


@pytest.mark.parametrize(
    ("n", "m", "partial", "full"),
    [(9, 3, 36, 144), (1000, 3, 4_000, 1_998_000), (1000, 5, 8_000, 1_998_000)],
    ids=["N=9,M=3", "N=1000,M=3", "N=1000,M=5"],
)
def test_startup_is_linear_with_groups_and_quadratic_with_full_replication(
    n: int, m: int, partial: int, full: int
) -> None:
    assert (cluster_startup_messages(n, m), cluster_startup_messages_full(n)) == (partial, full)


def test_nine_node_startup_counts_a_status_write_per_node_per_group(nine: Topology) -> None:
    # 4 groups x 3 owners x 4 messages; 208, 210, 212 write into two groups each.
    assert startup_messages(nine) == StartupMessages(group_messages=48, cluster_messages=0)


@pytest.mark.parametrize("bad", [0, -1, True], ids=["zero", "negative", "bool"])
def test_a_non_positive_ensemble_size_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        messages_per_write(bad)


def test_comparison_table_has_a_row_per_m_and_n() -> None:
    rows = [line for line in comparison_table().splitlines() if line.startswith("| ") and
            line[2].isdigit()]
    assert [row.split("|")[1:3] for row in rows] == [
        [f" {m} ", f" {n} "] for m in (3, 5) for n in ("9", "100", "1,000")
    ]
    assert "| 3 | 1,000 | 4 | 1,998 | 499.5× | 4,000 | 1,998,000 |" in rows


def test_python_m_hakv_core_replication_prints_the_nine_node_replication(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([str(NINE)]) == 0
    out = capsys.readouterr().out
    assert main([]) == 0  # the nine-node example is the default
    assert capsys.readouterr().out == out
    assert "208: 202 208 210 212 214" in out
    assert "208: groups 220 226; node status of 202 208 210 212 214" in out
    assert comparison_table() in out


# --------------------------------------------------------------------------- Fig. 4 / explain


def test_node_208_fails_only_its_groups_react_and_226_moves_to_210(nine: Topology) -> None:
    effects = {e.group: e for e in failure_effects(nine, ["208"])}
    assert sorted(effects) == ["220", "226"]
    assert (effects["220"].has_quorum, effects["220"].runner_after) == (True, "202")
    assert (effects["226"].has_quorum, effects["226"].runner_after) == (True, "210")


def test_restart_with_only_202_and_208_up_220_serves_226_does_not(nine: Topology) -> None:
    down = ALL_NINE - {"202", "208"}
    effects = {e.group: e for e in failure_effects(nine, down)}
    assert {g: e.runner_after for g, e in effects.items()} == {
        "220": "202",
        "222": None,
        "224": None,
        "226": None,
    }


@pytest.mark.parametrize(
    "needle",
    [
        "owns 2 groups: 220 (owner 2 of 3: 202 > 208 > 214) and "
        "226 (owner 1 of 3: 208 > 210 > 212)",
        "the status records of 202, 208, 210, 212 and 214",
        "sphere of influence, 202 208 210 212 214",
        "follows the cluster ensemble read-only (voters: 202 204 206)",
        "Bridge: 208 is shared by 220 and 226",
        "restarts on 210",
        "Groups 222 and 224 do not list 208",
    ],
)
def test_explain_node_208(nine: Topology, needle: str) -> None:
    assert needle in explain_node(nine, "208")


@pytest.mark.parametrize(
    "needle",
    [
        "owners in precedence order 208 > 210 > 212",
        "exactly its 3 owners, 208 210 212, and on no other node",
        "Quorum: 2 of 3 owners",
        "4 messages (2 x (3-1)), against 16 for one ensemble over all 9 nodes",
        "208 also owns 220; 210 also owns 222; 212 also owns 224",
        "- 208 fails: 2 of 3 owners left, quorum is 2: keeps serving; its app, which ran on "
        "208, restarts on 210",
    ],
)
def test_explain_group_226(nine: Topology, needle: str) -> None:
    assert needle in explain_group(nine, "226")


def test_explain_group_names_the_groups_it_is_isolated_from(nine: Topology) -> None:
    assert "It shares no node with 222 and 224" in explain_group(nine, "220")


def test_explain_a_node_on_one_group_has_no_bridge(nine: Topology) -> None:
    text = explain_node(nine, "202")
    assert "Bridge: none" in text
    assert "the records of group 220, because it is one of its owners" in text


def test_explain_refuses_unknown_ids(nine: Topology) -> None:
    with pytest.raises(TopologyError):
        explain_node(nine, "299")
    with pytest.raises(UnknownGroupError):
        explain_group(nine, "230")


# --------------------------------------------------------------------------- counted = sent


@pytest.mark.slow
@pytest.mark.parametrize("members", [3, 5], ids=["M=3", "M=5"])
def test_messages_per_write_is_what_hakv_raft_sends(
    members: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Count the messages a lone write makes real GroupMembers send (in one process).

    Each write is counted until the sends stop (80 ms of quiet). Heartbeats come every
    0.5 s, so a window holds at most one round of them; the smallest count over a few
    writes is the write's own cost.
    """
    import time

    from hakv.raft.host import RaftHost
    from hakv.raft.member import GroupMember
    from hakv.raft.settings import RaftSettings
    from hakv.raft.wire import MuxTransport, NodeListener
    from tests.support import MemoryMachine, free_ports

    sent: list[str] = []
    original = MuxTransport.send

    def counting_send(self: MuxTransport, node: object, message: object) -> object:
        if isinstance(message, dict) and message.get("type") in (
            "append_entries",
            "next_node_idx",
        ):
            sent.append(str(message["type"]))
        return original(self, node, message)

    monkeypatch.setattr(MuxTransport, "send", counting_send)
    settings = RaftSettings(
        election_timeout_min=1.6,
        election_timeout_max=2.4,
        heartbeat_period=0.5,
        leader_fallback_timeout=60.0,
    )
    ports = free_ports(members)
    addresses = [f"127.0.0.1:{port}" for port in ports]
    hosts = []
    for port, address in zip(ports, addresses, strict=True):
        host = RaftHost("127.0.0.1", port, b"\x01")
        peers = [a for a in addresses if a != address]
        directory = tmp_path / str(port)
        directory.mkdir()

        def factory(
            listener: NodeListener, poller: object, address: str = address,
            peers: list[str] = peers, directory: Path = directory,
        ) -> GroupMember:
            return GroupMember("g", address, peers, MemoryMachine(), str(directory), listener,
                               poller, settings)

        host.add_member(factory)
        hosts.append(host)
    try:
        for host in hosts:
            host.start()
        deadline = time.monotonic() + 30
        leader = None
        while leader is None and time.monotonic() < deadline:
            leaders = [h.members["g"] for h in hosts if h.members["g"].status()["role"] == "leader"]
            leader = leaders[0] if leaders else None
            time.sleep(0.05)
        assert leader is not None, "no leader elected"
        leader.submit(b"\x01").wait(10)  # the first write also settles the connections
        time.sleep(0.5)
        counts = []
        for _ in range(4):
            sent.clear()
            leader.submit(b"\x01").wait(10)
            seen, quiet_since = -1, time.monotonic()
            while time.monotonic() - quiet_since < 0.08:  # until 80 ms pass without a send
                if len(sent) != seen:
                    seen, quiet_since = len(sent), time.monotonic()
                time.sleep(0.01)
            counts.append(len(sent))
        assert min(counts) == messages_per_write(members), counts
    finally:
        for host in hosts:
            host.stop()
