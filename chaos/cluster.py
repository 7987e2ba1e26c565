"""Real ``hakv node`` processes, one per network namespace, and queries from the client
namespace.

::

    net = Network(topology.node_ids); net.create()
    cluster = ChaosCluster(net, topology, workdir, env={"HAKV_LOG_LEVEL": "WARNING"})
    cluster.start_all(); cluster.wait_quorum()
    cluster.client_env()            # HAKV_CACERT/HAKV_CERT/HAKV_KEY for its workloads
    cluster.leader("g1")            # from /v1/status, asked inside the client namespace
    cluster.kill("n1"); cluster.restart("n1")
    cluster.pause("n2"); cluster.resume("n2")
    cluster.runner("g1")            # the node its placement record says runs g1's app
    cluster.stop_all(); net.destroy()

The topology the nodes run is the scenario's, re-addressed: every node listens on its
namespace's address (``10.231.K.x``) with raft port 7000 and API port 8000 (each namespace
has its own port space). The harness itself stays in the root namespace, which has no route
to those addresses; it talks to the nodes from threads that entered the client namespace
(``chaos.netns.enter_netns``), so no packet ever leaves the namespaces.

Nodes speak mutual TLS, as in production: ``WORKDIR/certs`` holds a CA (a copy of the one
``HAKV_LOCAL_CA_DIR`` names when that is set, as ``hakv.dev.local`` does; else a new one),
a certificate per node for its namespace address and the client identity ``root``. The
harness's queries (``client_tls``) and every workload process (``client_env``) use that
identity, never whatever HAKV_CACERT the caller's environment holds.

Processes are signalled by the exact pid ``Popen`` returned (``ip netns exec`` execs the
node, so that pid *is* the node), never by name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from chaos.netns import API_PORT, RAFT_PORT, Network, enter_netns
from hakv.client.client import probe
from hakv.core.ha import LIVE_STATES
from hakv.core.topology import Topology
from hakv.dev.local import LOCAL_CA_ENV
from hakv.errors import HakvError
from hakv.security import certs
from hakv.security.tls import CACERT_ENV, CERT_ENV, KEY_ENV, TlsFiles, client_context

__all__ = ["ChaosCluster", "ClusterError", "make_certs", "readdress", "repo_env",
           "wait_each_group"]

REPO = Path(__file__).resolve().parent.parent
#: The client identity of the harness and its workloads: the superuser, as ``hakv local``'s
#: (access control denies any other user without grants).
CLIENT_USER = "root"


class ClusterError(RuntimeError):
    """A node did not start, become healthy, or a group found no quorum in time; the
    message holds the tail of the node logs concerned."""


def wait_each_group(groups: Sequence[str], node_of: Callable[[str], str | None],
                    timeout: float, late: Callable[[list[str]], str]) -> dict[str, str]:
    """The poll behind the harness's waits for a per-group condition (a leader with
    quorum, a running app): {group: node} once ``node_of`` named a node for every group,
    asking every 0.2 s only for the groups still without one; past ``timeout`` a
    ClusterError, its message ``late``'s wording of the groups still missing."""
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while True:
        for g in groups:
            if g not in found:
                node = node_of(g)
                if node is not None:
                    found[g] = node
        if len(found) == len(groups):
            return found
        if time.monotonic() >= deadline:
            raise ClusterError(late([g for g in groups if g not in found]))
        time.sleep(0.2)


def readdress(topo: Topology, net: Network) -> Topology:
    """``topo`` with every node on its namespace address (raft 7000, api 8000)."""
    nodes = tuple(replace(n, host=net.address(n.id), raft_port=RAFT_PORT, api_port=API_PORT)
                  for n in topo.nodes)
    out = replace(topo, nodes=nodes)
    out.validate()
    return out


def repo_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child processes: this repository first on PYTHONPATH (``chaos`` is
    not installed), plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def make_certs(certs_dir: Path, topology: Topology) -> None:
    """A CA in ``certs_dir`` (a copy of ``HAKV_LOCAL_CA_DIR``'s when that is set, so the
    nodes' certificates are also good for the caller's session; else a new one), then a
    certificate per node of ``topology`` for its address, and the client ``root``."""
    now = dt.datetime.now(dt.UTC)
    shared = os.environ.get(LOCAL_CA_ENV)
    if shared:
        certs_dir.mkdir(parents=True, exist_ok=True)
        for name in (certs.CA_CERT, certs.CA_KEY):
            data = (Path(shared) / name).read_bytes()
            path = certs_dir / name
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    else:
        certs.init_ca(certs_dir, name="hakv chaos CA", now=now, overwrite=True)
    for spec in topology.nodes:
        certs.node_cert(certs_dir, spec.id, [spec.host], now=now, overwrite=True)
    certs.client_cert(certs_dir, CLIENT_USER, now=now, overwrite=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        data = path.read_bytes()[-8192:].decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 1:].split()
    return rest[0].decode() if rest else None


class ChaosCluster:
    def __init__(self, net: Network, topology: Topology, workdir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.net = net
        self.topology = readdress(topology, net)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        self.topology_path = self.dir / "topology.toml"
        self.topology_path.write_text(self.topology.to_toml())
        # Nodes speak mutual TLS, as in production: one CA, a certificate per node for the
        # address its namespace gives it, and the client identity of the harness.
        self.certs_dir = self.dir / "certs"
        make_certs(self.certs_dir, self.topology)
        self.client_files = TlsFiles.client(self.certs_dir, CLIENT_USER)
        #: The HTTPS context of the harness's queries (identity ``root``).
        self.client_tls: ssl.SSLContext = client_context(*self._client_paths())
        # Nodes get the cluster's client files too (an HA app that talks to the cluster
        # finds them in its environment), not the caller's; and --certs-dir, whatever
        # HAKV_INSECURE the caller's environment holds.
        self.env = repo_env({**self.client_env(), **(env or {})})
        for var in ("HAKV_INSECURE", "HAKV_CERTS_DIR"):
            self.env.pop(var, None)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()
        self.killed: set[str] = set()
        # Threads of this pool live in the client namespace.
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="chaos-query",
                                       initializer=enter_netns, initargs=(net.client.ns,))

    # ---- layout

    def _client_paths(self) -> tuple[Path, Path, Path]:
        f = self.client_files
        return f.ca, f.cert, f.key

    def client_env(self) -> dict[str, str]:
        """HAKV_CACERT, HAKV_CERT and HAKV_KEY naming this cluster's client files: the
        environment a workload process (any ``hakv.Client`` with ``tls=None``) needs."""
        return {var: str(path) for var, path in
                zip((CACERT_ENV, CERT_ENV, KEY_ENV), self._client_paths(), strict=True)}

    def log_path(self, node: str) -> Path:
        return self.dir / "logs" / f"{node}.log"

    def data_dir(self, node: str) -> Path:
        return self.dir / "data" / node

    def endpoint(self, node: str) -> str:
        return self.topology.node(node).api_address

    def endpoints(self, group: str) -> list[str]:
        """API addresses of a group's owners, in owner order."""
        return [self.endpoint(n) for n in self.topology.group(group).owners]

    # ---- processes

    def _spawn(self, node: str) -> subprocess.Popen[bytes]:
        self.data_dir(node).mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "hakv", "node", "--topology", str(self.topology_path),
                "--node", node, "--data-dir", str(self.data_dir(node)),
                "--certs-dir", str(self.certs_dir)]
        with open(self.log_path(node), "ab") as log:
            log.write(f"=== chaos: starting node {node} at {time.strftime('%H:%M:%S')} "
                      f"(monotonic {time.monotonic():.3f}) ===\n".encode())
            log.flush()
            proc = self.net.popen(self.net.ns_of(node), argv, what=f"node {node}",
                                  stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, env=self.env,
                                  start_new_session=True, close_fds=True)
        self.procs[node] = proc
        return proc

    def start_all(self, timeout: float = 30.0) -> None:
        for node in self.topology.node_ids:
            self._spawn(node)
        self.wait_healthy(self.topology.node_ids, timeout)

    def pid(self, node: str) -> int | None:
        proc = self.procs.get(node)
        if proc is None or proc.poll() is not None:
            return None
        return proc.pid

    def kill(self, node: str) -> None:
        """kill -9 and reap."""
        proc = self.procs.get(node)
        if proc is None or proc.poll() is not None:
            raise ClusterError(f"node {node} is not running")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.killed.add(node)
        self.paused.discard(node)

    def restart(self, node: str, timeout: float = 20.0) -> float:
        """Start a killed node again on its data dir; seconds until it answered health."""
        t = time.monotonic()
        self._spawn(node)
        self.killed.discard(node)
        self.wait_healthy([node], timeout)
        return time.monotonic() - t

    def pause(self, node: str) -> None:
        pid = self.pid(node)
        if pid is None:
            raise ClusterError(f"node {node} is not running")
        os.kill(pid, signal.SIGSTOP)
        self.paused.add(node)
        deadline = time.monotonic() + 2.0
        while _state(pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.005)

    def resume(self, node: str) -> None:
        pid = self.pid(node)
        self.paused.discard(node)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def ensure_all_running(self, timeout: float = 30.0) -> None:
        """SIGCONT every node, restart any that is not running, wait until all answer."""
        for node in self.topology.node_ids:
            pid = self.pid(node)
            if pid is None:
                self._spawn(node)
                self.killed.discard(node)
            else:
                os.kill(pid, signal.SIGCONT)
        self.paused.clear()
        self.wait_healthy(self.topology.node_ids, timeout)

    def stop_all(self, timeout: float = 5.0) -> None:
        """SIGTERM (+SIGCONT) every node, SIGKILL whoever is left after ``timeout``."""
        live = {n: p for n, p in self.procs.items() if p.poll() is None}
        for p in live.values():
            for sig in (signal.SIGTERM, signal.SIGCONT):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, sig)
        deadline = time.monotonic() + timeout
        for p in live.values():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # ---- queries (inside the client namespace)

    def _probe(self, node: str, path: str, timeout: float) -> dict[str, Any] | None:
        try:
            return probe(self.endpoint(node), path, timeout, self.client_tls)
        except HakvError:
            return None

    def _post(self, node: str, op: str, body: dict[str, Any], timeout: float
              ) -> tuple[int, dict[str, Any]] | None:
        """POST /v1/<op> to a node (in a pool thread: the client namespace); (status,
        answer) or None when it did not answer."""
        host, _, port = self.endpoint(node).rpartition(":")
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout,
                                           context=self.client_tls)
        try:
            conn.request("POST", f"/v1/{op}", json.dumps(body).encode(),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            return resp.status, answer if isinstance(answer, dict) else {}
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    def placement(self, group: str, timeout: float = 1.0) -> dict[str, Any] | None:
        """The group's placement view (linearizable read, /v1/placement) from the first
        running, unpaused owner that answers 200; None if none does."""
        for node in self.topology.group(group).owners:
            if self.pid(node) is None or node in self.paused:
                continue
            got = self.pool.submit(self._post, node, "placement", {"group": group},
                                   timeout).result()
            if got is not None and got[0] == 200:
                return got[1]
        return None

    def local_apps(self, group: str, timeout: float = 1.0
                   ) -> dict[str, dict[str, Any] | None]:
        """What each running owner's supervisor does for ``group`` right now (its own
        view, ``serializable``: answers without quorum too); None for owners that did not
        answer."""
        owners = [n for n in self.topology.group(group).owners if self.pid(n) is not None]
        futs = {n: self.pool.submit(self._post, n, "placement",
                                    {"group": group, "serializable": True}, timeout)
                for n in owners}
        out: dict[str, dict[str, Any] | None] = {}
        for n, f in futs.items():
            got = f.result()
            out[n] = (got[1].get("local") or {}) if got is not None and got[0] == 200 else None
        return out

    def runner(self, group: str, wait: float = 0.0) -> str | None:
        """The node the group's placement record names, while the app is live there."""
        deadline = time.monotonic() + wait
        while True:
            view = self.placement(group)
            rec = (view or {}).get("placement") or {}
            if rec.get("node") and rec.get("state") in LIVE_STATES:
                return str(rec["node"])
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def query(self, node: str, path: str = "/v1/status", timeout: float = 1.0
              ) -> dict[str, Any] | None:
        return self.pool.submit(self._probe, node, path, timeout).result()

    def statuses(self, nodes: list[str] | None = None, timeout: float = 1.0
                 ) -> dict[str, dict[str, Any] | None]:
        nodes = list(nodes if nodes is not None else self.topology.node_ids)
        futs = {n: self.pool.submit(self._probe, n, "/v1/status", timeout) for n in nodes}
        return {n: f.result() for n, f in futs.items()}

    def wait_healthy(self, nodes: list[str] | tuple[str, ...], timeout: float) -> None:
        pending = list(nodes)
        deadline = time.monotonic() + timeout
        while pending:
            dead = [n for n in pending if self.pid(n) is None]
            if dead:
                raise ClusterError("node(s) exited: " + "; ".join(
                    f"{n}:\n{_tail(self.log_path(n))}" for n in dead))
            futs = {n: self.pool.submit(self._probe, n, "/v1/health", 0.5) for n in pending}
            pending = [n for n, f in futs.items()
                       if (f.result() or {}).get("node") != n]
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise ClusterError(f"not healthy within {timeout:g}s: " + "; ".join(
                    f"{n}:\n{_tail(self.log_path(n))}" for n in pending))
            time.sleep(0.1)

    def wait_converged(self, groups: list[str] | tuple[str, ...] | None = None,
                       timeout: float = 20.0) -> bool:
        """Wait until every live owner of each group has applied the same index (the
        final reads then see the same state wherever they land, whatever read path the
        build under test uses). False if that did not happen within ``timeout``."""
        groups = list(groups if groups is not None else self.topology.group_ids)
        deadline = time.monotonic() + timeout
        while True:
            converged = True
            for g in groups:
                owners = [n for n in self.topology.group(g).owners if self.pid(n) is not None]
                applied = {((st or {}).get("groups") or {}).get(g, {}).get("applied_index")
                           for st in self.statuses(owners, timeout=0.5).values()}
                if len(applied) != 1 or None in applied:
                    converged = False
                    break
            if converged:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    def leader(self, group: str, wait: float = 0.0) -> str | None:
        """The owner of ``group`` that says it leads with quorum (highest term wins)."""
        owners = list(self.topology.group(group).owners)
        deadline = time.monotonic() + wait
        while True:
            best: tuple[int, str] | None = None
            for node, st in self.statuses(owners, timeout=0.5).items():
                view = ((st or {}).get("groups") or {}).get(group) or {}
                if view.get("role") == "leader" and view.get("quorum") is True:
                    raw = view.get("term")
                    term = raw if isinstance(raw, int) else -1
                    if best is None or term > best[0]:
                        best = (term, node)
            if best is not None or time.monotonic() >= deadline:
                return best[1] if best else None
            time.sleep(0.1)

    def wait_quorum(self, groups: list[str] | tuple[str, ...] | None = None,
                    timeout: float = 30.0) -> dict[str, str]:
        """Wait until every group has a leader that reports quorum; {group: leader}."""
        return wait_each_group(
            list(groups if groups is not None else self.topology.group_ids), self.leader,
            timeout, lambda missing: f"no leader with quorum within {timeout:g}s for "
                                     f"group(s) {', '.join(missing)}")
