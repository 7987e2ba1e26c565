"""The HA prober's timing rules (hakv.node.manager): slack before an HTTP probe, back-off while a
peer does not answer, jitter. Under overload a node must shed optional work, never add to it
(docs/raft.md, "Overload")."""

from __future__ import annotations

import random

import pytest

from hakv.core.ha import HaTuning
from hakv.node.manager import jittered, mark_rank, probe_backoff, raft_evidence_window

DEFAULT = HaTuning()


@pytest.mark.parametrize(("tuning", "window"), [
    (DEFAULT, 0.5),  # node heartbeats come every 0.2 s: 2.5 of them may be late
    (HaTuning(failure_timeout=0.3, probe_interval=0.2), 0.2),  # never below the interval
    (HaTuning(failure_timeout=4.0, probe_interval=0.5), 2.0),
])
def test_raft_contact_counts_for_half_the_failure_timeout(tuning: HaTuning,
                                                          window: float) -> None:
    assert raft_evidence_window(tuning) == pytest.approx(window)


@pytest.mark.parametrize(("failures", "period"), [
    (0, 0.2), (1, 0.4), (2, 0.8), (3, 1.0), (10, 1.0), (10_000, 1.0),
])
def test_unanswered_probes_back_off_to_the_failure_timeout(failures: int,
                                                           period: float) -> None:
    assert probe_backoff(DEFAULT, failures) == pytest.approx(period)


def test_a_dead_peer_costs_about_one_probe_per_failure_timeout() -> None:
    elapsed, probes = 0.0, 0
    while elapsed < 60.0:
        elapsed += probe_backoff(DEFAULT, probes)
        probes += 1
    assert probes <= 63  # 60 s at 1/s after the first doublings; it was 300 (5 per second)


def test_jitter_stays_within_its_spread_and_varies() -> None:
    rng = random.Random(7)
    values = [jittered(1.0, rng) for _ in range(1000)]
    assert min(values) >= 0.8 and max(values) <= 1.2
    assert len({round(v, 6) for v in values}) > 900


@pytest.mark.parametrize(("group", "rank"), [("220", 0), ("226", 1), ("999", 2)])
def test_the_leader_of_a_nodes_first_group_records_its_failure_first(group: str,
                                                                     rank: int) -> None:
    # Node 208 of the nine-node example is on 220 and 226: both leaders see it fail, but
    # a mark in the cluster ensemble is a write to every node, so 226's waits its turn.
    assert mark_rank(["220", "226"], group) == rank
