"""Watches on real node processes (docs/api.md, "Watches"): every acknowledged write seen
exactly once and in revision order across a kill -9 of the leader and its restart; txn
revisions as one batch; "snapshot" starts without a seam; through a non-owner; compacted
history -> CompactedError, then resync; a watcher that never reads does not slow writes;
bad input gets typed errors."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hakv.client import Op
from hakv.client.watch import WatchBatch
from hakv.errors import BadRequestError, CompactedError
from tests.support import (
    api_tls,
    api_url,
    leader_of,
    post,
    start_api_cluster,
    wait_for,
    wait_healthy,
)

pytestmark = pytest.mark.slow

OWNERS = ["n1", "n2", "n3"]


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # Small history so that compaction shows within the test: 3 s or the last 5 revisions
    # (kept in the environment for the whole module: a node restarted later reads it too).
    old = os.environ.get("HAKV_WATCH_RETENTION")
    os.environ["HAKV_WATCH_RETENTION"] = "seconds=3,revisions=5,interval=0.3"
    try:
        cluster = start_api_cluster(Path(tmp_path_factory.mktemp("watch")),
                                    [*OWNERS, "n4"], {"g": OWNERS, "h": OWNERS})
        yield cluster
        cluster.down()
    finally:
        if old is None:
            os.environ.pop("HAKV_WATCH_RETENTION")
        else:
            os.environ["HAKV_WATCH_RETENTION"] = old


def raw_watch(lc: Any, endpoint: str, body: dict[str, Any]) -> socket.socket:
    """A ``POST /v1/watch`` sent on a connection of its own (inside TLS, as the cluster's
    client), its answer left unread: the socket."""
    host, port = endpoint.split(":")
    s = socket.create_connection((host, int(port)))
    tls = lc.client_tls()
    if tls is not None:
        s = tls.wrap_socket(s, server_hostname=host)
    data = json.dumps(body).encode()
    s.sendall(b"POST /v1/watch HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
    return s


def collect(w: Any, into: list[WatchBatch], stop: threading.Event) -> threading.Thread:
    def run() -> None:
        for batch in w:
            into.append(batch)
            if stop.is_set():
                return
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_every_acknowledged_write_exactly_once_in_order_across_a_leader_kill(lc: Any) -> None:
    c = lc.client(timeout=20)
    start = c.put("g", "w/start", "0").revision + 1
    seen: list[WatchBatch] = []
    stop = threading.Event()
    w = c.watch("g", "w/", start_revision=start, poll_timeout=1)
    t = collect(w, seen, stop)
    acked: dict[int, list[str]] = {}
    for i in range(10):
        acked[c.put("g", f"w/{i}", str(i)).revision] = [f"w/{i}"]
    r = c.txn("g", [], [Op.put("w/t1", "a"), Op.put("w/t2", "b"), Op.delete("w/0")], [])
    acked[r.revision] = ["w/t1", "w/t2", "w/0"]
    victim = leader_of(lc.endpoints(), "g")
    assert victim in OWNERS
    lc.kill(victim)
    for i in range(10, 20):  # through the survivors, across the election
        acked[c.put("g", f"w/{i}", str(i)).revision] = [f"w/{i}"]
    lc.start(victim, wait=0)
    wait_healthy(lc, [victim])
    for i in range(20, 25):
        acked[c.put("g", f"w/{i}", str(i)).revision] = [f"w/{i}"]
    last = max(acked)
    assert w.wait_until(last, timeout=30), (w.delivered, last)
    stop.set()
    w.close()
    got = {b.revision: [e.key for e in b.events] for b in seen}
    assert [b.revision for b in seen] == sorted(got)  # in order, each revision once
    assert {r: got.get(r) for r in acked} == acked    # every ack, whole txn in one batch
    t.join(timeout=15)
    c.close()


def test_snapshot_start_has_no_seam_and_works_through_a_non_owner(lc: Any) -> None:
    c = lc.client(timeout=10)
    for i in range(5):
        c.put("h", f"s/{i}", str(i))
    n4 = lc.client(timeout=10)
    n4.endpoints = (lc.endpoint("n4"),)
    with n4.watch("h", "s/", start_revision="snapshot", poll_timeout=2) as w:
        first = next(w)
        assert first.snapshot and [e.key for e in first.events] == [f"s/{i}" for i in range(5)]
        r = c.put("h", "s/new", "x").revision
        after = next(w)
        assert (after.revision, [e.key for e in after.events]) == (r, ["s/new"])
        assert w.cursor == r + 1
    c.close()
    n4.close()


def test_compacted_history_raises_and_resync_recovers(lc: Any) -> None:
    c = lc.client(timeout=10)
    first = c.put("h", "c/0", "0").revision
    for i in range(1, 12):
        c.put("h", f"c/{i}", str(i))
    ep = lc.endpoint("n1")
    wait_for(lambda: post(ep, "watch", {"group": "h", "prefix": "c/", "timeout": 0})[1]
             .get("compact_revision", 0) >= first, 15, 0.2, what="compaction past the first")
    c.endpoints = (ep,)
    w = c.watch("h", "c/", start_revision=first, poll_timeout=1)
    with pytest.raises(CompactedError) as info:
        next(w)
    assert info.value.compact_revision >= first and info.value.head_revision > first
    batch = next(w.resync())
    assert batch.snapshot and len(batch.events) == 12
    w.close()
    c.close()


def test_a_watcher_that_never_reads_does_not_slow_writes(lc: Any) -> None:
    ep = lc.endpoint("n1")
    c = lc.client(timeout=10)

    def writes() -> float:
        t0 = time.monotonic()
        for i in range(30):
            c.put("g", f"busy/{i}", "x" * 1000)
        return time.monotonic() - t0

    baseline = writes()
    stuck = [raw_watch(lc, ep, {"group": "g", "prefix": "never/" if i % 2 else "busy/",
                                "timeout": 30, "limit": 10000})
             for i in range(40)]  # parked (never/) or answered (busy/), nobody reads a byte
    # The parked ones are still waiting (no answer can have come: nothing under never/).
    stuck[1].settimeout(0.2)
    with pytest.raises(TimeoutError):
        stuck[1].recv(1)
    loaded = writes()
    assert loaded < 3 * baseline + 1.0, (baseline, loaded)
    for s in stuck:
        s.close()
    c.close()


def _watchers(endpoint: str) -> dict[str, float]:
    """The node's ``hakv_watchers`` gauge, by state (GET /metrics)."""
    with urllib.request.urlopen(api_url(endpoint, "/metrics"), timeout=5,
                                context=api_tls()) as resp:
        text = resp.read().decode()
    found = re.findall(r'^hakv_watchers\{state="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {state: float(value) for state, value in found}


def test_a_watcher_that_hangs_up_leaves_the_hub_at_once(lc: Any) -> None:
    """A parked watch whose client closes its connection frees its slot now, not at its
    30 s timeout: clients that come and go cannot fill the node's max_watches."""
    ep = lc.endpoint("n2")
    wait_for(lambda: _watchers(ep).get("active") == 0, 40, what="no watch left on n2")
    sockets = [raw_watch(lc, ep, {"group": "g", "prefix": "hangup/", "timeout": 30})
               for _ in range(12)]
    wait_for(lambda: _watchers(ep).get("parked") == 12, 10, what="12 parked watches")
    for s in sockets[:8]:  # a plain close (FIN) ...
        s.close()
    for s in sockets[8:]:  # ... and a reset (RST)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    t0 = time.monotonic()
    wait_for(lambda: _watchers(ep) == {"active": 0, "parked": 0, "forwarded": 0}, 10,
             what="the hung-up watches gone from the hub")
    assert time.monotonic() - t0 < 10  # long before their 30 s timeout
    # The node still serves watches (nothing was answered to a closed connection).
    c = lc.client(timeout=10)
    rev = c.put("g", "hangup/x", "1").revision
    with c.watch("g", "hangup/", start_revision=rev) as w:
        assert [e.key for e in next(w).events] == ["hangup/x"]
    c.close()


def test_a_forwarded_watcher_that_hangs_up_frees_both_nodes(lc: Any) -> None:
    """Through a non-owner (n4): the client hangs up, n4 breaks its request to the owner
    off (its forwarding slot free now, not after 30 + 5 s), and the owner drops its side."""
    ep = lc.endpoint("n4")
    owners = [lc.endpoint(n) for n in OWNERS]
    for endpoint in [ep, *owners]:
        wait_for(lambda e=endpoint: _watchers(e).get("active") == 0
                 and _watchers(e).get("forwarded") == 0, 40, what=f"no watch on {endpoint}")
    sockets = [raw_watch(lc, ep, {"group": "g", "prefix": "fwd-hangup/", "timeout": 30})
               for _ in range(4)]
    wait_for(lambda: _watchers(ep).get("forwarded") == 4, 10, what="4 forwarded watches")
    wait_for(lambda: sum(_watchers(e).get("parked", 0) for e in owners) == 4, 10,
             what="4 watches parked at the owners")
    for s in sockets:
        s.close()
    wait_for(lambda: _watchers(ep).get("forwarded") == 0, 10,
             what="n4's forwarding slots free")
    wait_for(lambda: all(_watchers(e).get("active") == 0 for e in owners), 10,
             what="the owners' sides dropped too")
    # Forwarding still works.
    c = lc.client(timeout=10)
    rev = c.put("g", "fwd-hangup/x", "1").revision
    c.close()
    status, body = post(ep, "watch", {"group": "g", "prefix": "fwd-hangup/",
                                      "start_revision": rev, "timeout": 5})
    assert status == 200 and [e["key"] for b in body["batches"] for e in b["events"]] \
        == ["fwd-hangup/x"], body


def test_bad_input_gets_typed_errors(lc: Any) -> None:
    ep = lc.endpoint("n1")
    status, body = post(ep, "watch", {"group": "g", "prefix": "a", "start_revision": -1})
    assert (status, body["error"]["code"]) == (400, "bad_request")
    status, body = post(ep, "watch", {"group": "g", "prefix": "a\u0000"})
    assert (status, body["error"]["code"]) == (400, "bad_request")
    status, body = post(lc.endpoint("n4"), "watch", {"group": "nope", "prefix": ""})
    assert (status, body["error"]["code"]) == (404, "unknown_group")
    c = lc.client(timeout=5)
    with pytest.raises(BadRequestError), c.watch("g", "x", start_revision=-3) as w:
        next(w)
    c.close()


def test_the_cli_streams_one_line_per_event_and_exits_8_on_a_compacted_start(lc: Any) -> None:
    """``hakv watch``: text and --json lines, a txn's events under one revision, --count,
    --snapshot first prints the keys; a start below the compacted history exits 8."""
    from click.testing import CliRunner

    from hakv.cli import cli

    c = lc.client(timeout=20)
    ep = ["--endpoints", lc.endpoint("n4")]  # through the node that owns no group
    first = c.put("h", "cli/a", "1").revision
    c.txn("h", [], [Op.put("cli/b", "2"), Op.delete("cli/a")], [])
    runner = CliRunner()
    out = runner.invoke(cli, ["watch", "h", "cli/", "--from-revision", str(first),
                              "--count", "3", *ep])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines() == [f"{first} put cli/a 1", f"{first + 1} put cli/b 2",
                                       f"{first + 1} delete cli/a"]
    out = runner.invoke(cli, ["watch", "h", "cli/", "--from-revision", str(first),
                              "--count", "1", "--json", *ep])
    assert out.exit_code == 0, out.output
    line = json.loads(out.output)
    assert (line["revision"], line["type"], line["key"], line["value"]) == (
        first, "put", "cli/a", "1")
    out = runner.invoke(cli, ["watch", "h", "cli/", "--snapshot", "--count", "1", *ep])
    assert out.exit_code == 0, out.output
    assert out.output.split()[1:] == ["snapshot", "cli/b", "2"]
    for i in range(12):  # past the module's small retention (5 revisions, 3 s)
        c.put("h", f"cli/x{i}", str(i))
    wait_for(lambda: _compacted_past(lc, "h", first + 1), 20, what="history of h compacted")
    out = runner.invoke(cli, ["watch", "h", "cli/", "--from-revision", str(first), *ep])
    assert out.exit_code == 8, out.output
    assert "compacted" in out.output


def _compacted_past(lc: Any, group: str, revision: int) -> bool:
    """Every owner's history of ``group`` starts above ``revision``."""
    for node in OWNERS:
        _status, answer = post(lc.endpoint(node), "watch", {
            "group": group, "prefix": "cli/", "start_revision": revision, "timeout": 0})
        if answer.get("error", {}).get("code") != "compacted":
            return False
    return True
