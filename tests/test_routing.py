"""hakv.core.routing: the change router of patent Fig. 3, driven by tests/testdata/routing/*.txt.

The data files follow etcd-raft's datadriven style. A case is::

    # the case's name (first '#' line; more '#' lines are comments)
    route node=210 kind=allocation group=226
    ----
    targets: 226 222
    hop: 226 -> 222 via bridge 210
    serialized by the bridge on 210

Cases are separated by blank lines. Commands:

- ``topology nine-node`` | ``topology G=N,N,... G=N,N,...``: the topology for the cases
  that follow in the file (default: examples/nine-node.toml; the inline form builds one
  with those groups, nodes in order of first mention);
- ``route cluster kind=K [subject=S]`` | ``route group=G kind=K [node=N]`` |
  ``route node=N kind=K [group=G]``: ``Route.render()``, or ``error (code): message``;
- ``bridges``: one line per shared node, the group pairs its bridge connects.

Set HAKV_REWRITE_TESTDATA=1 to rewrite the expected outputs from the code (then review
the diff).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from hakv.core.routing import (
    BridgeHop,
    ClusterChange,
    GroupChange,
    NodeChange,
    Route,
    bridges,
    route,
    routing_table,
)
from hakv.core.topology import GroupSpec, NodeSpec, RaftTuning, Topology, load_topology
from hakv.errors import HakvError
from tests import datadriven

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = Path(__file__).resolve().parent / "testdata" / "routing"
NINE = ROOT / "examples" / "nine-node.toml"


# --------------------------------------------------------------------------- the runner


@dataclass
class Case:
    path: Path
    line: int  # 1-based line of the command
    name: str
    command: str
    expected: str
    setup: str | None = None  # the ``topology`` command in effect for this case


def parse_file(path: Path) -> list[Case]:
    cases: list[Case] = []
    setup: str | None = None
    for c in datadriven.parse(path.read_text(encoding="utf-8"), path.name):
        cases.append(Case(path, c.line, c.name, c.command, c.expected, setup))
        if c.command.split()[0] == "topology":
            setup = c.command
    return cases


def inline_topology(specs: list[str]) -> Topology:
    """``G=N,N,...`` for each group -> a valid Topology (ports are placeholders)."""
    groups: list[GroupSpec] = []
    node_ids: list[str] = []
    for spec in specs:
        gid, _, owners = spec.partition("=")
        owner_ids = tuple(owners.split(","))
        groups.append(GroupSpec(gid, owner_ids))
        node_ids += [o for o in owner_ids if o not in node_ids]
    nodes = tuple(
        NodeSpec(n, "127.0.0.1", 20000 + 2 * i, 20001 + 2 * i) for i, n in enumerate(node_ids)
    )
    topology = Topology("inline", nodes, tuple(groups), RaftTuning(), (node_ids[0],))
    topology.validate()
    return topology


def _args(words: list[str]) -> dict[str, str]:
    args = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {word!r}")
        args[key] = value
    return args


class Runner:
    def __init__(self) -> None:
        self.topology = load_topology(NINE)

    def run(self, command: str) -> str:
        verb, *words = command.split()
        try:
            return getattr(self, f"do_{verb}")(words)
        except HakvError as err:
            return f"error ({err.code}): {err.message}"

    def do_topology(self, words: list[str]) -> str:
        self.topology = load_topology(NINE) if words == ["nine-node"] else inline_topology(words)
        lines = [f"{g.id}: {' '.join(g.owners)}" for g in self.topology.groups]
        shared = self.topology.shared_nodes()
        lines.append(f"shared: {' '.join(shared) if shared else '(none)'}")
        return "\n".join(lines)

    def do_route(self, words: list[str]) -> str:
        if words and words[0] == "cluster":
            a = _args(words[1:])
            change: ClusterChange | GroupChange | NodeChange = ClusterChange(
                a["kind"], a.get("subject")  # type: ignore[arg-type]
            )
        else:
            a = _args(words)
            if "node" in a and a.get("kind") in ("status", "allocation"):
                change = NodeChange(a["node"], a["kind"], a.get("group"))  # type: ignore[arg-type]
            else:
                change = GroupChange(a["group"], a["kind"], a.get("node"))  # type: ignore[arg-type]
        return route(self.topology, change).render()

    def do_bridges(self, words: list[str]) -> str:
        found = bridges(self.topology)
        if not found:
            return "(no shared nodes)"
        return "\n".join(
            f"{node}: {' '.join(f'{a}-{b}' for a, b in pairs)}" for node, pairs in found.items()
        )


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    return "-".join(part for part in keep.split("-") if part)[:80]


FILES = sorted(TESTDATA.glob("*.txt"))
CASES = [case for path in FILES for case in parse_file(path)]


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.path.stem}:{_slug(c.name)}" for c in CASES]
)
def test_routing_case(case: Case) -> None:
    runner = Runner()
    if case.setup is not None:
        runner.run(case.setup)
    got = runner.run(case.command)
    if got != case.expected and os.environ.get("HAKV_REWRITE_TESTDATA") == "1":
        rewrite(case.path)
        pytest.skip(f"rewrote {case.path.name}")
    assert got == case.expected, (
        f"{case.path.name}:{case.line} {case.name}\n  {case.command}\n"
        f"--- expected\n{case.expected}\n--- got\n{got}"
    )


def rewrite(path: Path) -> None:
    """Replace every expected output in ``path`` with what the code says now."""
    datadriven.rewrite(path, Runner().run)


def test_every_data_file_has_cases_with_distinct_readable_names() -> None:
    assert all(parse_file(path) for path in FILES)
    names = [(c.path.name, _slug(c.name)) for c in CASES]
    assert all(slug for _, slug in names)
    assert len(names) == len(set(names)), "two cases in one file share a name"


# --------------------------------------------------------------------------- in code
# The few properties a data file cannot state.


@pytest.fixture(scope="module")
def nine() -> Topology:
    return load_topology(NINE)


def test_the_route_of_a_bridged_allocation_as_data(nine: Topology) -> None:
    got = route(nine, NodeChange("210", "allocation", "226"))
    assert got == Route(
        NodeChange("210", "allocation", "226"),
        targets=("226", "222"),
        hops=(BridgeHop("210", "226", "222"),),
        serialized_by="210",
    )


def test_a_node_change_reaches_exactly_the_groups_whose_owners_form_its_sphere(
    nine: Topology,
) -> None:
    for node in nine.node_ids:
        for origin in [None, *(g.id for g in nine.groups_of(node))]:
            targets = route(nine, NodeChange(node, "status", origin)).targets
            owners = {o for gid in targets for o in nine.group(gid).owners}
            assert owners == nine.sphere_of_influence(node), (node, origin)


def test_forwarding_stops_after_one_hop(nine: Topology) -> None:
    """Every hop leaves the origin group, over the node the change is about."""
    for _, r in routing_table(nine):
        for hop in r.hops:
            assert hop.from_group == r.targets[0]
            assert hop.via_node in nine.group(hop.from_group).owners
            assert hop.via_node in nine.group(hop.to_group).owners
        assert len(r.targets) == len(set(r.targets))


def test_an_unknown_kind_is_refused_when_the_change_is_built() -> None:
    with pytest.raises(HakvError, match="not one of"):
        NodeChange("208", "reboot")  # type: ignore[arg-type]


def test_the_runner_reads_the_documented_case_format(tmp_path: Path) -> None:
    data = tmp_path / "x.txt"
    data.write_text("# one\n# why\nbridges\n----\na\nb\n\n# two\nbridges\n----\nc\n")
    cases = parse_file(data)
    assert [(c.name, c.command, c.expected) for c in cases] == [
        ("one", "bridges", "a\nb"),
        ("two", "bridges", "c"),
    ]
