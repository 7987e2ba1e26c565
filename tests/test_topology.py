"""hakv.core.topology: parsing, validation, the queries the rest of hakv asks, serialisation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hakv.core.topology import (
    GroupSpec,
    NodeSpec,
    RaftTuning,
    Topology,
    default_voters,
    load_topology,
    parse_topology,
)
from hakv.errors import TopologyError, UnknownGroupError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NINE = EXAMPLES / "nine-node.toml"
THREE = EXAMPLES / "three-node.toml"


@pytest.fixture(scope="module")
def nine() -> Topology:
    return load_topology(NINE)


# --------------------------------------------------------------------------- TOML builders
# Small, valid-by-default pieces; each failing case changes one thing.

CLUSTER = '[cluster]\nname = "t"\n'


def node(node_id: str, raft: int, api: int, host: str = "127.0.0.1", extra: str = "") -> str:
    return (
        f'\n[[nodes]]\nid = "{node_id}"\nhost = "{host}"\n'
        f"raft_port = {raft}\napi_port = {api}\n{extra}"
    )


def group(group_id: str, owners: str = '["a", "b", "c"]', extra: str = "") -> str:
    return f'\n[[groups]]\nid = "{group_id}"\nowners = {owners}\n{extra}'


NODES = node("a", 7001, 8001) + node("b", 7002, 8002) + node("c", 7003, 8003)
VALID = CLUSTER + NODES + group("g")


def raft(body: str) -> str:
    return CLUSTER + f"\n[raft]\n{body}\n" + NODES


def voters(value: str) -> str:
    return f'[cluster]\nname = "t"\ncluster_voters = {value}\n' + NODES


def test_builders_make_a_valid_topology() -> None:
    topology = parse_topology(VALID)
    assert topology.node_ids == ("a", "b", "c")
    assert topology.group_ids == ("g",)


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("path", [NINE, THREE], ids=lambda p: p.name)
def test_example_files_load(path: Path) -> None:
    topology = load_topology(path)
    topology.validate()
    assert topology.nodes and topology.groups


def test_nine_node_example_is_the_patent_example(nine: Topology) -> None:
    assert nine.cluster == "patent-example"
    assert nine.node_ids == tuple(str(i) for i in range(202, 219, 2))
    assert {g.id: g.owners for g in nine.groups} == {
        "220": ("202", "208", "214"),
        "222": ("204", "210", "216"),
        "224": ("206", "212", "218"),
        "226": ("208", "210", "212"),
    }
    assert nine.cluster_voters == ("202", "204", "206")
    for spec in nine.nodes:
        assert (spec.host, spec.raft_port, spec.api_port) == (
            "127.0.0.1",
            7000 + int(spec.id),
            8000 + int(spec.id),
        )


def test_three_node_example() -> None:
    topology = load_topology(THREE)
    assert topology.cluster == "three"
    assert [n.raft_address for n in topology.nodes] == [
        "127.0.0.1:7101",
        "127.0.0.1:7102",
        "127.0.0.1:7103",
    ]
    assert [n.api_address for n in topology.nodes] == [
        "127.0.0.1:8101",
        "127.0.0.1:8102",
        "127.0.0.1:8103",
    ]
    assert topology.group("g1").owners == ("n1", "n2", "n3")
    assert topology.group("g2").owners == ("n2", "n3", "n1")


# --------------------------------------------------------------------------- validation

INVALID = [
    # (id, toml text, rule tag, distinctive part of the message)
    ("cluster-table-missing", NODES, "missing_table", "missing [cluster] table"),
    ("cluster-name-missing", "[cluster]\n" + NODES, "cluster_name", "[cluster] name is missing"),
    ("cluster-name-empty", '[cluster]\nname = ""\n' + NODES, "cluster_name", "name is missing or empty"),
    ("cluster-name-blank", '[cluster]\nname = "  "\n' + NODES, "cluster_name", "name is missing or empty"),
    ("cluster-name-not-string", "[cluster]\nname = 5\n" + NODES, "field_type", "[cluster] name must be a string, got integer 5"),
    ("no-nodes", CLUSTER, "no_nodes", "has no nodes"),
    ("nodes-not-tables", "nodes = 3\n" + CLUSTER, "shape", "nodes must be an array of tables"),
    ("groups-not-tables", 'groups = ["g"]\n' + CLUSTER + NODES, "shape", "groups must be an array of tables"),
    ("raft-not-table", "raft = 1\n" + CLUSTER + NODES, "shape", "raft must be a table"),
    # missing / wrong-typed fields
    ("node-id-missing", CLUSTER + '[[nodes]]\nhost = "h"\nraft_port = 1\napi_port = 2\n', "missing_field", "[[nodes]] #1: field 'id' is missing (expected a string)"),
    ("node-id-bool", CLUSTER + "[[nodes]]\nid = true\n", "field_type", "[[nodes]] #1: id must be a string (or an integer), got boolean true"),
    ("node-id-unsafe", CLUSTER + node("../etc", 7001, 8001), "node_id", "node id '../etc' may only contain"),
    ("node-id-empty", CLUSTER + node("", 7001, 8001), "node_id", "node id '' must not be empty"),
    ("node-host-missing", CLUSTER + '[[nodes]]\nid = "a"\nraft_port = 1\napi_port = 2\n', "missing_field", "node a: field 'host' is missing (expected a string)"),
    ("node-host-not-string", CLUSTER + '[[nodes]]\nid = "a"\nhost = 127\nraft_port = 1\napi_port = 2\n', "field_type", "node a: host must be a string, got integer 127"),
    ("node-host-empty", CLUSTER + node("a", 7001, 8001, host=""), "node_host", "node a: host must not be empty"),
    ("node-raft-port-missing", CLUSTER + '[[nodes]]\nid = "a"\nhost = "h"\napi_port = 2\n', "missing_field", "node a: field 'raft_port' is missing (expected an integer)"),
    ("node-api-port-missing", CLUSTER + '[[nodes]]\nid = "a"\nhost = "h"\nraft_port = 2\n', "missing_field", "node a: field 'api_port' is missing (expected an integer)"),
    ("node-port-string", CLUSTER + '[[nodes]]\nid = "a"\nhost = "h"\nraft_port = "7001"\napi_port = 2\n', "field_type", "node a: raft_port must be an integer, got string '7001'"),
    ("node-port-float", CLUSTER + '[[nodes]]\nid = "a"\nhost = "h"\nraft_port = 1\napi_port = 80.5\n', "field_type", "node a: api_port must be an integer, got float 80.5"),
    ("node-capacity-float", CLUSTER + node("a", 7001, 8001, extra="capacity = 1.5\n"), "field_type", "node a: capacity must be an integer, got float 1.5"),
    ("node-capacity-negative", CLUSTER + node("a", 7001, 8001, extra="capacity = -1\n"), "node_capacity", "node a: capacity must be an integer >= 0, got -1"),
    ("group-id-missing", CLUSTER + NODES + '\n[[groups]]\nowners = ["a", "b"]\n', "missing_field", "[[groups]] #1: field 'id' is missing"),
    ("group-id-unsafe", CLUSTER + NODES + group("a/b"), "group_id", "group id 'a/b' may only contain"),
    ("group-owners-missing", CLUSTER + NODES + '\n[[groups]]\nid = "g"\n', "missing_field", "group g: field 'owners' is missing (expected an array of node ids)"),
    ("group-owners-not-array", CLUSTER + NODES + group("g", owners='"a,b"'), "field_type", "group g: owners must be an array of node ids, got string 'a,b'"),
    ("group-owner-float", CLUSTER + NODES + group("g", owners='["a", 1.5]'), "field_type", "group g: owners entry must be a string (or an integer), got float 1.5"),
    ("group-load-string", CLUSTER + NODES + group("g", extra='load = "1"\n'), "field_type", "group g: load must be an integer, got string '1'"),
    ("group-load-negative", CLUSTER + NODES + group("g", extra="load = -2\n"), "group_load", "group g: load must be an integer >= 0, got -2"),
    # identity rules
    ("duplicate-node-id", CLUSTER + NODES + node("b", 7009, 8009), "duplicate_node", "node b is defined twice"),
    ("duplicate-node-id-int-vs-string", CLUSTER + node("1", 7001, 8001) + "\n[[nodes]]\nid = 1\nhost = 'h'\nraft_port = 2\napi_port = 3\n", "duplicate_node", "node 1 is defined twice"),
    ("duplicate-group-id", VALID + group("g", owners='["b", "c"]'), "duplicate_group", "group g is defined twice"),
    ("group-one-owner", CLUSTER + NODES + group("g", owners='["a"]'), "too_few_owners", "group g has 1 owner (a); a group needs at least 2 owners"),
    ("group-no-owners", CLUSTER + NODES + group("g", owners="[]"), "too_few_owners", "group g has 0 owners (none)"),
    ("duplicate-owner", CLUSTER + NODES + group("g", owners='["a", "b", "a"]'), "duplicate_owner", "group g lists owner a twice"),
    ("owner-not-a-node", CLUSTER + NODES + group("226", owners='["a", "299"]'), "unknown_owner", 'group 226 lists owner 299, which is not a node of the topology; add [[nodes]] id = "299" or fix the owner list'),
    # ports
    ("raft-port-zero", CLUSTER + node("a", 0, 8001), "port_range", "node a: raft_port 0 is out of range 1..65535"),
    ("api-port-too-high", CLUSTER + node("a", 7001, 65536), "port_range", "node a: api_port 65536 is out of range 1..65535"),
    ("api-port-negative", CLUSTER + node("a", 7001, -80), "port_range", "node a: api_port -80 is out of range"),
    ("port-clash-raft-raft", CLUSTER + node("a", 7001, 8001) + node("b", 7001, 8002), "port_clash", "127.0.0.1:7001 is used by node a (raft_port) and by node b (raft_port)"),
    ("port-clash-api-raft", CLUSTER + node("a", 7001, 8001) + node("b", 8001, 8002), "port_clash", "127.0.0.1:8001 is used by node a (api_port) and by node b (raft_port)"),
    ("port-clash-same-node", CLUSTER + node("a", 7001, 7001), "port_clash", "127.0.0.1:7001 is used by node a (raft_port) and by node a (api_port)"),
    ("port-clash-ipv6", CLUSTER + node("a", 7001, 8001, host="::1") + node("b", 7001, 8002, host="::1"), "port_clash", "[::1]:7001 is used by node a (raft_port) and by node b (raft_port)"),
    # raft tuning
    ("raft-min-equals-max", raft("election_timeout_min = 1.0\nelection_timeout_max = 1.0"), "raft_election_range", "election_timeout_min (1.0) must be less than election_timeout_max (1.0)"),
    ("raft-min-above-max", raft("election_timeout_min = 2\nelection_timeout_max = 1"), "raft_election_range", "election_timeout_min (2.0) must be less than election_timeout_max (1.0)"),
    ("raft-min-above-default-max", raft("election_timeout_min = 1.5"), "raft_election_range", "must be less than election_timeout_max (1.0)"),
    ("raft-zero", raft("connection_retry = 0"), "raft_positive", "[raft] connection_retry must be a finite number of seconds > 0, got 0.0"),
    ("raft-negative", raft("leader_fallback_timeout = -1.0"), "raft_positive", "[raft] leader_fallback_timeout must be a finite number of seconds > 0, got -1.0"),
    ("raft-infinite", raft("election_timeout_max = inf"), "raft_positive", "[raft] election_timeout_max must be a finite number"),
    ("raft-string", raft('connection_retry = "0.5"'), "field_type", "[raft] connection_retry must be a number of seconds, got string '0.5'"),
    # cluster voters
    ("voters-unknown-node", voters('["a", "b", "z"]'), "unknown_voter", "cluster_voters lists z, which is not a node of the topology"),
    ("voters-duplicate", voters('["a", "b", "a"]'), "duplicate_voter", "cluster_voters lists a twice"),
    ("voters-even", voters('["a", "b"]'), "voters_even", "cluster_voters has 2 members (a, b); it needs an odd number"),
    ("voters-empty", voters("[]"), "voters_empty", "cluster_voters is empty"),
    ("voters-not-array", voters('"a"'), "field_type", "[cluster]: cluster_voters must be an array of node ids"),
    # unknown keys (typos)
    ("unknown-top-level-key", 'node = "x"\n' + VALID, "unknown_key", "top level: unknown key 'node'; did you mean 'nodes'?"),
    ("unknown-cluster-key", '[cluster]\nname = "t"\nvoters = ["a"]\n' + NODES, "unknown_key", "[cluster]: unknown key 'voters'"),
    ("unknown-raft-key", raft("election_timeout = 1.0"), "unknown_key", "[raft]: unknown key 'election_timeout'; did you mean"),
    ("unknown-node-key", CLUSTER + node("a", 7001, 8001, extra="raft_prot = 7005\n"), "unknown_key", "node a: unknown key 'raft_prot'; did you mean 'raft_port'?"),
    ("unknown-group-key", CLUSTER + NODES + group("g", extra='owner = "a"\n'), "unknown_key", "group g: unknown key 'owner'; did you mean 'owners'?"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "rule", "message"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_topology_is_rejected(text: str, rule: str, message: str) -> None:
    with pytest.raises(TopologyError) as excinfo:
        parse_topology(text, source="bad.toml")
    assert message in excinfo.value.message
    assert excinfo.value.message.startswith("bad.toml: ")
    assert excinfo.value.details["rule"] == rule


def test_validate_checks_a_hand_built_topology(nine: Topology) -> None:
    broken = Topology(
        cluster=nine.cluster,
        nodes=nine.nodes,
        groups=(*nine.groups, GroupSpec("228", ("202", "299"))),
        raft=nine.raft,
        cluster_voters=nine.cluster_voters,
    )
    with pytest.raises(TopologyError, match="group 228 lists owner 299"):
        broken.validate()


VALID_EDGES = [
    ("same-port-different-hosts", CLUSTER + node("a", 7001, 8001, host="10.0.0.1") + node("b", 7001, 8001, host="10.0.0.2")),
    ("single-node-no-groups", CLUSTER + node("a", 7001, 8001)),
    ("port-bounds", CLUSTER + node("a", 1, 65535)),
    ("two-owner-group", CLUSTER + NODES + group("g", owners='["a", "b"]')),
    ("one-voter", voters('["c"]')),
    ("five-voters", voters('["a", "b", "c", "d", "e"]') + node("d", 7004, 8004) + node("e", 7005, 8005)),
    ("zero-capacity-and-load", CLUSTER + node("a", 7001, 8001, extra="capacity = 0\n") + node("b", 7002, 8002) + group("g", owners='["a", "b"]', extra="load = 0\n")),
    ("integer-tuning", raft("election_timeout_min = 1\nelection_timeout_max = 3")),
]  # fmt: skip


@pytest.mark.parametrize("text", [c[1] for c in VALID_EDGES], ids=[c[0] for c in VALID_EDGES])
def test_edge_cases_are_valid(text: str) -> None:
    parse_topology(text).validate()


# --------------------------------------------------------------------------- parsing details


def test_integer_ids_are_converted_to_strings() -> None:
    text = (
        CLUSTER
        + "\n[[nodes]]\nid = 202\nhost = 'h'\nraft_port = 7202\napi_port = 8202\n"
        + "\n[[nodes]]\nid = 204\nhost = 'h'\nraft_port = 7204\napi_port = 8204\n"
        + "\n[[groups]]\nid = 220\nowners = [202, '204']\n"
    )
    topology = parse_topology(text)
    assert topology.node_ids == ("202", "204")
    assert topology.group("220").owners == ("202", "204")


def test_defaults_apply_when_optional_fields_are_left_out() -> None:
    topology = parse_topology(CLUSTER + NODES + node("d", 7004, 8004) + group("g"))
    assert topology.raft == RaftTuning(0.4, 1.0, 1.0, 0.5)
    assert topology.node("a").capacity == 10
    assert topology.group("g").load == 1
    assert topology.cluster_voters == ("a", "b", "c")


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ((), ()),
        (("a",), ("a",)),
        (("a", "b"), ("a",)),
        (("a", "b", "c"), ("a", "b", "c")),
        (("a", "b", "c", "d", "e"), ("a", "b", "c")),
    ],
    ids=["no-nodes", "one-node", "two-nodes-one-voter", "three-nodes", "five-nodes-first-three"],
)
def test_default_voters(nodes: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert default_voters(nodes) == expected


def test_two_node_cluster_without_voters_is_valid() -> None:
    topology = parse_topology(CLUSTER + node("a", 7001, 8001) + node("b", 7002, 8002))
    assert topology.cluster_voters == ("a",)


# --------------------------------------------------------------------------- queries

SPHERES = {
    "202": {"202", "208", "214"},
    "214": {"202", "208", "214"},
    "204": {"204", "210", "216"},
    "216": {"204", "210", "216"},
    "206": {"206", "212", "218"},
    "218": {"206", "212", "218"},
    "208": {"202", "208", "210", "212", "214"},
    "210": {"204", "208", "210", "212", "216"},
    "212": {"206", "208", "210", "212", "218"},
}


@pytest.mark.parametrize(("node_id", "sphere"), SPHERES.items(), ids=list(SPHERES))
def test_sphere_of_influence_matches_the_patent(
    nine: Topology, node_id: str, sphere: set[str]
) -> None:
    assert nine.sphere_of_influence(node_id) == frozenset(sphere)


def test_node_on_no_group_has_only_itself_in_its_sphere() -> None:
    topology = parse_topology(CLUSTER + NODES + node("d", 7004, 8004) + group("g"))
    assert topology.sphere_of_influence("d") == frozenset({"d"})
    assert topology.groups_of("d") == ()


def test_shared_nodes_are_the_bridges(nine: Topology) -> None:
    assert nine.shared_nodes() == {
        "208": ("220", "226"),
        "210": ("222", "226"),
        "212": ("224", "226"),
    }


@pytest.mark.parametrize(
    ("node_id", "group_ids"),
    [
        ("202", ("220",)),
        ("214", ("220",)),
        ("208", ("220", "226")),
        ("210", ("222", "226")),
        ("212", ("224", "226")),
        ("218", ("224",)),
    ],
    ids=["202", "214", "208-bridge", "210-bridge", "212-bridge", "218"],
)
def test_groups_of(nine: Topology, node_id: str, group_ids: tuple[str, ...]) -> None:
    assert tuple(g.id for g in nine.groups_of(node_id)) == group_ids


def test_groups_of_three_node_example_in_file_order() -> None:
    topology = load_topology(THREE)
    assert [g.id for g in topology.groups_of("n3")] == ["g1", "g2"]


@pytest.mark.parametrize(
    "query",
    [
        lambda t: t.node("299"),
        lambda t: t.groups_of("299"),
        lambda t: t.sphere_of_influence("299"),
    ],
    ids=["node", "groups_of", "sphere_of_influence"],
)
def test_unknown_node_is_a_topology_error(nine: Topology, query: object) -> None:
    with pytest.raises(TopologyError, match=r"node 299 is not in the topology \(nodes: 202, 204"):
        query(nine)  # type: ignore[operator]


def test_unknown_group_lists_the_known_groups(nine: Topology) -> None:
    with pytest.raises(UnknownGroupError, match=r"group 299 .*\(groups: 220, 222, 224, 226\)"):
        nine.group("299")


@pytest.mark.parametrize(
    ("group_id", "known"), [("220", True), ("226", True), ("228", False)], ids=str
)
def test_has_group(nine: Topology, group_id: str, known: bool) -> None:
    assert nine.has_group(group_id) is known


def test_node_lookup(nine: Topology) -> None:
    assert nine.node("208") == NodeSpec("208", "127.0.0.1", 7208, 8208, 10)


@pytest.mark.parametrize(
    ("owners", "quorum"),
    [(("a", "b"), 2), (("a", "b", "c"), 2), (("a", "b", "c", "d"), 3), (tuple("abcde"), 3)],
    ids=["2-owners", "3-owners", "4-owners", "5-owners"],
)
def test_quorum_size_is_a_majority(owners: tuple[str, ...], quorum: int) -> None:
    assert GroupSpec("g", owners).quorum_size == quorum


@pytest.mark.parametrize(
    ("host", "raft_address", "api_address"),
    [
        ("127.0.0.1", "127.0.0.1:7001", "127.0.0.1:8001"),
        ("node-a.example", "node-a.example:7001", "node-a.example:8001"),
        ("::1", "[::1]:7001", "[::1]:8001"),
    ],
    ids=["ipv4", "hostname", "ipv6-bracketed"],
)
def test_addresses(host: str, raft_address: str, api_address: str) -> None:
    spec = NodeSpec("a", host, 7001, 8001)
    assert (spec.raft_address, spec.api_address) == (raft_address, api_address)


def test_group_spec_stores_owners_as_a_tuple() -> None:
    assert GroupSpec("g", ["a", "b"]).owners == ("a", "b")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- serialisation

NASTY = (
    '[cluster]\nname = "quote \\" back \\\\ nl \\n tab \\t del \\u007F é 🚀"\n'
    '[raft]\nelection_timeout_min = 0.30001\nelection_timeout_max = 1e16\n'
    + node("a.1", 1, 65535, extra="capacity = 0\n")
    + node("b_2", 7002, 8002, host="::1")
    + group("g-3", owners='["b_2", "a.1"]', extra="load = 0\n")
)  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [NINE.read_text(), THREE.read_text(), NASTY],
    ids=["nine-node", "three-node", "escapes-and-extremes"],
)
def test_to_toml_round_trips(text: str) -> None:
    topology = parse_topology(text)
    assert parse_topology(topology.to_toml()) == topology


@given(st.text(min_size=1).filter(lambda s: s.strip()))
def test_to_toml_round_trips_any_cluster_name(name: str) -> None:
    topology = Topology(
        cluster=name,
        nodes=(NodeSpec("a", "h", 1, 2),),
        groups=(),
        raft=RaftTuning(),
        cluster_voters=("a",),
    )
    assert parse_topology(topology.to_toml()) == topology


def test_to_dict_is_json_and_round_trips(nine: Topology) -> None:
    data = json.loads(json.dumps(nine.to_dict()))
    assert Topology.from_dict(data) == nine


def test_from_dict_validates() -> None:
    data = parse_topology(VALID).to_dict()
    data["groups"][0]["owners"] = ["a", "zz"]
    with pytest.raises(TopologyError, match="<dict>: group g lists owner zz"):
        Topology.from_dict(data)


def _reordered_nine_node_text(nine: Topology) -> str:
    """The nine-node example rewritten: tables reversed, keys shuffled, odd whitespace."""
    parts = [
        "[raft]\nconnection_retry=0.5\nelection_timeout_max = 1.0\nelection_timeout_min = 0.4",
        "leader_fallback_timeout = 1.0\n",
    ]
    for spec in reversed(nine.nodes):
        parts.append(
            f"[[nodes]]\n  capacity = {spec.capacity}\n  api_port   = {spec.api_port}\n"
            f"  raft_port = {spec.raft_port}\n  host = '{spec.host}'\n  id = {spec.id}\n"
        )
    for grp in reversed(nine.groups):
        parts.append(f"[[groups]]\nowners = {list(grp.owners)}\n\n\nid = '{grp.id}'\n")
    parts.append('[cluster]\ncluster_voters = ["206", "204", "202"]\nname = "patent-example"')
    return "\n".join(parts)


def test_fingerprint_ignores_key_order_whitespace_and_table_order(nine: Topology) -> None:
    reordered = parse_topology(_reordered_nine_node_text(nine))
    assert reordered != nine  # different file order, same cluster
    assert reordered.fingerprint() == nine.fingerprint()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('owners = ["208", "210", "212"]', 'owners = ["208", "210", "218"]'),
        ('owners = ["208", "210", "212"]', 'owners = ["210", "208", "212"]'),
        ('owners = ["208", "210", "212"]', 'owners = ["208", "210"]'),
        ('name = "patent-example"', 'name = "other"'),
        ("api_port = 8218", "api_port = 9218"),
    ],
    ids=[
        "owner-replaced",
        "owner-precedence-swapped",
        "owner-removed",
        "cluster-renamed",
        "port-moved",
    ],
)
def test_fingerprint_changes_with_the_cluster(nine: Topology, old: str, new: str) -> None:
    text = NINE.read_text()
    assert old in text
    assert parse_topology(text.replace(old, new)).fingerprint() != nine.fingerprint()


def test_fingerprint_is_sha256_hex(nine: Topology) -> None:
    fingerprint = nine.fingerprint()
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0


# --------------------------------------------------------------------------- load_topology


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(TopologyError, match="nope.toml: topology file does not exist"):
        load_topology(path)


def test_load_non_toml_file_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[cluster]\nname = "x"\nthis is not toml\n')
    with pytest.raises(TopologyError) as excinfo:
        load_topology(path)
    assert excinfo.value.message.startswith(f"{path}: not valid TOML: ")
    assert "line 3" in excinfo.value.message


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="is a directory"):
        load_topology(tmp_path)


def test_load_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TopologyError, match="blob.toml: not a text file"):
        load_topology(path)


def test_load_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 000 does not stop root, so make the read itself fail.
    path = tmp_path / "secret.toml"
    path.write_text(VALID)

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(TopologyError, match="secret.toml: cannot read topology file: Permission"):
        load_topology(path)


def test_load_wrong_shape_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "shape.toml"
    path.write_text("nodes = 3\n" + CLUSTER)
    with pytest.raises(TopologyError, match=r"shape\.toml: nodes must be an array of tables"):
        load_topology(path)


def test_load_accepts_str_paths() -> None:
    assert load_topology(str(NINE)) == load_topology(NINE)


@pytest.mark.parametrize("raft, rule", [
    ("election_timeout_min = 0.3\nelection_timeout_max = 0.6", "raft_election_too_short"),
    ("leader_fallback_timeout = 0.05", "raft_fallback_too_short"),
], ids=["election-below-3-heartbeats", "fallback-below-a-heartbeat"])
def test_raft_timeouts_pysyncobj_would_reject_are_a_topology_error(raft: str, rule: str) -> None:
    text = f"""
[cluster]
name = "t"
[raft]
{raft}
[[nodes]]
id = "a"
host = "127.0.0.1"
raft_port = 7001
api_port = 8001
[[nodes]]
id = "b"
host = "127.0.0.1"
raft_port = 7002
api_port = 8002
[[groups]]
id = "g"
owners = ["a", "b"]
"""
    with pytest.raises(TopologyError) as err:
        parse_topology(text)
    assert err.value.details["rule"] == rule
