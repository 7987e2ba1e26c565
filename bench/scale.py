"""Scale: what a cluster of N real node processes costs, per node and per write, as N grows.

    python -m bench.scale [--nodes 9,27,45,99] [--owners 3|5] [--seconds 20] [--settle 5]
                          [--burst 10] [--recover 30] [--plot docs/img/scale.png]
                          [--json PATH] [--keep]
    make bench-scale

For each N it starts N node processes with ``hakv.dev.local.LocalCluster`` on 127.0.0.1 with
a generated topology (issue 12): nodes n0..n{N-1}; groups of M owners (``--owners``,
default 3) chained so that neighbouring groups share one node, group k owning nodes
(M-1)k .. (M-1)k+M-1 mod N (for M = 3: 2k, 2k+1, 2k+2; 9 nodes -> 5 groups, like the
nine-node example); the cluster ensemble's voters are the first 3 nodes; default
``[raft]`` and ``[ha]`` settings. Ports are taken below the kernel's ephemeral range
(so no outgoing connection of a starting node can take a port another node is about to
listen on) and each is checked free by binding it. The machine report
(``bench/machine.py``) is printed first. Then, per N, in this order:

    up           seconds from the start of ``LocalCluster.up`` until every node answers
                 /v1/status and every group (and the cluster ensemble ``_cluster``) has a
                 member that reports itself leader with quorum (``Client.cluster_status``,
                 polled every 0.25 s)
    idle settled CPU time of each node process over ``--seconds`` after ``--settle``
                 seconds of rest; % of one core, mean and max over nodes, and the sum over
                 nodes (machine-wide node CPU). CPU time is utime+stime of the whole
                 process (all threads), read to the nanosecond from its CPU-time clock
                 (``cpu_seconds``); /proc/<pid>/stat gives the same in 10 ms ticks, too
                 coarse for a node using a few ms a second, and is kept in the JSON
                 (``*_stat_*``) as a cross-check. Clients
                 have talked to the cluster only through the harness's status polls
                 (one fresh connection each, closed after the answer).
    traffic      client traffic to 8 nodes spread over the cluster (``client_traffic``):
                 /v1/status and /v1/health on fresh connections, 5 puts to the written
                 group through a keep-alive ``hakv.Client`` then closed (forwarded when
                 the node does not own the group), a ``Connection: close`` request, a
                 connection closed without a request (after the TLS handshake), and one
                 reset mid-request; all over HTTPS with the run's client certificate
    idle traffic the same idle measurement again, after that traffic
    RSS          VmRSS of each node (/proc/<pid>/status), mean and max, after the traffic
                 and again at the end of the run
    seq put      400 sequential 100-byte puts (after 10 warm-up puts) to the first group
                 with one ``hakv.Client`` whose first endpoint is that group's leader: p50,
                 p99 of ``Client.put``
    8 groups     8 threads, one group each (8 groups spread over the cluster; with fewer
                 than 8 groups, threads share groups), each with its own ``hakv.Client``
                 leader first, sequential puts for 5 s: aggregate ops/s, p50, p99
    burst        after max(2 s, ``--settle``) of rest, an idle window (``--seconds``) of
                 machine-wide node CPU (the sum over nodes), then ``--burst``
                 seconds of sequential puts to the first group, then machine-wide node CPU
                 sampled every second for up to ``--recover`` seconds: back to idle when
                 two consecutive 1-s samples are within 1.2x of the pre-burst window
                 (yes/no, and the seconds after the burst at which the first of them ended)
    cluster      cluster-level writes through a ``hakv.Client`` over all nodes (the
                 first endpoint is a cluster voter): 10 ``Client.put`` of one key
                 (``bench/scale-probe``, outside the records' prefixes, deleted after) in
                 the cluster ensemble ``_cluster`` (median: the bare write),
                 ``client.admin.add_node`` (the ``hakv cluster add-node`` command: a
                 linearizable read of the cluster records and an epoch-guarded txn in the
                 cluster ensemble; a node record only, no process is started) and
                 ``remove_node``, 3 times each (median); ``create_group`` of a new group on
                 the first group's owners, the time until the new group has a leader with
                 quorum, and ``delete_group``
    elections    each group's term (highest term any member reports, from
                 ``Client.cluster_status``) after the first idle window and at the end:
                 how many groups changed term, among the groups nothing wrote to
                 ("untouched": not the first group, not one of the 8 written groups) and
                 among all groups. With 8 groups or fewer (N = 9: 5 groups) the writers
                 cover every group and no group is untouched ("0 of 0").

It prints one table (each figure, and its ratio to the first N), writes a PNG plot of put
latency and idle CPU per node against N (``--plot``; empty string: no plot) and, with
``--json PATH``, every result (and the per-second samples) as JSON, written after each N.

Every run directory is under one ``tempfile.mkdtemp`` (removed at the end unless
``--keep``, or when an N had errors: the node logs are there); each cluster is brought
down in a ``finally`` (SIGTERM and Ctrl-C included), and any node process whose command
line still names the run directory afterwards is killed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hakv.client.client import Client, probe
from hakv.core.topology import CLUSTER_GROUP, NodeSpec
from hakv.dev.local import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NODES = (9, 27, 45, 99)
DEFAULT_PLOT = ROOT / "docs" / "img" / "scale.png"
VALUE = "x" * 100
SEQ_PUTS = 400
WARM_UP_PUTS = 10
WRITERS = 8
CONCURRENT_SECONDS = 5.0
TRAFFIC_NODES = 8
BACK_TO_IDLE = 1.2
VOTERS = 3
UP_TIMEOUT = 180.0
CLUSTER_PUTS = 10
CLUSTER_PROBE_KEY = "bench/scale-probe"  # outside the records' prefixes; deleted after
PORT_FLOOR = 10000  # ports are taken from [PORT_FLOOR, start of the ephemeral range)


# =========================================================================== pure parts


def chain_groups(nodes: int, owners: int = 3) -> dict[str, list[str]]:
    """Groups of ``owners`` nodes chained over nodes n0..n{nodes-1}: group k owns nodes
    (owners-1)k .. (owners-1)k+owners-1 (mod ``nodes``), so neighbouring groups share one
    node, and there are ceil(nodes / (owners-1)) groups (every node owns at least one)."""
    if owners < 2:
        raise ValueError(f"a group needs at least 2 owners, got {owners}")
    if nodes < owners:
        raise ValueError(f"{nodes} nodes cannot hold groups of {owners} distinct owners")
    step = owners - 1
    count = -(-nodes // step)
    width = len(str(count - 1))
    return {f"g{k:0{width}d}": [f"n{(step * k + i) % nodes}" for i in range(owners)]
            for k in range(count)}


def node_ids(nodes: int) -> list[str]:
    return [f"n{i}" for i in range(nodes)]


def choose_ports(count: int, *, start: int, low: int, high: int,
                 is_free: Callable[[int], bool]) -> list[int]:
    """``count`` distinct ports of [low, high) for which ``is_free``, walking up from
    ``start`` (wrapping to ``low``). RuntimeError when the range does not hold enough."""
    if not low <= start < high:
        raise ValueError(f"start {start} is outside [{low}, {high})")
    ports: list[int] = []
    for offset in range(high - low):
        port = low + (start - low + offset) % (high - low)
        if is_free(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"only {len(ports)} free ports in [{low}, {high}), {count} needed")


def topology_text(name: str, specs: Sequence[NodeSpec], groups: Mapping[str, Sequence[str]],
                  voters: Sequence[str]) -> str:
    """The TOML of a topology: no [raft] and no [ha] table (their defaults)."""
    def ids(items: Iterable[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    lines = ["[cluster]", f"name = {json.dumps(name)}", f"cluster_voters = {ids(voters)}", ""]
    for s in specs:
        lines += ["[[nodes]]", f"id = {json.dumps(s.id)}", f"host = {json.dumps(s.host)}",
                  f"raft_port = {s.raft_port}", f"api_port = {s.api_port}", ""]
    for gid, owners in groups.items():
        lines += ["[[groups]]", f"id = {json.dumps(gid)}", f"owners = {ids(owners)}", ""]
    return "\n".join(lines)


def scale_topology(nodes: int, owners: int, ports: Sequence[int],
                   name: str = "scale") -> tuple[str, dict[str, list[str]]]:
    """(TOML text, groups) of the benchmark's topology for ``nodes`` nodes; ``ports``
    holds 2 per node (raft, api)."""
    if len(ports) != 2 * nodes or len(set(ports)) != len(ports):
        raise ValueError(f"need {2 * nodes} distinct ports, got {len(set(ports))}")
    ids = node_ids(nodes)
    specs = [NodeSpec(id=n, host="127.0.0.1", raft_port=ports[2 * i], api_port=ports[2 * i + 1])
             for i, n in enumerate(ids)]
    groups = chain_groups(nodes, owners)
    return topology_text(name, specs, groups, ids[:VOTERS]), groups


def spread(items: Sequence[str], k: int) -> list[str]:
    """``min(k, len(items))`` distinct items evenly spaced over ``items``, the first one
    included."""
    n = len(items)
    if n == 0 or k <= 0:
        return []
    if k >= n:
        return list(items)
    return [items[(i * n) // k] for i in range(k)]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def back_to_idle(samples: Sequence[float], idle: float, factor: float = BACK_TO_IDLE,
                 consecutive: int = 2) -> int | None:
    """1-based index of the first 1-s sample that starts ``consecutive`` samples in a row
    within ``factor`` x ``idle`` (the seconds after the burst at which it ended); None if
    never."""
    limit = factor * idle
    run = 0
    for i, value in enumerate(samples):
        run = run + 1 if value <= limit else 0
        if run >= consecutive:
            return i - consecutive + 2
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def ratio(value: Any, base: Any) -> str:
    """``value / base`` as "1.23x"; "-" when either is not a number or base is 0."""
    v, b = _number(value), _number(base)
    if v is None or b is None or b == 0 or v != v or b != b:
        return "-"
    return f"{v / b:.2f}x"


def _fmt(value: Any, digits: int) -> str:
    v = _number(value)
    if v is None:
        return "-" if value is None else str(value)
    if v != v:
        return "-"
    return f"{v:,.{digits}f}"


@dataclass(frozen=True)
class Row:
    """One line of the table: a label, the result key it shows and how.

    ``kind``: "number" (``digits`` decimals; ratio to the first N when ``ratio``),
    "back" (the back-to-idle verdict), "count" (``key`` of ``total_key``, e.g. "0 of 6")."""

    label: str
    key: str
    digits: int = 1
    ratio: bool = True
    kind: str = "number"
    total_key: str = ""

    def value(self, result: Mapping[str, Any]) -> Any:
        return result.get(self.key)

    def text(self, result: Mapping[str, Any]) -> str:
        if self.kind == "back":
            if result.get("burst_back") is None:
                return "-"
            if result["burst_back"]:
                return f"yes, {result.get(self.key)} s"
            return f"no (>{_fmt(result.get('recover_limit_s'), 0)} s)"
        if self.kind == "count":
            if result.get(self.key) is None:
                return "-"
            return f"{result[self.key]} of {result.get(self.total_key)}"
        return _fmt(self.value(result), self.digits)


ROWS: tuple[Row, ...] = (
    Row("groups", "groups", 0, False),
    Row("up -> every group led (s)", "up_s", 1),
    Row("up -> every node answers (s)", "healthy_s", 1),
    Row("idle CPU/node after settling, mean (% core)", "idle_settled_mean", 2),
    Row("idle CPU/node after settling, max (% core)", "idle_settled_max", 2),
    Row("idle CPU/node after traffic, mean (% core)", "idle_traffic_mean", 2),
    Row("idle CPU/node after traffic, max (% core)", "idle_traffic_max", 2),
    Row("idle node CPU machine-wide after traffic (% core)", "idle_traffic_sum", 1),
    Row("RSS/node after traffic, mean (MB)", "rss_mean_mb", 1),
    Row("RSS/node after traffic, max (MB)", "rss_max_mb", 1),
    Row("RSS/node at the end, max (MB)", "rss_end_max_mb", 1),
    Row("seq put p50, one group via leader (ms)", "seq_p50_ms", 2),
    Row("seq put p99 (ms)", "seq_p99_ms", 2),
    Row("8 writers on up to 8 groups: ops/s", "conc_ops", 0),
    Row("8 writers on up to 8 groups: p50 (ms)", "conc_p50_ms", 2),
    Row("pre-burst idle, machine-wide (% core)", "burst_idle_sum", 1),
    Row("burst: put ops/s", "burst_ops", 0),
    Row("back within 1.2x idle after burst", "burst_back_s", 0, False, "back"),
    Row("cluster: record put, median (ms)", "cluster_put_ms", 1),
    Row("cluster: add-node record, median (ms)", "add_node_ms", 1),
    Row("cluster: remove-node record, median (ms)", "remove_node_ms", 1),
    Row("cluster: group create (ms)", "create_group_ms", 1),
    Row("cluster: new group led after create (s)", "create_group_led_s", 2),
    Row("cluster: group delete (ms)", "delete_group_ms", 1),
    Row("untouched groups whose term changed", "untouched_changed", 0, False, "count",
        "untouched_groups"),
    Row("all groups whose term changed", "all_changed", 0, False, "count", "groups"),
    Row("errors", "error_count", 0, False),
)


def format_table(results: Sequence[Mapping[str, Any]], rows: Sequence[Row] = ROWS) -> str:
    """A Markdown table: one line per figure, one column per N: "value (ratio to the
    first N)"."""
    if not results:
        return "(no results)"
    base = results[0]
    header = ["figure", *(f"N = {r['nodes']}" for r in results)]
    body = []
    for row in rows:
        cells = [row.label]
        for i, r in enumerate(results):
            text = row.text(r)
            if row.ratio and i > 0:
                rt = ratio(row.value(r), row.value(base))
                if rt != "-":
                    text += f" ({rt})"
            cells.append(text)
        body.append(cells)
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(b) for b in body)])


# =========================================================================== /proc


def stat_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat, in seconds
    (whole clock ticks: 10 ms)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process (all its threads, exited ones included), in seconds, to the
    nanosecond: its CPU-time clock (clock_getcpuclockid(3): ``((~pid) << 3) | 2`` on
    Linux), the same sum_exec_runtime that /proc/<pid>/stat reports as utime + stime
    truncated to 10 ms ticks. An idle node uses a few ms a second, so over a 1 s sample
    (or per node over a 5 s window) the ticks would be all truncation error. Falls back
    to /proc/<pid>/stat where the clock is not available."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        return stat_cpu_seconds(pid)


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_usage(pids: Mapping[str, int], seconds: float,
              ) -> tuple[dict[str, float], dict[str, float]]:
    """% of one core each process used over the next ``seconds`` (wall clock measured):
    (from the CPU-time clocks, from /proc/<pid>/stat utime+stime)."""
    t0 = time.monotonic()
    before = {n: (cpu_seconds(p), stat_cpu_seconds(p)) for n, p in pids.items()}
    time.sleep(seconds)
    after = {n: (cpu_seconds(p), stat_cpu_seconds(p)) for n, p in pids.items()}
    elapsed = time.monotonic() - t0
    return ({n: 100 * (after[n][0] - before[n][0]) / elapsed for n in pids},
            {n: 100 * (after[n][1] - before[n][1]) / elapsed for n in pids})


def cpu_percent(pids: Mapping[str, int], seconds: float) -> dict[str, float]:
    """% of one core each process used over the next ``seconds`` (``cpu_seconds``)."""
    return cpu_usage(pids, seconds)[0]


def summary(values: Iterable[float], prefix: str) -> dict[str, float]:
    vs = list(values)
    return {f"{prefix}_mean": statistics.fmean(vs), f"{prefix}_max": max(vs),
            f"{prefix}_sum": sum(vs)}


# =========================================================================== ports


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def pick_ports(count: int, avoid: Iterable[int] = ()) -> list[int]:
    """``count`` free ports below the ephemeral range, from a random start."""
    high = ephemeral_low()
    low = PORT_FLOOR if high - PORT_FLOOR > 4 * count else 1024
    taken = set(avoid)
    start = random.SystemRandom().randrange(low, high)
    return choose_ports(count, start=start, low=low, high=high,
                        is_free=lambda p: p not in taken and port_is_free(p))


# =========================================================================== client traffic


def _http_close(endpoint: str, tls: ssl.SSLContext | None, timeout: float = 5.0) -> None:
    """One request with ``Connection: close`` through http.client (HTTPS when ``tls``)."""
    host, port = endpoint.rsplit(":", 1)
    conn = (http.client.HTTPSConnection(host, int(port), timeout=timeout, context=tls)
            if tls is not None else http.client.HTTPConnection(host, int(port), timeout=timeout))
    try:
        conn.request("POST", "/v1/health", body=b"{}",
                     headers={"Content-Type": "application/json", "Connection": "close"})
        conn.getresponse().read()
    finally:
        conn.close()


def _connect(endpoint: str, tls: ssl.SSLContext | None, timeout: float) -> socket.socket:
    """A connection to ``endpoint``; with ``tls``, its handshake done."""
    host, port = endpoint.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    if tls is None:
        return s
    try:
        return tls.wrap_socket(s, server_hostname=host)
    except BaseException:
        s.close()
        raise


def _connect_close(endpoint: str, tls: ssl.SSLContext | None, timeout: float = 5.0) -> None:
    """A connection the client closes without sending a request (with ``tls``: after the
    handshake, without close_notify)."""
    with _connect(endpoint, tls, timeout):
        pass


def _reset_mid_request(endpoint: str, tls: ssl.SSLContext | None,
                       timeout: float = 5.0) -> None:
    """Half a request (inside TLS when ``tls``), then a reset (SO_LINGER 0)."""
    s = _connect(endpoint, tls, timeout)
    try:
        s.sendall(b"POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()


def client_traffic(endpoints: Sequence[str], group: str, nodes: int = TRAFFIC_NODES,
                   puts: int = 5, *, tls: ssl.SSLContext | None) -> dict[str, Any]:
    """What clients do to a cluster, on ``nodes`` endpoints spread over it: status and
    health calls (fresh connection each), puts to ``group`` through a keep-alive
    ``hakv.Client`` that is then closed, a ``Connection: close`` request, a connection
    closed without a request and a request reset halfway; all over HTTPS with ``tls``
    (the cluster's ``client_tls()``; None: plain HTTP). Returns counts and errors."""
    done = 0
    errs: list[str] = []
    actions: list[tuple[str, Callable[[str], Any]]] = [
        ("status", lambda ep: probe(ep, "/v1/status", 5.0, tls)),
        ("health", lambda ep: probe(ep, "/v1/health", 5.0, tls)),
        ("puts", lambda ep: _puts_then_close(ep, group, puts, tls)),
        ("connection-close", lambda ep: _http_close(ep, tls)),
        ("connect-close", lambda ep: _connect_close(ep, tls)),
        ("reset", lambda ep: _reset_mid_request(ep, tls)),
    ]
    chosen = spread(list(endpoints), nodes)
    for ep in chosen:
        for name, act in actions:
            try:
                act(ep)
                done += 1
            except Exception as exc:  # counted and reported, the benchmark goes on
                errs.append(f"{name} on {ep}: {exc}")
    return {"nodes": len(chosen), "actions": done, "errors": errs}


def _puts_then_close(endpoint: str, group: str, puts: int, tls: ssl.SSLContext | None) -> None:
    with Client([endpoint], timeout=10.0, tls=tls or False) as c:
        for i in range(puts):
            c.put(group, f"traffic/{i}", VALUE)


# =========================================================================== the run


class Run:
    """One N: its cluster and the measurements."""

    def __init__(self, nodes: int, owners: int, base: Path, args: argparse.Namespace) -> None:
        self.n = nodes
        self.owners = owners
        self.args = args
        self.dir = base / f"n{nodes}"
        self.dir.mkdir(parents=True)
        self.ids = node_ids(nodes)
        ports = pick_ports(2 * nodes)
        text, self.groups = scale_topology(nodes, owners, ports, name=f"scale-{nodes}")
        self.topology = self.dir / "topology.toml"
        self.topology.write_text(text)
        self.endpoints = [f"127.0.0.1:{ports[2 * i + 1]}" for i in range(nodes)]
        self.endpoint = dict(zip(self.ids, self.endpoints, strict=True))
        self.cluster = LocalCluster(self.dir / "run")
        # Both need the run's certificates, made by cluster.up(): set in up().
        self.tls: ssl.SSLContext | None = None
        self.status_client: Client | None = None
        gids = list(self.groups)
        self.written = gids[0]
        self.writer_groups = [gids[i % len(gids)] for i in range(WRITERS)] \
            if len(gids) < WRITERS else spread(gids, WRITERS)
        touched = {self.written, *self.writer_groups}
        self.untouched = [g for g in gids if g not in touched]
        self.pids: dict[str, int] = {}
        self.r: dict[str, Any] = {"nodes": nodes, "owners": owners, "groups": len(gids),
                                  "written_group": self.written,
                                  "writer_groups": sorted(set(self.writer_groups)),
                                  "untouched_groups": len(self.untouched)}
        self.errors: list[str] = []
        self.notes: list[str] = []

    # ---- helpers

    def say(self, text: str) -> None:
        print(f"[N={self.n}] {text}", flush=True)

    def client(self, endpoints: list[str], timeout: float) -> Client:
        """A client of this run's cluster (HTTPS as its client identity)."""
        return Client(endpoints, timeout=timeout, tls=self.tls or False)

    def status(self) -> dict[str, Any]:
        assert self.status_client is not None, "up() first"
        return self.status_client.cluster_status()

    @staticmethod
    def led(view: Mapping[str, Any]) -> bool:
        return any(m.get("role") == "leader" and m.get("quorum") is True
                   for m in (view.get("members") or {}).values())

    def terms(self) -> dict[str, int | None]:
        groups = self.status()["groups"]
        out: dict[str, int | None] = {}
        for gid in self.groups:
            members = (groups.get(gid) or {}).get("members") or {}
            ts = [m["term"] for m in members.values() if isinstance(m.get("term"), int)]
            out[gid] = max(ts) if ts else None
        return out

    def leader_first(self, gids: Iterable[str]) -> dict[str, list[str]]:
        """Per group, its owners' endpoints, its leader's first (one status round)."""
        groups = self.status()["groups"]
        out = {}
        for gid in gids:
            owners = list(self.groups[gid])
            leader = (groups.get(gid) or {}).get("leader")
            if leader in owners:
                owners.remove(leader)
                owners.insert(0, leader)
            out[gid] = [self.endpoint[o] for o in owners]
        return out

    def check_alive(self) -> None:
        dead = [n for n in self.ids if not self.cluster.is_running(n)]
        if dead:
            tails = "\n".join(f"--- {n}:\n{self.cluster.log_tail(n, 10)}" for n in dead[:3])
            raise RuntimeError(f"node {', '.join(dead)} exited; log ends:\n{tails}")

    def idle(self, seconds: float, name: str = "") -> dict[str, float]:
        """Per-node % of a core over ``seconds``; with ``name``, the /proc/<pid>/stat
        figures (10 ms ticks) go into the results too, as a cross-check."""
        self.check_alive()
        clock, stat = cpu_usage(self.pids, seconds)
        if name:
            self.r.update(summary(stat.values(), f"{name}_stat"))
        return clock

    def phase(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # one broken phase is reported, the others still run
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            self.say(f"{name} FAILED: {type(exc).__name__}: {exc}")

    # ---- phases

    def up(self) -> bool:
        t0 = time.monotonic()
        self.cluster.up(str(self.topology), wait=0)
        self.tls = self.cluster.client_tls()
        self.status_client = self.client(self.endpoints, timeout=2.0)
        expected = [*self.groups, CLUSTER_GROUP]
        healthy_at: float | None = None
        deadline = t0 + self.args.up_timeout
        missing: list[str] = expected
        while time.monotonic() < deadline:
            st = self.status()
            now = time.monotonic()
            if healthy_at is None and all(n["reachable"] for n in st["nodes"]):
                healthy_at = now
            missing = [g for g in expected if not self.led(st["groups"].get(g) or {})]
            if healthy_at is not None and not missing:
                self.r["healthy_s"] = healthy_at - t0
                self.r["up_s"] = now - t0
                break
            self.check_alive()
            time.sleep(0.25)
        else:
            self.r["up_s"] = None
            self.errors.append(f"up: after {self.args.up_timeout:.0f} s, no leader with quorum "
                               f"in {len(missing)} groups ({', '.join(missing[:10])})")
            return False
        self.pids = {}
        for n in self.ids:
            pid = self.cluster.pid(n)
            if pid is None:
                raise RuntimeError(f"node {n} has no pid")
            self.pids[n] = pid
        self.say(f"{len(self.groups)} groups led {self.r['up_s']:.1f} s after up "
                 f"(every node answering after {self.r['healthy_s']:.1f} s)")
        return True

    def idle_settled(self) -> None:
        time.sleep(self.args.settle)
        cpu = self.idle(self.args.seconds, "idle_settled")
        self.r.update(summary(cpu.values(), "idle_settled"))
        self.r["idle_settled_per_node"] = cpu
        self.say(f"idle after settling: {self.r['idle_settled_mean']:.2f} % mean, "
                 f"{self.r['idle_settled_max']:.2f} % max per node")

    def traffic(self) -> None:
        t = client_traffic(self.endpoints, self.written, tls=self.tls)
        self.r["traffic"] = {"nodes": t["nodes"], "actions": t["actions"],
                             "errors": len(t["errors"])}
        self.errors += [f"traffic: {e}" for e in t["errors"]]
        time.sleep(2.0)
        cpu = self.idle(self.args.seconds, "idle_traffic")
        self.r.update(summary(cpu.values(), "idle_traffic"))
        self.r["idle_traffic_per_node"] = cpu
        rss = [rss_mb(p) for p in self.pids.values()]
        self.r["rss_mean_mb"], self.r["rss_max_mb"] = statistics.fmean(rss), max(rss)
        self.say(f"idle after traffic ({t['actions']} client actions on {t['nodes']} nodes): "
                 f"{self.r['idle_traffic_mean']:.2f} % mean, {self.r['idle_traffic_max']:.2f} "
                 f"% max per node; RSS {self.r['rss_mean_mb']:.1f} MB mean")

    def sequential(self) -> None:
        with self.client(self.leader_first([self.written])[self.written], timeout=10.0) as c:
            for i in range(WARM_UP_PUTS):
                c.put(self.written, f"warm/{i}", VALUE)
            lat = []
            for i in range(SEQ_PUTS):
                t0 = time.perf_counter()
                c.put(self.written, f"seq/{i}", VALUE)
                lat.append(time.perf_counter() - t0)
        self.r["seq_p50_ms"] = 1000 * statistics.median(lat)
        self.r["seq_p99_ms"] = 1000 * percentile(lat, 0.99)
        self.say(f"{SEQ_PUTS} sequential puts to {self.written}: p50 "
                 f"{self.r['seq_p50_ms']:.2f} ms, p99 {self.r['seq_p99_ms']:.2f} ms")

    def concurrent(self) -> None:
        orders = self.leader_first(set(self.writer_groups))
        lat: list[float] = []
        errs: list[str] = []
        lock = threading.Lock()
        start_at = time.monotonic() + 0.5
        end_at = start_at + CONCURRENT_SECONDS

        def writer(tid: int, gid: str) -> None:
            mine: list[float] = []
            try:
                with self.client(orders[gid], timeout=10.0) as c:
                    c.put(gid, f"conc/{tid}", VALUE)
                    while time.monotonic() < start_at:
                        time.sleep(0.001)
                    while time.monotonic() < end_at:
                        t0 = time.perf_counter()
                        c.put(gid, f"conc/{tid}", VALUE)
                        mine.append(time.perf_counter() - t0)
            except Exception as exc:
                with lock:
                    errs.append(f"writer {tid} on {gid}: {exc}")
            with lock:
                lat.extend(mine)

        threads = [threading.Thread(target=writer, args=(i, g))
                   for i, g in enumerate(self.writer_groups)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.errors += [f"concurrent: {e}" for e in errs]
        self.r["conc_ops"] = len(lat) / CONCURRENT_SECONDS
        self.r["conc_p50_ms"] = 1000 * statistics.median(lat) if lat else None
        self.r["conc_p99_ms"] = 1000 * percentile(lat, 0.99) if lat else None
        self.say(f"{WRITERS} writers on {len(set(self.writer_groups))} groups: "
                 f"{self.r['conc_ops']:.0f} puts/s, p50 {_fmt(self.r['conc_p50_ms'], 2)} ms")

    def burst(self) -> None:
        time.sleep(max(2.0, self.args.settle))  # the 8 writers' wake left behind
        pre = sum(self.idle(self.args.seconds, "burst_idle").values())
        self.r["burst_idle_sum"] = pre
        count = 0
        with self.client(self.leader_first([self.written])[self.written], timeout=10.0) as c:
            end = time.monotonic() + self.args.burst
            while time.monotonic() < end:
                c.put(self.written, f"burst/{count % 100}", VALUE)
                count += 1
        self.r["burst_ops"] = count / self.args.burst
        samples: list[float] = []
        back: int | None = None
        self.r["recover_limit_s"] = self.args.recover
        for _ in range(int(self.args.recover)):
            samples.append(sum(self.idle(1.0).values()))
            back = back_to_idle(samples, pre)
            if back is not None:
                break
        self.r["burst_samples"] = samples
        settled = self.r.get("idle_settled_sum")
        if settled and pre > 1.5 * settled:
            self.notes.append(
                f"the pre-burst idle ({pre:.1f} % of a core, all nodes) is {pre / settled:.1f}x "
                f"the idle after settling ({settled:.1f} %): 'back to idle' is judged against "
                "an already raised baseline")
        self.r["burst_back"] = back is not None
        self.r["burst_back_s"] = back
        self.say(f"burst of {count} puts in {self.args.burst:.0f} s; pre-burst idle {pre:.1f} % "
                 f"of a core (all nodes); after: "
                 + ", ".join(f"{s:.0f}" for s in samples)
                 + (f" -> back after {back} s" if back is not None
                    else f" -> not back within {self.args.recover:.0f} s"))

    def cluster_writes(self) -> None:
        add, remove = [], []
        extra = pick_ports(6, avoid=[int(e.rsplit(":", 1)[1]) for e in self.endpoints])
        with self.client(self.endpoints, timeout=15.0) as c:
            puts = []
            for i in range(CLUSTER_PUTS):
                t0 = time.perf_counter()
                c.put(CLUSTER_GROUP, CLUSTER_PROBE_KEY, str(i))
                puts.append(time.perf_counter() - t0)
            c.delete(CLUSTER_GROUP, CLUSTER_PROBE_KEY)
            self.r["cluster_put_ms"] = 1000 * statistics.median(puts)
            for i in range(3):
                spec = NodeSpec(id=f"x{i}", host="127.0.0.1", raft_port=extra[2 * i],
                                api_port=extra[2 * i + 1])
                t0 = time.perf_counter()
                c.admin.add_node(spec)
                add.append(time.perf_counter() - t0)
            for i in range(3):
                t0 = time.perf_counter()
                c.admin.remove_node(f"x{i}")
                remove.append(time.perf_counter() - t0)
            self.r["add_node_ms"] = 1000 * statistics.median(add)
            self.r["remove_node_ms"] = 1000 * statistics.median(remove)
            owners = list(self.groups[self.written])
            new = "scale-new"
            t0 = time.perf_counter()
            c.admin.create_group(new, owners)
            created = time.perf_counter()
            self.r["create_group_ms"] = 1000 * (created - t0)
            owner_eps = [self.endpoint[o] for o in owners]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                views = [v for v in (self._own_status(ep) for ep in owner_eps) if v]
                if any((v.get("groups") or {}).get(new, {}).get("role") == "leader"
                       and v["groups"][new].get("quorum") is True for v in views):
                    self.r["create_group_led_s"] = time.perf_counter() - t0
                    break
                time.sleep(0.05)
            else:
                self.errors.append(f"cluster: group {new} had no leader 30 s after create")
            t0 = time.perf_counter()
            c.admin.delete_group(new)
            self.r["delete_group_ms"] = 1000 * (time.perf_counter() - t0)
        self.say(f"cluster-level writes: record put {_fmt(self.r.get('cluster_put_ms'), 1)} ms, "
                 f"add-node record {_fmt(self.r.get('add_node_ms'), 1)} ms, "
                 f"remove-node {_fmt(self.r.get('remove_node_ms'), 1)} ms, group create "
                 f"{_fmt(self.r.get('create_group_ms'), 1)} ms (led after "
                 f"{_fmt(self.r.get('create_group_led_s'), 2)} s), delete "
                 f"{_fmt(self.r.get('delete_group_ms'), 1)} ms")

    def _own_status(self, ep: str) -> dict[str, Any] | None:
        try:
            return probe(ep, "/v1/status", 2.0, self.tls)
        except Exception:
            return None

    def measure(self) -> dict[str, Any]:
        try:
            if self.up():
                self.phase("idle after settling", self.idle_settled)
                before: dict[str, int | None] = {}

                def snapshot() -> None:
                    before.update(self.terms())

                self.phase("terms", snapshot)
                self.phase("traffic", self.traffic)
                self.phase("sequential puts", self.sequential)
                self.phase("concurrent puts", self.concurrent)
                self.phase("burst", self.burst)
                self.phase("cluster-level writes", self.cluster_writes)

                def final() -> None:
                    rss = [rss_mb(p) for p in self.pids.values()]
                    self.r["rss_end_mean_mb"], self.r["rss_end_max_mb"] = \
                        statistics.fmean(rss), max(rss)
                    after = self.terms()
                    changed = [g for g in self.groups
                               if before.get(g) is None or after.get(g) != before.get(g)]
                    self.r["terms_before"], self.r["terms_after"] = before, after
                    self.r["all_changed"] = len(changed)
                    self.r["untouched_changed"] = len([g for g in changed
                                                       if g in self.untouched])
                    self.r["changed_groups"] = changed
                    self.say(f"term changed in {self.r['untouched_changed']} of "
                             f"{len(self.untouched)} untouched groups "
                             f"({len(changed)} of {len(self.groups)} groups in all)")

                if before:
                    self.phase("final", final)
        except Exception as exc:  # this N failed (a node exited, ...): say so, go on
            self.errors.append(f"run: {type(exc).__name__}: {exc}")
            self.say(f"FAILED: {type(exc).__name__}: {exc}")
        finally:
            if self.status_client is not None:
                self.status_client.close()
            self.down()
        self.r["errors"] = self.errors
        self.r["notes"] = self.notes
        self.r["error_count"] = len(self.errors)
        return self.r

    def down(self) -> None:
        try:
            self.cluster.down()
        finally:
            kill_leftovers(self.dir)


def kill_leftovers(run_dir: Path) -> list[int]:
    """SIGKILL every process whose command line names ``run_dir`` (a node that down()
    missed); their pids."""
    mark = str(run_dir.absolute())
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if any(mark in a for a in args) and any("hakv" in a for a in args):
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
            except ProcessLookupError:
                pass
    return killed


# =========================================================================== output


def plot(results: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["nodes"] for r in results]

    def ys(key: str) -> list[float]:
        return [float("nan") if r.get(key) is None else float(r[key]) for r in results]

    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    lat.plot(xs, ys("seq_p50_ms"), "o-", label="sequential put p50")
    lat.plot(xs, ys("seq_p99_ms"), "s--", label="sequential put p99")
    lat.plot(xs, ys("conc_p50_ms"), "^:", label="8 writers (up to 8 groups), p50")
    first_p50 = ys("seq_p50_ms")[0]
    if first_p50 == first_p50:
        lat.axhline(1.3 * first_p50, color="gray", linestyle="--", linewidth=0.8,
                    label=f"target: 1.3x p50 at N = {xs[0]}")
    lat.set_xlabel("nodes N")
    lat.set_ylabel("put latency (ms)")
    lat.set_title("put latency to one group vs cluster size")
    lat.set_ylim(bottom=0)
    cpu.plot(xs, ys("idle_settled_mean"), "o-", label="after settling, mean")
    cpu.plot(xs, ys("idle_settled_max"), "o:", label="after settling, max")
    cpu.plot(xs, ys("idle_traffic_mean"), "s-", label="after client traffic, mean")
    cpu.plot(xs, ys("idle_traffic_max"), "s:", label="after client traffic, max")
    cpu.axhline(0.5, color="gray", linestyle="--", linewidth=0.8, label="target: 0.5 %")
    cpu.set_xlabel("nodes N")
    cpu.set_ylabel("% of one core per node")
    cpu.set_title("idle CPU per node vs cluster size")
    cpu.set_ylim(bottom=0)
    for ax in (lat, cpu):
        ax.set_xticks(xs)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_json(path: Path, machine: str, command: str, args: argparse.Namespace,
               results: Sequence[Mapping[str, Any]]) -> None:
    doc = {"command": command, "machine": machine, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
           "settings": {"owners": args.owners, "seconds": args.seconds, "settle": args.settle,
                        "burst": args.burst, "recover": args.recover, "seq_puts": SEQ_PUTS,
                        "value_bytes": len(VALUE), "writers": WRITERS,
                        "concurrent_seconds": CONCURRENT_SECONDS},
           "results": list(results)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def parse_nodes(text: str) -> list[int]:
    nodes = [int(x) for x in text.split(",") if x.strip()]
    if not nodes or any(n < 3 for n in nodes):
        raise argparse.ArgumentTypeError("--nodes: a comma-separated list of counts >= 3")
    return nodes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale",
                                 description=__doc__.split("\n\n")[0],
                                 epilog="See the module docstring (bench/scale.py) for what "
                                        "each figure measures.")
    ap.add_argument("--nodes", type=parse_nodes, default=list(DEFAULT_NODES),
                    help="cluster sizes, comma-separated (default 9,27,45,99)")
    ap.add_argument("--owners", type=int, choices=(3, 5), default=3, help="owners per group")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each idle window")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="rest after every group is led, before the first idle window")
    ap.add_argument("--burst", type=float, default=10.0, help="seconds of the put burst")
    ap.add_argument("--recover", type=float, default=30.0,
                    help="seconds to wait for CPU back to idle after the burst")
    ap.add_argument("--up-timeout", type=float, default=UP_TIMEOUT,
                    help="give up on an N when not every group is led this long after up")
    ap.add_argument("--plot", default=str(DEFAULT_PLOT), help="PNG to write ('' for none)")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the run directories (logs)")
    args = ap.parse_args(argv)
    command = "python -m bench.scale " + " ".join(sys.argv[1:] if argv is None else argv)

    from bench.machine import describe

    def _stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _stop)  # `timeout`, kill: still bring the clusters down
    base = Path(tempfile.mkdtemp(prefix="hakv-scale-"))
    machine = describe(str(base))
    print(machine, flush=True)
    print(f"{os.cpu_count()} CPUs; nodes {','.join(map(str, args.nodes))}; groups of "
          f"{args.owners} owners chained; idle windows {args.seconds:g} s; run dir {base}",
          flush=True)
    results: list[dict[str, Any]] = []
    try:
        for n in args.nodes:
            run = Run(n, args.owners, base, args)
            results.append(run.measure())
            if args.json:
                write_json(Path(args.json), machine, command, args, results)
    except KeyboardInterrupt:
        print("interrupted; the clusters are down", file=sys.stderr)
    finally:
        keep = args.keep or any(r["errors"] for r in results)
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    if not results:
        return 1
    print()
    print(f"{command}  ({machine})")
    print(format_table(results))
    for r in results:
        for e in r["errors"][:10]:
            print(f"  N={r['nodes']} error: {e}")
        for note in r["notes"]:
            print(f"  N={r['nodes']} note: {note}")
    if args.plot:
        plot(results, Path(args.plot))
        print(f"plot: {args.plot}")
    if args.json:
        print(f"results: {args.json}")
    if keep:
        print(f"run directories (node logs) kept under {base}")
    return 0 if all(not r["errors"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
