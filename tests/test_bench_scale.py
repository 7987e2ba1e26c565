"""The pure parts of bench/scale.py: the generated topology, port choice, the table."""

from __future__ import annotations

import os
import time

import pytest

from bench.scale import (
    ROWS,
    back_to_idle,
    chain_groups,
    choose_ports,
    cpu_seconds,
    format_table,
    percentile,
    ratio,
    scale_topology,
    spread,
    stat_cpu_seconds,
)
from hakv.core.topology import parse_topology


@pytest.mark.parametrize(("nodes", "groups"), [(3, 2), (9, 5), (27, 14), (45, 23), (99, 50)])
def test_three_owner_groups_match_the_issue_counts(nodes: int, groups: int) -> None:
    assert len(chain_groups(nodes, 3)) == groups


def test_nine_nodes_chain_like_the_issue_says() -> None:
    assert list(chain_groups(9, 3).values()) == [
        ["n0", "n1", "n2"], ["n2", "n3", "n4"], ["n4", "n5", "n6"], ["n6", "n7", "n8"],
        ["n8", "n0", "n1"],
    ]


@pytest.mark.parametrize("owners", [3, 5])
@pytest.mark.parametrize("nodes", [9, 10, 11, 27, 45, 99, 150])
def test_neighbouring_groups_share_exactly_one_node(nodes: int, owners: int) -> None:
    if nodes <= 2 * (owners - 1):
        pytest.skip("two groups that wrap around onto each other")
    groups = list(chain_groups(nodes, owners).values())
    assert len(groups) == -(-nodes // (owners - 1))
    for owner_list in groups:
        assert len(owner_list) == owners == len(set(owner_list))
    for a, b in zip(groups, groups[1:], strict=False):
        assert len(set(a) & set(b)) == 1
        assert a[-1] == b[0]  # the chain: the last owner of one is the first of the next
    assert set(groups[-1]) & set(groups[0])  # and the last group closes the ring
    assert set().union(*map(set, groups)) == {f"n{i}" for i in range(nodes)}


def test_chain_refuses_impossible_shapes() -> None:
    with pytest.raises(ValueError):
        chain_groups(2, 3)
    with pytest.raises(ValueError):
        chain_groups(9, 1)


def test_the_topology_is_valid_with_unique_ports_and_three_voters() -> None:
    ports = list(range(20000, 20000 + 2 * 27))
    text, groups = scale_topology(27, 3, ports)
    topo = parse_topology(text)
    assert topo.node_ids == tuple(f"n{i}" for i in range(27))
    assert topo.cluster_voters == ("n0", "n1", "n2")
    assert [g.id for g in topo.groups] == list(groups)
    assert {g.id: list(g.owners) for g in topo.groups} == groups
    used = [p for n in topo.nodes for p in (n.raft_port, n.api_port)]
    assert sorted(used) == ports and len(set(used)) == len(used)
    assert "[raft]" not in text and "[ha]" not in text  # default settings


def test_the_topology_refuses_repeated_ports() -> None:
    with pytest.raises(ValueError):
        scale_topology(3, 3, [20000] * 6)


def test_choose_ports_skips_busy_ones_wraps_and_stays_in_range() -> None:
    busy = {10001, 10003}
    ports = choose_ports(5, start=10000, low=10000, high=10010, is_free=lambda p: p not in busy)
    assert ports == [10000, 10002, 10004, 10005, 10006]
    wrapped = choose_ports(4, start=10008, low=10000, high=10010, is_free=lambda p: True)
    assert wrapped == [10008, 10009, 10000, 10001]
    with pytest.raises(RuntimeError):
        choose_ports(9, start=10000, low=10000, high=10010, is_free=lambda p: p not in busy)


def test_spread_picks_distinct_evenly_spaced_items_first_included() -> None:
    items = [f"g{i:02d}" for i in range(14)]
    picked = spread(items, 8)
    assert len(picked) == len(set(picked)) == 8 and picked[0] == "g00"
    assert spread(items[:5], 8) == items[:5]
    assert spread([], 8) == []


def test_percentile_and_back_to_idle() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 51.0 and percentile(values, 0.99) == 99.0
    # idle 10 -> limit 12: two samples in a row within it, the first ending at second 3
    assert back_to_idle([50, 30, 11, 12, 40], 10) == 3
    assert back_to_idle([50, 11, 30, 11], 10) is None
    assert back_to_idle([], 10) is None


def test_ratio() -> None:
    assert ratio(20, 10) == "2.00x"
    assert ratio(5.0, 10) == "0.50x"
    assert ratio(None, 10) == ratio(3, 0) == ratio(3, None) == ratio(True, 1) == "-"
    assert ratio(float("nan"), 1) == "-"


def test_format_table_gives_each_figure_and_its_ratio_to_the_first_n() -> None:
    base = {"nodes": 9, "groups": 5, "up_s": 2.0, "seq_p50_ms": 4.0, "untouched_changed": 0,
            "untouched_groups": 0, "burst_back": True, "burst_back_s": 3, "error_count": 0}
    big = {"nodes": 27, "groups": 14, "up_s": 5.0, "seq_p50_ms": 5.0, "untouched_changed": 1,
           "untouched_groups": 6, "burst_back": False, "recover_limit_s": 30,
           "error_count": 2}
    table = format_table([base, big])
    lines = table.splitlines()
    assert lines[0].startswith("| figure") and "N = 9" in lines[0] and "N = 27" in lines[0]
    assert len(lines) == 2 + len(ROWS)
    assert len({len(line) for line in lines}) == 1  # aligned

    def row(label: str) -> list[str]:
        found = next(line for line in lines if line.startswith(f"| {label} "))
        return [c.strip() for c in found.strip("|").split("|")]

    assert row("up -> every group led (s)")[1:] == ["2.0", "5.0 (2.50x)"]
    assert row("seq put p50, one group via leader (ms)")[1:] == ["4.00", "5.00 (1.25x)"]
    assert row("groups")[1:] == ["5", "14"]  # a count: no ratio
    assert row("back within 1.2x idle after burst")[1:] == ["yes, 3 s", "no (>30 s)"]
    assert row("untouched groups whose term changed")[1:] == ["0 of 0", "1 of 6"]
    assert row("idle CPU/node after traffic, mean (% core)")[1:] == ["-", "-"]  # not measured
    assert format_table([]) == "(no results)"


def test_the_cpu_clock_agrees_with_proc_stat_but_to_the_nanosecond() -> None:
    pid = os.getpid()
    c0, s0 = cpu_seconds(pid), stat_cpu_seconds(pid)
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    c1, s1 = cpu_seconds(pid), stat_cpu_seconds(pid)
    assert c1 - c0 >= 0.05
    assert abs((c1 - c0) - (s1 - s0)) < 0.03  # ticks: within 2 x 10 ms of truncation
    assert abs(c1 - s1) < 0.03
