"""The one error tree of hakv, grouped by what the caller should do.

::

    HakvError
    ├── RetryableError            try again (same request id), maybe at another endpoint
    │   ├── NoQuorumError         the group has no majority of its owners reachable
    │   ├── NotLeaderError        internal: this member cannot order writes right now
    │   ├── UnavailableError      no endpoint answered / node shutting down
    │   ├── FutureRevisionError   a watch from a revision this replica has not applied
    │   ├── TooManyWatchesError   the node parks its maximum of waiting watches
    │   └── LockTimeoutError      client side: a lock, semaphore or election not won in time
    ├── OutcomeUnknownError       timed out: the write may or may not have applied;
    │                             retrying with the same request id is safe (deduplicated)
    ├── PermanentError            do not retry unchanged
    │   ├── BadRequestError       malformed request (missing field, wrong type, bad JSON)
    │   │   └── LeaseTtlError     a lease TTL out of range
    │   ├── RequestTooLargeError  key, value or whole request above the documented limits
    │   ├── UnknownGroupError     no such resource group in the topology
    │   ├── NotFoundError         key does not exist
    │   │   └── LeaseNotFoundError  lease never granted, revoked or expired
    │   ├── ConflictError         a compare (expected version / revision / value) failed
    │   │   ├── LockLostError     client side: the lock is no longer held (lease lost,
    │   │   │   │                 key gone); a guarded write did not apply
    │   │   │   └── LeadershipLostError  the same for an election's leader
    │   │   └── SemaphoreLimitError  client side: a semaphore was asked for with another
    │   │                         limit than the one its first contender stored
    │   ├── RequestExpiredError   a retry older than the dedup window: outcome unknowable
    │   ├── CompactedError        a watch from a revision the history no longer holds
    │   ├── BackupError           a backup file is truncated, corrupt or not one
    │   ├── UnauthenticatedError  no client certificate (or token) the node accepts
    │   └── PermissionDeniedError the caller's identity may not do this
    ├── ConfigError               topology file or data dir is wrong; the message says how
    │   ├── TopologyError
    │   ├── DataDirError
    │   └── CertificateError  a certificate, key or certs dir is wrong (hakv.security)
    │       ├── CertificateMissingError     a certificate or key file does not exist
    │       ├── CertificateExistsError      refusing to overwrite a certificate or key
    │       ├── CertificateExpiredError     past its not-after time
    │       ├── CertificateNotYetValidError before its not-before time (clock?)
    │       └── CertificateWrongCAError     not signed by the CA it was checked against
    └── InternalError             a bug or a malformed answer: report it

    FatalError                    not a HakvError, never on the wire: the node must stop
    └── StorageFailure            LMDB (or the disk under it) failed; the node crash-stops
                                  and the Raft log replays the entry when it restarts

Every HakvError has a stable ``code`` (used on the wire), an HTTP status for the client
API and an exit code for the CLI. ``from_wire`` maps a wire error back to its class through
one table, as kazoo does it; the table fills itself: every class that declares its own
``code`` is registered when it is defined (``HakvError.__init_subclass__``), so no class
can be left out, and two classes claiming one code fail at import.
"""

from __future__ import annotations

from typing import Any, ClassVar

#: code -> class, filled by ``HakvError.__init_subclass__`` (read by ``from_wire``).
_BY_CODE: dict[str, type[HakvError]] = {}


class HakvError(Exception):
    """Base of every error hakv raises on purpose."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1
    retryable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register every class that declares its own ``code``: it is what the wire
        carries, so it must map back to exactly this class."""
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            taken = _BY_CODE.get(cls.code)
            if taken is not None and taken.__qualname__ != cls.__qualname__:
                raise TypeError(f"error code {cls.code!r} of {cls.__qualname__} is already "
                                f"used by {taken.__qualname__}")
            _BY_CODE[cls.code] = cls

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.details:
            body["details"] = self.details
        return {"error": body}


class RetryableError(HakvError):
    retryable = True
    http_status = 503
    exit_code = 3


class NoQuorumError(RetryableError):
    code = "no_quorum"


class NotLeaderError(RetryableError):
    code = "not_leader"


class UnavailableError(RetryableError):
    code = "unavailable"


class FutureRevisionError(RetryableError):
    """A watch asked for a revision this replica had not applied within the long-poll's
    timeout: it lags, or the revision does not exist yet. Try another owner, or watch from
    ``head_revision + 1`` (hakv.node.watch)."""

    code = "future_revision"


class TooManyWatchesError(RetryableError):
    """This node already parks its maximum of waiting watches (hakv.node.watch): retry
    later or at another endpoint."""

    code = "too_many_watches"


class LockTimeoutError(RetryableError):
    """Client side (hakv.client.recipe): a lock or a semaphore slot was not acquired, or
    an election not won, within the caller's timeout; the contender left the queue. Try
    again later."""

    code = "lock_timeout"
    exit_code = 10


class OutcomeUnknownError(HakvError):
    code = "outcome_unknown"
    http_status = 504
    exit_code = 4
    retryable = True


class PermanentError(HakvError):
    http_status = 400
    exit_code = 2


class BadRequestError(PermanentError):
    code = "bad_request"


class RequestTooLargeError(PermanentError):
    code = "too_large"
    http_status = 413


class UnknownGroupError(PermanentError):
    code = "unknown_group"
    http_status = 404


class NotFoundError(PermanentError):
    code = "not_found"
    http_status = 404
    exit_code = 5


class ConflictError(PermanentError):
    code = "conflict"
    http_status = 409
    exit_code = 6


class LockLostError(ConflictError):
    """Client side (hakv.client.recipe): the lock is no longer held — its lease was lost
    (no keepalive acknowledged before its safe-until deadline, or expired/revoked) or its
    key is gone. A write guarded by the lock was not applied. Stop acting as the holder."""

    code = "lock_lost"
    exit_code = 9


class LeadershipLostError(LockLostError):
    """Client side (hakv.client.recipe.election): this candidate is no longer the
    election's leader (or never was); a ``proclaim`` or guarded write was not applied."""

    code = "leadership_lost"


class SemaphoreLimitError(ConflictError):
    """Client side (hakv.client.recipe.semaphore): the semaphore's limit is stored in the
    group (``_hakv/semaphore/<name>/limit``, written by its first contender) and differs
    from the limit this contender asked for; it did not join (or it left the queue).
    ``details``: ``stored`` and ``asked``. Use the stored limit, or change it while
    nobody holds or waits (docs/recipes.md, "Semaphore")."""

    code = "semaphore_limit"


class UnauthenticatedError(PermanentError):
    """The node requires an identity (a client certificate of the cluster CA) for this
    operation and the caller presented none: pass --cacert/--cert/--key (docs/security.md)."""

    code = "unauthenticated"
    http_status = 401
    exit_code = 11


class PermissionDeniedError(PermanentError):
    """The caller's identity is known but may not do this operation here."""

    code = "permission_denied"
    http_status = 403
    exit_code = 12


class RequestExpiredError(PermanentError):
    code = "request_expired"
    http_status = 410


class BackupError(PermanentError):
    """A backup file (``hakv snapshot save``) is truncated, corrupt, not a hakv backup, or
    of a format this hakv does not read (hakv.core.backup); the message says which."""

    code = "bad_backup"


class CompactedError(PermanentError):
    """A watch wants revisions this replica's history no longer holds: everything up to
    ``compact_revision`` is compacted, the group is at ``head_revision``. Resync: a new
    watch with ``start_revision="snapshot"`` (``Watch.resync()`` in the client)."""

    code = "compacted"
    http_status = 410
    exit_code = 8

    @property
    def compact_revision(self) -> int:
        """Everything up to this revision is compacted (``details`` on the wire)."""
        return int(self.details.get("compact_revision", 0))

    @property
    def head_revision(self) -> int:
        return int(self.details.get("head_revision", 0))


class LeaseNotFoundError(NotFoundError):
    """No such lease in the group: never granted, revoked, or expired (hakv.core.leases).
    A put or keepalive naming it changed nothing; grant a new lease."""

    code = "lease_not_found"


class LeaseTtlError(BadRequestError):
    """A lease TTL outside hakv.core.leases.MIN_TTL..MAX_TTL seconds."""

    code = "bad_ttl"


class ConfigError(HakvError):
    code = "config"
    exit_code = 7


class TopologyError(ConfigError):
    code = "topology"


class DataDirError(ConfigError):
    code = "data_dir"


class CertificateError(ConfigError):
    """A certificate, key or certs dir is wrong (hakv.security.certs); the message says
    which file and what to do about it."""

    code = "certificate"


class CertificateMissingError(CertificateError):
    code = "certificate_missing"


class CertificateExistsError(CertificateError):
    code = "certificate_exists"


class CertificateExpiredError(CertificateError):
    code = "certificate_expired"


class CertificateNotYetValidError(CertificateError):
    code = "certificate_not_yet_valid"


class CertificateWrongCAError(CertificateError):
    code = "certificate_wrong_ca"


class InternalError(HakvError):
    code = "internal"


class FatalError(Exception):
    """A failure the node cannot answer for: it must stop (crash-stop) rather than go on
    with state that may differ from its replicas'. Never sent on the wire."""


class StorageFailure(FatalError):
    """LMDB, or the disk under it, failed (full map, I/O error, out of memory while
    applying). The raft thread crash-stops the node; on restart the Raft log replays the
    entry. Apply raises only this (hakv.storage.store)."""


def from_wire(body: dict[str, Any]) -> HakvError:
    """Rebuild the typed error from a wire ``{"error": {...}}`` body."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return InternalError(f"malformed error response: {body!r}")
    cls = _BY_CODE.get(str(err.get("code")), InternalError)
    details = err.get("details") or {}
    return cls(str(err.get("message", "")), **(details if isinstance(details, dict) else {}))
