"""Client requests -> validated, normalized commands -> compact bytes for the Raft log.

Pure functions, no I/O. Every check of docs/api.md's "Limits" table lives here, once:
the HTTP layer validates with it before proposing, and the store re-validates each decoded
log entry with :func:`validate_command` (a command that fails becomes an error *result*,
never an exception inside apply).

Types are exact: an int field rejects ``true``/``false`` (``bool`` is an ``int`` in Python,
not in this API), a string field rejects numbers. Unknown fields are ignored, so the same
body can carry ``group``, ``client`` and ``seq`` alongside an operation's own fields.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hakv.core import leases
from hakv.errors import BadRequestError, RequestTooLargeError

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 64 * 1024
MAX_COMMAND_BYTES = 48 * 1024
MAX_TXN_OPS = 64
MAX_RANGE_LIMIT = 10000
DEFAULT_RANGE_LIMIT = 1000
MAX_CLIENT_ID = 128
#: Largest integer accepted anywhere (seq, revisions, versions): stored as u64 on disk.
MAX_INT = (1 << 63) - 1

WRITE_OPS = frozenset({"put", "delete", "txn", "notify", "allocation"}) | leases.WRITE_OPS
"""Client writes (deduplicated by client and seq). ``notify`` records a cross-group change
about a node in the group's outbox; ``allocation`` sets the load a group places on a node
(only the bridge on that node proposes it). Bridges forward both (hakv.node.bridge)."""
READ_OPS = frozenset({"get", "range"})
TXN_OPS = frozenset({"put", "delete", "get"})
COMPARE_TARGETS = frozenset({"value", "version", "mod_revision", "create_revision"})
COMPARE_OPS = frozenset({"==", "!=", "<", ">"})

#: The no-op a linearizable read puts through the log. No client: never deduplicated.
BARRIER: dict[str, Any] = {"op": "barrier"}


# --- field checks -----------------------------------------------------------------------


def _utf8_len(text: str, field: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequestError(
            f"{field}: must be valid UTF-8 text (it contains a lone surrogate)"
        ) from None


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_one_of(value: Any, choices: frozenset[str]) -> bool:
    """``value in choices`` for any JSON value: a list or an object is not hashable, so
    ``in`` on a set would raise TypeError (a 500) instead of naming the field."""
    return isinstance(value, str) and value in choices


def _json_size(value: Any, field: str) -> int:
    """Bytes of ``value`` as compact JSON; BadRequestError if it cannot be written (nested
    too deeply, an integer of more than 4300 digits, not JSON at all)."""
    try:
        return len(json.dumps(value, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError) as exc:
        raise BadRequestError(f"{field}: cannot be written as JSON ({exc}); send a small, "
                              "flat JSON object") from None


def _key(body: dict[str, Any], field: str, name: str = "key") -> str:
    if name not in body:
        raise BadRequestError(f"{field}: missing (a non-empty string is expected)")
    key = body[name]
    if not isinstance(key, str):
        raise BadRequestError(f"{field}: expected a non-empty string, got {_tname(key)}")
    if not key:
        raise BadRequestError(f"{field}: must not be empty")
    if "\x00" in key:
        raise BadRequestError(f"{field}: must not contain NUL characters")
    size = _utf8_len(key, field)
    if size > MAX_KEY_BYTES:
        raise RequestTooLargeError(
            f"{field}: {size} bytes UTF-8 exceeds the {MAX_KEY_BYTES}-byte key limit"
        )
    return key


def _value(body: dict[str, Any], field: str) -> str:
    if "value" not in body:
        raise BadRequestError(f"{field}: missing (a string is expected)")
    value = body["value"]
    if not isinstance(value, str):
        raise BadRequestError(f"{field}: expected a string, got {_tname(value)}")
    size = _utf8_len(value, field)
    if size > MAX_VALUE_BYTES:
        raise RequestTooLargeError(
            f"{field}: {size} bytes UTF-8 exceeds the {MAX_VALUE_BYTES}-byte value limit"
        )
    return value


def _nonneg_int(value: Any, field: str) -> int:
    if not _is_int(value):
        raise BadRequestError(f"{field}: expected an integer >= 0, got {_tname(value)}")
    if value < 0 or value > MAX_INT:
        raise BadRequestError(f"{field}: expected an integer in 0..{MAX_INT}, got {value}")
    return int(value)


def _dict(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestError(f"{field}: expected a JSON object, got {_tname(value)}")
    return value


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise BadRequestError(f"{name}: expected a list, got {_tname(value)}")
    if len(value) > MAX_TXN_OPS:
        raise RequestTooLargeError(
            f"{name}: {len(value)} entries exceeds the limit of {MAX_TXN_OPS} per txn list"
        )
    return value


def _tname(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- public API --------------------------------------------------------------------------


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number here")


def strict_loads(data: bytes) -> Any:
    """JSON from UTF-8 ``data``, refusing what hakv never writes: a key twice in an object
    (two readers could see different values), NaN and Infinity. Any problem is a
    ValueError (UnicodeDecodeError and JSONDecodeError are ValueErrors too)."""
    return json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys,
                      parse_constant=_no_constant)


def parse_body(raw: bytes) -> dict[str, Any]:
    """Parse an HTTP request body: at most MAX_REQUEST_BYTES of a UTF-8 JSON object."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise RequestTooLargeError(
            f"request body: {len(raw)} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit"
        )
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequestError(f"request body: malformed JSON ({exc})") from None
    return _dict(body, "request body")


def client_and_seq(body: dict[str, Any]) -> tuple[str | None, int | None]:
    """The optional ``client`` / ``seq`` of a write request, type-checked.

    ``client`` without ``seq`` is rejected (a retry could not be recognized); ``seq``
    without ``client`` is returned as is and the caller decides (it assigns a client).
    """
    body = _dict(body, "request body")
    return _checked_client_seq(body.get("client"), body.get("seq"))


def _checked_client_seq(client: Any, seq: Any) -> tuple[str | None, int | None]:
    if client is not None:
        if not isinstance(client, str):
            raise BadRequestError(f"client: expected a string, got {_tname(client)}")
        if not 1 <= len(client) <= MAX_CLIENT_ID:
            raise BadRequestError(
                f"client: expected 1..{MAX_CLIENT_ID} characters, got {len(client)}"
            )
        _utf8_len(client, "client")
    if seq is not None:
        if not _is_int(seq):
            raise BadRequestError(f"seq: expected an integer >= 1, got {_tname(seq)}")
        if not 1 <= seq <= MAX_INT:
            raise BadRequestError(f"seq: expected an integer in 1..{MAX_INT}, got {seq}")
    if client is not None and seq is None:
        raise BadRequestError("seq: missing (an integer >= 1 is required with client)")
    return client, seq


def write_command(op: str, body: dict[str, Any], client: str, seq: int) -> dict[str, Any]:
    """Validate a put/delete/txn request body and return the normalized command."""
    if not _is_one_of(op, WRITE_OPS):
        raise BadRequestError(f"op: expected one of {', '.join(sorted(WRITE_OPS))}, got {op!r}")
    body = _dict(body, "request body")
    cid, cseq = _checked_client_seq(client, seq)
    if cid is None:
        raise BadRequestError("client: missing (a string of 1..128 characters is expected)")
    cmd: dict[str, Any] = {"op": op, "client": cid, "seq": cseq}
    if op == "put":
        cmd["key"] = _key(body, "key")
        cmd["value"] = _value(body, "value")
        if "if_mod_revision" in body:
            cmd["if_mod_revision"] = _nonneg_int(body["if_mod_revision"], "if_mod_revision")
        if body.get("lease"):  # attach to a lease (hakv.core.leases); absent: detach
            cmd["lease"] = leases.optional_lease(body)
    elif op in leases.WRITE_OPS:
        cmd.update(leases.write_fields(op, body))
    elif op == "delete":
        cmd["key"] = _key(body, "key")
    elif op == "notify":
        cmd["about"] = _node_id(body.get("about"), "about")
        cmd["kind"] = _node_id(body.get("kind"), "kind")
        cmd["data"] = _small_object(body.get("data", {}), "data")
    elif op == "allocation":
        cmd["node"] = _node_id(body.get("node"), "node")
        cmd["load"] = _nonneg_int(body.get("load"), "load")
    else:
        cmd["compare"] = [
            _compare(c, f"compare[{i}]") for i, c in enumerate(_list(body, "compare"))
        ]
        for branch in ("success", "failure"):
            cmd[branch] = [_txn_op(o, f"{branch}[{i}]") for i, o in enumerate(_list(body, branch))]
    return cmd


def _node_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise BadRequestError(f"{field}: expected a string of 1..64 characters, got {value!r}")
    return value


def _small_object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestError(f"{field}: expected an object")
    size = _json_size(value, field)
    if size > MAX_NODE_STATUS_BYTES:
        raise RequestTooLargeError(f"{field}: {size} bytes exceeds {MAX_NODE_STATUS_BYTES}")
    return value


FORWARDED_OP = "forwarded"


def forwarded_command(source: str, source_index: int, change: dict[str, Any]) -> dict[str, Any]:
    """A cross-group change copied by a bridge from ``source``'s outbox (where it was
    applied at ``source_index``) into another group. No client/seq: the target applies it
    only if ``source_index`` is above its high-water mark for (source, about), which makes
    forwarding exactly-once and in order however many bridges send it, however often."""
    return validate_forwarded({"op": FORWARDED_OP, "source": source,
                               "source_index": source_index, "about": change.get("about"),
                               "kind": change.get("kind"), "data": change.get("data", {})})


def validate_forwarded(cmd: Any) -> dict[str, Any]:
    cmd = _dict(cmd, "command")
    index = cmd.get("source_index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 1:
        raise BadRequestError("forwarded.source_index: expected an integer >= 1")
    return {"op": FORWARDED_OP, "source": _node_id(cmd.get("source"), "forwarded.source"),
            "source_index": index, "about": _node_id(cmd.get("about"), "forwarded.about"),
            "kind": _node_id(cmd.get("kind"), "forwarded.kind"),
            "data": _small_object(cmd.get("data", {}), "forwarded.data")}


def _compare(item: Any, field: str) -> dict[str, Any]:
    item = _dict(item, field)
    key = _key(item, f"{field}.key")
    target = item.get("target")
    if not _is_one_of(target, COMPARE_TARGETS):
        raise BadRequestError(
            f"{field}.target: expected one of create_revision, mod_revision, value, version,"
            f" got {target!r}"
        )
    cop = item.get("op")
    if not _is_one_of(cop, COMPARE_OPS):
        raise BadRequestError(f"{field}.op: expected one of ==, !=, <, >, got {cop!r}")
    if "value" not in item:
        raise BadRequestError(f"{field}.value: missing")
    value = item["value"]
    if target == "value":
        if value is not None:
            if not isinstance(value, str):
                raise BadRequestError(
                    f"{field}.value: expected a string or null for target value,"
                    f" got {_tname(value)}"
                )
            _value(item, f"{field}.value")
    else:
        value = _nonneg_int(value, f"{field}.value")
    return {"key": key, "target": target, "op": cop, "value": value}


def _txn_op(item: Any, field: str) -> dict[str, Any]:
    item = _dict(item, field)
    op = item.get("op")
    if not _is_one_of(op, TXN_OPS):
        raise BadRequestError(f"{field}.op: expected one of put, delete, get, got {op!r}")
    out: dict[str, Any] = {"op": op, "key": _key(item, f"{field}.key")}
    if op == "put":
        out["value"] = _value(item, f"{field}.value")
        if item.get("lease"):
            out["lease"] = leases.optional_lease(item, f"{field}.lease")
    return out


def read_request(op: str, body: dict[str, Any]) -> dict[str, Any]:
    """Validate a get/range request body; returns the normalized read."""
    if not _is_one_of(op, READ_OPS):
        raise BadRequestError(f"op: expected one of get, range, got {op!r}")
    body = _dict(body, "request body")
    serializable = body.get("serializable", False)
    if not isinstance(serializable, bool):
        raise BadRequestError(f"serializable: expected true or false, got {_tname(serializable)}")
    if op == "get":
        return {"op": "get", "key": _key(body, "key"), "serializable": serializable}
    prefix = body.get("prefix", "")
    if not isinstance(prefix, str):
        raise BadRequestError(f"prefix: expected a string, got {_tname(prefix)}")
    if "\x00" in prefix:
        raise BadRequestError("prefix: must not contain NUL characters")
    size = _utf8_len(prefix, "prefix")
    if size > MAX_KEY_BYTES:
        raise RequestTooLargeError(
            f"prefix: {size} bytes UTF-8 exceeds the {MAX_KEY_BYTES}-byte key limit"
        )
    limit = body.get("limit", DEFAULT_RANGE_LIMIT)
    if not _is_int(limit):
        raise BadRequestError(
            f"limit: expected an integer in 1..{MAX_RANGE_LIMIT}, got {_tname(limit)}"
        )
    if not 1 <= limit <= MAX_RANGE_LIMIT:
        raise BadRequestError(f"limit: expected an integer in 1..{MAX_RANGE_LIMIT}, got {limit}")
    return {"op": "range", "prefix": prefix, "limit": limit, "serializable": serializable}


def validate_command(cmd: Any) -> dict[str, Any]:
    """Re-validate a decoded log command (barrier or write); returns it normalized."""
    cmd = _dict(cmd, "command")
    op = cmd.get("op")
    if op == "barrier":
        return dict(BARRIER)
    if not _is_one_of(op, WRITE_OPS):
        raise BadRequestError(f"command op: expected barrier, put, delete or txn, got {op!r}")
    client, seq = cmd.get("client"), cmd.get("seq")
    if client is None or seq is None:
        raise BadRequestError("command: a write command needs client and seq")
    return write_command(op, cmd, client, seq)  # checks client and seq


NODE_STATUS_OP = "node_status"
MAX_NODE_STATUS_BYTES = 4096


def node_status_command(node: str, status: dict[str, Any], time: float) -> dict[str, Any]:
    """A node's own status record, proposed by that node into each group it owns.

    The proposer supplies the time, so every replica stores the same record. Last write
    per node wins; no client/seq is needed (re-proposing the same record is harmless).
    """
    return validate_node_status({"op": NODE_STATUS_OP, "node": node, "status": status,
                                 "time": time})


def node_status_forget_command(node: str) -> dict[str, Any]:
    """Drop ``node``'s status record from a group it no longer owns (its leader sends it):
    a node's status lives only in its sphere of influence (I1)."""
    return {"op": NODE_STATUS_OP, "node": node, "status": {}, "time": 0.0, "forget": True}


def validate_node_status(cmd: Any) -> dict[str, Any]:
    cmd = _dict(cmd, "command")
    if cmd.get("forget") is True:
        node = cmd.get("node")
        if not isinstance(node, str) or not node or len(node) > 64:
            raise BadRequestError("node_status.node: expected a node id string (1..64 chars)")
        return node_status_forget_command(node)
    node, status, when = cmd.get("node"), cmd.get("status"), cmd.get("time")
    if not isinstance(node, str) or not node or len(node) > 64:
        raise BadRequestError("node_status.node: expected a node id string (1..64 chars)")
    if not isinstance(status, dict):
        raise BadRequestError("node_status.status: expected an object")
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise BadRequestError("node_status.time: expected a number (seconds since the epoch)")
    try:
        when = float(when)
    except OverflowError:  # an integer beyond the float range
        when = math.inf
    if not math.isfinite(when):
        raise BadRequestError("node_status.time: expected a finite number (seconds since the "
                              "epoch)")
    size = _json_size(status, "node_status.status")
    if size > MAX_NODE_STATUS_BYTES:
        raise RequestTooLargeError(
            f"node_status.status: {size} bytes exceeds {MAX_NODE_STATUS_BYTES}")
    return {"op": NODE_STATUS_OP, "node": node, "status": status, "time": when}


#: One encoder for every command: ``json.dumps`` with options builds a new one per call,
#: a visible cost at thousands of writes a second. ``encode`` is thread-safe.
_COMMAND_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)
JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""Compact UTF-8-friendly JSON for answers and stored results (keys in insertion order)."""


def encode(cmd: dict[str, Any]) -> bytes:
    """Compact, deterministic UTF-8 JSON; RequestTooLargeError above MAX_COMMAND_BYTES."""
    try:
        data = _COMMAND_ENCODER.encode(cmd).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise BadRequestError(f"command cannot be encoded: {exc}") from None
    if len(data) > MAX_COMMAND_BYTES:
        raise RequestTooLargeError(
            f"encoded command: {len(data)} bytes exceeds the {MAX_COMMAND_BYTES}-byte limit"
            " of a replicated command"
        )
    return data


def decode(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode`; BadRequestError on anything that is not a JSON object."""
    try:
        cmd = json.loads(bytes(data).decode("utf-8"))
    except (TypeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequestError(f"command is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(cmd, dict) or not isinstance(cmd.get("op"), str):
        raise BadRequestError("command is not a JSON object with a string op")
    return cmd
