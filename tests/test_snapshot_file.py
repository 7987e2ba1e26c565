"""Snapshot files without pickle (issue 15, point 4): hakv.storage.snapshot_file and
StoreMachine's write_snapshot/read_snapshot. Round trips of real raft tuples, a real group
catching a follower up through a v2 snapshot, old v1 files still read, and hostile,
truncated, bit-flipped and garbage files refused with a DataDirError, nothing run."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pysyncobj.pickle
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pysyncobj.node import TCPNode

from hakv.core import codec
from hakv.errors import DataDirError
from hakv.raft.host import RaftHost
from hakv.raft.member import GroupMember
from hakv.raft.settings import RaftSettings
from hakv.raft.wire import NodeListener
from hakv.storage import snapshot_file
from hakv.storage.machine import StoreMachine
from tests.support import free_ports

GROUP = "g"
A, B, C = "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"


def _put(i: int) -> bytes:
    return codec.encode(codec.write_command("put", {"key": f"k{i:03d}", "value": str(i)},
                                            "c", i + 1))


def _regular(payload: bytes, func: int = 0) -> bytes:
    """A log entry as pysyncobj's ``@replicated`` makes it (type byte 0, then its pickle)."""
    return b"\x00" + pysyncobj.pickle.dumps((func, (payload,), {}))


NO_OP = b"\x01"
MEMBERSHIP = b"\x02" + pysyncobj.pickle.dumps(["add", C, TCPNode(C)])

#: Raft tuples as pysyncobj hands them to the serializer: (last, previous, cluster).
RAFT_TUPLES = {
    "voters": ((_regular(_put(1)), 11, 3), (_regular(_put(0)), 10, 3),
               {TCPNode(A), TCPNode(B), TCPNode(C)}),
    "read-only writer": ((NO_OP, 2, 1), (NO_OP, 1, 0), {TCPNode(A), TCPNode(B), None}),
    "one member": ((MEMBERSHIP, 5, 2), (NO_OP, 4, 2), {TCPNode("[::1]:65535")}),
    "big command, big index": ((_regular(bytes(range(256)) * 400), 2 ** 64 - 1, 2 ** 63),
                               (NO_OP, 2 ** 64 - 2, 7), {TCPNode("node-1.example:1")}),
}


def _same(got: Any, want: Any) -> None:
    """Equal, and the very objects pysyncobj expects: tuples of (bytes, int, int), a set
    of TCPNode objects (all attributes equal) and None."""
    assert type(got) is tuple and len(got) == 3
    assert got[:2] == want[:2]
    for entry in got[:2]:
        assert type(entry) is tuple and [type(x) for x in entry] == [bytes, int, int]
    assert type(got[2]) is set and got[2] == want[2]
    nodes = {n.id: n for n in want[2] if n is not None}
    for node in got[2]:
        if node is not None:
            assert type(node) is TCPNode and vars(node) == vars(nodes[node.id])


def _machine(directory: Path, puts: int = 0) -> StoreMachine:
    directory.mkdir(parents=True, exist_ok=True)
    machine = StoreMachine(GROUP, str(directory))
    for i in range(puts):
        machine.apply(i + 1, _put(i))
    machine.commit()
    return machine


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Callable[..., StoreMachine]]:
    made: list[StoreMachine] = []

    def make(name: str, puts: int = 0) -> StoreMachine:
        made.append(_machine(tmp_path / name, puts))
        return made[-1]

    yield make
    for machine in made:
        machine.close()


@pytest.fixture
def snapshot(tmp_path: Path, machines: Callable[..., StoreMachine]) -> bytes:
    """A v2 snapshot of a store holding 5 keys (its raft tuple: RAFT_TUPLES["voters"])."""
    path = tmp_path / "leader.snapshot"
    machines("leader", puts=5).write_snapshot(str(path), RAFT_TUPLES["voters"])
    return path.read_bytes()


def _store_part(v2: bytes) -> bytes:
    _, raft_len, _, _, _ = snapshot_file.HEADER.unpack_from(v2)
    return v2[snapshot_file.HEADER.size + raft_len:]


def _v1(raft: bytes, store: bytes) -> bytes:
    """A snapshot as hakv wrote it before format 2, around any pickle ``raft``."""
    return (b"HAKVSNAP1" + struct.pack("<Q", len(raft)) + raft
            + struct.pack("<Q", len(store)) + store)


def _v2(raft: bytes, store: bytes) -> bytes:
    """A format-2 file around any raft part, checksums right (a hostile writer's file)."""
    return (snapshot_file.HEADER.pack(snapshot_file.MAGIC_V2, len(raft), len(store),
                                      hashlib.sha256(raft).digest(),
                                      hashlib.sha256(store).digest()) + raft + store)


def _read(data: bytes) -> tuple[Any, bytes]:
    out = io.BytesIO()
    raft = snapshot_file.read(io.BytesIO(data), "snap", out, TCPNode)
    return raft, out.getvalue()


def _read_into(machine: StoreMachine, tmp_path: Path, data: bytes) -> Any:
    """What the machine reads, with its member addresses made nodes as GroupMember does."""
    path = tmp_path / "incoming.snapshot"
    path.write_bytes(data)
    machine.make_node = TCPNode
    return machine.read_snapshot(str(path))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("raft", RAFT_TUPLES.values(), ids=RAFT_TUPLES.keys())
def test_a_raft_tuple_round_trips_to_the_objects_pysyncobj_expects(raft: Any) -> None:
    encoded = snapshot_file.encode_raft(raft)
    json.loads(encoded)  # JSON text, no pickle
    _same(snapshot_file.decode_raft(encoded, "snap", TCPNode), raft)
    out = io.BytesIO()
    snapshot_file.write(out, raft, io.BytesIO(b"store bytes"))
    assert out.getvalue().startswith(b"HAKVSNAP2")
    got, store = _read(out.getvalue())
    _same(got, raft)
    assert store == b"store bytes"


@pytest.mark.parametrize("bad", [
    None, (), ((NO_OP, 2, 1), (NO_OP, 1, 0)), (("noop", 2, 1), (NO_OP, 1, 0), set()),
    ((NO_OP, 3, 1), (NO_OP, 1, 0), set()), ((NO_OP, 2, 1), (NO_OP, 1, 0), {"no-port"}),
    ((NO_OP, 2, 1), (NO_OP, 1, 0), {object()}), ((NO_OP, -1, 1), (NO_OP, -2, 0), set()),
    ((NO_OP, 2, 1), (NO_OP, 1, 2), set()), ((NO_OP, 2, 1), (NO_OP, 1, 0), {A, TCPNode(A)}),
])
def test_what_is_not_a_raft_tuple_is_not_written(bad: Any) -> None:
    with pytest.raises(ValueError, match="not a pysyncobj raft tuple"):
        snapshot_file.encode_raft(bad)


def test_a_machine_snapshot_round_trips_and_restores_a_store_that_is_behind(
        tmp_path: Path, machines: Callable[..., StoreMachine], snapshot: bytes) -> None:
    assert snapshot.startswith(b"HAKVSNAP2") and b"pysyncobj" not in snapshot
    follower = machines("follower", puts=2)
    _same(_read_into(follower, tmp_path, snapshot), RAFT_TUPLES["voters"])
    assert follower.applied_index() == 5
    assert follower.store.get("k004") is not None
    ahead = machines("ahead", puts=7)  # a store ahead of the snapshot is kept
    _read_into(ahead, tmp_path, snapshot)
    assert ahead.applied_index() == 7


def test_an_old_v1_snapshot_is_still_read(
        tmp_path: Path, machines: Callable[..., StoreMachine], snapshot: bytes) -> None:
    for raft in RAFT_TUPLES.values():  # pickled as hakv's v1 writer did: pickle.dumps,
        for protocol in (4, 5):  # protocol 4 by default (5 from Python 3.14 on)
            _same(_read(_v1(pickle.dumps(raft, protocol), b"x"))[0], raft)
    follower = machines("follower")
    old = _v1(pickle.dumps(RAFT_TUPLES["voters"]), _store_part(snapshot))
    _same(_read_into(follower, tmp_path, old), RAFT_TUPLES["voters"])
    assert follower.applied_index() == 5


def test_by_default_members_decode_to_their_addresses() -> None:
    raft = RAFT_TUPLES["read-only writer"]
    got = snapshot_file.decode_raft(snapshot_file.encode_raft(raft), "snap")
    assert got[2] == {A, B, None}


# --------------------------------------------------------------------------- a real group


def test_a_group_catches_a_follower_up_through_a_v2_snapshot(tmp_path: Path) -> None:
    """Three in-process members on StoreMachines, the log compacted after 20 entries: the
    third member, started after 60 writes, can only catch up from the leader's snapshot."""
    settings_ = RaftSettings(log_compaction_entries=20)
    addresses = [f"127.0.0.1:{port}" for port in free_ports(3)]
    hosts: list[RaftHost] = []
    stores: list[StoreMachine] = []

    def start(address: str) -> RaftHost:
        host = RaftHost("127.0.0.1", int(address.rsplit(":", 1)[1]),
                        codec.encode(codec.BARRIER))
        directory = tmp_path / address.replace(":", "_")
        machine = _machine(directory)
        stores.append(machine)
        peers = [a for a in addresses if a != address]

        def factory(listener: NodeListener, poller: Any) -> GroupMember:
            return GroupMember(GROUP, address, peers, machine, str(directory), listener,
                               poller, settings_)

        host.add_member(factory)
        host.start()
        hosts.append(host)
        return host

    def wait(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    try:
        first = [start(a) for a in addresses[:2]]
        wait(lambda: any(h.members[GROUP].leads() for h in first), "a leader")
        leader = next(h for h in first if h.members[GROUP].leads())
        member = leader.members[GROUP]
        for i in range(60):
            member.submit(_put(i)).wait(5)
        leader_dir = tmp_path / leader.listener.address.replace(":", "_")
        wait(lambda: (leader_dir / "snapshot").exists()
             and member.status()["log_entries"] < 40, "log compaction on the leader")
        assert (leader_dir / "snapshot").read_bytes().startswith(b"HAKVSNAP2")
        late = start(addresses[2])
        late_machine = stores[-1]
        wait(lambda: late_machine.applied_index() >= 60, "the late member to catch up")
        # It was sent the leader's snapshot: its own log never reached the compaction size.
        late_dir = tmp_path / addresses[2].replace(":", "_")
        assert (late_dir / "snapshot").read_bytes().startswith(b"HAKVSNAP2")
        status = late.members[GROUP].status()
        assert status["role"] == "follower" and status["raft_applied"] >= 60
        assert late.members[GROUP]._journal[0][1] > 1  # its log starts at the snapshot
        assert [late_machine.store.get(f"k{i:03d}") is not None for i in range(60)] == [True] * 60
    finally:
        for host in hosts:
            host.stop()
        for machine in stores:
            machine.close()


# --------------------------------------------------------------------------- hostile v1


class _Touch:
    """A class whose unpickling creates a file: via ``__setstate__`` (NEWOBJ + BUILD, no
    REDUCE), so only ``find_class`` stands in its way."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __setstate__(self, state: dict[str, str]) -> None:
        Path(state["path"]).touch()


def _reducing(call: Callable[..., Any], *args: Any) -> Any:
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return call, args
    return Evil()


def _hostile(target: Path) -> dict[str, bytes]:
    path = str(target)
    entries = ((NO_OP, 2, 1), (NO_OP, 1, 0))
    return {
        "os.mkdir": pickle.dumps((*entries, {_reducing(os.mkdir, path)})),
        "builtins.exec": pickle.dumps(_reducing(builtins.exec, f"open({path!r}, 'w')")),
        "builtins.eval": pickle.dumps(_reducing(builtins.eval, f"open({path!r}, 'w')")),
        "subprocess.call": pickle.dumps(_reducing(subprocess.call, ["touch", path])),
        "os.system, protocol 0": pickle.dumps(_reducing(os.system, f"touch {path}"), 0),
        "__setstate__": pickle.dumps((*entries, {_Touch(path)})),
        "TCPNode called": pickle.dumps((*entries, {_reducing(TCPNode, path)})),
    }


@pytest.mark.parametrize("kind", list(_hostile(Path("x"))))
def test_a_hostile_v1_pickle_is_refused_and_runs_nothing(
        tmp_path: Path, machines: Callable[..., StoreMachine], snapshot: bytes,
        kind: str) -> None:
    target = tmp_path / "pwned"
    hostile = _hostile(target)[kind]
    follower = machines("follower", puts=2)
    with pytest.raises(DataDirError, match="corrupt hakv snapshot.*refused") as exc:
        _read_into(follower, tmp_path, _v1(hostile, _store_part(snapshot)))
    assert "move it away" in str(exc.value)
    assert not target.exists()
    assert follower.applied_index() == 2  # the store was left alone


@pytest.mark.parametrize("kind", list(_hostile(Path("x"))))
def test_the_restricted_unpickler_alone_refuses_every_other_global(
        tmp_path: Path, kind: str) -> None:
    """The second line, without the opcode check in front of it."""
    target = tmp_path / "pwned"
    unpickler = snapshot_file._V1Unpickler(_hostile(target)[kind], "snap")
    try:
        unpickler.load()
    except DataDirError as exc:
        assert "refused without loading it" in str(exc)
    except TypeError:  # TCPNode (the inert stand-in) called with arguments
        assert kind == "TCPNode called"
    else:
        raise AssertionError("loaded")
    assert not target.exists()


# --------------------------------------------------------------------------- damaged files


def test_a_truncated_snapshot_is_refused_and_the_store_kept(
        tmp_path: Path, machines: Callable[..., StoreMachine], snapshot: bytes) -> None:
    follower = machines("follower", puts=2)
    raft_end = snapshot_file.HEADER.size + snapshot_file.HEADER.unpack_from(snapshot)[1]
    for size in (1, 8, 9, 40, 88, 89, raft_end - 1, raft_end, raft_end + 4096,
                 len(snapshot) - 1):
        with pytest.raises(DataDirError, match="truncated"):
            _read_into(follower, tmp_path, snapshot[:size])
    old = _v1(pickle.dumps(RAFT_TUPLES["voters"]), _store_part(snapshot))
    for size in (12, 20, len(old) // 2, len(old) - 1):
        with pytest.raises(DataDirError, match="truncated|corrupt"):
            _read_into(follower, tmp_path, old[:size])
    assert follower.applied_index() == 2


def test_every_flipped_bit_is_refused(
        tmp_path: Path, machines: Callable[..., StoreMachine], snapshot: bytes) -> None:
    raft_end = snapshot_file.HEADER.size + snapshot_file.HEADER.unpack_from(snapshot)[1]
    positions = [*range(raft_end), *range(raft_end, len(snapshot), 101), len(snapshot) - 1]
    for pos in positions:
        for bit in (0, 7) if pos < raft_end else (3,):
            flipped = bytearray(snapshot)
            flipped[pos] ^= 1 << bit
            with pytest.raises(DataDirError):
                _read(bytes(flipped))
    follower = machines("follower", puts=2)
    flipped = bytearray(snapshot)
    flipped[-100] ^= 0x10
    with pytest.raises(DataDirError, match="checksum of its store part"):
        _read_into(follower, tmp_path, bytes(flipped))
    assert follower.applied_index() == 2


@pytest.mark.parametrize("data", [
    b"", b"H", b"HAKVSNAP", b"HAKVSNAP3" + bytes(100), b"\x1f\x8b\x08\x00" + bytes(50),
    b'{"last": 1}', bytes(4096), b"HAKVSNAP2" + b"\xff" * 200, b"HAKVSNAP1" + b"\xff" * 200,
], ids=["empty", "one-byte", "magic-prefix", "v3", "gzip", "json", "zeros", "v2-ff", "v1-ff"])
def test_garbage_is_refused(tmp_path: Path, machines: Callable[..., StoreMachine],
                            data: bytes) -> None:
    with pytest.raises(DataDirError, match="move it away"):
        _read_into(machines("follower"), tmp_path, data)


@pytest.mark.parametrize("raft", [
    b"", b"[]", b"{}", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b'{"last": NaN}',
    b'{"last":1,"last":1,"previous":1,"members":[]}',
    b'{"last":{"command":"AQ==","index":2,"term":1},'
    b'"previous":{"command":"AQ==","index":1,"term":0},"members":["x:1","x:1"]}',
    b'{"last":{"command":"AQ==","index":2,"term":1},'
    b'"previous":{"command":"AQ==","index":1,"term":0},"members":[null,null]}',
    b'{"last":{"command":"AQ==","index":2,"term":1},'
    b'"previous":{"command":"AQ==","index":1,"term":0},"members":["x:99999"]}',
    b'{"last":{"command":"AQ==","index":2,"term":true},'
    b'"previous":{"command":"AQ==","index":1,"term":0},"members":[]}',
    b'{"last":{"command":"AQ==","index":2,"term":1},'
    b'"previous":{"command":"AQ==","index":1,"term":2},"members":[]}',
    b'{"last":{"command":"!!","index":2,"term":1},'
    b'"previous":{"command":"AQ==","index":1,"term":0},"members":[]}',
    b'{"last":{"command":"","index":2,"term":1},'
    b'"previous":{"command":"AQ==","index":1,"term":0},"members":[]}',
    b'{"last":{"command":"AQ==","index":2,"term":1,"x":0},'
    b'"previous":{"command":"AQ==","index":1,"term":0},"members":[]}',
], ids=lambda raft: raft[:40].decode("latin-1"))
def test_a_v2_raft_part_that_no_raft_tuple_encodes_to_is_refused(raft: bytes) -> None:
    with pytest.raises(DataDirError, match="corrupt hakv snapshot .raft part"):
        _read(_v2(raft, b""))


def test_a_header_claiming_a_huge_raft_part_is_refused_unread() -> None:
    header = snapshot_file.HEADER.pack(snapshot_file.MAGIC_V2, 2 ** 62, 0, bytes(32),
                                       bytes(32))
    with pytest.raises(DataDirError, match="more than"):
        _read(header)
    with pytest.raises(DataDirError, match="more than"):
        _read(b"HAKVSNAP1" + struct.pack("<Q", 2 ** 62))


# --------------------------------------------------------------------------- properties


def _well_formed(raft: Any) -> None:
    last, previous, cluster = raft
    assert previous[1] + 1 == last[1]
    assert all(m is None or type(m) is TCPNode for m in cluster)


_FAST = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FAST
@given(st.one_of(st.binary(max_size=300),
                 st.builds(lambda magic, rest: magic + rest,
                           st.sampled_from([b"HAKVSNAP1", b"HAKVSNAP2"]),
                           st.binary(max_size=300))))
def test_arbitrary_bytes_are_only_ever_a_data_dir_error(data: bytes) -> None:
    with pytest.raises(DataDirError):
        _read(data)


@_FAST
@given(st.binary(max_size=400))
def test_an_arbitrary_v1_pickle_is_a_data_dir_error_or_a_raft_tuple(raft: bytes) -> None:
    try:
        got, _ = _read(_v1(raft, b""))
    except DataDirError:
        return
    _well_formed(got)


@_FAST
@given(data=st.data())
def test_a_mutated_snapshot_is_refused_or_unchanged(snapshot: bytes, data: Any) -> None:
    old = data.draw(st.booleans())
    valid = _v1(pickle.dumps(RAFT_TUPLES["voters"]), b"store") if old else snapshot
    mutated = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated)))
        action = data.draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        if action == "set" and pos < len(mutated):
            mutated[pos] = data.draw(st.integers(0, 255))
        elif action == "insert":
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del mutated[pos:pos + data.draw(st.integers(1, 8))]
        else:
            del mutated[pos:]
    try:
        got, store = _read(bytes(mutated))
    except DataDirError:
        return
    if old:  # v1 has no checksums: a changed command or index may go unnoticed
        _well_formed(got)
    else:
        assert bytes(mutated) == valid
        _same(got, RAFT_TUPLES["voters"])
