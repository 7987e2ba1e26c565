"""hakv.core.codec: request validation, normalization, command encoding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hakv.core import codec
from hakv.errors import BadRequestError, RequestTooLargeError

BAD = BadRequestError
BIG = RequestTooLargeError


def put(**body: Any) -> dict[str, Any]:
    return codec.write_command("put", body, "c1", 1)


# --- write_command: valid ---------------------------------------------------------------


def test_put_is_normalized_with_client_and_seq() -> None:
    body = {"group": "220", "key": "k", "value": "v", "extra": 1}
    assert codec.write_command("put", body, "c1", 7) == {
        "op": "put",
        "client": "c1",
        "seq": 7,
        "key": "k",
        "value": "v",
    }


def test_put_keeps_if_mod_revision_including_zero() -> None:
    assert put(key="k", value="v", if_mod_revision=0)["if_mod_revision"] == 0
    assert put(key="k", value="v", if_mod_revision=12)["if_mod_revision"] == 12


def test_delete_is_normalized() -> None:
    cmd = codec.write_command("delete", {"key": "k", "value": "ignored"}, "c", 2)
    assert cmd == {"op": "delete", "client": "c", "seq": 2, "key": "k"}


def test_txn_is_normalized_and_lists_default_to_empty() -> None:
    body = {
        "compare": [{"key": "a", "target": "version", "op": "==", "value": 0, "x": 1}],
        "success": [
            {"op": "put", "key": "a", "value": "1"},
            {"op": "delete", "key": "b", "value": "dropped"},
            {"op": "get", "key": "c"},
        ],
    }
    assert codec.write_command("txn", body, "c", 3) == {
        "op": "txn",
        "client": "c",
        "seq": 3,
        "compare": [{"key": "a", "target": "version", "op": "==", "value": 0}],
        "success": [
            {"op": "put", "key": "a", "value": "1"},
            {"op": "delete", "key": "b"},
            {"op": "get", "key": "c"},
        ],
        "failure": [],
    }


@pytest.mark.parametrize("value", [None, "", "x"])
def test_txn_value_compare_accepts_string_or_null(value: str | None) -> None:
    body = {"compare": [{"key": "a", "target": "value", "op": "==", "value": value}]}
    assert codec.write_command("txn", body, "c", 1)["compare"][0]["value"] == value


@pytest.mark.parametrize(
    "key",
    ["a" * codec.MAX_KEY_BYTES, "é" * (codec.MAX_KEY_BYTES // 2), "🙂" * 256, "a b/c\n"],
)
def test_key_at_the_byte_limit_is_accepted(key: str) -> None:
    assert put(key=key, value="")["key"] == key


def test_value_at_the_byte_limit_is_accepted() -> None:
    value = "v" * codec.MAX_VALUE_BYTES
    assert put(key="k", value=value)["value"] == value


def test_txn_lists_at_the_limit_are_accepted() -> None:
    n = codec.MAX_TXN_OPS
    body = {
        "compare": [{"key": "a", "target": "version", "op": ">", "value": 0}] * n,
        "success": [{"op": "get", "key": "a"}] * n,
        "failure": [{"op": "delete", "key": "a"}] * n,
    }
    cmd = codec.write_command("txn", body, "c", 1)
    assert [len(cmd[b]) for b in ("compare", "success", "failure")] == [n, n, n]


# --- write_command: invalid -------------------------------------------------------------

LONG_KEY = "a" * (codec.MAX_KEY_BYTES + 1)
LONG_UTF8_KEY = "é" * (codec.MAX_KEY_BYTES // 2 + 1)  # 1026 bytes, 513 characters
LONG_VALUE = "v" * (codec.MAX_VALUE_BYTES + 1)
CMP = {"key": "a", "target": "version", "op": "==", "value": 0}

WRITE_ERRORS: list[tuple[str, str, Any, type[Exception], str]] = [
    # id, op, body, error, message fragment
    ("body-not-object", "put", ["k"], BAD, "request body: expected a JSON object, got a list"),
    ("unknown-op", "get", {"key": "k"}, BAD, "op: expected one of allocation, delete, lease_grant, lease_keepalive, lease_revoke,"
     " notify, put, txn"),
    ("key-missing", "put", {"value": "v"}, BAD, "key: missing"),
    ("key-int", "put", {"key": 5, "value": "v"}, BAD, "key: expected a non-empty string, got an integer"),
    ("key-null", "put", {"key": None, "value": "v"}, BAD, "got null"),
    ("key-empty", "put", {"key": "", "value": "v"}, BAD, "key: must not be empty"),
    ("key-nul", "put", {"key": "a\x00b", "value": "v"}, BAD, "key: must not contain NUL"),
    ("key-surrogate", "put", {"key": "a\ud800", "value": "v"}, BAD, "key: must be valid UTF-8"),
    ("key-too-long", "put", {"key": LONG_KEY, "value": "v"}, BIG, "key: 1025 bytes UTF-8 exceeds the 1024-byte"),
    ("key-too-long-utf8", "put", {"key": LONG_UTF8_KEY, "value": "v"}, BIG, "key: 1026 bytes"),
    ("value-missing", "put", {"key": "k"}, BAD, "value: missing"),
    ("value-int", "put", {"key": "k", "value": 1}, BAD, "value: expected a string, got an integer"),
    ("value-object", "put", {"key": "k", "value": {}}, BAD, "value: expected a string, got an object"),
    ("value-surrogate", "put", {"key": "k", "value": "\udfff"}, BAD, "value: must be valid UTF-8"),
    ("value-too-long", "put", {"key": "k", "value": LONG_VALUE}, BIG, "value: 32769 bytes UTF-8 exceeds the 32768-byte"),
    ("imr-bool", "put", {"key": "k", "value": "v", "if_mod_revision": True}, BAD, "if_mod_revision: expected an integer >= 0, got a boolean"),
    ("imr-str", "put", {"key": "k", "value": "v", "if_mod_revision": "3"}, BAD, "if_mod_revision: expected an integer >= 0, got a string"),
    ("imr-float", "put", {"key": "k", "value": "v", "if_mod_revision": 1.0}, BAD, "got a number"),
    ("imr-null", "put", {"key": "k", "value": "v", "if_mod_revision": None}, BAD, "got null"),
    ("imr-negative", "put", {"key": "k", "value": "v", "if_mod_revision": -1}, BAD, "if_mod_revision: expected an integer in 0.."),
    ("delete-key-missing", "delete", {}, BAD, "key: missing"),
    ("delete-key-long", "delete", {"key": LONG_KEY}, BIG, "key: 1025 bytes"),
    ("compare-not-list", "txn", {"compare": {}}, BAD, "compare: expected a list, got an object"),
    ("success-not-list", "txn", {"success": "put"}, BAD, "success: expected a list, got a string"),
    ("compare-too-many", "txn", {"compare": [CMP] * 65}, BIG, "compare: 65 entries exceeds the limit of 64"),
    ("success-too-many", "txn", {"success": [{"op": "get", "key": "a"}] * 65}, BIG, "success: 65 entries"),
    ("failure-too-many", "txn", {"failure": [{"op": "get", "key": "a"}] * 65}, BIG, "failure: 65 entries"),
    ("compare-item-not-object", "txn", {"compare": [1]}, BAD, "compare[0]: expected a JSON object, got an integer"),
    ("compare-key-missing", "txn", {"compare": [{"target": "version", "op": "==", "value": 0}]}, BAD, "compare[0].key: missing"),
    ("compare-key-empty", "txn", {"compare": [CMP, {**CMP, "key": ""}]}, BAD, "compare[1].key: must not be empty"),
    ("compare-target-bad", "txn", {"compare": [{**CMP, "target": "lease"}]}, BAD, "compare[0].target: expected one of"),
    ("compare-target-missing", "txn", {"compare": [{"key": "a", "op": "==", "value": 0}]}, BAD, "compare[0].target"),
    ("compare-op-bad", "txn", {"compare": [{**CMP, "op": "<="}]}, BAD, "compare[0].op: expected one of ==, !=, <, >"),
    ("compare-value-missing", "txn", {"compare": [{"key": "a", "target": "version", "op": "=="}]}, BAD, "compare[0].value: missing"),
    ("compare-version-str", "txn", {"compare": [{**CMP, "value": "1"}]}, BAD, "compare[0].value: expected an integer >= 0, got a string"),
    ("compare-version-bool", "txn", {"compare": [{**CMP, "value": False}]}, BAD, "got a boolean"),
    ("compare-revision-null", "txn", {"compare": [{**CMP, "target": "mod_revision", "value": None}]}, BAD, "got null"),
    ("compare-value-int", "txn", {"compare": [{**CMP, "target": "value", "value": 5}]}, BAD, "compare[0].value: expected a string or null for target value, got an integer"),
    ("compare-value-too-long", "txn", {"compare": [{**CMP, "target": "value", "value": LONG_VALUE}]}, BIG, "compare[0].value: 32769 bytes"),
    ("txn-op-not-object", "txn", {"success": ["put"]}, BAD, "success[0]: expected a JSON object"),
    ("txn-op-unknown", "txn", {"failure": [{"op": "range", "key": "a"}]}, BAD, "failure[0].op: expected one of put, delete, get"),
    ("txn-op-missing", "txn", {"success": [{"key": "a"}]}, BAD, "success[0].op"),
    ("txn-put-value-missing", "txn", {"success": [{"op": "put", "key": "a"}]}, BAD, "success[0].value: missing"),
    ("txn-put-key-nul", "txn", {"success": [{"op": "put", "key": "\x00", "value": ""}]}, BAD, "success[0].key: must not contain NUL"),
    ("txn-get-key-long", "txn", {"success": [{"op": "get", "key": LONG_KEY}]}, BIG, "success[0].key: 1025 bytes"),
    ("txn-put-value-long", "txn", {"success": [{"op": "put", "key": "a", "value": LONG_VALUE}]}, BIG, "success[0].value: 32769 bytes"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("op", "body", "error", "fragment"),
    [row[1:] for row in WRITE_ERRORS],
    ids=[row[0] for row in WRITE_ERRORS],
)
def test_invalid_write_is_rejected_naming_the_field(
    op: str, body: Any, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        codec.write_command(op, body, "c1", 1)
    assert type(info.value) is error
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("client", "seq", "fragment"),
    [
        ("", 1, "client: expected 1..128 characters, got 0"),
        ("c", 0, "seq: expected an integer in 1.."),
    ],
)
def test_write_command_checks_its_client_and_seq(client: str, seq: int, fragment: str) -> None:
    with pytest.raises(BadRequestError, match=fragment.replace(".", r"\.")):
        codec.write_command("delete", {"key": "k"}, client, seq)


# --- client_and_seq ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, (None, None)),
        ({"client": None, "seq": None}, (None, None)),
        ({"client": "c", "seq": 1}, ("c", 1)),
        ({"client": "x" * codec.MAX_CLIENT_ID, "seq": 5}, ("x" * codec.MAX_CLIENT_ID, 5)),
        ({"client": "é" * codec.MAX_CLIENT_ID, "seq": 5}, ("é" * codec.MAX_CLIENT_ID, 5)),
        ({"seq": 3}, (None, 3)),
    ],
)
def test_client_and_seq_accepts(body: dict[str, Any], expected: tuple[Any, Any]) -> None:
    assert codec.client_and_seq(body) == expected


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"client": "", "seq": 1}, "client: expected 1..128 characters, got 0"),
        ({"client": "x" * 129, "seq": 1}, "client: expected 1..128 characters, got 129"),
        ({"client": 7, "seq": 1}, "client: expected a string, got an integer"),
        ({"client": "c", "seq": 0}, "seq: expected an integer in 1.."),
        ({"client": "c", "seq": -4}, "seq: expected an integer in 1.."),
        ({"client": "c", "seq": 1 << 63}, "seq: expected an integer in 1.."),
        ({"client": "c", "seq": True}, "seq: expected an integer >= 1, got a boolean"),
        ({"client": "c", "seq": 2.0}, "seq: expected an integer >= 1, got a number"),
        ({"client": "c", "seq": "2"}, "seq: expected an integer >= 1, got a string"),
        ({"client": "c"}, "seq: missing (an integer >= 1 is required with client)"),
    ],
)
def test_client_and_seq_rejects(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(BadRequestError) as info:
        codec.client_and_seq(body)
    assert fragment in str(info.value)


# --- read_request -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "body", "expected"),
    [
        ("get", {"key": "k"}, {"op": "get", "key": "k", "serializable": False}),
        ("get", {"key": "k", "serializable": True}, {"op": "get", "key": "k", "serializable": True}),
        ("range", {}, {"op": "range", "prefix": "", "limit": 1000, "serializable": False}),
        ("range", {"prefix": "a/", "limit": 1}, {"op": "range", "prefix": "a/", "limit": 1, "serializable": False}),
        ("range", {"limit": 10000, "serializable": True}, {"op": "range", "prefix": "", "limit": 10000, "serializable": True}),
    ],
)  # fmt: skip
def test_read_request_accepts(op: str, body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert codec.read_request(op, body) == expected


READ_ERRORS: list[tuple[str, Any, type[Exception], str]] = [
    ("put", {"key": "k"}, BAD, "op: expected one of get, range"),
    ("get", "k", BAD, "request body: expected a JSON object, got a string"),
    ("get", {}, BAD, "key: missing"),
    ("get", {"key": ""}, BAD, "key: must not be empty"),
    ("get", {"key": LONG_KEY}, BIG, "key: 1025 bytes"),
    (
        "get",
        {"key": "k", "serializable": 1},
        BAD,
        "serializable: expected true or false, got an integer",
    ),
    ("range", {"serializable": "yes"}, BAD, "serializable: expected true or false, got a string"),
    ("range", {"prefix": 3}, BAD, "prefix: expected a string, got an integer"),
    ("range", {"prefix": None}, BAD, "prefix: expected a string, got null"),
    ("range", {"prefix": "a\x00"}, BAD, "prefix: must not contain NUL"),
    ("range", {"prefix": LONG_KEY}, BIG, "prefix: 1025 bytes"),
    ("range", {"limit": 0}, BAD, "limit: expected an integer in 1..10000, got 0"),
    ("range", {"limit": 10001}, BAD, "limit: expected an integer in 1..10000, got 10001"),
    ("range", {"limit": True}, BAD, "limit: expected an integer in 1..10000, got a boolean"),
    ("range", {"limit": "5"}, BAD, "got a string"),
    ("range", {"limit": None}, BAD, "got null"),
]


@pytest.mark.parametrize(("op", "body", "error", "fragment"), READ_ERRORS)
def test_invalid_read_is_rejected_naming_the_field(
    op: str, body: Any, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        codec.read_request(op, body)
    assert type(info.value) is error
    assert fragment in str(info.value)


# --- encode / decode --------------------------------------------------------------------


def test_encode_is_compact_sorted_utf8() -> None:
    cmd = codec.write_command("put", {"key": "ключ", "value": "v"}, "c", 1)
    data = codec.encode(cmd)
    assert data == '{"client":"c","key":"ключ","op":"put","seq":1,"value":"v"}'.encode()
    assert codec.decode(data) == cmd


def test_barrier_has_no_client_and_round_trips() -> None:
    assert codec.BARRIER == {"op": "barrier"}
    assert codec.decode(codec.encode(codec.BARRIER)) == {"op": "barrier"}


def _command_of_size(size: int) -> dict[str, Any]:
    base = {"op": "put", "client": "c", "seq": 1, "key": "k", "value": ""}
    overhead = len(codec.encode(base))
    return {**base, "value": "v" * (size - overhead)}


def test_encode_accepts_exactly_the_command_limit() -> None:
    cmd = _command_of_size(codec.MAX_COMMAND_BYTES)
    assert len(codec.encode(cmd)) == codec.MAX_COMMAND_BYTES


def test_encode_rejects_one_byte_over_the_command_limit() -> None:
    cmd = _command_of_size(codec.MAX_COMMAND_BYTES + 1)
    with pytest.raises(RequestTooLargeError, match=r"49153 bytes exceeds the 49152-byte limit"):
        codec.encode(cmd)


def test_valid_txn_can_still_exceed_the_command_limit() -> None:
    body = {"success": [{"op": "put", "key": f"k{i}", "value": "v" * 1000} for i in range(64)]}
    cmd = codec.write_command("txn", body, "c", 1)
    with pytest.raises(RequestTooLargeError):
        codec.encode(cmd)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xfe", b"not json", b"[1,2]", b'"put"', b"{}", b'{"op": 1}', b"[" * 100000],
    ids=["empty", "not-utf8", "not-json", "list", "string", "no-op", "op-int", "deep"],
)
def test_decode_rejects_garbage(data: bytes) -> None:
    with pytest.raises(BadRequestError):
        codec.decode(data)


def test_decode_accepts_memoryview() -> None:
    assert codec.decode(memoryview(b'{"op":"barrier"}')) == {"op": "barrier"}  # type: ignore[arg-type]


# --- validate_command -------------------------------------------------------------------


def test_validate_command_round_trips_every_write() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("put", {"key": "k", "value": "v", "if_mod_revision": 0}),
        ("delete", {"key": "k"}),
        ("txn", {"compare": [CMP], "success": [{"op": "get", "key": "a"}]}),
    ]
    for op, body in cases:
        cmd = codec.write_command(op, body, "c", 9)
        assert codec.validate_command(codec.decode(codec.encode(cmd))) == cmd


@pytest.mark.parametrize(
    ("cmd", "fragment"),
    [
        ([], "command: expected a JSON object"),
        ({"op": "get", "key": "k"}, "command op: expected barrier, put, delete or txn"),
        ({"op": "put", "key": "k", "value": "v"}, "needs client and seq"),
        ({"op": "put", "key": "k", "value": "v", "seq": 1}, "needs client and seq"),
        (
            {"op": "put", "key": "k", "value": 1, "client": "c", "seq": 1},
            "value: expected a string",
        ),
    ],
)
def test_validate_command_rejects(cmd: Any, fragment: str) -> None:
    with pytest.raises(BadRequestError, match=fragment):
        codec.validate_command(cmd)


# --- parse_body -------------------------------------------------------------------------


def test_parse_body_accepts_exactly_the_request_limit() -> None:
    raw = json.dumps({"v": "x" * (codec.MAX_REQUEST_BYTES - 9)}).encode()
    assert len(raw) == codec.MAX_REQUEST_BYTES
    assert codec.parse_body(raw)["v"].startswith("x")


def test_parse_body_rejects_one_byte_over_the_request_limit() -> None:
    raw = json.dumps({"v": "x" * (codec.MAX_REQUEST_BYTES - 8)}).encode()
    with pytest.raises(RequestTooLargeError, match="65537 bytes exceeds the 65536-byte limit"):
        codec.parse_body(raw)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [(b"{", "malformed JSON"), (b"\xff", "malformed JSON"), (b"[]", "expected a JSON object")],
)
def test_parse_body_rejects_non_objects(raw: bytes, fragment: str) -> None:
    with pytest.raises(BadRequestError, match=fragment):
        codec.parse_body(raw)


def test_parse_body_treats_empty_as_empty_object() -> None:
    assert codec.parse_body(b"") == {}
    assert codec.parse_body(b'{"group": "220"}') == {"group": "220"}
