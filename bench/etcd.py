"""The reference the throughput target is stated against: etcd 3.4, measured here and now.

Issue 2 asks for at least the rates etcd 3.4 reaches with a Python client *on the same
machine*. RAFT-NOTES.md measured that once (~840 writes/s at 1 client, ~3,700 at 64), but
this shared machine's speed drifts by ±30 % within an hour, so a figure from another hour
says little about a run now. ``python -m bench.throughput --etcd`` therefore starts a
3-member etcd on loopback beside the hakv group and measures both in alternating cells,
with the same load generator and the same keep-alive HTTP transport
(:class:`hakv.client.connection.Connection`) talking to etcd's JSON gateway, as RAFT-NOTES.md did.

etcd runs with its defaults: WAL fsync before every acknowledged write, linearizable
ranges (a ReadIndex round per read). Installing it: ``apt-get install etcd-server``
(Debian ships 3.4.23); :func:`etcd_binary` finds it on ``PATH`` or in ``$HAKV_ETCD``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from hakv.client.connection import Connection as _Connection
from tests.support import free_ports


class EtcdMissing(RuntimeError):
    """No etcd binary to compare against."""


def etcd_binary() -> str:
    found = os.environ.get("HAKV_ETCD") or shutil.which("etcd")
    if not found:
        raise EtcdMissing("etcd not found: apt-get install -y etcd-server (3.4), "
                          "or set HAKV_ETCD to an etcd 3.4 binary")
    return found


def etcd_version() -> str:
    """``etcd 3.4.23``: the first line of ``etcd --version`` of :func:`etcd_binary`."""
    out = subprocess.run([etcd_binary(), "--version"], capture_output=True, text=True,
                         timeout=30).stdout
    first = out.splitlines()[0] if out else "etcd (version unknown)"
    return first.replace("Version: ", "").strip().lower()


class EtcdCluster:
    """Three etcd members on 127.0.0.1, data under ``directory``; stopped by :meth:`down`."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.directory = directory
        ports = free_ports(2 * size)
        self.names = [f"e{i + 1}" for i in range(size)]
        self.client_ports = ports[:size]
        self.peer_ports = ports[size:]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def up(self, timeout: float = 30.0) -> None:
        binary = etcd_binary()
        initial = ",".join(f"{n}=http://127.0.0.1:{p}"
                           for n, p in zip(self.names, self.peer_ports, strict=True))
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, cport, pport in zip(self.names, self.client_ports, self.peer_ports,
                                      strict=True):
            log = open(self.directory / f"{name}.log", "wb")  # noqa: SIM115 (child keeps it)
            self.procs.append(subprocess.Popen(
                [binary, "--name", name, "--data-dir", str(self.directory / name),
                 "--listen-client-urls", f"http://127.0.0.1:{cport}",
                 "--advertise-client-urls", f"http://127.0.0.1:{cport}",
                 "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"hakv-bench-{os.getpid()}",
                 "--log-outputs", "stderr", "--logger", "zap"],
                stdout=log, stderr=log, start_new_session=True))
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.leader_endpoint() is not None:
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"etcd exited with {p.returncode}; see {self.directory}")
            time.sleep(0.2)
        raise RuntimeError(f"etcd elected no leader within {timeout:.0f} s; see {self.directory}")

    def leader_endpoint(self) -> str | None:
        """The client endpoint of the member that is leader, once one is."""
        for endpoint in self.endpoints:
            try:
                with EtcdClient(endpoint) as client:
                    status = client.call("/v3/maintenance/status", {})
            except OSError:
                continue
            leader = status.get("leader")
            if leader and leader == status.get("header", {}).get("member_id"):
                return endpoint
        return None

    def down(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


class EtcdClient:
    """put / linearizable get over etcd's JSON gateway, on one keep-alive connection."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        host, _, port = endpoint.rpartition(":")
        self.conn = _Connection(host, int(port), timeout)
        self.conn.connect()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def call(self, path: str, body: dict[str, str]) -> dict:  # type: ignore[type-arg]
        self.conn.request(path, json.dumps(body).encode())
        status, data = self.conn.response()
        if status != 200:
            raise RuntimeError(f"etcd {path} answered {status}: {data[:200]!r}")
        answer = json.loads(data)
        assert isinstance(answer, dict)
        return answer

    def put(self, key: str, value: str) -> None:
        self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def get(self, key: str) -> str | None:
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
