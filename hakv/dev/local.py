"""Run a whole topology as local processes under one run directory.

For the demo, the tests and anyone trying hakv on one machine::

    DIR/topology.toml           copy of the topology the cluster was started with
    DIR/data/<node>/            each node's --data-dir
    DIR/logs/<node>.log         each node's stdout and stderr (appended across restarts)
    DIR/pids/<node>.pid         pid of each running node
    DIR/added/<node>.json       nodes added at runtime (``hakv cluster add-node``), learnt
                                from the cluster records by ``start``
    DIR/certs/                  the run's CA and one certificate per node (``hakv certs``
                                layout), made on first start: nodes use mutual TLS
    DIR/INSECURE                present when the run was made with ``insecure=True``
                                (``hakv local up --insecure``): plain TCP, a cluster secret

Python API (the integration tests use it)::

    from hakv.dev.local import LocalCluster

    lc = LocalCluster(tmp_path / "run")
    lc.up("examples/three-node.toml", wait=30)   # start all nodes, wait for /v1/health
    with lc.client() as c:                         # a Client over all nodes' endpoints
        c.put("g1", "k", "v")
    lc.kill("n1")                                  # SIGKILL (kill -9)
    lc.start("n1")                                 # restart it on the same data dir
    lc.pause("n2"); lc.resume("n2")                # SIGSTOP / SIGCONT
    lc.down()                                      # SIGTERM, then SIGKILL after 5 s

Nodes run detached (their own session), so they outlive the command that started them; the
pid files are how later commands find them. Before signalling a pid, its
``/proc/<pid>/cmdline`` must name hakv, the node id and this run directory's data dir, so a
recycled pid (or a node of another run dir) is never signalled.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hakv
from hakv.client.client import Client, probe
from hakv.core.topology import NodeSpec, Topology, load_topology
from hakv.errors import ConfigError, HakvError, UnavailableError
from hakv.security.tls import CACERT_ENV, CERT_ENV, KEY_ENV, client_context

__all__ = ["LocalCluster", "NodeState", "NodesNotReadyError"]

TOPOLOGY_FILE = "topology.toml"
ADDED_DIR = "added"
CERTS_DIR = "certs"
LOCAL_USER = "root"  # the client identity a local cluster makes for its user
LOCAL_CA_ENV = "HAKV_LOCAL_CA_DIR"  # a CA (ca.crt, ca.key) to sign with instead of a new one
INSECURE_MARK = "INSECURE"
STOP_TIMEOUT = 5.0
DEFAULT_WAIT = 30.0
_POLL = 0.05

# Every node process this Python process started, by pid: kept so they are reaped (no
# zombies in long test runs) and never garbage-collected while running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class NodesNotReadyError(UnavailableError):
    """Some nodes did not answer /v1/health in time (or exited). ``tails`` holds the end of
    each such node's log, by node id; ``log_tails()`` is them as one text to show."""

    def __init__(self, message: str, tails: dict[str, str]) -> None:
        super().__init__(message, nodes=sorted(tails))
        self.tails = tails

    def log_tails(self) -> str:
        """Each failed node's log tail under ``--- last lines of node N's log ---``: what
        to show before the error line, so the reader sees why."""
        return "\n".join(f"--- last lines of node {node}'s log ---\n{tail}"
                         for node, tail in self.tails.items())


@dataclass(frozen=True)
class NodeState:
    """One node of a local cluster as ``status`` sees it."""

    node: str
    endpoint: str
    pid: int | None
    alive: bool
    paused: bool
    health: str  # "ok", "not running", or why the health check failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "endpoint": self.endpoint,
            "pid": self.pid,
            "alive": self.alive,
            "paused": self.paused,
            "health": self.health,
        }


# --------------------------------------------------------------------------- /proc helpers


def _proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (R, S, T, Z ...) or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) S ...": comm may hold spaces and parentheses, so split at the last ')'.
    rest = stat[stat.rfind(b")") + 1 :].split()
    return rest[0].decode() if rest else None


def _proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [arg.decode("utf-8", "replace") for arg in raw.split(b"\0") if arg]


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def _alive(pid: int) -> bool:
    """Exists and is not a zombie (a dead child not yet reaped holds no port, no lock)."""
    _reap(pid)
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------- the cluster


class LocalCluster:
    """A topology run as local processes under ``directory`` (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str],
                 node_root: str | os.PathLike[str] | None = None,
                 insecure: bool | None = None) -> None:
        self.dir = Path(directory).absolute()
        # None: as the run dir was made (DIR/INSECURE); True/False decide for a new one.
        self._insecure = insecure
        self._client_tls: ssl.SSLContext | None = None
        self._topology: Topology | None = None
        # The source tree whose `python -m hakv node` the nodes run (default: this hakv's):
        # bench.ab runs one benchmark against two builds, alternating, in one run.
        self.node_root = str(Path(node_root).absolute()) if node_root else None

    def __repr__(self) -> str:
        return f"LocalCluster({str(self.dir)!r})"

    # ---- layout

    @property
    def topology_path(self) -> Path:
        return self.dir / TOPOLOGY_FILE

    def data_dir(self, node_id: str) -> Path:
        return self.dir / "data" / node_id

    def log_path(self, node_id: str) -> Path:
        return self.dir / "logs" / f"{node_id}.log"

    def pid_path(self, node_id: str) -> Path:
        return self.dir / "pids" / f"{node_id}.pid"

    def exists(self) -> bool:
        """Whether ``directory`` holds a local cluster (its topology.toml)."""
        return self.topology_path.is_file()

    @property
    def topology(self) -> Topology:
        """The topology in DIR/topology.toml; ConfigError if there is none."""
        if self._topology is None:
            if not self.exists():
                raise ConfigError(
                    f"{self.dir} holds no local cluster (no {TOPOLOGY_FILE}); start one with "
                    f"`hakv local up --topology FILE --dir {self.dir}`"
                )
            self._topology = load_topology(self.topology_path)
            added = sorted((self.dir / ADDED_DIR).glob("*.json"))
            if added:  # nodes added at runtime (adopt_node)
                from hakv.core.membership import with_nodes

                specs = [NodeSpec(**json.loads(p.read_text())) for p in added]
                self._topology = with_nodes(self._topology, specs)
        return self._topology

    def adopt_node(self, node_id: str) -> NodeSpec:
        """Learn a node added at runtime (``hakv cluster add-node``) from the cluster
        records, and remember it in DIR/added/<id>.json so it can be started like the
        others. ConfigError if the cluster does not know it."""
        from hakv.core.topology import CLUSTER_GROUP
        from hakv.errors import NotFoundError

        try:
            with self.client(timeout=10.0) as c:
                raw = json.loads(c.get(CLUSTER_GROUP, f"nodes/{node_id}").value)
        except NotFoundError:
            raise ConfigError(
                f"node {node_id} is neither in {self.topology_path} nor in the cluster "
                f"records; add it first with `hakv cluster add-node {node_id} ...`") from None
        spec = NodeSpec(**raw)
        path = self.dir / ADDED_DIR / f"{node_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(spec.to_dict()))
        self._topology = None
        return spec

    def node_ids(self) -> list[str]:
        return list(self.topology.node_ids)

    def endpoints(self) -> list[str]:
        """Client API addresses of all nodes, in topology order."""
        return [node.api_address for node in self.topology.nodes]

    def endpoint(self, node_id: str) -> str:
        return self.topology.node(node_id).api_address

    def client(self, timeout: float = 5.0, client_id: str | None = None) -> Client:
        """A Client over every node's endpoint (HTTPS as the run's user ``root``)."""
        return Client(self.endpoints(), timeout=timeout, client_id=client_id,
                      tls=self.client_tls() or False)

    def client_files(self) -> tuple[Path, Path, Path] | None:
        """(CA, certificate, key) of the run's client identity ``root``; None when the
        run is insecure. Made with the node certificates."""
        if self.insecure:
            return None
        d = self.certs_dir
        return d / "ca.crt", d / f"client.{LOCAL_USER}.crt", d / f"client.{LOCAL_USER}.key"

    def client_tls(self) -> ssl.SSLContext | None:
        """The HTTPS context for clients of this run (None when it is insecure)."""
        files = self.client_files()
        if files is None:
            return None
        if self._client_tls is None:
            if not files[1].exists():
                self._ensure_certs(None)
            self._client_tls = client_context(*files)
        return self._client_tls

    def log_tail(self, node_id: str, lines: int = 20) -> str:
        return _tail(self.log_path(node_id), lines)

    # ---- processes

    def _command(self, node_id: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "hakv",
            "node",
            "--topology",
            str(self.topology_path),
            "--node",
            node_id,
            "--data-dir",
            str(self.data_dir(node_id)),
            *(["--insecure"] if self.insecure else ["--certs-dir", str(self.certs_dir)]),
        ]

    def _is_ours(self, pid: int, node_id: str) -> bool:
        proc = _CHILDREN.get(pid)
        if proc is not None and proc.poll() is None:
            # Started by this process: ours even before exec has replaced its cmdline.
            return True
        args = _proc_cmdline(pid)
        return (
            any("hakv" in a for a in args)
            and node_id in args
            and str(self.data_dir(node_id)) in args
        )

    def _read_pid(self, node_id: str) -> int | None:
        try:
            text = self.pid_path(node_id).read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def pid(self, node_id: str) -> int | None:
        """The pid of ``node_id`` if it is running (a live process that is that node)."""
        pid = self._read_pid(node_id)
        if pid is None or not _alive(pid) or not self._is_ours(pid, node_id):
            return None
        return pid

    def is_running(self, node_id: str) -> bool:
        return self.pid(node_id) is not None

    def is_paused(self, node_id: str) -> bool:
        pid = self.pid(node_id)
        return pid is not None and _proc_state(pid) == "T"

    def running(self) -> list[str]:
        return [n for n in self._known_nodes() if self.is_running(n)]

    def _known_nodes(self) -> list[str]:
        """Nodes of the topology plus any with a pid file (a topology.toml removed by hand
        must not hide running nodes from ``down``)."""
        nodes = list(self.topology.node_ids) if self.exists() else []
        pids = self.dir / "pids"
        if pids.is_dir():
            nodes += sorted(p.stem for p in pids.glob("*.pid") if p.stem not in nodes)
        return nodes

    @property
    def certs_dir(self) -> Path:
        return self.dir / CERTS_DIR

    @property
    def insecure(self) -> bool:
        """Whether the nodes run without TLS (``hakv local up --insecure``)."""
        if self._insecure is not None:
            return self._insecure
        return (self.dir / INSECURE_MARK).exists()

    def _ensure_certs(self, node_id: str | None) -> None:
        """DIR/certs with a CA, the client identity ``root`` and node ``node_id``'s
        certificate, made once each (a P-256 key and a signature: milliseconds).

        With ``HAKV_LOCAL_CA_DIR`` set, the CA there (``ca.crt`` and ``ca.key``) signs
        instead of a new one: several runs (the tests) then share one CA."""
        from hakv.security import certs

        now = dt.datetime.now(dt.UTC)
        d = self.certs_dir
        if not (d / certs.CA_CERT).exists():
            shared = os.environ.get(LOCAL_CA_ENV)
            if shared:
                d.mkdir(parents=True, exist_ok=True)
                for name in (certs.CA_CERT, certs.CA_KEY):
                    data = (Path(shared) / name).read_bytes()
                    fd = os.open(d / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
            else:
                certs.init_ca(d, name=f"hakv local CA ({self.topology.cluster})", now=now)
        if not (d / f"client.{LOCAL_USER}.crt").exists():
            certs.client_cert(d, LOCAL_USER, now=now)
        if node_id is not None and not (d / f"node.{node_id}.crt").exists():
            certs.node_cert(d, node_id, [self.topology.node(node_id).host], now=now)

    def _secret_file(self) -> Path:
        """DIR/secret, created once (mode 600) with 32 random bytes, base64."""
        path = self.dir / "secret"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        return path

    def _spawn(self, node_id: str) -> subprocess.Popen[bytes]:
        self.topology.node(node_id)  # TopologyError for an unknown id
        for sub in ("data", "logs", "pids"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.data_dir(node_id).mkdir(exist_ok=True)
        env = dict(os.environ)
        # The node must import this same hakv, installed or not.
        package_root = self.node_root or str(Path(hakv.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        env.pop("HAKV_CERTS_DIR", None)
        env.pop("HAKV_INSECURE", None)
        if self.insecure:
            (self.dir / INSECURE_MARK).touch()
            if not env.get("HAKV_SECRET_FILE"):
                # An insecure local cluster still gets its own cluster secret
                # (authenticated raft traffic), unless the caller chose one.
                env["HAKV_SECRET_FILE"] = str(self._secret_file())
        else:
            (self.dir / INSECURE_MARK).unlink(missing_ok=True)
            self._ensure_certs(node_id)
        with open(self.log_path(node_id), "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"=== hakv local: starting node {node_id} at {stamp} ===\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self._command(node_id),
                # `python -m` puts the working directory first on sys.path: run the node in
                # the tree it must import (bench.ab's other build; found by its A/B runs).
                cwd=package_root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
        _CHILDREN[proc.pid] = proc
        tmp = self.pid_path(node_id).with_suffix(".tmp")
        tmp.write_text(f"{proc.pid}\n")
        tmp.replace(self.pid_path(node_id))
        return proc

    def _health(self, node_id: str, timeout: float = 0.5) -> str:
        """ "ok" when the node's endpoint answers /v1/health as this node, else why not."""
        spec = self.topology.node(node_id)
        try:
            answer = probe(spec.api_address, "/v1/health", timeout, self.client_tls())
        except HakvError as err:
            return err.message
        if answer.get("node") != node_id or answer.get("cluster") != self.topology.cluster:
            return (
                f"{spec.api_address} answers as node {answer.get('node')!r} of cluster "
                f"{answer.get('cluster')!r}: another cluster uses this port"
            )
        return "ok"

    def wait_healthy(self, node_ids: Iterable[str], timeout: float = DEFAULT_WAIT,
                     progress: Callable[[int, int], None] | None = None) -> None:
        """Wait until every node answers /v1/health; NodesNotReadyError (with log tails)
        at the deadline, or at once when one of them exits. ``progress(healthy, total)``
        is called as nodes come up (``hakv local up`` draws a bar with it)."""
        pending = list(node_ids)
        total = len(pending)
        deadline = time.monotonic() + timeout
        why: dict[str, str] = {}
        while pending:
            exited = [n for n in pending if not self.is_running(n)]
            if exited:
                msg = (
                    f"node {', '.join(exited)} exited during start-up (see the log above; "
                    f"other nodes keep running: `hakv local down --dir {self.dir}`)"
                )
                raise NodesNotReadyError(msg, {n: self.log_tail(n) for n in exited})
            for n in list(pending):
                why[n] = self._health(n, timeout=min(0.5, max(0.05, deadline - time.monotonic())))
                if why[n] == "ok":
                    pending.remove(n)
            if progress is not None:
                progress(total - len(pending), total)
            if not pending:
                return
            if time.monotonic() >= deadline:
                detail = "; ".join(f"{n}: {why[n]}" for n in pending)
                raise NodesNotReadyError(
                    f"not healthy within {timeout:g}s: {detail} (nodes keep running: "
                    f"`hakv local down --dir {self.dir}`)",
                    {n: self.log_tail(n) for n in pending},
                )
            time.sleep(0.1)

    def _signal(self, node_id: str, sig: signal.Signals) -> int:
        pid = self.pid(node_id)
        if pid is None:
            raise ConfigError(f"node {node_id} of {self.dir} is not running")
        os.kill(pid, sig)
        return pid

    def _wait_gone(self, pids: dict[str, int], timeout: float) -> list[str]:
        """Wait until the processes are gone; the node ids still alive at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            left = [n for n, pid in pids.items() if _alive(pid)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(_POLL)

    def _terminate(self, pids: dict[str, int], timeout: float) -> dict[str, str]:
        """SIGTERM (and SIGCONT, so a paused node can act on it), then SIGKILL whoever is
        still there after ``timeout``. Removes the pid files."""
        result: dict[str, str] = {}
        for pid in pids.values():
            for sig in (signal.SIGTERM, signal.SIGCONT):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        stubborn = self._wait_gone(pids, timeout)
        for n in stubborn:
            try:
                os.kill(pids[n], signal.SIGKILL)
            except ProcessLookupError:
                pass
        still = self._wait_gone({n: pids[n] for n in stubborn}, 2.0)
        for n in pids:
            result[n] = "still alive" if n in still else ("killed" if n in stubborn else "stopped")
            if n not in still:
                self.pid_path(n).unlink(missing_ok=True)
        return result

    # ---- commands

    def up(
        self, topology_path: str | os.PathLike[str], wait: float = DEFAULT_WAIT,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, int]:
        """Copy the topology into DIR and start every node; wait (``wait`` > 0) until all
        answer /v1/health. Returns {node: pid}.

        Refuses (ConfigError) when nodes of DIR are running, or when DIR already holds a
        different cluster (other nodes, groups or name: its data dirs belong to that one).
        Restarting a stopped cluster with the same topology reuses its data.
        """
        source = Path(topology_path)
        wanted = load_topology(source)
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.exists():
            try:
                current = load_topology(self.topology_path)
            except HakvError:
                current = None
            if current is not None and current.fingerprint() != wanted.fingerprint():
                raise ConfigError(
                    f"{self.dir} already holds a different topology (cluster "
                    f"{current.cluster!r}, nodes {', '.join(current.node_ids)}) than {source}; "
                    f"its data belongs to that cluster. Run `hakv local down --dir {self.dir}` "
                    "and remove the directory, or use another --dir"
                )
        running = [f"{n} (pid {self.pid(n)})" for n in self._known_nodes() if self.is_running(n)]
        if running:
            raise ConfigError(
                f"nodes of {self.dir} are already running: {', '.join(running)}; "
                f"stop them first with `hakv local down --dir {self.dir}`"
            )
        if source.resolve() != self.topology_path.resolve():
            tmp = self.topology_path.with_suffix(".tmp")
            tmp.write_bytes(source.read_bytes())
            tmp.replace(self.topology_path)
        self._topology = None
        pids = {n: self._spawn(n).pid for n in self.node_ids()}
        if wait > 0:
            self.wait_healthy(pids, wait, progress)
        return pids

    def down(self, timeout: float = STOP_TIMEOUT) -> dict[str, str]:
        """Stop every node: SIGTERM, SIGKILL after ``timeout``. Returns {node: what
        happened} ("stopped", "killed", "not running"). Fine on a dir with nothing."""
        if not self.dir.is_dir():
            return {}
        pids: dict[str, int] = {}
        result: dict[str, str] = {}
        for n in self._known_nodes():
            pid = self.pid(n)
            if pid is None:
                self.pid_path(n).unlink(missing_ok=True)
                result[n] = "not running"
            else:
                pids[n] = pid
        result.update(self._terminate(pids, timeout))
        return result

    def start(self, node_id: str, wait: float = DEFAULT_WAIT) -> int:
        """Start one node (ConfigError if it runs); wait for its health if ``wait`` > 0."""
        pid = self.pid(node_id)
        if pid is not None:
            raise ConfigError(f"node {node_id} of {self.dir} is already running (pid {pid})")
        if not self.topology.has_node(node_id):
            self.adopt_node(node_id)  # added at runtime: known from the cluster records
        proc = self._spawn(node_id)
        if wait > 0:
            self.wait_healthy([node_id], wait)
        return proc.pid

    def stop(self, node_id: str, timeout: float = STOP_TIMEOUT) -> str:
        """SIGTERM one node (SIGKILL after ``timeout``): "stopped", "killed" or
        "not running"."""
        pid = self.pid(node_id)
        if pid is None:
            return "not running"
        return self._terminate({node_id: pid}, timeout)[node_id]

    def kill(self, node_id: str) -> None:
        """SIGKILL (kill -9) one node and wait until it is gone. ConfigError if it does
        not run."""
        pid = self._signal(node_id, signal.SIGKILL)
        self._wait_gone({node_id: pid}, STOP_TIMEOUT)
        self.pid_path(node_id).unlink(missing_ok=True)

    def pause(self, node_id: str) -> None:
        """SIGSTOP: the node freezes (sockets stay open, nothing answers).

        Returns once the kernel reports the process stopped, so callers can rely on it."""
        self._signal(node_id, signal.SIGSTOP)
        deadline = time.monotonic() + 2.0
        while not self.is_paused(node_id) and time.monotonic() < deadline:
            time.sleep(0.005)

    def resume(self, node_id: str) -> None:
        """SIGCONT a paused node."""
        self._signal(node_id, signal.SIGCONT)

    def status(self) -> list[NodeState]:
        """Per node: pid, alive, paused, and its /v1/health (checked in parallel)."""
        nodes = self.node_ids()

        def one(n: str) -> NodeState:
            pid = self.pid(n)
            paused = pid is not None and _proc_state(pid) == "T"
            if pid is None:
                health = "not running"
            elif paused:
                health = "paused (SIGSTOP)"
            else:
                health = self._health(n)
            return NodeState(n, self.endpoint(n), pid, pid is not None, paused, health)

        with ThreadPoolExecutor(max_workers=min(16, max(1, len(nodes)))) as pool:
            return list(pool.map(one, nodes))

    def env_line(self) -> str:
        """``export HAKV_ENDPOINTS=... HAKV_CACERT=... HAKV_CERT=... HAKV_KEY=...`` for a
        shell (the TLS files of the run's client identity, unless it is insecure)."""
        line = f"export HAKV_ENDPOINTS={','.join(self.endpoints())}"
        files = self.client_files()
        if files is not None:
            line += " " + " ".join(f"{var}={path}" for var, path in
                                   zip((CACERT_ENV, CERT_ENV, KEY_ENV), files, strict=True))
        return line


def endpoints_of(directory: str | os.PathLike[str]) -> Sequence[str]:
    """The client endpoints of the local cluster in ``directory``."""
    return LocalCluster(directory).endpoints()
