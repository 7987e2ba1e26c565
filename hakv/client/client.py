"""The client library: ``hakv.Client`` speaks the HTTP/JSON client API (docs/api.md).

::

    from hakv.client import Client, Compare, Op

    with Client("127.0.0.1:8202,127.0.0.1:8208") as c:
        c.put("220", "color", "blue")
        kv = c.get("220", "color")                      # linearizable by default
        r = c.txn("220",
                  compare=[Compare.version("lock", "==", 0)],
                  success=[Op.put("lock", "me")],
                  failure=[Op.get("lock")])

Retries and failover (one policy for every call):

- connection errors, retryable server errors (``no_quorum``, ``not_leader``,
  ``unavailable``) and ``outcome_unknown`` → try the next endpoint, with a small backoff
  (50 ms doubling to 500 ms), until the client's ``timeout`` has elapsed overall;
- every write carries this client's id and a sequence number; a retry reuses both, so the
  group's state machine returns the first result and never applies a write twice;
- when time runs out: a write any attempt of which may have reached a server (sent but no
  answer, or ``outcome_unknown``) raises :class:`~hakv.errors.OutcomeUnknownError` — it may
  or may not have applied; otherwise the last retryable error (``NoQuorumError`` ...) or
  ``UnavailableError("no endpoint answered: ...")``;
- permanent errors (``not_found``, ``conflict``, ``bad_request`` ...) are raised at once;
  a malformed answer is an :class:`~hakv.errors.InternalError` naming the endpoint.

Operators reach the membership and HA operations as ``client.admin``
(:class:`hakv.client.admin.Admin`): ``c.admin.show()``, ``c.admin.move("220", "208")`` ...

Connections: HTTP/1.1 keep-alive, one connection per endpoint per thread (a ``Client`` may
be shared between threads), TCP_NODELAY, and each request goes out in one ``send`` (headers
and body together), so neither Nagle nor delayed ACKs add latency.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hakv.client import lease as lease_api
from hakv.client.admin import Admin
from hakv.client.connection import (
    CONNECT_TIMEOUT_MAX,
    ConnectFailed,
    Connection,
    Malformed,
    decode_answer,
    describe_oserror,
    exchange,
    probe,
    split_endpoint,
)
from hakv.client.lease import Lease, LeaseTtl
from hakv.client.results import (
    DeleteResult,
    GetResult,
    KeyValue,
    PutResult,
    RangeResult,
    TxnResult,
    parse,
    want,
)
from hakv.client.txn import Compare, Op
from hakv.client.watch import Watch, WatchBatch
from hakv.errors import (
    ConfigError,
    HakvError,
    InternalError,
    OutcomeUnknownError,
    RetryableError,
    UnavailableError,
)
from hakv.security.tls import TOKEN_ENV, client_context_from

if TYPE_CHECKING:
    from hakv.client.recipe.barrier import Barrier, DoubleBarrier
    from hakv.client.recipe.counter import Counter
    from hakv.client.recipe.election import Election
    from hakv.client.recipe.lock import Lock
    from hakv.client.recipe.queue import Queue
    from hakv.client.recipe.semaphore import Semaphore

__all__ = [
    "ENDPOINTS_ENV",
    "Client",
    "Compare",
    "DeleteResult",
    "GetResult",
    "KeyValue",
    "Op",
    "PutResult",
    "RangeResult",
    "TxnResult",
    "endpoints_from_env",
    "parse_endpoints",
    "probe",
]

ENDPOINTS_ENV = "HAKV_ENDPOINTS"

_BACKOFF_START = 0.05
_BACKOFF_MAX = 0.5
_REQUEST_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- endpoints


def parse_endpoints(endpoints: Sequence[str] | str) -> list[str]:
    """Normalise ``"h1:p1,h2:p2"`` or a list of ``"host:port"`` into a list of ``host:port``.

    An ``http://`` prefix and a trailing ``/`` are tolerated; IPv6 literals are written
    ``[::1]:8202``. Raises ConfigError naming the bad entry.
    """
    raw = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    result: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            raise ConfigError(f"endpoint {item!r} is not a string; use 'host:port'")
        entry = item.strip()
        if not entry:
            continue
        if entry.startswith("http://"):
            entry = entry[len("http://") :]
        entry = entry.rstrip("/")
        split_endpoint(entry)  # validates
        if entry not in result:
            result.append(entry)
    return result


def endpoints_from_env() -> list[str]:
    """The endpoints listed in ``$HAKV_ENDPOINTS`` (comma-separated), or an empty list."""
    return parse_endpoints(os.environ.get(ENDPOINTS_ENV, ""))


# --------------------------------------------------------------------------- client


class Client:
    """A client of one hakv cluster; see the module docstring for the retry policy.

    ``endpoints``: ``"host:port"`` strings (or one comma-separated string); None → the
    ``HAKV_ENDPOINTS`` environment variable. ``timeout``: seconds for a whole call, retries
    included. ``client_id``: the id writes are deduplicated under (default: a fresh uuid4).
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str | None = None,
        timeout: float = 5.0,
        client_id: str | None = None,
        *,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        tls: ssl.SSLContext | bool | None = None,
        token: str | None = None,
    ) -> None:
        eps = parse_endpoints(endpoints) if endpoints is not None else endpoints_from_env()
        #: HTTPS when a CA is named: ``cacert``/``cert``/``key`` (else HAKV_CACERT,
        #: HAKV_CERT, HAKV_KEY), or a ready ``ssl.SSLContext`` as ``tls``; ``tls=False``:
        #: plain HTTP whatever the environment says (a cluster run with --insecure).
        self.tls: ssl.SSLContext | None = (
            tls if isinstance(tls, ssl.SSLContext) else
            None if tls is False else client_context_from(cacert, cert, key))
        #: A bearer token (``hakv token create``) sent with every request; None: the
        #: ``HAKV_TOKEN`` environment variable, if set. A client certificate wins over it.
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        if not eps:
            raise ConfigError(
                "no endpoints: pass Client(endpoints=...) or set HAKV_ENDPOINTS=host:port,..."
            )
        if not timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout!r}")
        if client_id is not None and not 1 <= len(client_id) <= 128:
            raise ConfigError("client_id must be 1..128 characters")
        self.endpoints: tuple[str, ...] = tuple(eps)
        self.timeout = float(timeout)
        self.client_id: str = client_id or uuid.uuid4().hex
        self._addresses = {ep: split_endpoint(ep) for ep in self.endpoints}
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()
        self._local = threading.local()
        self._all_conns: set[Connection] = set()
        self._conns_lock = threading.Lock()
        # Index of the endpoint that answered last: start there next time, so a healthy
        # cluster costs no failover and a dead endpoint is skipped after one refusal.
        self._preferred = 0
        self._closed = False

    # ---- lifecycle

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """``close()`` was called: every call raises RuntimeError from now on."""
        return self._closed

    def close(self) -> None:
        """Close every pooled connection (of all threads). Idempotent."""
        self._closed = True
        with self._conns_lock:
            conns, self._all_conns = self._all_conns, set()
        for conn in conns:
            conn.close()

    def __repr__(self) -> str:
        return f"Client(endpoints={list(self.endpoints)!r}, client_id={self.client_id!r})"

    # ---- operators

    @property
    def admin(self) -> Admin:
        """Operator operations over this client (cluster membership, group records, HA:
        placement, move, maintenance, events): see :class:`hakv.client.admin.Admin`."""
        return Admin(self)

    # ---- key-value API

    def get(self, group: str, key: str, serializable: bool = False) -> KeyValue:
        """The record of ``key``; NotFoundError if absent. Linearizable unless
        ``serializable`` (then: the contacted member's local copy, possibly stale)."""
        body = self._call(
            "/v1/get", {"group": group, "key": key, "serializable": serializable}, write=False
        )
        return parse("/v1/get", lambda: KeyValue.from_wire(body["kv"]))

    def put(
        self, group: str, key: str, value: str, if_mod_revision: int | None = None,
        lease: int | None = None,
    ) -> PutResult:
        """Set ``key`` to ``value``. ``if_mod_revision``: only if the key's mod revision is
        this (0: only if the key does not exist), else ConflictError. ``lease``: attach
        the key to that lease (deleted with it; LeaseNotFoundError if it is gone); without
        it the key is detached from any lease."""
        req: dict[str, Any] = {"group": group, "key": key, "value": value}
        if if_mod_revision is not None:
            req["if_mod_revision"] = if_mod_revision
        if lease is not None:
            req["lease"] = lease
        body = self._call("/v1/put", req, write=True)
        return parse(
            "/v1/put",
            lambda: PutResult(
                revision=want(body, "revision", int),
                prev=KeyValue.from_wire_or_none(body.get("prev")),
            ),
        )

    def delete(self, group: str, key: str) -> DeleteResult:
        """Delete ``key``; ``deleted`` says whether it existed (absent is not an error)."""
        body = self._call("/v1/delete", {"group": group, "key": key}, write=True)
        return parse(
            "/v1/delete",
            lambda: DeleteResult(
                revision=want(body, "revision", int),
                deleted=want(body, "deleted", int),
                prev=KeyValue.from_wire_or_none(body.get("prev")),
            ),
        )

    def range(
        self, group: str, prefix: str = "", limit: int = 1000, serializable: bool = False
    ) -> RangeResult:
        """Keys starting with ``prefix``, sorted, at most ``limit`` (1..10000)."""
        body = self._call(
            "/v1/range",
            {"group": group, "prefix": prefix, "limit": limit, "serializable": serializable},
            write=False,
        )
        return parse(
            "/v1/range",
            lambda: RangeResult(
                kvs=[KeyValue.from_wire(kv) for kv in want(body, "kvs", list)],
                more=want(body, "more", bool),
                revision=want(body, "revision", int),
            ),
        )

    def txn(
        self,
        group: str,
        compare: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """If every compare holds run ``success``, else ``failure`` (atomically).
        A failed compare is not an error: ``succeeded`` is False."""
        req = {
            "group": group,
            "compare": [c.to_wire() for c in compare],
            "success": [o.to_wire() for o in success],
            "failure": [o.to_wire() for o in failure],
        }
        body = self._call("/v1/txn", req, write=True)

        def build() -> TxnResult:
            succeeded = want(body, "succeeded", bool)
            revision = want(body, "revision", int)
            ops = success if succeeded else failure
            raw = want(body, "results", list)
            if len(raw) != len(ops):
                raise TypeError(f"{len(raw)} results for {len(ops)} operations")
            results: list[PutResult | DeleteResult | GetResult] = []
            for op, res in zip(ops, raw, strict=True):
                if not isinstance(res, Mapping):
                    raise TypeError(f"txn result should be an object, got {res!r}")
                prev = KeyValue.from_wire_or_none(res.get("prev"))
                if op.op == "put":
                    results.append(PutResult(want(res, "revision", int), prev))
                elif op.op == "delete":
                    results.append(DeleteResult(revision, want(res, "deleted", int), prev))
                else:
                    results.append(GetResult(KeyValue.from_wire_or_none(res.get("kv"))))
            return TxnResult(succeeded, revision, results)

        return parse("/v1/txn", build)

    # ---- watches (hakv.client.watch)

    def watch(self, group: str, prefix: str = "", start_revision: int | str | None = None,
              prev_kv: bool = False, *, key: str | None = None,
              callback: Callable[[WatchBatch], Any] | None = None, progress: bool = False,
              poll_timeout: float = 10.0) -> Watch:
        """Watch ``prefix`` (or one ``key``) of ``group``: an iterator and context manager
        of :class:`~hakv.client.watch.WatchBatch`, one whole revision each, resumed from
        its cursor across endpoint failures. ``start_revision``: None (after the current
        revision), a revision, or ``"snapshot"`` (the keys first, then what follows).
        ``callback``: run in a thread, called per batch. See :mod:`hakv.client.watch`."""
        w = Watch(self, group, prefix, start_revision, prev_kv, key=key, progress=progress,
                  poll_timeout=poll_timeout)
        return w.run_callback(callback) if callback is not None else w

    # ---- leases (hakv.client.lease)

    def lease_grant(self, group: str, ttl: float, id: int | None = None) -> Lease:
        """Grant a lease of ``ttl`` seconds (``id``: choose it). Keep it alive with
        ``lease.keepalive()``, or use it as a context manager (auto-keepalive, revoked on
        exit)."""
        return lease_api.grant(self, group, ttl, id)

    def lease(self, group: str, ttl: float,
              on_lost: Callable[[Lease], None] | None = None) -> Lease:
        """A lease for ``with client.lease(group, ttl, on_lost) as lease:``: granted now,
        kept alive every ttl/3 inside the block, revoked at its end (hakv.client.lease)."""
        return lease_api.grant(self, group, ttl, on_lost=on_lost)

    def lease_keepalive(self, group: str, id: int) -> float:
        """Keep lease ``id`` alive once: its TTL (seconds); LeaseNotFoundError if gone."""
        return lease_api.keepalive(self, group, id)

    def lease_revoke(self, group: str, id: int) -> int:
        """Revoke lease ``id``: its keys are deleted in one revision; how many."""
        return lease_api.revoke(self, group, id)

    def lease_ttl(self, group: str, id: int, keys: bool = False) -> LeaseTtl:
        """Seconds left, the granted TTL and (``keys``) the attached keys of lease ``id``."""
        return lease_api.time_to_live(self, group, id, keys)

    # ---- recipes (hakv.client.recipe)

    def lock(self, group: str, name: str, ttl: float = 10.0, *,
             timeout: float | None = None, value: str = "",
             on_lost: Callable[[Lock], None] | None = None) -> Lock:
        """A fair lock with a fencing token: ``with client.lock(group, name, ttl) as
        lock:`` (``lock.fence``, ``lock.lost``, ``lock.put(...)`` only while held). See
        :mod:`hakv.client.recipe.lock`."""
        from hakv.client.recipe.lock import Lock

        return Lock(self, group, name, ttl, timeout=timeout, value=value, on_lost=on_lost)

    def election(self, group: str, name: str, ttl: float = 10.0, *,
                 on_lost: Callable[[Election], None] | None = None) -> Election:
        """Leader election: ``.campaign(value)``, ``.leader()``, ``.observe()``,
        ``.proclaim(value)``, ``.resign()``. See :mod:`hakv.client.recipe.election`."""
        from hakv.client.recipe.election import Election

        return Election(self, group, name, ttl, on_lost=on_lost)

    def counter(self, group: str, key: str, default: int = 0) -> Counter:
        """An atomic integer counter in ``key`` (:mod:`hakv.client.recipe.counter`)."""
        from hakv.client.recipe.counter import Counter

        return Counter(self, group, key, default)

    def semaphore(self, group: str, name: str, limit: int, ttl: float = 10.0, *,
                  timeout: float | None = None, value: str = "",
                  on_lost: Callable[[Semaphore], None] | None = None) -> Semaphore:
        """A fair counting semaphore: at most ``limit`` holders at once, ``with
        client.semaphore(group, name, limit, ttl) as slot:`` (``slot.lost``,
        ``slot.valid_until()``). See :mod:`hakv.client.recipe.semaphore`."""
        from hakv.client.recipe.semaphore import Semaphore

        return Semaphore(self, group, name, limit, ttl, timeout=timeout, value=value,
                         on_lost=on_lost)

    def barrier(self, group: str, name: str) -> Barrier:
        """A barrier: ``.create()``, ``.remove()``, ``.wait(timeout)`` blocks while it is
        up. See :mod:`hakv.client.recipe.barrier`."""
        from hakv.client.recipe.barrier import Barrier

        return Barrier(self, group, name)

    def double_barrier(self, group: str, name: str, count: int, ttl: float = 10.0, *,
                       value: str = "",
                       on_lost: Callable[[DoubleBarrier], None] | None = None
                       ) -> DoubleBarrier:
        """A double barrier for ``count`` participants: ``.enter()`` blocks until all
        entered, ``.leave()`` until all left. See :mod:`hakv.client.recipe.barrier`."""
        from hakv.client.recipe.barrier import DoubleBarrier

        return DoubleBarrier(self, group, name, count, ttl, value=value, on_lost=on_lost)

    def queue(self, group: str, name: str) -> Queue:
        """A priority queue: ``.put(value, priority=0)``, ``.get(timeout=None)`` (each item
        to one consumer, at most once), ``len()``. See :mod:`hakv.client.recipe.queue`."""
        from hakv.client.recipe.queue import Queue

        return Queue(self, group, name)

    # ---- status

    def status(self, endpoint: str | None = None) -> dict[str, Any]:
        """One node's own view (``/v1/status``): its groups, roles, terms, indexes.
        Without ``endpoint``: the first endpoint that answers."""
        if endpoint is not None:
            return probe(parse_endpoints(endpoint)[0], "/v1/status", self.timeout, self.tls,
                         self.token)
        return self._call("/v1/status", {}, write=False)

    def health(self, endpoint: str) -> dict[str, Any]:
        """``/v1/health`` of one endpoint, no retry."""
        return probe(parse_endpoints(endpoint)[0], "/v1/health", self.timeout, self.tls)

    def cluster_status(self) -> dict[str, Any]:
        """Every endpoint's ``/v1/status``, merged (asked in parallel, no retry)::

            {"cluster": name | None,
             "nodes": [{"endpoint", "node", "reachable", "error"}, ...],   # endpoint order
             "groups": {gid: {"owners", "leader", "term", "commit_index", "applied_index",
                              "revision", "quorum", "reported_by",
                              "members": {node: {"role", "term", "commit_index", "quorum"}}}}}

        Per group the freshest view wins: a leader that has quorum, highest term first;
        else the member with the highest (commit index, term). ``quorum`` is true when any
        reachable member reports it. Groups none of whose owners answered do not appear.
        """
        per_attempt = min(self.timeout, 2.0)

        def ask(ep: str) -> tuple[str, dict[str, Any] | None, str | None]:
            try:
                return ep, probe(ep, "/v1/status", per_attempt, self.tls, self.token), None
            except HakvError as err:
                return ep, None, f"{err.code}: {err.message}"

        with ThreadPoolExecutor(max_workers=min(16, len(self.endpoints))) as pool:
            answers = list(pool.map(ask, self.endpoints))
        return merge_status(answers)

    # ---- machinery

    def _next_seq(self) -> int:
        with self._seq_lock:
            return next(self._seq)

    def _conn(self, endpoint: str) -> Connection:
        pool: dict[str, Connection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get(endpoint)
        if conn is None:
            host, port = self._addresses[endpoint]
            conn = Connection(host, port, tls=self.tls, token=self.token)
            pool[endpoint] = conn
            with self._conns_lock:
                self._all_conns.add(conn)
        return conn

    def _endpoint_order(self) -> Iterator[tuple[int, str]]:
        start = self._preferred
        n = len(self.endpoints)
        for i in itertools.count():
            idx = (start + i) % n
            yield idx, self.endpoints[idx]


    def _call(self, path: str, request: dict[str, Any], *, write: bool,
              timeout: float | None = None) -> dict[str, Any]:
        """Send ``request`` until an answer, a permanent error or the deadline
        (``timeout`` seconds, default the client's)."""
        if self._closed:
            raise RuntimeError("this hakv Client is closed")
        if write:
            request = {**request, "client": self.client_id, "seq": self._next_seq()}
        body = _REQUEST_ENCODER.encode(request).encode("utf-8")
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        attempt_cap = max(1.0, budget / 2) if len(self.endpoints) > 1 else budget
        backoff = _BACKOFF_START
        maybe_applied = False  # a write attempt that may have reached a server
        last_server_error: HakvError | None = None
        failures: list[str] = []
        tried_this_round: set[int] = set()

        for idx, endpoint in self._endpoint_order():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            conn = self._conn(endpoint)
            reused = conn.sock is not None
            attempt = min(remaining, attempt_cap)
            connect_failed = False
            try:
                try:
                    status, data = exchange(
                        conn, path, body, attempt, min(attempt, CONNECT_TIMEOUT_MAX)
                    )
                except (
                    http.client.RemoteDisconnected,
                    BrokenPipeError,
                    ConnectionResetError,
                ) as err:
                    # Most likely a pooled keep-alive connection the server closed while
                    # idle: try once more on a fresh connection to the same endpoint. But
                    # a server that died while handling the request looks the same, so
                    # unless the send itself failed (EPIPE: the request never got in), a
                    # write counts as possibly applied.
                    conn.close()
                    if not reused:
                        raise
                    if not isinstance(err, BrokenPipeError):
                        maybe_applied = maybe_applied or write
                    status, data = exchange(
                        conn, path, body, attempt, min(attempt, CONNECT_TIMEOUT_MAX)
                    )
                answer = decode_answer(endpoint, path, status, data)
            except ConnectFailed as err:
                connect_failed = True
                failures.append(f"{endpoint}: {err}")
            except Malformed as err:
                raise InternalError(f"malformed answer from {endpoint} to {path}: {err}") from None
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                maybe_applied = maybe_applied or write
                failures.append(f"{endpoint}: {describe_oserror(err)}")
            except OutcomeUnknownError as err:
                maybe_applied = maybe_applied or write
                last_server_error = err
                failures.append(f"{endpoint}: {err.code}: {err.message}")
            except RetryableError as err:
                last_server_error = err
                failures.append(f"{endpoint}: {err.code}: {err.message}")
            else:
                self._preferred = idx
                return answer

            # Fail over to an endpoint not yet tried this round at once after a refused
            # connection; otherwise back off a little (elections take a few hundred ms).
            tried_this_round.add(idx)
            if len(tried_this_round) >= len(self.endpoints):
                tried_this_round.clear()
            elif connect_failed:
                continue
            pause = min(backoff, deadline - time.monotonic())
            if pause > 0:
                time.sleep(pause)
            backoff = min(backoff * 2, _BACKOFF_MAX)

        recent = "; ".join(failures[-len(self.endpoints) :]) or "no attempt"
        if maybe_applied:
            raise OutcomeUnknownError(
                f"no answer within {self.timeout:g}s; the write may or may not have applied "
                f"(retry with the same client id and seq is safe). Last: {recent}",
                client=self.client_id,
                seq=request["seq"],
            )
        if last_server_error is not None and not isinstance(last_server_error, OutcomeUnknownError):
            raise last_server_error
        raise UnavailableError(f"no endpoint answered within {self.timeout:g}s: {recent}")


# --------------------------------------------------------------------------- status merge


def _int_or(value: Any, default: int = -1) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _view_rank(view: Mapping[str, Any]) -> tuple[int, int, int]:
    term = _int_or(view.get("term"))
    commit = _int_or(view.get("commit_index"))
    if view.get("role") == "leader" and view.get("quorum") is True:
        return (1, term, commit)
    return (0, commit, term)


def merge_status(
    answers: Sequence[tuple[str, dict[str, Any] | None, str | None]],
) -> dict[str, Any]:
    """Merge ``(endpoint, /v1/status answer or None, error or None)`` triples into the
    shape documented at :meth:`Client.cluster_status`. Pure; tested on its own."""
    nodes: list[dict[str, Any]] = []
    views: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    cluster: str | None = None
    for endpoint, answer, error in answers:
        node_id = answer.get("node") if isinstance(answer, dict) else None
        own_groups = answer.get("groups") if isinstance(answer, dict) else None
        statuses = answer.get("node_status") if isinstance(answer, dict) else None
        own_status = statuses.get(node_id) if isinstance(statuses, dict) else None
        nodes.append(
            {
                "endpoint": endpoint,
                "node": node_id if isinstance(node_id, str) else None,
                "reachable": answer is not None,
                "error": error,
                "groups": sorted(g for g in own_groups if not g.startswith("_"))
                if isinstance(own_groups, dict) else [],
                "sphere_of_influence": (answer or {}).get("sphere_of_influence") or [],
                "status": own_status.get("status") if isinstance(own_status, dict) else None,
            }
        )
        if answer is None:
            continue
        if cluster is None and isinstance(answer.get("cluster"), str):
            cluster = answer["cluster"]
        groups = answer.get("groups")
        if not isinstance(groups, dict):
            continue
        for gid, view in groups.items():
            if isinstance(view, dict):
                views.setdefault(str(gid), []).append((str(node_id or endpoint), view))

    merged: dict[str, Any] = {}
    for gid in sorted(views):
        reporter, best = max(views[gid], key=lambda item: _view_rank(item[1]))
        merged[gid] = {
            "owners": list(best.get("owners") or []),
            "leader": best.get("leader"),
            "term": best.get("term"),
            "commit_index": best.get("commit_index"),
            "applied_index": best.get("applied_index"),
            "revision": best.get("revision"),
            "app": best.get("app"),
            "quorum": any(view.get("quorum") is True for _, view in views[gid]),
            "reported_by": reporter,
            "members": {
                node: {
                    "role": view.get("role"),
                    "term": view.get("term"),
                    "commit_index": view.get("commit_index"),
                    "quorum": view.get("quorum"),
                }
                for node, view in sorted(views[gid])
            },
        }
    return {"cluster": cluster, "nodes": nodes, "groups": merged}
