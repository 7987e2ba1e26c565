"""Test support: free loopback ports and generated topologies (importable without pytest)."""

from __future__ import annotations

import contextlib
import json
import pickle
import socket
import ssl
import struct
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Touch:
    """Unpickling this creates a file: proof that a node unpickled what it was sent (the
    hostile pickle of the security tests)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def pysyncobj_frame(message: object) -> bytes:
    """A pysyncobj frame as a stranger would send it: native int length, then zlib(pickle)."""
    payload = zlib.compress(pickle.dumps(message))
    return struct.pack("i", len(payload)) + payload


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out on 127.0.0.1 (closed again before returning)."""
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


#: The patent's nine-node example (examples/nine-node.toml): nodes 202..218, groups
#: 220..226 with their owners in precedence order.
NINE_NODES = [str(n) for n in range(202, 219, 2)]
NINE_GROUPS = {
    "220": ["202", "208", "214"],
    "222": ["204", "210", "216"],
    "224": ["206", "212", "218"],
    "226": ["208", "210", "212"],
}


@contextlib.contextmanager
def nine_node_cluster(directory: Path, raft: dict[str, float] | None = None) -> Iterator[Any]:
    """The nine-node example on free ports under ``directory`` (a LocalCluster), every
    group led; taken down on exit."""
    from hakv.dev.local import LocalCluster

    topo = write_topology(directory, NINE_NODES, NINE_GROUPS, cluster="patent-example",
                          raft=raft)
    cluster = LocalCluster(directory / "run")
    cluster.up(str(topo), wait=60)
    try:
        endpoints = cluster.endpoints()
        for group in NINE_GROUPS:
            wait_for(lambda g=group: leader_of(endpoints, g), 30, what=f"a leader of {group}")
        yield cluster
    finally:
        cluster.down()


def write_topology(directory: Path, node_ids: list[str], groups: dict[str, list[str]],
                   cluster: str = "test", raft: dict[str, float] | None = None,
                   capacity: dict[str, int] | None = None) -> Path:
    ports = free_ports(2 * len(node_ids))
    lines = ["[cluster]", f'name = "{cluster}"', ""]
    if raft:
        lines.append("[raft]")
        lines += [f"{k} = {v}" for k, v in raft.items()]
        lines.append("")
    for i, node in enumerate(node_ids):
        lines += ["[[nodes]]", f'id = "{node}"', 'host = "127.0.0.1"',
                  f"raft_port = {ports[2 * i]}", f"api_port = {ports[2 * i + 1]}"]
        if capacity and node in capacity:
            lines.append(f"capacity = {capacity[node]}")
        lines.append("")
    for gid, owners in groups.items():
        owner_list = ", ".join(f'"{o}"' for o in owners)
        lines += ["[[groups]]", f'id = "{gid}"', f"owners = [{owner_list}]", ""]
    path = directory / "topology.toml"
    path.write_text("\n".join(lines))
    return path


def api_tls() -> ssl.SSLContext | None:
    """The client TLS context the environment names (tests/conftest.py sets it for the
    session); None for plain HTTP."""
    from hakv.security.tls import client_context_from

    return client_context_from()


def api_url(endpoint: str, path: str) -> str:
    return f"{'https' if api_tls() else 'http'}://{endpoint}{path}"


def post(endpoint: str, op: str, body: Any, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    """Raw HTTP call to the client API (for tests of the wire contract itself)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(api_url(endpoint, f"/v1/{op}"), data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=api_tls()) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(predicate: Any, timeout: float, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last_exc!r}")


def holds(predicate: Any, seconds: float, interval: float = 0.1, what: str = "") -> None:
    """Check that ``predicate`` stays true for ``seconds`` (a claim that something does
    *not* happen needs a window), failing as soon as it is false."""
    deadline = time.monotonic() + seconds
    while True:
        assert predicate(), f"no longer true: {what}"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def leader_of(endpoints: list[str], group: str) -> str | None:
    """Node id that a majority-connected member reports as the group's leader."""
    for ep in endpoints:
        try:
            with urllib.request.urlopen(api_url(ep, "/v1/status"), timeout=2,
                                        context=api_tls()) as resp:
                st = json.loads(resp.read())
        except OSError:
            continue
        g = st.get("groups", {}).get(group)
        if g and g.get("role") == "leader" and g.get("quorum"):
            return str(st["node"])
    return None


class MemoryMachine:
    """In-memory state machine: enough for a GroupMember in raft-level tests."""

    def __init__(self) -> None:
        self.index = 0

    def apply(self, index: int, payload: bytes) -> int:
        self.index = index
        return index

    def commit(self) -> None:
        pass

    def applied_index(self) -> int:
        return self.index

    def write_snapshot(self, path: str, raft_data: object) -> None:
        raise NotImplementedError

    def read_snapshot(self, path: str) -> object:
        raise NotImplementedError


@contextlib.contextmanager
def group_cluster(directory: Path, node_ids: list[str], group: str,
                  cluster: str = "test") -> Iterator[Any]:
    """A local cluster (hakv.dev.local) of ``node_ids`` all owning ``group``, up and with a
    leader of it; taken down on exit."""
    from hakv.dev.local import LocalCluster

    topo = write_topology(directory, node_ids, {group: node_ids}, cluster=cluster)
    lc = LocalCluster(directory / "run")
    lc.up(str(topo), wait=30)
    try:
        wait_for(lambda: leader_of(lc.endpoints(), group), 30, what=f"a leader of {group}")
        yield lc
    finally:
        lc.down()


def wait_healthy(lc: Any, nodes: list[str], timeout: float = 30) -> None:
    """Wait for /v1/health of ``nodes`` (a node's log tail in the failure). Not
    LocalCluster's own wait: right after the spawn, /proc/<pid>/cmdline can still be
    empty, so it may declare a starting node "exited", and a later down() would then
    leave that node running."""
    for n in nodes:
        try:
            wait_for(
                lambda n=n: post(lc.endpoint(n), "health", {}, timeout=1)[1].get("node") == n,
                timeout,
                what=f"{n} to answer /v1/health",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log ends:\n{lc.log_tail(n)}") from None


def start_api_cluster(directory: Path, nodes: list[str], groups: dict[str, list[str]]) -> Any:
    """A local cluster (hakv.dev.local) of ``nodes`` and ``groups``, every node healthy and
    every group writable through every node (right after an election a follower may not
    know the new leader yet and answers no_quorum: the warm-up writes wait that out).
    The caller takes it down."""
    from hakv.dev.local import LocalCluster

    directory.mkdir(parents=True, exist_ok=True)
    topo = write_topology(directory, nodes, groups)
    lc = LocalCluster(directory / "run")
    try:
        lc.up(str(topo), wait=0)
        wait_healthy(lc, nodes)
        for gid in groups:
            wait_for(lambda g=gid: leader_of(lc.endpoints(), g), 30, what=f"a leader of {gid}")
        for n in nodes:
            for gid in groups:
                wait_for(
                    lambda n=n, g=gid: post(lc.endpoint(n), "put",
                                            {"group": g, "key": "warm-up", "value": n},
                                            timeout=5)[0] == 200,
                    30,
                    what=f"a write to {gid} through {n}",
                )
    except BaseException:
        lc.down()
        raise
    return lc


class Acquiring:
    """``held.acquire(timeout)`` — a Lock or a Semaphore made on ``client`` — in a thread of
    its own: ``acquired`` is set once it returned, ``result`` holds its value or exception;
    ``close`` releases and closes the client."""

    def __init__(self, client: Any, held: Any, timeout: float) -> None:
        self.client, self.held, self.timeout = client, held, timeout
        self.acquired = threading.Event()
        self.result: list[Any] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result.append(self.held.acquire(timeout=self.timeout))
        except BaseException as exc:
            self.result.append(exc)
        self.acquired.set()

    def close(self) -> None:
        self.held.release()
        self.client.close()
