"""The access workload: three identities send allowed and forbidden operations everywhere.

Before the run the harness calls ``setup`` with the cluster's root client: the roles and
users of ``chaos.checkers.access.POLICY`` / ``USERS`` (grants on each workload group), a
client certificate per user (``certs_dir``), and the seed keys ``a/open/seed``,
``a/closed/seed``. It returns once every node applies the grants.

During the run, ``clients`` threads per identity (``chaos-writer``: read+write
``a/open/``; ``chaos-reader``: read ``a/``; ``chaos-nobody``: a valid certificate, no user
record) each loop until ``until``: pick a node at random — owners serve, non-owners
forward, so both paths of the access check are exercised — and one operation of
``MENU`` (puts, deletes, gets, ranges, a txn mixing an allowed and a forbidden put, a
lease grant), and record it as an ``AccessOp``: ``denied`` for 401/403, else ok / fail /
unknown as in ``chaos.workload.classify``. Every put carries a unique value.

After ``until`` (faults healed) the root identity reads the group's ``a/`` once
(``AccessFinal``), retrying until ``drain_until``. Checked by
``chaos.checkers.access.check_access``.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos.checkers.access import POLICY, PREFIX, USERS
from chaos.workload import classify
from hakv.client import Op
from hakv.client.client import Client
from hakv.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError

if TYPE_CHECKING:
    from chaos.workload_coord import CoordSpec, Journal

__all__ = ["MENU", "run", "setup"]

#: (op, keys) templates; ``{n}`` becomes a small key number. A txn's ops are its puts.
MENU: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("put", ("a/open/k{n}",)),
    ("put", ("a/closed/k{n}",)),
    ("delete", ("a/closed/k{n}",)),
    ("delete", ("a/open/k{n}",)),
    ("get", ("a/open/k{n}",)),
    ("get", ("a/closed/k{n}",)),
    ("range", ("a/open/",)),
    ("range", ("a/closed/",)),
    ("range", ("a/",)),
    ("txn", ("a/open/t{n}", "a/closed/t{n}")),
    ("lease_grant", ()),
)
KEYS = 4  # k0..k3: small, so reads see what (forbidden) writes may have left


def setup(root: Client, groups: list[str], certs_dir: Path, endpoints: dict[str, str],
          timeout: float = 20.0) -> None:
    """The workload's roles, users, certificates and seed keys (idempotent); returns
    once every node serves the writer's read of ``a/open/seed``."""
    import datetime as dt

    from hakv.security import certs

    now = dt.datetime.now(dt.UTC)
    for user in USERS:
        if not (certs_dir / f"client.{user}.crt").exists():
            certs.client_cert(certs_dir, user, now=now)
    for role, grants in POLICY.items():
        root.admin.add_role(role)
        for group in groups:
            for verbs, prefix in grants:
                root.admin.grant(role, group, list(verbs), prefix=prefix)
    for user, roles in USERS.items():
        if roles:
            root.admin.add_user(user, list(roles))
    for group in groups:
        root.put(group, "a/open/seed", "root-open")
        root.put(group, "a/closed/seed", "root-closed")
    deadline = time.monotonic() + timeout
    for node, endpoint in endpoints.items():
        with _client(certs_dir, "chaos-writer", endpoint, 2.0) as writer:
            while True:
                try:
                    writer.get(groups[0], "a/open/seed")
                    break
                except Exception as exc:  # noqa: BLE001 - retried until the deadline
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"node {node} never granted chaos-writer's read: "
                                           f"{exc}") from exc
                    time.sleep(0.2)


def _client(certs_dir: Path, user: str, endpoint: str, timeout: float) -> Client:
    return Client([endpoint], timeout=timeout, cacert=str(certs_dir / "ca.crt"),
                  cert=str(certs_dir / f"client.{user}.crt"),
                  key=str(certs_dir / f"client.{user}.key"),
                  client_id=f"chaos-access-{user}-{uuid.uuid4().hex[:8]}")


class _Caller:
    def __init__(self, spec: CoordSpec, user: str, index: int, journal: Journal,
                 stop: threading.Event) -> None:
        self.spec, self.user, self.index, self.journal, self.stop = (
            spec, user, index, journal, stop)
        self.rng = spec.rng(f"{user}{index}")
        self.pid = spec.process_base() + 3000 + 10 * list(USERS).index(user) + index
        certs_dir = Path(spec.options["certs_dir"])
        self.nodes: list[str] = list(spec.options["nodes"])
        self.clients = {node: _client(certs_dir, user, ep, spec.timeout)
                        for node, ep in zip(self.nodes, spec.endpoints, strict=True)}
        self.think = float(spec.options.get("think", 0.02))
        self.n = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set() and time.monotonic() < self.spec.until:
                self.once()
                self.stop.wait(self.rng.uniform(0, 2 * self.think))
        finally:
            for c in self.clients.values():
                c.close()

    def once(self) -> None:
        op, templates = self.rng.choice(MENU)
        k = self.rng.randrange(KEYS)
        keys = [t.format(n=k) for t in templates]
        node = self.rng.choice(self.nodes)
        client, group = self.clients[node], self.spec.group
        self.n += 1
        values = [f"{self.user}-{self.index}-{self.n}-{i}" for i in range(len(keys))]
        row: dict[str, Any] = {
            "kind": "access", "user": self.user, "op": op, "keys": keys, "status": "unknown",
            "start": time.monotonic(), "end": None, "node": node, "group": group,
            "process": self.pid, "ops": ["put"] * len(keys) if op == "txn" else [],
            "values": values if op in ("put", "txn") else [], "read": {}, "error": ""}
        self.journal.begin(row)
        read: dict[str, str] = {}
        try:
            if op == "put":
                client.put(group, keys[0], values[0])
            elif op == "delete":
                client.delete(group, keys[0])
            elif op == "get":
                try:
                    read[keys[0]] = client.get(group, keys[0]).value
                except NotFoundError:
                    pass
            elif op == "range":
                read = {kv.key: kv.value for kv in client.range(group, keys[0], limit=100).kvs}
            elif op == "txn":
                client.txn(group, [], [Op.put(key, v) for key, v in zip(keys, values,
                                                                          strict=True)])
            else:
                lease = client.lease_grant(group, 5.0)
                client.lease_revoke(group, lease.id)
        except (PermissionDeniedError, UnauthenticatedError) as exc:
            self.journal.finish(row, status="denied", error=exc.code, end=time.monotonic())
            return
        except Exception as exc:  # noqa: BLE001 - recorded with its outcome
            status, output = classify(exc)
            self.journal.finish(row, status=status, error=output, end=time.monotonic())
            return
        self.journal.finish(row, status="ok", read=read, end=time.monotonic())


def run(spec: CoordSpec, journal: Journal, stop: threading.Event) -> None:
    callers = [_Caller(spec, user, i, journal, stop)
               for user in USERS for i in range(int(spec.options.get("clients", 1)))]
    threads = [threading.Thread(target=c.run, name=f"access-{c.user}-{c.index}", daemon=True)
               for c in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _final(spec, journal, stop)


def _final(spec: CoordSpec, journal: Journal, stop: threading.Event) -> None:
    """The root identity (the environment's client files) reads ``a/`` once."""
    error = "not tried"
    with Client(spec.endpoints, timeout=spec.timeout) as root:
        while time.monotonic() < spec.drain_until and not stop.is_set():
            try:
                kvs = root.range(spec.group, PREFIX, limit=10000).kvs
            except Exception as exc:  # noqa: BLE001 - retried until the drain deadline
                error = f"{type(exc).__name__}: {exc}"
                stop.wait(0.3)
                continue
            journal.add({"kind": "access-final", "group": spec.group,
                         "values": {kv.key: kv.value for kv in kvs}, "status": "ok",
                         "error": ""})
            return
    journal.add({"kind": "access-final", "group": spec.group, "values": {},
                 "status": "fail", "error": error})
