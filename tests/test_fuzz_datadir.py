"""Fuzzing a node's data dir (issue 15, point 7): a group's raft journal and its meta file
(term and vote) mutated every way hypothesis finds — truncated, bit-flipped, overwritten,
replaced — are either accepted by ``hakv.storage.journal.check_group_journal`` *and* then
load in pysyncobj without an exception, exactly as checked, or refused with a
``DataDirError`` (never another exception, never a silent reset of the term and vote).
The store half of a data dir (LMDB) is covered by tests/test_store_recovery.py and the
node's start-up checks; the last test here starts a real node on a damaged journal."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pysyncobj.journal import FileJournal
from pysyncobj.node import TCPNode
from pysyncobj.pickle import dumps

from hakv.errors import DataDirError
from hakv.storage.journal import check_group_journal, read_journal_meta
from tests.fuzzing import fuzz


def _call(payload: bytes) -> bytes:
    """A regular command as pysyncobj logs it: type 0, the pickled call."""
    return b"\x00" + dumps((3, (payload,)))


ENTRIES = [(b"\x01", 1, 0), (_call(b"put-a"), 2, 1), (_call(b"put-\xc3\xa9"), 3, 1),
           (_call(b"txn" * 20), 4, 2), (b"\x03" + dumps(2), 5, 2),
           (b"\x02" + dumps(["add", "127.0.0.1:7004", TCPNode("127.0.0.1:7004")]), 6, 3),
           (_call(b"put-c" * 50), 7, 3)]


def _write_journal(directory: Path, entries: list[tuple[bytes, int, int]] = ENTRIES,
                   term: int = 3, vote: str | None = "127.0.0.1:7001") -> None:
    journal = FileJournal(str(directory / "raft.journal"))
    for command, index, t in entries:
        journal.add(command, index, t)
    journal.setCurrentTerm(term, vote)
    journal._destroy()  # flushes and closes the file (pysyncobj: deletes nothing)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("journal")
    _write_journal(d)
    return d


def test_a_good_journal_is_summarised(pristine: Path) -> None:
    s = check_group_journal(str(pristine), "g1")
    assert (s.records, s.first_index, s.last_index, s.last_term) == (7, 1, 7, 3)
    assert s.meta == {"currentTerm": 3, "votedForNodeId": "127.0.0.1:7001"}


def test_a_new_member_has_nothing_to_check(tmp_path: Path) -> None:
    assert check_group_journal(str(tmp_path), "g1").records == 0


def _mutations() -> st.SearchStrategy[tuple[str, str, int, bytes]]:
    return st.tuples(
        st.sampled_from(["raft.journal", "raft.journal.meta"]),
        st.sampled_from(["truncate", "flip", "overwrite", "replace", "empty", "delete"]),
        st.integers(min_value=0, max_value=2000),
        st.binary(min_size=1, max_size=64))


def _mutate(path: Path, how: str, at: int, data: bytes) -> None:
    raw = path.read_bytes()
    at = at % (len(raw) + 1)
    if how == "truncate":
        path.write_bytes(raw[:at])
    elif how == "flip" and raw:
        i = min(at, len(raw) - 1)
        path.write_bytes(raw[:i] + bytes([raw[i] ^ (data[0] or 1)]) + raw[i + 1:])
    elif how == "overwrite":
        path.write_bytes(raw[:at] + data + raw[at + len(data):])
    elif how in ("replace", "flip"):  # (a flip of an empty file: new bytes)
        path.write_bytes(data)
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()


def _loaded(directory: Path) -> tuple[list[Any], dict[str, Any]]:
    journal = FileJournal(str(directory / "raft.journal"))
    try:
        entries = [journal[i] for i in range(len(journal))]
        meta = {"currentTerm": journal.getCurrentTerm(),
                "votedForNodeId": journal.getVotedForNodeId()}
    finally:
        journal._destroy()  # flushes and closes the file (pysyncobj: deletes nothing)
    return entries, meta


@settings(fuzz(300), suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(st.lists(_mutations(), min_size=1, max_size=3))
def test_a_damaged_journal_is_refused_or_loads_as_checked(
        pristine: Path, tmp_path: Path, mutations: list[tuple[str, str, int, bytes]]) -> None:
    d = tmp_path / "case"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(pristine, d)
    for name, how, at, data in mutations:
        if (d / name).exists():
            _mutate(d / name, how, at, data)
    try:
        summary = check_group_journal(str(d), "g1")
    except DataDirError as exc:
        assert "g1" in exc.message and ("move it away" in exc.message
                                        or "cannot be read" in exc.message), exc.message
        return
    # Accepted: pysyncobj must load it, with the records and the term the check saw.
    if not (d / "raft.journal").exists():
        return  # no log: a new member (pysyncobj makes one)
    entries, meta = _loaded(d)
    assert len(entries) == summary.records
    if entries:
        assert (entries[0][1], entries[-1][1], entries[-1][2]) == (
            summary.first_index, summary.last_index, summary.last_term)
    assert meta["currentTerm"] == summary.meta.get("currentTerm", 0)
    assert meta["votedForNodeId"] == summary.meta.get("votedForNodeId")


class _Touch:
    def __reduce__(self) -> tuple[Any, ...]:
        return (open, ("/tmp/hakv-meta-pwned", "w"))


@pytest.mark.parametrize("meta, says", [
    (pickle.dumps(_Touch()), "refused without loading it"),
    (pickle.dumps({"currentTerm": 3, "votedForNodeId": 7}), "votedForNodeId = 7"),
    (pickle.dumps({"currentTerm": -1}), "currentTerm = -1"),
    (pickle.dumps({"currentTerm": True}), "currentTerm = True"),
    (pickle.dumps({"other": 1}), "unknown entry 'other'"),
    (pickle.dumps([1, 2]), "EMPTY_LIST"),
    (pickle.dumps("text"), "holds a str"),
    (b"garbage", "corrupt"),
    (b"\x80\x02}q\x00.extra", "corrupt"),
])
def test_a_hostile_or_wrong_meta_file_is_refused(tmp_path: Path, meta: bytes,
                                                  says: str) -> None:
    (tmp_path / "raft.journal.meta").write_bytes(meta)
    with pytest.raises(DataDirError, match="the raft term and vote of group g1") as caught:
        read_journal_meta(str(tmp_path / "raft.journal.meta"), "g1")
    assert says in caught.value.message
    assert not os.path.exists("/tmp/hakv-meta-pwned")


def test_a_lost_meta_file_is_refused_when_the_log_has_terms(tmp_path: Path) -> None:
    """pysyncobj takes a missing meta for term 0 and no vote: the node would vote again in
    a term it already voted in. The log's last term says the meta was lost."""
    _write_journal(tmp_path)
    (tmp_path / "raft.journal.meta").unlink()
    with pytest.raises(DataDirError, match="is missing, but the log holds entries of term 3"):
        check_group_journal(str(tmp_path), "g1")


@pytest.mark.parametrize("command, says", [
    (b"\x00" + pickle.dumps(_Touch(), 2), "the Python global io open"),
    (b"\x00" + pickle.dumps(_Touch(), 4), "pickle opcode STACK_GLOBAL"),
    (b"\x07" + dumps(1), "command type 07"),
    (b"\x01junk", "a no-op with data"),
    (_call(b"ok") + b"tail", "data after the pickle's end"),
    (b"\x00\x80\x02(", "a broken pickle"),
])
def test_a_command_pysyncobj_would_not_write_is_refused_unloaded(
        tmp_path: Path, command: bytes, says: str) -> None:
    """pysyncobj unpickles each command as it applies it: a planted pickle in the log
    would run code in the node."""
    _write_journal(tmp_path, [(b"\x01", 1, 1), (command, 2, 1)], term=1)
    with pytest.raises(DataDirError, match="index 2") as caught:
        check_group_journal(str(tmp_path), "g1")
    assert says in caught.value.message
    assert not os.path.exists("/tmp/hakv-meta-pwned")


def test_records_out_of_order_are_refused(tmp_path: Path) -> None:
    _write_journal(tmp_path, [(b"\x01", 1, 1), (b"\x01", 3, 1)], term=1)
    with pytest.raises(DataDirError, match="index 3 after 1"):
        check_group_journal(str(tmp_path), "g1")
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    _write_journal(tmp_path, [(b"\x01", 1, 2), (b"\x01", 2, 1)], term=2)
    with pytest.raises(DataDirError, match="term 1 after term 2"):
        check_group_journal(str(tmp_path), "g1")


@pytest.mark.slow
def test_a_node_with_a_damaged_journal_stops_with_the_reason(tmp_path: Path) -> None:
    """Real processes: n1's g1 log truncated while it is down; it refuses to start and
    says which file and what to do (before: ``internal: error: unpack requires a buffer of
    4 bytes``); the data stays as it was for inspection."""
    from tests.support import post, start_api_cluster, wait_for

    lc = start_api_cluster(tmp_path, ["n1", "n2", "n3"], {"g1": ["n1", "n2", "n3"]})
    try:
        for i in range(20):
            assert post(lc.endpoint("n2"), "put", {"group": "g1", "key": f"k{i}",
                                                   "value": "v"})[0] == 200
        lc.stop("n1")
        journal = lc.data_dir("n1") / "groups" / "g1" / "raft.journal"
        raw = journal.read_bytes()
        journal.write_bytes(raw[:200])
        with pytest.raises(Exception, match="exited during start-up"):
            lc.start("n1", wait=20)
        log = lc.log_tail("n1")
        assert "raft log of group g1" in log and "is damaged" in log, log
        assert "move it away" in log and "Traceback" not in log, log
        assert journal.read_bytes() == raw[:200]  # nothing touched
        wait_for(lambda: post(lc.endpoint("n2"), "get", {"group": "g1", "key": "k19"})[0]
                 == 200, 15, what="g1 to serve from n2 and n3")  # the others go on
    finally:
        lc.down()
