"""The node's Prometheus metrics (hakv.node.metrics, docs/operations.md "Metrics").

The collector is driven through an in-memory twin of its ports (``FakeNode``): every
metric, its labels and its value. The text it renders is checked by ``promtool check
metrics``, and the alert rules of examples/prometheus-alerts.yml by ``promtool check
rules`` and ``promtool test rules`` (Debian package ``prometheus``, installed by .ci/run;
skipped with the reason without it). A live node's /metrics is scraped last.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hakv.core import ha
from hakv.core.topology import CLUSTER_GROUP, Topology, parse_topology
from hakv.node.metrics import CONTENT_TYPE, LOCAL_APP_STATES, NodeMetrics, render
from hakv.node.view import ClusterView

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "examples" / "prometheus-alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus; .ci/run "
    "installs it)")

TOPOLOGY = """
[cluster]
name = "metrics-test"
cluster_voters = ["a", "b", "c"]
""" + "".join(f"""
[[nodes]]
id = "{n}"
host = "127.0.0.1"
raft_port = {7000 + i}
api_port = {8000 + i}
""" for i, n in enumerate("abcd")) + """
[[groups]]
id = "g1"
owners = ["a", "b", "c"]

[[groups]]
id = "g2"
owners = ["a", "d"]

[groups.app]
start = "sleep 1000"
"""


# =========================================================================== the twin


class FakeMember:
    """A member's status and counters, as the test sets them (MemberStats)."""

    def __init__(self, status: dict[str, Any], counters: dict[str, int]) -> None:
        self._status, self._counters = status, counters

    def status(self) -> dict[str, Any]:
        return dict(self._status)

    def counters(self) -> dict[str, int]:
        return dict(self._counters)


class FakeStore:
    """A store directory with files of known sizes, a placement, a map (StoreStats)."""

    def __init__(self, directory: Path, data: int, snapshot: int | None,
                 space: tuple[int, int], placement: ha.Placement | None = None) -> None:
        self.path = directory / "state"
        self.path.mkdir(parents=True)
        (self.path / "data.mdb").write_bytes(b"\0" * data)
        if snapshot is not None:
            (directory / "snapshot").write_bytes(b"\0" * snapshot)
        self._space = space
        self._placement = placement or ha.Placement()
        self.closed = False

    def placement(self) -> ha.Placement:
        return self._placement

    def space(self) -> tuple[int, int]:
        if self.closed:
            raise RuntimeError("store closed")  # as lmdb.Error would be
        return self._space


class FakeNode:
    """Node ``a`` of TOPOLOGY (MetricsSource): g1 led here, g2 a follower with an app placed
    here, the cluster ensemble a follower; peers b heard 0.5 s ago, c 10 s ago, d never."""

    node_id = "a"

    def __init__(self, directory: Path, topology: Topology, now: float) -> None:
        addr = {n.id: n.raft_address for n in topology.nodes}
        self.members: dict[str, FakeMember] = {
            "g1": FakeMember({"role": "leader", "leader_address": addr["a"], "term": 7,
                              "commit_index": 120, "raft_applied": 118, "quorum": True,
                              "log_entries": 40, "quiesced": False},
                             {"leader_changes": 3, "proposals_committed": 100,
                              "proposals_failed": 2, "proposals_pending": 1}),
            "g2": FakeMember({"role": "follower", "leader_address": None, "term": 4,
                              "commit_index": 9, "raft_applied": 9, "quorum": False,
                              "log_entries": 9, "quiesced": False},
                             {"leader_changes": 1, "proposals_committed": 5,
                              "proposals_failed": 7, "proposals_pending": 0}),
            CLUSTER_GROUP: FakeMember({"role": "follower", "leader_address": addr["b"],
                                       "term": 2, "commit_index": 30, "raft_applied": 30,
                                       "quorum": True, "log_entries": 30, "quiesced": True},
                                      {"leader_changes": 1, "proposals_committed": 1,
                                       "proposals_failed": 0, "proposals_pending": 0}),
        }
        placed = ha.Placement(node="a", state="running", token=3, restarts=1)
        self.stores = {
            "g1": FakeStore(directory / "g1", 4096, 1234, (1 << 30, 65536)),
            "g2": FakeStore(directory / "g2", 8192, None, (1 << 20, 900_000), placed),
            CLUSTER_GROUP: FakeStore(directory / "cluster", 2048, None, (1 << 30, 8192)),
        }
        self.heard = {addr["b"]: now - 0.5, addr["c"]: now - 10.0}

    def hosted(self) -> list[str]:
        return sorted(g for g in self.members if g != CLUSTER_GROUP)

    def member(self, group: str) -> FakeMember | None:
        return self.members.get(group)

    def store(self, group: str) -> FakeStore:
        return self.stores[group]

    def last_heard(self, raft_address: str) -> float | None:
        return self.heard.get(raft_address)


NOW = 5000.0
NOT_AFTER = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
#: Raft messages per peer raft address (NodeListener.sent, .received): b and c of TOPOLOGY,
#: and an address no node has (a departed node's), shown as it is. d: none either way.
SENT = {"127.0.0.1:7001": 10, "127.0.0.1:7002": 4, "10.9.9.9:7000": 1}
RECEIVED = {"127.0.0.1:7001": 12}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[FakeNode, NodeMetrics]:
    topology = parse_topology(TOPOLOGY)
    node = FakeNode(tmp_path, topology, NOW)
    local = {"g2": {"state": "running", "token": 3, "pid": 42, "restarts": 1,
                    "lease_left": 2.5, "last_exit": ""}}
    ha_counts = {"g2": {"failovers": 2, "lease_renewals_failed": 5, "fence_events": 1}}
    metrics = NodeMetrics(node, ClusterView(topology, topology), local_app=local.get,
                          ha_counters=lambda g: ha_counts.get(g, {}),
                          forwarded=lambda: 17,
                          bridge_behind=lambda: {("g1", "g2"): NOW - 3.0, ("g2", "g1"): NOW - 1},
                          peer_messages=lambda: (SENT, RECEIVED),
                          certificate_not_after=lambda: NOT_AFTER,
                          watches=lambda: {"active": 5, "parked": 3, "forwarded": 1},
                          clock=lambda: NOW)
    return node, metrics


def samples(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed back from the text: (name, labels) -> value."""
    body, content_type = metrics.render()
    assert content_type == CONTENT_TYPE
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples: dict[Any, float], name: str, **labels: str) -> float:
    return all_samples[(name, tuple(sorted(labels.items())))]


# =========================================================================== the collector


def test_every_group_metric_has_its_labels_and_value(setup: Any) -> None:
    _, metrics = setup
    s = samples(metrics)
    expect = {
        # name: (g1, g2, _cluster)
        "hakv_server_has_leader": (1, 0, 1),
        "hakv_server_is_leader": (1, 0, 0),
        "hakv_server_is_learner": (0, 0, 0),
        "hakv_server_leader_changes_seen_total": (3, 1, 1),
        "hakv_server_proposals_committed_total": (100, 5, 1),
        "hakv_server_proposals_failed_total": (2, 7, 0),
        "hakv_server_proposals_pending": (1, 0, 0),
        "hakv_raft_term": (7, 4, 2),
        "hakv_raft_commit_index": (120, 9, 30),
        "hakv_raft_applied_index": (118, 9, 30),
        "hakv_raft_apply_lag": (2, 0, 0),
        "hakv_raft_quiesced": (0, 0, 1),
        "hakv_raft_log_entries": (40, 9, 30),
        "hakv_raft_snapshot_size_bytes": (1234, 0, 0),
        "hakv_group_has_quorum": (1, 0, 1),
        "hakv_group_voters": (3, 2, 3),
        "hakv_group_quorum_size": (2, 2, 2),
        # a itself + b (heard 0.5 s ago); c is silent for 10 s, d never heard
        "hakv_group_members_connected": (2, 1, 2),
        "hakv_mvcc_db_total_size_in_bytes": (4096, 8192, 2048),
        "hakv_lmdb_map_size_bytes": (1 << 30, 1 << 20, 1 << 30),
        "hakv_lmdb_map_used_bytes": (65536, 900_000, 8192),
    }
    for name, values in expect.items():
        for group, v in zip(("g1", "g2", CLUSTER_GROUP), values, strict=True):
            assert value(s, name, group=group) == v, (name, group)
    assert value(s, "hakv_server_leader_info", group="g1", leader="a") == 1
    assert value(s, "hakv_server_leader_info", group=CLUSTER_GROUP, leader="b") == 1
    assert not [k for k in s if k[0] == "hakv_server_leader_info" and ("group", "g2") in k[1]]


def test_ha_metrics_only_for_groups_with_an_app(setup: Any) -> None:
    _, metrics = setup
    s = samples(metrics)
    for state in ha.STATES:
        assert value(s, "hakv_ha_app_state", group="g2", state=state) == (state == "running")
    for state in LOCAL_APP_STATES:
        assert value(s, "hakv_ha_local_app_state", group="g2", state=state) == (
            state == "running")
    assert value(s, "hakv_ha_app_runs_here", group="g2") == 1
    assert value(s, "hakv_ha_fencing_token", group="g2") == 3
    assert value(s, "hakv_ha_placements_total", group="g2") == 3
    assert value(s, "hakv_ha_app_restarts", group="g2") == 1
    assert value(s, "hakv_ha_maintenance", group="g2") == 0
    assert value(s, "hakv_ha_lease_remaining_seconds", group="g2") == 2.5
    assert value(s, "hakv_ha_failovers_total", group="g2") == 2
    assert value(s, "hakv_ha_lease_renewals_failed_total", group="g2") == 5
    assert value(s, "hakv_ha_fence_events_total", group="g2") == 1
    ha_names = {k[0] for k in s if k[0].startswith("hakv_ha_")}
    assert ha_names and not [k for k in s if k[0] in ha_names and ("group", "g2") not in k[1]]


def test_peer_node_and_process_metrics(setup: Any) -> None:
    _, metrics = setup
    s = samples(metrics)
    assert value(s, "hakv_network_peer_last_heard_seconds", peer="b") == 0.5
    assert value(s, "hakv_network_peer_last_heard_seconds", peer="c") == 10.0
    assert ("hakv_network_peer_last_heard_seconds", (("peer", "d"),)) not in s  # never heard
    assert [value(s, "hakv_network_peer_connected", peer=p) for p in "bcd"] == [1, 0, 0]
    assert ("hakv_network_peer_connected", (("peer", "a"),)) not in s  # not its own peer
    assert value(s, "hakv_bridge_forwarded_total") == 17
    assert value(s, "hakv_bridge_forwarding_lag_seconds") == 3.0  # the oldest link behind
    # Messages by node id; every peer shown (0 for d), an unknown address as it is.
    assert [value(s, "hakv_network_peer_sent_messages_total", peer=p) for p in "bcd"] == [
        10, 4, 0]
    assert [value(s, "hakv_network_peer_received_messages_total", peer=p)
            for p in "bcd"] == [12, 0, 0]
    assert value(s, "hakv_network_peer_sent_messages_total", peer="10.9.9.9:7000") == 1
    assert ("hakv_network_peer_sent_messages_total", (("peer", "a"),)) not in s
    assert value(s, "hakv_tls_certificate_not_after_timestamp_seconds") == NOT_AFTER.timestamp()
    assert [value(s, "hakv_watchers", state=k) for k in ("active", "parked", "forwarded")] \
        == [5, 3, 1]
    info = [k for k in s if k[0] == "hakv_node_info"]
    assert len(info) == 1 and dict(info[0][1])["node"] == "a"
    assert dict(info[0][1])["cluster"] == "metrics-test"
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "python_info"):
        assert [k for k in s if k[0] == name], name


def test_histograms_record_what_the_node_observes(setup: Any) -> None:
    _, metrics = setup
    fsync = metrics.fsync_observer("g1")
    fsync(0.003)
    fsync(0.7)
    metrics.observe_request("put", "g1", 0.002)
    metrics.observe_request("txn", "g1", 0.004)
    metrics.observe_request("get", "g2", 0.001)
    metrics.observe_request("watch", "g2", 9.0)  # not a write nor a linearizable read
    s = samples(metrics)
    name = "hakv_disk_wal_fsync_duration_seconds"
    assert value(s, name + "_count", group="g1") == 2
    assert value(s, name + "_sum", group="g1") == pytest.approx(0.703)
    assert value(s, name + "_bucket", group="g1", le="0.004") == 1
    assert value(s, name + "_bucket", group="g1", le="1.024") == 2
    assert value(s, name + "_bucket", group="g1", le="+Inf") == 2
    assert value(s, "hakv_server_write_duration_seconds_count", group="g1") == 2
    assert value(s, "hakv_server_linearizable_read_duration_seconds_count", group="g2") == 1
    assert ("hakv_server_write_duration_seconds_count", (("group", "g2"),)) not in s
    metrics.forget("g1")
    metrics.forget("g1")  # twice: no error
    assert not [k for k in samples(metrics) if k[0].startswith(name) and ("group", "g1") in k[1]]


def test_commit_and_round_trip_histograms(setup: Any) -> None:
    _, metrics = setup
    commit = metrics.commit_observer("g1")
    commit(0.0015)
    commit(0.02)
    metrics.observe_peer_rtt("127.0.0.1:7001", 0.0003)  # b's raft address: labelled b
    metrics.observe_peer_rtt("127.0.0.1:7001", 0.05)
    metrics.observe_peer_rtt("10.9.9.9:7000", 0.001)  # no node there: the address
    s = samples(metrics)
    name = "hakv_disk_backend_commit_duration_seconds"
    assert value(s, name + "_count", group="g1") == 2
    assert value(s, name + "_bucket", group="g1", le="0.002") == 1
    rtt = "hakv_network_peer_round_trip_time_seconds"
    assert value(s, rtt + "_count", peer="b") == 2
    assert value(s, rtt + "_sum", peer="b") == pytest.approx(0.0503)
    assert value(s, rtt + "_bucket", peer="b", le="0.0004") == 1  # etcd's buckets
    assert value(s, rtt + "_bucket", peer="b", le="0.0512") == 2
    assert value(s, rtt + "_count", peer="10.9.9.9:7000") == 1
    metrics.forget("g1")
    assert not [k for k in samples(metrics) if k[0].startswith(name)]


def test_bridge_lag_is_zero_when_caught_up(tmp_path: Path) -> None:
    topology = parse_topology(TOPOLOGY)
    metrics = NodeMetrics(FakeNode(tmp_path, topology, NOW), ClusterView(topology, topology),
                          bridge_behind=dict, clock=lambda: NOW, process=False)
    assert value(samples(metrics), "hakv_bridge_forwarding_lag_seconds") == 0


# =========================================================================== where measured


def test_only_placements_after_a_lost_or_failed_runner_are_failovers() -> None:
    from hakv.node.manager import is_failover

    failover = [ha.Placement(node="b", state=s, token=2) for s in ("starting", "running",
                                                                    "stopping")]
    failover.append(ha.Placement(node="b", state="failed", token=2))
    assert all(is_failover(rec) for rec in failover)
    planned = [ha.Placement(),  # the first placement
               ha.Placement(node="b", state="stopped", token=2),  # a move, a fallback
               ha.Placement(node="b", state="suspended", token=2),  # after a quorum loss
               ha.Placement(node=None, state="failed", token=2)]  # nowhere to run it
    assert not any(is_failover(rec) for rec in planned)


def test_the_runner_counts_failed_renewals_and_fence_events(tmp_path: Path) -> None:
    from hakv import errors
    from hakv.node.fence import EXIT_FENCED
    from hakv.node.supervisor import AppRunner
    from tests.twins import FakeClock

    answers: list[Any] = [{"renewed": False}, errors.NoQuorumError("no quorum"),
                          {"renewed": True}]

    class Submitted:
        def __init__(self, answer: Any) -> None:
            self.answer = answer

        def wait(self, _timeout: float) -> Any:
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    class Member:
        def submit(self, _payload: bytes) -> Submitted:
            return Submitted(answers.pop(0))

    class Groups:
        def member_of(self, _group: str) -> Member:
            return Member()

    class View:
        def tuning(self) -> ha.HaTuning:
            return ha.HaTuning()

    class Supervisor:
        groups, view, clock, me, data_dir = Groups(), View(), FakeClock(), "a", str(tmp_path)
        runners: dict[str, AppRunner] = {}

    class Keeper:
        stdin = None

        def poll(self) -> int:
            return EXIT_FENCED

    sup = Supervisor()
    runner = sup.runners["g2"] = AppRunner(sup, "g2")  # type: ignore[arg-type]
    runner.lease_token = 3
    for _ in range(3):
        runner.renew_once()
    runner.keeper = Keeper()  # type: ignore[assignment]
    runner.watch_app(ha.AppSpec(start="sleep 1"), ha.Placement(node="a", state="running",
                                                                 token=3))
    from hakv.node.supervisor import Supervisor as RealSupervisor
    counters = RealSupervisor.counters(sup, "g2")  # type: ignore[arg-type]
    assert counters == {"lease_renewals_failed": 2, "fence_events": 1}
    assert RealSupervisor.counters(sup, "g1") == {}  # type: ignore[arg-type]


def test_the_bridge_knows_since_when_a_link_is_behind() -> None:
    from hakv import errors
    from hakv.node.bridge import Bridge

    class Store:
        def outbox_head(self) -> int:
            return 5

        def outbox(self, after: int = 0) -> list[dict[str, Any]]:
            return [{"about": "x", "kind": "k", "data": {}, "index": 5}] if after < 5 else []

        def high_water_mark(self, _source: str, _about: str) -> int:
            return 0

    ok = [False]

    class Submitted:
        def wait(self, _timeout: float) -> Any:
            if not ok[0]:
                raise errors.NoQuorumError("no quorum in g2")
            return {"applied": True}

    class Groups:
        request_timeout = 1.0

        def hosted(self) -> list[str]:
            return ["g1", "g2"]

        def store(self, _group: str) -> Store:
            return Store()

        def member_of(self, _group: str) -> Any:
            return type("M", (), {"submit": lambda self, _p: Submitted()})()

    bridge = Bridge("a", Groups(), None, 10)  # type: ignore[arg-type]
    bridge.links = lambda: [("g1", "g2", ("x",))]  # type: ignore[method-assign]
    with pytest.raises(errors.NoQuorumError):
        bridge.forward_once()
    first = bridge.behind_since[("g1", "g2")]
    with pytest.raises(errors.NoQuorumError):
        bridge.forward_once()
    assert bridge.behind_since[("g1", "g2")] == first  # still behind since the first round
    ok[0] = True
    assert bridge.forward_once() == 1
    assert bridge.behind_since == {}


def test_the_store_times_each_commit(tmp_path: Path) -> None:
    from hakv.core import codec
    from hakv.storage.store import GroupStore

    took: list[float] = []
    with GroupStore(tmp_path / "g", "g1") as store:
        store.on_commit = took.append
        store.commit()  # no batch: nothing timed
        store.apply(1, codec.encode(codec.write_command("put", {"key": "k", "value": "v"},
                                                        "c", 1)))
        store.commit()
    assert len(took) == 1 and took[0] >= 0


def test_a_heartbeat_ack_closes_the_leaders_round_trip_probe(tmp_path: Path) -> None:
    from pysyncobj.poller import createPoller

    from hakv.raft.member import GroupMember
    from hakv.raft.settings import RaftSettings
    from hakv.raft.wire import NodeListener
    from tests.test_raft_hardening import CountingMachine

    poller = createPoller("poll")
    listener = NodeListener(poller, "127.0.0.1", 0)
    member = GroupMember("g", "127.0.0.1:8", ["127.0.0.1:9"], CountingMachine(),
                         str(tmp_path), listener, poller,
                         RaftSettings(election_timeout_min=30, election_timeout_max=60))
    try:
        seen: list[tuple[str, float]] = []
        member.on_rtt = lambda address, seconds: seen.append((address, seconds))
        (node,) = member._voters()
        member._set_match_index(node, 0)
        probes = member._transport().rtt_probes
        sent = time.monotonic() - 0.002

        def ack(next_idx: int, success: bool = True) -> None:
            member._next_index_ack(node, {"next_node_idx": next_idx, "success": success,
                                          "reset": not success})

        probes["127.0.0.1:9"] = (sent, 6)  # a heartbeat with prevLogIdx 5 left 2 ms ago
        ack(4)  # the ack of an earlier message: the probe stays
        assert not seen and "127.0.0.1:9" in probes
        ack(6)
        assert seen[0][0] == "127.0.0.1:9" and 0.002 <= seen[0][1] < 1.0
        assert not probes  # the next heartbeat arms the next probe
        probes["127.0.0.1:9"] = (sent, 7)
        ack(7, success=False)  # a failed one: no sample, no probe
        probes["127.0.0.1:9"] = (sent - 60, 8)
        ack(8)  # older than a connection may be silent (left from an old term)
        assert len(seen) == 1 and not probes
        # Received messages are counted per peer address, in the listener.
        member._receive(node, {"type": "hakv_unknown"})
        assert listener.received["127.0.0.1:9"] == 1
    finally:
        member._doDestroy()
        listener.close()


def test_node_heartbeats_echo_each_others_send_time() -> None:
    from hakv.raft.host import RaftHost

    host = RaftHost("127.0.0.1", 0, b"barrier")
    try:
        seen: list[tuple[str, float]] = []
        host.on_rtt = lambda address, seconds: seen.append((address, seconds))
        host._echoed("127.0.0.1:9", {"sent": 77.0}, 100.0)  # kept, to echo back
        assert host._echo["127.0.0.1:9"] == (77.0, 100.0)
        # Its echo of ours: sent at 200.0, held 0.5 s there, back at 200.75.
        host._echoed("127.0.0.1:9", {"echo": (200.0, 0.5)}, 200.75)
        assert seen == [("127.0.0.1:9", 0.25)]
        host._echoed("127.0.0.1:9", {"echo": ("x", 0.5)}, 300.0)  # malformed: ignored
        assert len(seen) == 1
    finally:
        host.listener.close()


def test_a_group_that_fails_to_read_is_left_out_of_that_scrape(setup: Any) -> None:
    node, metrics = setup
    node.stores["g2"].closed = True
    del node.members["g1"]  # unhosted between hosted() and member(): just not there
    node.hosted = lambda: ["g1", "g2"]
    s = samples(metrics)
    groups = {dict(k[1]).get("group") for k in s if k[0] == "hakv_raft_term"}
    assert groups == {CLUSTER_GROUP}


def test_registries_are_per_node(setup: Any, tmp_path: Path) -> None:
    """Two nodes in one process: their own registries, nothing in the global one."""
    from prometheus_client import REGISTRY

    node, metrics = setup
    topology = parse_topology(TOPOLOGY)
    other = NodeMetrics(FakeNode(tmp_path / "other", topology, NOW),
                        ClusterView(topology, topology), process=False)
    metrics.observe_request("put", "g1", 0.01)
    assert value(samples(metrics), "hakv_server_write_duration_seconds_count", group="g1") == 1
    assert ("hakv_server_write_duration_seconds_count", (("group", "g1"),)) not in samples(other)
    assert REGISTRY.get_sample_value("hakv_server_write_duration_seconds_count",
                                     {"group": "g1"}) is None
    assert render(other.registry)[0].startswith(b"# HELP")


# =========================================================================== promtool


def _promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], input=None if stdin is None else stdin.decode(),
                          capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_promtool_accepts_the_metrics(setup: Any) -> None:
    _, metrics = setup
    metrics.fsync_observer("g1")(0.002)
    metrics.observe_request("put", "g1", 0.002)
    metrics.observe_request("get", "g1", 0.002)
    body, _ = metrics.render()
    done = _promtool("check", "metrics", stdin=body)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr)


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    done = _promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


RULE_TESTS = """
rule_files:
  - {alerts}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'hakv_server_has_leader{{instance="a", group="g1"}}'
        values: '1 0 0 0 0'
      - series: 'hakv_server_leader_changes_seen_total{{instance="a", group="g1"}}'
        values: '0+2x20'
      - series: 'hakv_group_members_connected{{instance="a", group="g1"}}'
        values: '3 1 1 1 1 1'
      - series: 'hakv_group_quorum_size{{instance="a", group="g1"}}'
        values: '2x5'
      - series: 'hakv_group_voters{{instance="a", group="g1"}}'
        values: '3x5'
      - series: 'hakv_ha_app_state{{instance="a", group="g2", state="running"}}'
        values: '1 0 0 0 0'
      - series: 'hakv_ha_maintenance{{instance="a", group="g2"}}'
        values: '0x5'
      - series: 'hakv_ha_app_state{{instance="a", group="g3", state="running"}}'
        values: '0x5'
      - series: 'hakv_ha_maintenance{{instance="a", group="g3"}}'
        values: '1x5'
      - series: 'hakv_lmdb_map_used_bytes{{instance="a", group="g1"}}'
        values: '90x20'
      - series: 'hakv_lmdb_map_size_bytes{{instance="a", group="g1"}}'
        values: '100x20'
      - series: 'hakv_tls_certificate_not_after_timestamp_seconds{{instance="a"}}'
        values: '86400x5'
      # one burst of failures at 1m (an election): no alert; failures every minute: alert
      - series: 'hakv_server_proposals_failed_total{{instance="a", group="g4"}}'
        values: '0 10x30'
      - series: 'hakv_server_proposals_failed_total{{instance="a", group="g5"}}'
        values: '0+10x30'
      # round trips to b all between 102.4 and 204.8 ms: p99 about 204 ms
      - series: 'hakv_network_peer_round_trip_time_seconds_bucket{{instance="a", peer="b", le="0.1024"}}'
        values: '0x30'
      - series: 'hakv_network_peer_round_trip_time_seconds_bucket{{instance="a", peer="b", le="0.2048"}}'
        values: '0+10x30'
      - series: 'hakv_network_peer_round_trip_time_seconds_bucket{{instance="a", peer="b", le="+Inf"}}'
        values: '0+10x30'
      # failovers of g2: two by a while it led, one by b after it took over
      - series: 'hakv_ha_failovers_total{{instance="a", group="g2"}}'
        values: '0 1 2 2 2 2 2 2 2 2'
      - series: 'hakv_ha_failovers_total{{instance="b", group="g2"}}'
        values: '0 0 0 0 1 1 1 1 1 1'
      - series: 'hakv_ha_fence_events_total{{instance="b", group="g2"}}'
        values: '0 0 1 1 1'
      - series: 'hakv_bridge_forwarding_lag_seconds{{instance="c"}}'
        values: '0 30 90 150 210 270 330 390 450'
    alert_rule_test:
      - eval_time: 3m
        alertname: HakvNoLeader
        exp_alerts:
          - exp_labels: {{severity: critical, instance: a, group: g1}}
            exp_annotations:
              summary: "Group g1 has no leader (seen from a)"
              description: "Member a of group g1 has known no leader for over a minute: the group takes no writes and no linearizable reads (no quorum?)."
      - eval_time: 4m
        alertname: HakvInsufficientMembers
        exp_alerts:
          - exp_labels: {{severity: critical, group: g1}}
            exp_annotations:
              summary: "Group g1 has lost quorum"
              description: "No owner of group g1 is in contact with a majority of its voters (at best 1 of the 2 needed)."
      - eval_time: 15m
        alertname: HakvHighNumberOfLeaderChanges
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a, group: g1}}
            exp_annotations:
              summary: "Frequent leader changes in group g1 (seen from a)"
              description: "a saw 30 leader changes of group g1 in the last 15 minutes."
      - eval_time: 4m
        alertname: HakvAppNotRunning
        exp_alerts:
          - exp_labels: {{severity: critical, group: g2}}
            exp_annotations:
              summary: "The app of group g2 is not running"
              description: "Group g2's app has not been running for 2 minutes, and the group is not in maintenance."
      - eval_time: 15m
        alertname: HakvLmdbMapNearlyFull
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a, group: g1}}
            exp_annotations:
              summary: "LMDB map of group g1 on a is 90% used"
              description: "The map grows itself at half full; staying above 80% means it could not (disk full?), and a full map stops the node."
      - eval_time: 20m
        alertname: HakvHighNumberOfFailedProposals
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a, group: g5}}
            exp_annotations:
              summary: "Proposals keep failing in group g5 on a"
              description: "More than 5 proposals made on a failed in group g5 in every 5 minutes for the last 10 (50 in the last 5): no quorum, or leader changes."
      - eval_time: 15m
        alertname: HakvHighPeerRoundTripTime
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a, peer: b}}
            exp_annotations:
              summary: "Slow network from a to peer b"
              description: "The 99th percentile of raft round trips from a to b is 203.8ms: every write waits for one, and elections follow if it nears the election timeout."
      - eval_time: 3m
        alertname: HakvFrequentFailovers
      - eval_time: 5m
        alertname: HakvFrequentFailovers
        exp_alerts:
          - exp_labels: {{severity: warning, group: g2}}
            exp_annotations:
              summary: "The app of group g2 fails over often"
              description: "Group g2's app failed over 3 times in the last hour (its runner was lost, stopped renewing its lease, or the app failed there)."
      - eval_time: 3m
        alertname: HakvAppFenced
        exp_alerts:
          - exp_labels: {{severity: warning, instance: b, group: g2}}
            exp_annotations:
              summary: "The app of group g2 was fenced on b"
              description: "Its lease ran out on b and the fence keeper killed it: that node lost the group's quorum, or stalled."
      - eval_time: 6m
        alertname: HakvBridgeLagging
      - eval_time: 7m
        alertname: HakvBridgeLagging
        exp_alerts:
          - exp_labels: {{severity: warning, instance: c}}
            exp_annotations:
              summary: "The bridge on c is behind"
              description: "An outbox entry has waited 6m 30s to be applied in another group (no quorum in the target group?)."
      - eval_time: 1m
        alertname: HakvCertificateExpiresSoon
        exp_alerts:
          - exp_labels: {{severity: critical, instance: a}}
            exp_annotations:
              summary: "The TLS certificate of a has expired or expires within 2 days"
              description: "Issue a new certificate with `hakv certs ... --overwrite` and send the node SIGHUP."
"""


@needs_promtool
def test_the_alert_rules_fire_when_they_should(tmp_path: Path) -> None:
    """``promtool test rules``: a few alerts over synthetic series, labels and text included."""
    spec = tmp_path / "alerts-test.yml"
    spec.write_text(textwrap.dedent(RULE_TESTS).format(alerts=ALERTS))
    done = _promtool("test", "rules", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr


# =========================================================================== a live node


@pytest.mark.slow
def test_a_live_node_serves_metrics_that_promtool_accepts(tmp_path: Path) -> None:
    from tests.support import api_tls, api_url, post, start_api_cluster, wait_for

    lc = start_api_cluster(tmp_path, ["n1", "n2", "n3"], {"g1": ["n1", "n2", "n3"]})
    try:
        endpoint = lc.endpoint("n1")
        for i in range(5):
            assert post(endpoint, "put", {"group": "g1", "key": f"k{i}", "value": "v"})[0] == 200
            assert post(endpoint, "get", {"group": "g1", "key": f"k{i}"})[0] == 200

        def scrape(node: str = "n1") -> tuple[bytes, str]:
            with urllib.request.urlopen(api_url(lc.endpoint(node), "/metrics"), timeout=5,
                                        context=api_tls()) as resp:
                return resp.read(), resp.headers["Content-Type"]

        def samples(body: bytes) -> dict[Any, float]:
            out: dict[Any, float] = {}
            for family in text_string_to_metric_families(body.decode()):
                for sample in family.samples:
                    out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
            return out

        # Every node must have heard a leader of both groups before the snapshot is taken
        # (the cluster ensemble may still be electing when g1 already serves writes).
        wait_for(lambda: all(value(samples(scrape(n)[0]), "hakv_server_has_leader", group=g) == 1
                             for n in ("n1", "n2", "n3") for g in ("g1", CLUSTER_GROUP)),
                 20, what="every node to know both groups' leaders")
        body, content_type = scrape()
        assert content_type == CONTENT_TYPE
        s = samples(body)
        every = {n: samples(scrape(n)[0]) for n in ("n1", "n2", "n3")}
        for group in ("g1", CLUSTER_GROUP):
            assert value(s, "hakv_server_has_leader", group=group) == 1
            assert value(s, "hakv_raft_term", group=group) >= 1
            assert value(s, "hakv_group_voters", group=group) == 3
            assert value(s, "hakv_lmdb_map_size_bytes", group=group) > 0
            # A follower hears from its leader only; the leader hears from every member.
            leaders = [n for n, m in every.items()
                       if value(m, "hakv_server_is_leader", group=group) == 1]
            assert len(leaders) == 1, (group, leaders)
            assert value(every[leaders[0]], "hakv_group_members_connected", group=group) == 3
        g1_leader = next(n for n, m in every.items()
                         if value(m, "hakv_server_is_leader", group="g1") == 1)
        assert [value(every[g1_leader], "hakv_network_peer_connected", peer=p)
                for p in ("n1", "n2", "n3") if p != g1_leader] == [1, 1]
        assert value(s, "hakv_server_proposals_committed_total", group="g1") >= 5
        assert value(s, "hakv_server_write_duration_seconds_count", group="g1") >= 5
        assert value(s, "hakv_server_linearizable_read_duration_seconds_count",
                     group="g1") >= 5
        assert value(s, "hakv_disk_wal_fsync_duration_seconds_count", group="g1") >= 1
        assert value(s, "hakv_disk_backend_commit_duration_seconds_count", group="g1") >= 1
        assert value(s, "hakv_bridge_forwarding_lag_seconds") == 0
        assert value(s, "process_open_fds") > 0
        # Peers: messages both ways between each follower and the g1 leader; round trips
        # measured on what flows anyway (the leader's heartbeats and their acks while g1
        # is busy, node heartbeats echoed both ways once it is quiet), both directions.
        followers = [p for p in ("n1", "n2", "n3") if p != g1_leader]
        for follower in followers:
            for here, there in ((g1_leader, follower), (follower, g1_leader)):
                m = every[here]
                assert value(m, "hakv_network_peer_sent_messages_total", peer=there) > 0
                assert value(m, "hakv_network_peer_received_messages_total", peer=there) > 0

        def rtt_count(here: str, there: str) -> float:
            return samples(scrape(here)[0]).get(
                ("hakv_network_peer_round_trip_time_seconds_count", (("peer", there),)), 0)

        wait_for(lambda: all(rtt_count(a, b) >= 1 for f in followers
                             for a, b in ((g1_leader, f), (f, g1_leader))),
                 15, what="round trips measured between the g1 leader and its followers")
        rtts = samples(scrape(g1_leader)[0])
        for follower in followers:
            rtt = (value(rtts, "hakv_network_peer_round_trip_time_seconds_sum", peer=follower)
                   / value(rtts, "hakv_network_peer_round_trip_time_seconds_count",
                           peer=follower))
            assert 0 < rtt < 0.5, (follower, rtt)  # loopback: well under a heartbeat
        sent_before = value(samples(scrape(g1_leader)[0]),
                            "hakv_network_peer_sent_messages_total", peer=followers[0])
        rtt_before = rtt_count(g1_leader, followers[0])
        if PROMTOOL is not None:
            done = _promtool("check", "metrics", stdin=body)
            assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
        # The metrics move with the cluster: another write, a higher commit index.
        before = value(s, "hakv_raft_commit_index", group="g1")
        assert post(endpoint, "put", {"group": "g1", "key": "more", "value": "v"})[0] == 200
        wait_for(lambda: b"hakv_raft_commit_index" in scrape()[0]
                 and _commit_index(scrape()[0]) > before, 10, what="the commit index to move")
        # ... and more messages to the peers, more round trips measured.
        wait_for(lambda: value(samples(scrape(g1_leader)[0]),
                               "hakv_network_peer_sent_messages_total",
                               peer=followers[0]) > sent_before
                 and rtt_count(g1_leader, followers[0]) > rtt_before, 10,
                 what="peer messages and round trips to move")
    finally:
        lc.down()


def _commit_index(body: bytes) -> float:
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "hakv_raft_commit_index" and sample.labels.get("group") == "g1":
                return sample.value
    return -1.0
