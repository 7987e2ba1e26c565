"""Online snapshot and restore (issue 16 point 2): the backup file format
(hakv.core.backup), the restore commands as a store applies them, the access verbs, and
one real cluster: write, ``hakv snapshot save``, kill -9 and wipe every owner, restart
them empty, ``hakv snapshot restore``, read everything back."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from hakv import Client, errors
from hakv.core import access, backup, codec
from hakv.storage.store import GroupStore
from tests.fuzzing import fuzz

G = "g1"


def records(n: int = 5) -> list[list[Any]]:
    out = [[f"k/{i:03d}", f"value {i} é ☃ \x01\"\\", i + 1, i + 2, 2] for i in range(n)]
    out.append(["long/" + "x" * 1000, "v", 3, 9, 4])  # a key of the kv tree's 3 levels
    return sorted(out)


def backup_bytes(recs: list[list[Any]] | None = None, **manifest: Any) -> bytes:
    out = io.BytesIO()
    fields = {"group": G, "revision": 20, "compact_revision": 3, "owners": ["n1", "n2"],
              "source": "n1", "created_at": 1_700_000_000.5,
              "records": records() if recs is None else recs, **manifest}
    backup.write(out, **fields)
    return out.getvalue()


def read(data: bytes) -> backup.Backup:
    return backup.read(io.BytesIO(data), "test.hakvbackup")


def resign(data: bytes, body: bytes, **changes: Any) -> bytes:
    """The file with ``body`` and a manifest whose length and checksum match it."""
    magic, manifest, _ = data.split(b"\n", 2)
    m = json.loads(manifest)
    m.update(body_bytes=len(body), sha256=hashlib.sha256(body).hexdigest(), **changes)
    return magic + b"\n" + json.dumps(m).encode() + b"\n" + body


# =========================================================================== the file


def test_a_backup_reads_back_as_written() -> None:
    data = backup_bytes()
    b = read(data)
    assert b.group == G and b.revision == 20
    assert [list(r) for r in b.records] == records()
    assert b.manifest["keys"] == len(records())
    assert b.manifest["owners"] == ["n1", "n2"]
    assert data.startswith(b"HAKVBACKUP1\n")


def test_an_empty_group_makes_a_valid_backup() -> None:
    b = read(backup_bytes([]))
    assert b.records == [] and b.manifest["body_bytes"] == 0


@pytest.mark.parametrize("bad", [
    [["b", "v", 1, 1, 1], ["a", "v", 1, 1, 1]],  # out of order
    [["a", "v", 1, 1, 1], ["a", "w", 1, 1, 1]],  # twice
    [["a", "v", 5, 4, 1]],  # created after its last change
    [["a", "v", 1, 21, 1]],  # changed after the backup's revision
    [["", "v", 1, 1, 1]],
    [["a\x00b", "v", 1, 1, 1]],
    [["a", "v", 0, 1, 1]],
    [["a", "x" * (codec.MAX_VALUE_BYTES + 1), 1, 1, 1]],
])
def test_writing_bad_records_is_refused(bad: list[list[Any]]) -> None:
    with pytest.raises(errors.BadRequestError):
        backup_bytes(bad)


def test_every_flipped_bit_is_a_typed_error() -> None:
    data = backup_bytes(records(2))
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            flipped = bytearray(data)
            flipped[i] ^= bit
            try:
                b = read(bytes(flipped))
            except errors.BackupError:
                continue
            # A flip that still reads (e.g. in created_at) must not change any record.
            assert [list(r) for r in b.records] == records(2), (i, bit)


def test_every_truncation_is_a_typed_error() -> None:
    data = backup_bytes(records(3))
    for n in range(len(data)):
        with pytest.raises(errors.BackupError) as info:
            read(data[:n])
        assert "truncated" in info.value.message or "not a hakv backup" in info.value.message


def test_trailing_bytes_are_corruption() -> None:
    with pytest.raises(errors.BackupError, match="after its body"):
        read(backup_bytes() + b"\n")


@pytest.mark.parametrize("data", [
    b"", b"HAKVSNAP2" + bytes(80), b"hakvbackup1\n{}\n", b"\x00" * 100,
    b"#!/bin/sh\nrm -rf /\n",
])
def test_what_is_not_a_backup_says_so(data: bytes) -> None:
    with pytest.raises(errors.BackupError, match="not a hakv backup|truncated"):
        read(data)


def test_hostile_manifests_are_refused_before_the_body_is_read() -> None:
    data = backup_bytes([])
    for changes, why in [({"body_bytes": 1 << 40}, "more than"),
                         ({"format": 2}, "format 2"),
                         ({"revision": float("nan")}, "NaN"),
                         ({"revision": "20"}, "revision"),
                         ({"keys": -1}, "keys"),
                         ({"owners": "n1"}, "owners"),
                         ({"extra": 1}, "exactly")]:
        magic, manifest, body = data.split(b"\n", 2)
        m = {**json.loads(manifest), **changes}
        with pytest.raises(errors.BackupError, match=why):
            read(magic + b"\n" + json.dumps(m).encode() + b"\n" + body)
    dup = b'HAKVBACKUP1\n{"group":"a","group":"b"}\n'
    with pytest.raises(errors.BackupError, match="twice"):
        read(dup)
    with pytest.raises(errors.BackupError, match="longer than"):
        read(b"HAKVBACKUP1\n" + b" " * (backup.MAX_MANIFEST_BYTES + 10))


def test_a_resigned_body_is_still_checked_record_by_record() -> None:
    data = backup_bytes([])
    for body, why in [(b'["b","v",1,1,1]\n["a","v",1,1,1]\n', "out of order"),
                      (b'["a","v",1,1,1]', "newline"),
                      (b'{"__class__":"os.system"}\n', "record"),
                      (b'["a","v",1,99,1]\n', "after the backup"),
                      (b'["a","v",1,1,1]\n' + b"[" * 100000 + b"\n", "records")]:
        with pytest.raises(errors.BackupError, match=why):
            read(resign(data, body, keys=1))
    with pytest.raises(errors.BackupError, match="manifest says"):
        read(resign(data, b'["a","v",1,1,1]\n', keys=2))


@fuzz(300)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=200))
def test_fuzzed_files_never_crash_the_reader(noise: bytes, cut: int) -> None:
    base = backup_bytes(records(1))
    for data in (noise, b"HAKVBACKUP1\n" + noise, base[:cut] + noise, resign(base, noise)):
        try:
            read(data)
        except errors.BackupError:
            pass


def test_chunks_stay_below_a_replicated_command() -> None:
    recs = [[f"k{i:05d}", "v" * 3000, 1, 1, 1] for i in range(100)]
    recs += [[f"u{i:05d}", "é☃" * 1500, 1, 1, 1] for i in range(100)]  # 2-3 bytes each
    recs.append(["z", "\x01" * 7000, 1, 1, 1])  # escapes to 6 bytes a character
    parts = list(backup.chunks(recs))
    assert [r for part in parts for r in part] == recs
    assert len(parts) > 10
    for n, part in enumerate(parts):
        cmd = backup.restore_command({"phase": "chunk", "id": "x" * 32, "n": n,
                                      "records": part, "client": "c" * 128, "seq": 1})
        payload = codec.encode(cmd)
        assert len(payload) < codec.MAX_COMMAND_BYTES
        # pysyncobj's log entry (protocol 2 pickle) stays below its 64 KiB transmission
        assert len(pickle.dumps(payload, protocol=2)) < 60 * 1024


# =========================================================================== the store


class Log:
    """Feeds a store like Raft does (consecutive indexes)."""

    def __init__(self, store: GroupStore) -> None:
        self.store, self.index, self.seq = store, store.applied_index(), 0

    def raw(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.index += 1
        result = self.store.apply(self.index, codec.encode(cmd))
        self.store.commit()
        assert result is not None
        return result

    def write(self, op: str, **body: Any) -> dict[str, Any]:
        self.seq += 1
        return self.raw(codec.write_command(op, body, "c1", self.seq))

    def restore(self, phase: str, rid: str = "r1", **fields: Any) -> dict[str, Any]:
        return self.raw(backup.restore_command({"phase": phase, "id": rid, **fields}))


def code(result: dict[str, Any]) -> str:
    assert "error" in result, result
    return str(result["error"]["code"])


def restore_all(log: Log, recs: list[list[Any]], revision: int, rid: str = "r1",
                force: bool = False, budget: int = 2000) -> dict[str, Any]:
    begun = log.restore("begin", rid, revision=revision, keys=len(recs), force=force)
    if "error" in begun:
        return begun
    parts = list(backup.chunks(recs, budget))
    for n, part in enumerate(parts):
        assert "error" not in log.restore("chunk", rid, n=n, records=part)
    return log.restore("commit", rid, chunks=len(parts), keys=len(recs))


def test_a_store_restores_what_another_one_backed_up(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "a", G) as src, GroupStore(tmp_path / "b", G) as dst:
        a = Log(src)
        for i in range(50):
            a.write("put", key=f"k/{i:02d}", value=f"v{i}" * 50)
        a.write("put", key="k/07", value="again")
        a.write("delete", key="k/08")
        a.write("put", key="long/" + "é" * 500, value="deep")
        lease = a.write("lease_grant", ttl=5)["id"]
        a.write("put", key="lock/holder", value="me", lease=lease)
        snap = pages_of(src, 1 << 20)
        assert snap["revision"] == src.revision() and snap["dropped_ephemeral"] == 1
        assert "lock/holder" not in [r[0] for r in snap["records"]]
        assert len(snap["records"]) == 50

        b = Log(dst)
        result = restore_all(b, snap["records"], snap["revision"])
        assert result["revision"] == snap["revision"] + 1 and result["keys"] == 50
        assert dst.revision() == snap["revision"] + 1 and dst.key_count() == 50
        assert dst.history_info()[0] == dst.revision()  # older watches: compacted
        kvs, more, _ = dst.range_at("", 10000)
        assert not more
        assert [[kv["key"], kv["value"], kv["create_revision"], kv["mod_revision"],
                 kv["version"]] for kv in kvs] == snap["records"]
        # Writes go on above the restore's revision, with the restored versions.
        after = b.write("put", key="k/07", value="later")
        assert after["revision"] == dst.revision() == result["revision"] + 1
        assert dst.get("k/07")["version"] == 3  # type: ignore[index]
        # A retried commit answers the same, changes nothing.
        assert b.restore("commit", chunks=99, keys=0) == result


def test_a_restore_refuses_a_group_that_holds_keys_unless_forced(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "a", G) as store:
        log = Log(store)
        for i in range(5):
            log.write("put", key=f"old/{i}", value="x")
        recs = [["new/1", "a", 1, 2, 1], ["new/2", "b", 2, 2, 1]]
        refused = restore_all(log, recs, 2)
        assert code(refused) == "conflict" and "--force" in refused["error"]["message"]
        assert store.key_count() == 5
        result = restore_all(log, recs, 2, rid="r2", force=True)
        assert result["replaced"] == 5 and result["revision"] == 5 + 1  # max(5, 2) + 1
        assert [kv["key"] for kv in store.range("", 100)[0]] == ["new/1", "new/2"]


def test_restore_steps_are_checked_and_idempotent(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "a", G) as store:
        log = Log(store)
        recs = [["a", "1", 1, 1, 1], ["b", "2", 2, 2, 1], ["c", "3", 3, 3, 1]]
        log.restore("begin", revision=3, keys=3)
        assert "error" not in log.restore("chunk", n=0, records=recs[:2])
        assert log.restore("chunk", n=0, records=recs[:2])["duplicate"]
        assert code(log.restore("chunk", n=2, records=recs[2:])) == "bad_request"
        assert code(log.restore("chunk", n=1, records=recs[:1])) == "bad_request"  # order
        assert code(log.restore("chunk", "other", n=1, records=recs[2:])) == "conflict"
        assert code(log.restore("commit", chunks=1, keys=2)) == "bad_request"
        assert store.key_count() == 0  # nothing visible before the commit
        assert "error" not in log.restore("chunk", n=1, records=recs[2:])
        assert log.restore("commit", chunks=2, keys=3)["keys"] == 3
        # abort drops what is staged
        log.restore("begin", "r2", revision=3, keys=1, force=True)
        log.restore("chunk", "r2", n=0, records=recs[:1])
        assert log.restore("abort", "r2")["aborted"]
        assert code(log.restore("commit", "r2", chunks=1, keys=1)) == "conflict"
        assert store.key_count() == 3
        assert code(log.raw({"op": "restore", "phase": "begin", "id": "r3"})) == "bad_request"


def pages_of(store: GroupStore, page_bytes: int) -> dict[str, Any]:
    """A store's snapshot pages joined: header, all records, dropped count, page count."""
    pages = store.backup_pages(page_bytes)
    head = next(pages)
    records: list[list[Any]] = []
    dropped = n = 0
    for page in pages:
        records += page["records"]
        dropped += page["dropped_ephemeral"]
        n += 1
    return {**head, "records": records, "dropped_ephemeral": dropped, "pages": n}


def test_a_big_group_is_read_in_pages_of_one_transaction(tmp_path: Path) -> None:
    with GroupStore(tmp_path / "a", G) as store:
        log = Log(store)
        for i in range(10):
            log.write("put", key=f"k{i}", value="v" * 1000)
        pages = store.backup_pages(2500)
        head = next(pages)
        first = next(pages)
        assert [r[0] for r in first["records"]] == ["k0", "k1", "k2"]  # ~2,500 bytes a page
        # Writes after the transaction began are not in it: one revision, whatever follows.
        log.write("put", key="k5", value="changed")
        log.write("put", key="k99", value="new")
        rest = [r for page in pages for r in page["records"]]
        assert [r[0] for r in rest] == [f"k{i}" for i in range(3, 10)]
        assert all(r[1] == "v" * 1000 for r in rest) and head["revision"] == 10
        assert pages_of(store, 2500)["pages"] == 4  # 11 keys now: 3, 4 (k5 is short now), 3, 1


def test_streams_hand_pages_over_by_cursor_and_drop_idle_ones(tmp_path: Path) -> None:
    from hakv.node.snapshots import SnapshotStreams

    now = [0.0]
    with GroupStore(tmp_path / "a", G) as store:
        log = Log(store)
        for i in range(10):
            log.write("put", key=f"k{i}", value="v" * 1000)
        streams = SnapshotStreams("n1", page_bytes=2500, idle=30.0, max_streams=1,
                                  clock=lambda: now[0])
        try:
            page = streams.start(store.backup_pages, {"group": G}, timeout=5)
            assert page["group"] == G and page["revision"] == 10
            assert page["cursor"].startswith("n1/") and len(page["records"]) == 3
            with pytest.raises(errors.UnavailableError, match="already streams 1"):
                streams.start(store.backup_pages, {}, timeout=5)
            got = list(page["records"])
            while page["cursor"] is not None:
                page = streams.next(page["cursor"], timeout=5)
                got += page["records"]
            assert [r[0] for r in got] == [f"k{i}" for i in range(10)]
            assert streams.active() == 0  # the last page ended it
            with pytest.raises(errors.NotFoundError, match="start the snapshot again"):
                streams.next("n1/" + "0" * 32, timeout=5)
            # A stream nobody reads for `idle` seconds is dropped with its transaction.
            page = streams.start(store.backup_pages, {}, timeout=5)
            now[0] += 31.0
            with pytest.raises(errors.NotFoundError):
                streams.next(page["cursor"], timeout=5)
            assert streams.active() == 0
        finally:
            streams.close()


# =========================================================================== access


def test_snapshot_needs_the_snapshot_verb_and_restore_admin() -> None:
    policy = access.Policy(
        users={"ops": ("backup",), "dev": ("rw",), "boss": ("admin",)},
        roles={"backup": (access.Grant(G, frozenset({"snapshot"})),),
               "rw": (access.Grant(G, frozenset({"read", "write"})),),
               "admin": (access.Grant(G, frozenset({"admin"})),)})
    body = {"group": G}
    assert access.decide(("user", "ops"), "snapshot", G, body, policy) is None
    assert access.decide(("user", "dev"), "snapshot", G, body, policy) is not None
    assert access.decide(("user", "ops"), "snapshot", "other", body, policy) is not None
    assert access.decide(("user", "ops"), "restore", G, body, policy) is not None
    assert access.decide(("user", "boss"), "restore", G, body, policy) is None


# =========================================================================== a real cluster


@pytest.mark.slow
def test_save_kill_wipe_restore_read_everything_back(tmp_path: Path) -> None:
    from hakv.cli import cli
    from tests.support import leader_of, start_api_cluster, wait_for, wait_healthy

    nodes = ["n1", "n2", "n3"]
    lc = start_api_cluster(tmp_path / "c", nodes, {G: nodes})
    run_dir = str(lc.dir)
    file = tmp_path / "g1.hakvbackup"
    runner = CliRunner()

    def hakv(*args: str) -> Any:
        return runner.invoke(cli, ["--dir", run_dir, "--timeout", "20", *args])

    try:
        with lc.client(timeout=20) as c:
            expected = {f"k/{i:04d}": f"value {i} " + "é" * (i % 700) for i in range(400)}
            expected["long/" + "x" * 1015] = "a key of three kv tree levels"
            # ~4.5 MB more: the snapshot comes in more than one 4 MiB page.
            expected.update({f"big/{i:03d}": chr(97 + i % 26) * 30_000 for i in range(150)})
            for key, value in expected.items():
                c.put(G, key, value)
            c.put(G, "k/0001", "changed")
            expected["k/0001"] = "changed"
            lease = c.lease_grant(G, 60)
            c.put(G, "lock/holder", "n1", lease=lease.id)
            listed = c.range(G, "", limit=10000)
            before = {kv.key: kv for kv in listed.kvs}
            old_revision = listed.revision

        saved = hakv("snapshot", "save", G, str(file), "--json")
        assert saved.exit_code == 0, saved.output
        manifest = json.loads(saved.output)
        assert manifest["revision"] >= old_revision
        assert manifest["dropped_ephemeral"] == 1
        assert manifest["pages"] == 2, manifest
        checked = hakv("snapshot", "status", str(file))
        assert checked.exit_code == 0 and checked.output.strip().endswith("ok"), checked.output

        # Disaster: every owner killed and its data dir gone; they come back empty.
        for n in nodes:
            lc.kill(n)
        for n in nodes:
            shutil.rmtree(lc.data_dir(n))
        for n in nodes:
            lc.start(n, wait=0)
        wait_healthy(lc, nodes)
        wait_for(lambda: leader_of(lc.endpoints(), G), 30, what="a leader of the new g1")

        with lc.client(timeout=20) as c:
            wait_for(lambda: c.range(G, "", limit=10).kvs == [], 30, what="an empty g1")
            restored = hakv("snapshot", "restore", str(file), "--group", G, "--json")
            assert restored.exit_code == 0, restored.output
            result = json.loads(restored.output)
            assert result["revision"] == manifest["revision"] + 1
            assert result["keys"] == len(expected) + 1  # and warm-up
            assert result["chunks"] > 1

            after = {kv.key: kv for kv in c.range(G, "", limit=10000).kvs}
            assert {k: kv.value for k, kv in after.items() if k != "warm-up"} == expected
            for key, kv in after.items():  # revisions and versions as they were
                old = before[key]
                assert (kv.create_revision, kv.mod_revision, kv.version) == (
                    old.create_revision, old.mod_revision, old.version), key
            assert "lock/holder" not in after
            # Revisions never go backwards; watchers from before get "compacted".
            put = c.put(G, "k/new", "after the restore")
            assert put.revision > result["revision"] > old_revision
            with pytest.raises(errors.CompactedError), \
                    c.watch(G, "", start_revision=old_revision) as w:
                next(iter(w))
            # Every owner serves the same keys (read serializable from each).
            for n in nodes:
                with Client(lc.endpoint(n), timeout=10) as one:
                    wait_for(lambda one=one: one.get(G, "k/new", serializable=True),
                             20, what=f"the restored keys on {n}")

        again = hakv("snapshot", "restore", str(file), "--group", G)
        assert again.exit_code == errors.ConflictError.exit_code, again.output
        assert "--force" in again.output
        # A corrupt file: a clear error, exit code 2, nothing sent.
        data = bytearray(file.read_bytes())
        data[-5] ^= 0x20
        file.write_bytes(bytes(data))
        bad = hakv("snapshot", "status", str(file))
        assert bad.exit_code == 2 and "bad_backup" in bad.output, bad.output
        bad = hakv("snapshot", "status", str(file), "--json")
        assert bad.exit_code == 2 and json.loads(bad.output)["ok"] is False
        refused = hakv("snapshot", "restore", str(file), "--group", G, "--force")
        assert refused.exit_code == 2 and "checksum" in refused.output
    finally:
        lc.down()


def test_a_backup_larger_than_a_read_block_is_checked_and_read_in_blocks() -> None:
    """verify() and records() read the body in 1 MiB blocks: lines that straddle a block
    come back whole, in order (~3 MB of records here)."""
    recs = [[f"k/{i:05d}", chr(97 + i % 26) * (997 + i % 13), i + 1, i + 1, 1]
            for i in range(3000)]
    data = backup_bytes(recs, revision=5000)
    assert len(data) > 2.5 * (1 << 20)  # three blocks
    f = io.BytesIO(data)
    manifest = backup.verify(f, "big")
    assert manifest["keys"] == 3000
    assert [list(r) for r in backup.records(f, manifest, "big")] == recs
