"""Per-group access control: users, roles, grants, and the one decision every API request
goes through (``decide``). Pure: the records come in, a reason to refuse comes out.

Identities come from client certificates (hakv.security.certs: ``hakv://user/<name>``,
``hakv://node/<id>``). The records live in the cluster ensemble (``_cluster``), so every
node has them locally::

    auth/users/<name>   {"roles": ["ops", ...]}
    auth/roles/<name>   {"grants": [{"group": "220" | "*", "prefix": "", "verbs": [...]}]}
    auth/tokens/<id>    {"user": name, "sha256": hex, "expires": epoch s | null
                         [, "verbs": [...]]}

A **bearer token** (``hakv_<id>_<secret>``, for people and scripts without a client
certificate) stands for its user until it expires or is revoked (its record deleted);
the record keeps only the secret's SHA-256, so reading the records yields no token. A
*scoped* token (its record lists ``verbs``) can do only those verbs, and of them only
what its user's grants allow: a read-only link to the web page made by root reads and
nothing else. Its identity is ``("token", id)``, which a forwarding node names as the
caller (``token/<id>``), so the owner applies the same scope.

A role grants verbs on a group (``"*"``: every group), optionally only on keys under a
prefix. Verbs::

    read     get, range, and the reads and compares inside a txn; placement, events, status
    write    put, delete, and the writes inside a txn
    watch    watches
    lease    lease grant/keepalive/revoke/ttl (locks and elections are leases and writes);
             a lease names no key, so a prefix does not narrow this verb
    admin    HA operations on the group (move, maintenance, cleanup, set-app); on the
             cluster ensemble ``_cluster``: membership, users and roles
    snapshot online snapshots of the group (``hakv snapshot save``; restoring one needs
             admin: it replaces the group's keys)

Default deny: a user without a grant that covers the request is refused. Two identities
are never refused: ``root`` (the superuser, as etcd's) and a node of the cluster (nodes
run the cluster: they forward, place apps, probe, bridge). A node forwarding a user's
request says whose it is, and is then held to that user's grants (``on_behalf_of``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hakv.errors import BadRequestError

USERS = "auth/users/"
ROLES = "auth/roles/"
TOKENS = "auth/tokens/"
PREFIX = "auth/"
ROOT = "root"
ANY_GROUP = "*"
VERBS = ("read", "write", "watch", "lease", "admin", "snapshot")
_CLUSTER_GROUP = "_cluster"

#: API op -> the verb it needs (txn: per inner operation; see ``needs``).
_OP_VERBS = {
    "get": "read", "range": "read", "put": "write", "delete": "write",
    "watch": "watch",
    "lease_grant": "lease", "lease_keepalive": "lease", "lease_revoke": "lease",
    "lease_ttl": "lease",
    "placement": "read", "events": "read", "ha": "admin",
    "snapshot": "snapshot", "restore": "admin",  # online backup and restore (issue 16)
}
#: Ops with no group or about the whole node: any authenticated identity.
_ANY_IDENTITY = frozenset({"health", "status", "metrics"})
#: Ops only nodes make (the bridge, allocations): never a user.
_NODES_ONLY = frozenset({"notify", "changes", "allocate"})

Identity = tuple[str, str]  # ("user" | "node" | "token", name or scoped token's id)


@dataclass(frozen=True)
class Grant:
    group: str
    verbs: frozenset[str]
    prefix: str = ""

    def covers(self, group: str, verb: str, key: str | None) -> bool:
        if self.group not in (ANY_GROUP, group) or verb not in self.verbs:
            return False
        if verb == "lease":
            return True  # a lease names no key; the keys put with it are checked then
        return not self.prefix or (key is not None and key.startswith(self.prefix))

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "prefix": self.prefix, "verbs": sorted(self.verbs)}


@dataclass(frozen=True)
class TokenRecord:
    user: str
    digest: bytes
    expires: float | None
    verbs: frozenset[str] | None = None  # a scoped token: only these verbs


@dataclass(frozen=True)
class Policy:
    """Users (name -> role names), roles (name -> grants) and bearer tokens (id ->
    record), as the records say."""

    users: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    roles: Mapping[str, tuple[Grant, ...]] = field(default_factory=dict)
    tokens: Mapping[str, TokenRecord] = field(default_factory=dict)

    def token_identity(self, token: str, now: float) -> Identity | None:
        """Who a bearer token stands for at ``now`` (wall clock): ``("user", name)``, or
        ``("token", id)`` for a scoped one; None: unknown, revoked, expired or forged (the
        secret is compared by its SHA-256, in constant time)."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        record = self.tokens.get(parsed[0])
        if record is None or (record.expires is not None and now >= record.expires):
            return None
        digest = hashlib.sha256(parsed[1].encode()).digest()
        if not hmac.compare_digest(digest, record.digest):
            return None
        return ("user", record.user) if record.verbs is None else ("token", parsed[0])

    @classmethod
    def from_records(cls, items: Iterable[tuple[str, str]]) -> Policy:
        """From ``(key, value)`` records under ``auth/``; a malformed record grants nothing
        (it is skipped, never a crash: the records were validated when written)."""
        users: dict[str, tuple[str, ...]] = {}
        roles: dict[str, tuple[Grant, ...]] = {}
        tokens: dict[str, TokenRecord] = {}
        for key, value in items:
            try:
                body = json.loads(value)
                if key.startswith(TOKENS):
                    rec = token_record(body)
                    tokens[key[len(TOKENS):]] = TokenRecord(
                        rec["user"], bytes.fromhex(rec["sha256"]), rec["expires"],
                        None if rec.get("verbs") is None else frozenset(rec["verbs"]))
                elif key.startswith(USERS):
                    users[key[len(USERS):]] = tuple(user_record(body)["roles"])
                elif key.startswith(ROLES):
                    roles[key[len(ROLES):]] = tuple(
                        Grant(g["group"], frozenset(g["verbs"]), g["prefix"])
                        for g in role_record(body)["grants"])
            except (ValueError, BadRequestError):
                continue
        return cls(users, roles, tokens)

    def grants_of(self, user: str) -> list[Grant]:
        return [g for role in self.users.get(user, ()) for g in self.roles.get(role, ())]


def needs(op: str, body: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """(verb, key or None) pairs a request needs on its group. None: the request names no
    single key (a range's prefix is checked as the key: a grant on prefix P covers a range
    of prefix P or below)."""
    if op == "txn":
        out: list[tuple[str, str | None]] = []
        for cmp in body.get("compare") or ():
            out.append(("read", _key(cmp)))
        for branch in ("success", "failure"):
            for item in body.get(branch) or ():
                verb = "read" if isinstance(item, Mapping) and item.get("op") in (
                    "get", "range") else "write"
                out.append((verb, _key(item)))
        return out or [("read", None)]
    op_verb = _OP_VERBS.get(op)
    if op_verb is None:
        return [("admin", None)]
    verb = op_verb
    if op == "range" or op == "watch":
        prefix = body.get("prefix", "")
        return [(verb, prefix if isinstance(prefix, str) else None)]
    if verb in ("read", "write") and op in ("get", "put", "delete"):
        return [(verb, _key(body))]
    return [(verb, None)]


def decide(identity: Identity | None, op: str, group: str | None, body: Mapping[str, Any],
           policy: Policy) -> str | None:
    """None when ``identity`` may do ``op`` on ``group``; else why not (for the 403)."""
    if identity is None:
        return "no identity"
    kind, name = identity
    if kind == "token":  # a scoped token: its verbs, then its user's grants
        record = policy.tokens.get(name)
        if record is None:
            return f"token {name} was revoked"
        refused = _outside_scope(name, record, op, group, body)
        return refused or decide(("user", record.user), op, group, body, policy)
    if kind == "node" or (kind == "user" and name == ROOT):
        return None
    if op in _ANY_IDENTITY:
        return None
    if op in _NODES_ONLY:
        return f"{op} is for the cluster's nodes only"
    if group is None:
        return f"{op} names no group"
    grants = policy.grants_of(name)
    for verb, key in _wanted(op, group, body):
        if not any(g.covers(group, verb, key) for g in grants):
            where = f" on key {key!r}" if key else ""
            return (f"user {name} may not {verb} in group {group}{where} (no role of theirs "
                    "grants it: `hakv role grant ROLE --group G --verbs ...`, then "
                    "`hakv user grant-role USER ROLE`)")
    return None


def _wanted(op: str, group: str | None,
            body: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    if group == _CLUSTER_GROUP and op in ("put", "delete", "txn"):
        return [("admin", None)]  # the cluster records: membership, users, roles
    return needs(op, body)


def _outside_scope(token_id: str, record: TokenRecord, op: str, group: str | None,
                   body: Mapping[str, Any]) -> str | None:
    """Why a scoped token may not do ``op`` whatever its user's grants, or None."""
    if record.verbs is None or op in _ANY_IDENTITY:
        return None
    if op in _NODES_ONLY:
        return f"{op} is for the cluster's nodes only"
    for verb in {verb for verb, _ in _wanted(op, group, body)}:
        if verb not in record.verbs:
            return (f"token {token_id} of user {record.user} may only "
                    f"{', '.join(sorted(record.verbs))}, not {verb} (make a token with "
                    f"more verbs: `hakv token create {record.user} --verbs ...`)")
    return None


def _key(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return None
    key = item.get("key")
    return key if isinstance(key, str) else None


# --------------------------------------------------------------------------- records


def check_name(name: Any, what: str) -> str:
    if (not isinstance(name, str) or not 1 <= len(name) <= 128
            or not all(c.isalnum() or c in "._-" for c in name)):
        raise BadRequestError(f"{what}: expected 1-128 letters, digits, '.', '_' or '-', "
                              f"got {name!r}")
    return name


def user_record(body: Any) -> dict[str, Any]:
    """A validated user record ``{"roles": [...]}``."""
    if not isinstance(body, Mapping) or set(body) - {"roles"}:
        raise BadRequestError('a user record is {"roles": [role, ...]}')
    roles = body.get("roles", [])
    if not isinstance(roles, list):
        raise BadRequestError("roles: expected a list of role names")
    return {"roles": sorted({check_name(r, "role") for r in roles})}


def _verbs(verbs: Iterable[Any], what: str) -> list[str]:
    """Some of VERBS (at least one), sorted, each once; else BadRequestError."""
    verbs = list(verbs)
    bad = [v for v in verbs if v not in VERBS]
    if bad or not verbs:
        raise BadRequestError(f"{what}: expected some of {', '.join(VERBS)}, got {verbs!r}")
    return sorted(set(verbs))


def grant(group: Any, verbs: Iterable[Any], prefix: Any = "") -> dict[str, Any]:
    """A validated grant."""
    if not isinstance(group, str) or not group:
        raise BadRequestError("grant.group: expected a group id or '*'")
    checked = _verbs(verbs, "grant.verbs")
    if not isinstance(prefix, str):
        raise BadRequestError("grant.prefix: expected a string")
    return {"group": group, "prefix": prefix, "verbs": checked}


TOKEN_PREFIX = "hakv_"


def new_token(user: str, now: float, ttl: float | None, random_bytes: bytes,
              verbs: Iterable[str] | None = None) -> tuple[str, str, dict[str, Any]]:
    """(token, id, record) for ``user``: the token is shown once, the record keeps the
    secret's SHA-256. ``random_bytes``: 36 bytes from a CSPRNG (an argument: the core
    makes no randomness). ``verbs``: a scoped token, limited to these."""
    check_name(user, "user")
    scope = None if verbs is None else _verbs(verbs, "token verbs")
    if ttl is not None and not (isinstance(ttl, int | float) and 0 < ttl <= 10 * 365 * 86400):
        raise BadRequestError("token ttl: expected seconds in 1..315360000")
    if len(random_bytes) < 36:
        raise BadRequestError("new_token needs 36 random bytes")
    token_id = random_bytes[:4].hex()
    secret = base64.urlsafe_b64encode(random_bytes[4:36]).decode().rstrip("=")
    record: dict[str, Any] = {
        "user": user, "sha256": hashlib.sha256(secret.encode()).hexdigest(),
        "expires": None if ttl is None else round(now + ttl, 3)}
    if scope is not None:
        record["verbs"] = scope
    return f"{TOKEN_PREFIX}{token_id}_{secret}", token_id, record


def parse_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or len(token_id) != 8 or not secret or len(secret) > 100:
        return None
    return token_id, secret


def token_record(body: Any) -> dict[str, Any]:
    """A validated token record."""
    if not isinstance(body, Mapping) or not (
            {"user", "sha256", "expires"} <= set(body) <= {"user", "sha256", "expires",
                                                            "verbs"}):
        raise BadRequestError('a token record is {"user", "sha256", "expires"[, "verbs"]}')
    digest, expires = body["sha256"], body["expires"]
    if not isinstance(digest, str) or len(digest) != 64:
        raise BadRequestError("token sha256: expected 64 hex digits")
    bytes.fromhex(digest)  # ValueError if not hex
    if expires is not None and (isinstance(expires, bool)
                                or not isinstance(expires, int | float)):
        raise BadRequestError("token expires: expected seconds since the epoch or null")
    record: dict[str, Any] = {"user": check_name(body["user"], "user"), "sha256": digest,
                              "expires": expires}
    if "verbs" in body:
        if not isinstance(body["verbs"], list):
            raise BadRequestError("token verbs: expected a list")
        record["verbs"] = _verbs(body["verbs"], "token verbs")
    return record


def role_record(body: Any) -> dict[str, Any]:
    """A validated role record ``{"grants": [...]}``."""
    if not isinstance(body, Mapping) or set(body) - {"grants"}:
        raise BadRequestError('a role record is {"grants": [{"group", "verbs", "prefix"}]}')
    grants = body.get("grants", [])
    if not isinstance(grants, list):
        raise BadRequestError("grants: expected a list")
    out = []
    for g in grants:
        if not isinstance(g, Mapping):
            raise BadRequestError("grants: each is an object {group, verbs, prefix}")
        out.append(grant(g.get("group"), g.get("verbs") or [], g.get("prefix", "")))
    return {"grants": out}
