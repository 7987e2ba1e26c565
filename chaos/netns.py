"""Network namespaces for a chaos run: one per node, one for the clients, bridged in a hub.

Layout of one run (``RUN`` is a short random id, ``K`` a byte derived from it)::

    hakv-RUN-hub        a Linux bridge ``br0``; one veth end per node/client namespace
    hakv-RUN-<node>     ``eth0`` = 10.231.K.(10+i)/24, ``lo`` up; the node process runs here
    hakv-RUN-client     ``eth0`` = 10.231.K.250/24; workload processes and harness queries

Nothing is ever configured in the root namespace: veth pairs are created *inside* the hub
namespace with their peer moved straight into the node namespace (``ip -n HUB link add ...
peer name eth0 netns NODE``), addresses exist only inside the namespaces, and every
iptables call runs under ``ip netns exec`` of one of them. Deleting the namespaces removes
interfaces, addresses and firewall rules at once.

Faults are directed link rules (``Link``): packets *from* ``src`` *to* ``dst`` are dropped
(``probability`` None) or dropped at random (iptables ``statistic --mode random``) in the
INPUT hook of ``dst``'s namespace. A symmetric cut is two links. Each fault gets its own
chain (``hakv-f<N>``) in every receiving namespace, jumped to from INPUT, so overlapping
faults heal independently. Only node-to-node traffic is matched (by node address): the
client namespace always reaches every node, as Jepsen's clients do.

Delays (``Delay``) are the other kind of rule: ``tc netem`` is not available in this kernel,
so packets the delayed node sends to the named nodes are queued by an ``NFQUEUE`` rule in the
OUTPUT hook of *its* namespace (``--queue-bypass``: they pass if nobody listens) and released
late by a delayer process (``chaos/delay.py``) running inside that namespace. The delayer is
started and answers "ready" before the rule goes in; healing removes the rule first, then
stops the delayer by its exact pid (it releases what it still holds).

Cleanup: everything a run creates is written to ``STATE_DIR/RUN.json`` *before* it is
created, together with the owner's pid and start time. ``cleanup_stale()`` (``python -m
chaos.run --cleanup``) finds ``hakv-*`` namespaces whose run is not alive any more, kills the
processes recorded for it and the processes inside its namespaces (exact pids, from ``ip
netns pids``), and deletes the namespaces. A live run tears itself down in ``finally``, on
SIGINT/SIGTERM (the harness turns them into exceptions) and at exit (``atexit``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLIENT",
    "HUB",
    "Delay",
    "Link",
    "Network",
    "RunRecord",
    "Skip",
    "cleanup_stale",
    "enter_netns",
    "list_namespaces",
    "preflight",
]

REPO = Path(__file__).resolve().parent.parent
PREFIX = "hakv-"
HUB = "hub"
CLIENT = "client"
STATE_DIR = Path(os.environ.get("HAKV_CHAOS_STATE", "/run/hakv-chaos"))
NETNS_DIR = Path("/run/netns")
SUBNET = "10.231"
API_PORT = 8000
RAFT_PORT = 7000
CLIENT_HOST = 250
FIRST_NODE_HOST = 10
MAX_NODES = 200
_CMD_TIMEOUT = 20.0
_RUN_RE = re.compile(r"[0-9a-f]{6}\Z")
_PROBE_RE = re.compile(r"hakv-probe-(\d+)\Z")
_CLONE_NEWNET = 0x40000000


class Skip(Exception):  # noqa: N818 - it is a verdict, not an error
    """The harness cannot run here (not root, no ``ip netns``, no iptables); ``reason``
    says why and how to fix it. Tests turn it into ``pytest.skip``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NetnsError(RuntimeError):
    """A namespace or firewall command failed; the message has the command and its stderr."""


# --------------------------------------------------------------------------- commands


def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True,
         timeout: float = _CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError as err:
        raise NetnsError(f"{argv[0]}: not installed ({err})") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(argv)}: no answer within {timeout:g}s") from None
    if check and proc.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed ({proc.returncode}): "
                         f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def netns_exec(ns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` to run inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]


IPTABLES_HINT = ("iptables is not installed; the chaos harness needs it for partitions "
                 "(inside its namespaces only). Install it with: apt-get install -y iptables")


def preflight() -> None:
    """Raise Skip unless this process can make namespaces and firewall rules."""
    if os.geteuid() != 0:
        raise Skip("the chaos harness needs root (network namespaces, iptables); run it as "
                   "root, e.g. `sudo make chaos`")
    if shutil.which("ip") is None:
        raise Skip("`ip` (iproute2) is not installed: apt-get install -y iproute2")
    if shutil.which("iptables") is None or shutil.which("iptables-restore") is None:
        raise Skip(IPTABLES_HINT)
    probe = f"{PREFIX}probe-{os.getpid()}"
    try:
        _run(["ip", "netns", "add", probe])
    except NetnsError as err:
        raise Skip(f"`ip netns add` does not work here: {err}") from None
    try:
        out = _run(netns_exec(probe, ["iptables", "-w", "-S", "INPUT"]), check=False)
        if out.returncode != 0:
            raise Skip("iptables does not work inside a network namespace here: "
                       f"{out.stderr.strip()}")
    finally:
        _run(["ip", "netns", "del", probe], check=False)


def list_namespaces() -> list[str]:
    """Names of all network namespaces (``ip netns list``, first word of each line)."""
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pids(ns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


# --------------------------------------------------------------------------- setns


def enter_netns(ns: str) -> None:
    """Move the *calling thread* into network namespace ``ns``: sockets it creates from now
    on live there. Used as a ThreadPoolExecutor initializer so the harness can query nodes
    from the client namespace without a process per query."""
    fd = os.open(str(NETNS_DIR / ns), os.O_RDONLY)
    try:
        setns = getattr(os, "setns", None)
        if setns is not None:  # Python 3.12+
            setns(fd, _CLONE_NEWNET)
        else:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- run record


def _proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat): with
    the pid it identifies a process even after the pid is recycled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _proc_alive(pid: int, start: int | None) -> bool:
    now = _proc_start(pid)
    if now is None or (start is not None and now != start):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    rest = state[state.rfind(b")") + 1:].split()
    return bool(rest) and rest[0] not in (b"Z", b"X")


class RunRecord:
    """What one run created, on disk at ``STATE_DIR/RUN.json`` (rewritten on every change).

    ``namespaces`` are added *before* ``ip netns add``, processes right after they start,
    so a run killed at any point leaves a record that ``cleanup_stale`` can act on."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.path = STATE_DIR / f"{run_id}.json"
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {
            "run": run_id,
            "owner_pid": os.getpid(),
            "owner_start": _proc_start(os.getpid()),
            "created": time.time(),
            "namespaces": [],
            "processes": [],
            "paths": [],
        }
        self._save()

    def _save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def add_namespace(self, ns: str) -> None:
        with self._lock:
            if ns not in self.data["namespaces"]:
                self.data["namespaces"].append(ns)
                self._save()

    def add_process(self, pid: int, what: str) -> None:
        with self._lock:
            self.data["processes"].append({"pid": pid, "start": _proc_start(pid), "what": what})
            self._save()

    def add_path(self, path: str | os.PathLike[str]) -> None:
        with self._lock:
            self.data["paths"].append(os.fspath(path))
            self._save()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _kill_exact(pid: int, start: int | None) -> bool:
    """SIGKILL (after SIGCONT, for a paused process) ``pid`` if it is still the process
    that was recorded; True if it was killed."""
    if not _proc_alive(pid, start):
        return False
    for sig in (signal.SIGKILL, signal.SIGCONT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return True


def _wait_dead(pids: Iterable[int], timeout: float = 5.0) -> None:
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _proc_alive(pid, None):
                pending.discard(pid)
        if pending:
            time.sleep(0.02)


def _destroy_namespaces(namespaces: Iterable[str], log: list[str]) -> None:
    """Kill every process inside each namespace (exact pids), then delete it."""
    namespaces = list(namespaces)
    existing = set(list_namespaces())
    killed: list[int] = []
    for ns in namespaces:
        if ns not in existing:
            continue
        for pid in namespace_pids(ns):
            if pid != os.getpid() and _kill_exact(pid, None):
                killed.append(pid)
                log.append(f"killed pid {pid} (in {ns})")
    _wait_dead(killed)
    # node namespaces first, the hub (which holds the bridge) last
    for ns in sorted(namespaces, key=lambda n: n.endswith("-" + HUB)):
        if ns in existing:
            proc = _run(["ip", "netns", "del", ns], check=False)
            log.append(f"deleted namespace {ns}" if proc.returncode == 0 else
                       f"could not delete {ns}: {proc.stderr.strip()}")


def cleanup_stale(include_live: bool = False) -> list[str]:
    """Remove what dead runs left behind; returns a log of what was done.

    A run is dead when its record's owner process is gone (pid and start time no longer
    match) or when ``hakv-RUN-*`` namespaces exist with no record at all. Live runs are
    left alone unless ``include_live``."""
    log: list[str] = []
    records: dict[str, dict[str, Any]] = {}
    if STATE_DIR.is_dir():
        for path in sorted(STATE_DIR.glob("*.json")):
            try:
                records[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                log.append(f"unreadable record {path} (left alone)")
    by_run: dict[str, list[str]] = {}
    for ns in list_namespaces():
        probe = _PROBE_RE.match(ns)
        if probe is not None and not _proc_alive(int(probe.group(1)), None):
            _destroy_namespaces([ns], log)  # left by a preflight() that was killed
            continue
        parts = ns.split("-", 2)
        if len(parts) == 3 and parts[0] + "-" == PREFIX and _RUN_RE.match(parts[1]):
            by_run.setdefault(parts[1], []).append(ns)
    for run_id in sorted(set(records) | set(by_run)):
        rec = records.get(run_id)
        if rec is not None and not include_live and _proc_alive(
                int(rec.get("owner_pid", -1)), rec.get("owner_start")):
            log.append(f"run {run_id}: owner pid {rec['owner_pid']} alive, left alone")
            continue
        killed = []
        for p in (rec or {}).get("processes", []):
            if _kill_exact(int(p["pid"]), p.get("start")):
                killed.append(int(p["pid"]))
                log.append(f"run {run_id}: killed pid {p['pid']} ({p.get('what')})")
        _wait_dead(killed)
        names = set(by_run.get(run_id, [])) | set((rec or {}).get("namespaces", []))
        _destroy_namespaces(sorted(names), log)
        if rec is not None:
            with contextlib.suppress(FileNotFoundError):
                (STATE_DIR / f"{run_id}.json").unlink()
            log.append(f"run {run_id}: record removed")
    return log


# --------------------------------------------------------------------------- links


@dataclass(frozen=True)
class Link:
    """Packets from node ``src`` to node ``dst`` are dropped (always, or with
    ``probability``)."""

    src: str
    dst: str
    probability: float | None = None

    def __post_init__(self) -> None:
        if self.src == self.dst:
            raise ValueError(f"a link needs two different nodes, got {self.src} twice")
        if self.probability is not None and not 0.0 < self.probability <= 1.0:
            raise ValueError(f"loss probability must be in (0, 1], got {self.probability}")


def cut_both(a: str, b: str) -> list[Link]:
    return [Link(a, b), Link(b, a)]


@dataclass(frozen=True)
class Delay:
    """Packets node ``node`` sends to any of ``to`` are held ``seconds`` (± ``jitter``,
    uniform per packet, order kept) before they leave: every round trip between ``node``
    and one of ``to`` takes that much longer, in whichever direction it starts."""

    node: str
    to: tuple[str, ...]
    seconds: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.node in self.to:
            raise ValueError(f"a delay from {self.node} to itself makes no sense")
        if not self.to:
            raise ValueError("a delay needs at least one destination node")
        if not (0.0 < self.seconds <= 10.0) or not (0.0 <= self.jitter <= self.seconds):
            raise ValueError(f"delay must be in (0, 10] s and jitter in [0, delay], got "
                             f"{self.seconds!r} ± {self.jitter!r}")


class DelayUnavailable(NetnsError):
    """The delayer cannot run here (``chaos.delay.available()`` says why)."""


# --------------------------------------------------------------------------- the network


@dataclass(frozen=True)
class Endpoint:
    ns: str
    address: str
    hub_port: str


_LIVE: dict[str, Network] = {}
_LIVE_LOCK = threading.Lock()


def _teardown_all_live() -> None:
    with _LIVE_LOCK:
        nets = list(_LIVE.values())
    for net in nets:
        with contextlib.suppress(Exception):
            net.destroy()


atexit.register(_teardown_all_live)


def new_run_id() -> str:
    return secrets.token_hex(3)


class Network:
    """The namespaces of one run. ``create()`` builds them, ``destroy()`` removes them and
    everything inside (idempotent; also run at exit)."""

    def __init__(self, node_ids: Sequence[str], run_id: str | None = None) -> None:
        self.run_id = run_id or new_run_id()
        if not _RUN_RE.match(self.run_id):
            raise ValueError(f"run id must be 6 hex digits, got {self.run_id!r}")
        if len(node_ids) > MAX_NODES:
            raise ValueError(f"at most {MAX_NODES} nodes, got {len(node_ids)}")
        for n in node_ids:
            if n in (HUB, CLIENT):
                raise ValueError(f"node id {n!r} clashes with the {n} namespace; rename it")
        self.node_ids = list(node_ids)
        self.k = int(hashlib.sha256(self.run_id.encode()).hexdigest()[:2], 16)
        self.hub = self.ns_name(HUB)
        self.nodes = {
            n: Endpoint(self.ns_name(n), f"{SUBNET}.{self.k}.{FIRST_NODE_HOST + i}", f"v{i}")
            for i, n in enumerate(self.node_ids)
        }
        self.client = Endpoint(self.ns_name(CLIENT), f"{SUBNET}.{self.k}.{CLIENT_HOST}", "vc")
        self.record: RunRecord | None = None
        # fault id -> (namespace, hook) of each chain it installed
        self._chains: dict[str, list[tuple[str, str]]] = {}
        self._delayers: dict[str, subprocess.Popen[bytes]] = {}  # fault id -> delayer
        self._lock = threading.Lock()
        self._destroyed = False

    def ns_name(self, what: str) -> str:
        return f"{PREFIX}{self.run_id}-{what}"

    def address(self, node: str) -> str:
        return self.nodes[node].address

    def ns_of(self, node: str) -> str:
        return self.nodes[node].ns

    @property
    def namespaces(self) -> list[str]:
        return [self.hub, self.client.ns] + [e.ns for e in self.nodes.values()]

    # ---- build / tear down

    def create(self) -> None:
        """Build hub, bridge, node and client namespaces. On any error, destroy what was
        made and re-raise."""
        self.record = RunRecord(self.run_id)
        with _LIVE_LOCK:
            _LIVE[self.run_id] = self
        try:
            self._add_ns(self.hub)
            _run(["ip", "-n", self.hub, "link", "set", "lo", "up"])
            _run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
            _run(["ip", "-n", self.hub, "link", "set", "br0", "up"])
            for ep in [*self.nodes.values(), self.client]:
                self._add_ns(ep.ns)
                _run(["ip", "-n", self.hub, "link", "add", ep.hub_port, "type", "veth",
                      "peer", "name", "eth0", "netns", ep.ns])
                _run(["ip", "-n", self.hub, "link", "set", ep.hub_port, "master", "br0", "up"])
                _run(["ip", "-n", ep.ns, "link", "set", "lo", "up"])
                _run(["ip", "-n", ep.ns, "addr", "add", f"{ep.address}/24", "dev", "eth0"])
                _run(["ip", "-n", ep.ns, "link", "set", "eth0", "up"])
        except BaseException:
            self.destroy()
            raise

    def _add_ns(self, ns: str) -> None:
        assert self.record is not None
        self.record.add_namespace(ns)  # recorded before it exists
        _run(["ip", "netns", "add", ns])

    def destroy(self) -> list[str]:
        """Kill processes inside the namespaces, delete them, drop the run record."""
        with self._lock:
            if self._destroyed:
                return []
            self._destroyed = True
        log: list[str] = []
        if self.record is not None:
            killed = []
            for p in self.record.data["processes"]:
                if _kill_exact(int(p["pid"]), p.get("start")):
                    killed.append(int(p["pid"]))
            _wait_dead(killed)
        _destroy_namespaces(self.namespaces, log)
        if self.record is not None:
            self.record.remove()
        with _LIVE_LOCK:
            _LIVE.pop(self.run_id, None)
        return log

    # ---- processes

    def popen(self, ns: str, argv: Sequence[str], *, what: str, **kwargs: Any
              ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``ns`` (``ip netns exec`` execs it, so the pid is the
        program's own) and record its pid."""
        proc = subprocess.Popen(netns_exec(ns, argv), **kwargs)
        if self.record is not None:
            self.record.add_process(proc.pid, what)
        return proc

    # ---- faults

    def apply(self, fault_id: str, links: Iterable[Link]) -> None:
        """Install the links of one fault, one chain ``hakv-<fault_id>`` per receiving
        namespace (one ``iptables-restore`` call each)."""
        chain = self._chain(fault_id)
        per_dst: dict[str, list[Link]] = {}
        for link in links:
            if link.src not in self.nodes or link.dst not in self.nodes:
                raise ValueError(f"link {link} names a node outside this network")
            per_dst.setdefault(link.dst, []).append(link)
        done: list[str] = []
        try:
            for dst, dst_links in per_dst.items():
                lines = ["*filter", f":{chain} - [0:0]"]
                for link in dst_links:
                    rule = f"-A {chain} -s {self.address(link.src)}/32"
                    if link.probability is not None:
                        rule += (f" -m statistic --mode random --probability "
                                 f"{link.probability:.6f}")
                    lines.append(rule + " -j DROP")
                lines += [f"-I INPUT 1 -j {chain}", "COMMIT", ""]
                ns = self.ns_of(dst)
                _run(netns_exec(ns, ["iptables-restore", "-w", "--noflush"]),
                     stdin="\n".join(lines))
                done.append(ns)
        finally:
            with self._lock:
                self._chains.setdefault(fault_id, []).extend((ns, "INPUT") for ns in done)

    @staticmethod
    def _chain(fault_id: str) -> str:
        chain = f"hakv-{fault_id}"
        if len(chain) > 28:
            raise ValueError(f"fault id {fault_id!r} too long for an iptables chain name")
        return chain

    def apply_delay(self, fault_id: str, delay: Delay, queue: int, *, seed: int = 0,
                    log: Path | None = None, ready_timeout: float = 10.0) -> int:
        """Start a delayer for ``delay`` in the delayed node's namespace (NFQUEUE queue
        ``queue``), wait until it is bound, then queue the node's packets to ``delay.to``
        there (chain ``hakv-<fault_id>`` in OUTPUT, ``--queue-bypass``). Returns the
        delayer's pid. Raises DelayUnavailable when the delayer cannot run here."""
        from chaos import delay as delay_mod

        chain = self._chain(fault_id)
        if not 0 <= queue <= 65535:
            raise ValueError(f"NFQUEUE queue number must be in 0..65535, got {queue}")
        for n in (delay.node, *delay.to):
            if n not in self.nodes:
                raise ValueError(f"delay {delay} names a node outside this network")
        why = delay_mod.available()
        if why is not None:
            raise DelayUnavailable(why)
        ns = self.ns_of(delay.node)
        argv = [sys.executable, "-m", "chaos.delay", "--queue", str(queue),
                "--delay", f"{delay.seconds:.6f}", "--jitter", f"{delay.jitter:.6f}",
                "--seed", str(seed)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        errf = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = self.popen(ns, argv, what=f"delayer {fault_id} ({delay.node})",
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf,
                              env=env, start_new_session=True, close_fds=True)
        finally:
            if log is not None:
                errf.close()  # type: ignore[union-attr]
        with self._lock:
            self._delayers[fault_id] = proc  # before anything can fail: heal stops it
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], ready_timeout)
        line = proc.stdout.readline().decode(errors="replace").strip() if ready else ""
        if not line.startswith("ready"):
            self._stop_delayer(fault_id)
            where = f" (see {log})" if log is not None else ""
            raise NetnsError(f"delayer for {fault_id} did not start within "
                             f"{ready_timeout:g}s: exit {proc.returncode}{where}")
        lines = ["*filter", f":{chain} - [0:0]"]
        lines += [f"-A {chain} -d {self.address(dst)}/32 -j NFQUEUE --queue-num {queue} "
                  "--queue-bypass" for dst in delay.to]
        lines += [f"-I OUTPUT 1 -j {chain}", "COMMIT", ""]
        try:
            _run(netns_exec(ns, ["iptables-restore", "-w", "--noflush"]),
                 stdin="\n".join(lines))
        except BaseException:
            self._stop_delayer(fault_id)
            raise
        with self._lock:
            self._chains.setdefault(fault_id, []).append((ns, "OUTPUT"))
        return proc.pid

    def _stop_delayer(self, fault_id: str, timeout: float = 3.0) -> None:
        """SIGTERM the fault's delayer (it releases what it holds), SIGKILL if it lingers;
        by the exact pid it was started with."""
        with self._lock:
            proc = self._delayers.pop(fault_id, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def delayer_pids(self) -> dict[str, int]:
        """Running delayers by fault id (for tests and reports)."""
        with self._lock:
            return {f: p.pid for f, p in self._delayers.items() if p.poll() is None}

    def heal(self, fault_id: str) -> None:
        """Remove one fault's chains (the others stay) and stop its delayer, if any."""
        chain = self._chain(fault_id)
        with self._lock:
            chains = self._chains.pop(fault_id, [])
        errors = []
        for ns, hook in chains:
            text = "\n".join(["*filter", f"-D {hook} -j {chain}", f"-F {chain}", f"-X {chain}",
                              "COMMIT", ""])
            proc = _run(netns_exec(ns, ["iptables-restore", "-w", "--noflush"]), stdin=text,
                        check=False)
            if proc.returncode != 0:
                errors.append(f"{ns}: {proc.stderr.strip()}")
        self._stop_delayer(fault_id)
        if errors:
            self.heal_all()
            raise NetnsError(f"healing {fault_id} failed, flushed everything: "
                             + "; ".join(errors))

    def heal_all(self) -> None:
        """Flush and delete every rule and chain in every node namespace; stop every
        delayer."""
        with self._lock:
            self._chains.clear()
            delayers = list(self._delayers)
        for ep in self.nodes.values():
            _run(netns_exec(ep.ns, ["iptables-restore", "-w"]),
                 stdin="*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
                       ":OUTPUT ACCEPT [0:0]\nCOMMIT\n")
        for fault_id in delayers:
            self._stop_delayer(fault_id)

    def rules(self, node: str) -> str:
        """``iptables -S`` of a node namespace (for reports and tests)."""
        return _run(netns_exec(self.ns_of(node), ["iptables", "-w", "-S"])).stdout
