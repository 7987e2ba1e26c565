"""Start-up failures of ``hakv node`` and ``hakv inspect`` on real processes and data dirs.

A node that cannot start because of its configuration (topology, node id, data dir, ports,
damaged store) must exit with code 7 (ConfigError) and one stderr line
``hakv: error: <code>: <message>`` that says what is wrong -- never a traceback, never hang.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hakv
from hakv.client.client import Client
from hakv.core.topology import load_topology
from hakv.dev.local import LocalCluster
from hakv.node.process import prepare_data_dir
from tests.support import post, wait_for, write_topology

pytestmark = pytest.mark.slow

NODES = ["n1", "n2", "n3"]
GROUPS = {"g1": NODES}
CONFIG_EXIT = 7
_ROOT = str(Path(hakv.__file__).resolve().parent.parent)


def _hakv(*args: str, timeout: float = 20,
          extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("HAKV_DEBUG", None)
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH", "")) if p)
    try:
        return subprocess.run(
            [sys.executable, "-m", "hakv", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed it
        pytest.fail(
            f"`hakv {' '.join(args)}` did not exit within {timeout}s; stderr so far: {exc.stderr!r}"
        )


def _node(
    topology: Path | str, node: str, data_dir: Path | str
) -> subprocess.CompletedProcess[str]:
    return _hakv("node", "--topology", str(topology), "--node", node, "--data-dir", str(data_dir),
                 "--insecure")


def _assert_config_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 7 and exactly one stderr line "hakv: error: ..." containing every needle."""
    detail = f"exit {proc.returncode}\nstdout: {proc.stdout!r}\nstderr: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr, detail
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, detail
    assert lines[0].startswith("hakv: error: "), detail
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, detail)
    assert proc.returncode == CONFIG_EXIT, detail
    return lines[0]


@pytest.fixture
def topo(tmp_path: Path) -> Path:
    return write_topology(tmp_path, NODES, GROUPS)


# --------------------------------------------------------------------------- topology


def test_node_id_not_in_topology_exits_7(topo: Path, tmp_path: Path) -> None:
    proc = _node(topo, "n9", tmp_path / "data")
    _assert_config_error(proc, "n9")


def test_missing_topology_file_exits_7(tmp_path: Path) -> None:
    proc = _node(tmp_path / "nope.toml", "n1", tmp_path / "data")
    _assert_config_error(proc, "nope.toml", "does not exist")


def test_topology_with_an_unknown_owner_exits_7(tmp_path: Path) -> None:
    path = write_topology(tmp_path, NODES, {"g1": ["n1", "n2", "ghost"]})
    proc = _node(path, "n1", tmp_path / "data")
    _assert_config_error(proc, "ghost")


def test_an_unsafe_failpoint_outside_a_test_exits_7(topo: Path, tmp_path: Path) -> None:
    """hakv.failpoints: a stray HAKV_UNSAFE_* in a node's environment stops it at start-up."""
    proc = _hakv("node", "--topology", str(topo), "--node", "n1", "--data-dir",
                 str(tmp_path / "data"), "--insecure",
                 extra_env={"HAKV_UNSAFE_LOCAL_READS": "1"})
    _assert_config_error(proc, "HAKV_UNSAFE_LOCAL_READS=1", "HAKV_TEST_FAILPOINTS=1")
    assert not (tmp_path / "data").exists()  # refused before touching the data dir


# --------------------------------------------------------------------------- data dir


def test_non_empty_foreign_data_dir_exits_7(topo: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "precious.txt").write_text("not hakv's")
    proc = _node(topo, "n1", data)
    _assert_config_error(proc, "node.json")
    assert (data / "precious.txt").read_text() == "not hakv's"
    assert sorted(os.listdir(data)) == ["precious.txt"], "the node wrote into a foreign dir"


def test_data_dir_of_another_node_exits_7(topo: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    prepare_data_dir(str(data), load_topology(topo), "n1")
    proc = _node(topo, "n2", data)
    _assert_config_error(proc, "n1", "n2")
    assert json.loads((data / "node.json").read_text())["node"] == "n1"


def test_data_dir_of_another_cluster_exits_7(topo: Path, tmp_path: Path) -> None:
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = write_topology(other_dir, NODES, GROUPS, cluster="elsewhere")
    data = tmp_path / "data"
    prepare_data_dir(str(data), load_topology(other), "n1")
    proc = _node(topo, "n1", data)
    _assert_config_error(proc, "elsewhere")


def test_corrupt_node_json_exits_7(topo: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    prepare_data_dir(str(data), load_topology(topo), "n1")
    (data / "node.json").write_bytes(os.urandom(64) + b"\x00\xff{")
    proc = _node(topo, "n1", data)
    _assert_config_error(proc, "node.json", "corrupt")


# --------------------------------------------------------------------------- ports


def _listening_on(port: int) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen(1)
    return s


@pytest.mark.parametrize("which", ["api_port", "raft_port"])
def test_port_already_in_use_exits_7(topo: Path, tmp_path: Path, which: str) -> None:
    port = getattr(load_topology(topo).node("n1"), which)
    with _listening_on(port):
        proc = _node(topo, "n1", tmp_path / "data")
    _assert_config_error(proc, str(port))


# --------------------------------------------------------------------------- a real store


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster that stored hello=world in g1 on every node, then was stopped."""
    directory = tmp_path_factory.mktemp("startup")
    path = write_topology(directory, NODES, GROUPS)
    lc = LocalCluster(directory / "run")
    try:
        lc.up(str(path), wait=0)
        _healthy(lc, NODES)
        with Client(lc.endpoints(), timeout=20) as c:
            c.put("g1", "hello", "world")
        for n in NODES:
            wait_for(
                lambda n=n: (
                    post(
                        lc.endpoint(n), "get", {"group": "g1", "key": "hello", "serializable": True}
                    )[0]
                    == 200
                ),
                10,
                what=f"{n} to apply the write",
            )
        lc.down()
        yield lc
    finally:
        lc.down()


def _healthy(lc: LocalCluster, nodes: list[str]) -> None:
    # Not LocalCluster's own wait: it can take a just-spawned node for exited (its
    # /proc/<pid>/cmdline is still empty while exec completes). Reported to the lead.
    for n in nodes:
        try:
            wait_for(
                lambda n=n: post(lc.endpoint(n), "health", {}, timeout=1)[1].get("node") == n,
                30,
                what=f"{n} to answer /v1/health",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log ends:\n{lc.log_tail(n)}") from None


def _inspect(data_dir: Path) -> dict[str, Any]:
    proc = _hakv("inspect", str(data_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _assert_has_hello(dump: dict[str, Any], node: str) -> None:
    assert dump["node"] == node
    assert dump["groups"] == ["g1"]
    store = dump["group_stores"]["g1"]
    assert "error" not in store, store
    assert store["applied_index"] > 0, store
    assert store["revision"] >= 1, store
    assert {kv["key"]: kv["value"] for kv in store["kvs"]}.get("hello") == "world", store


def test_inspect_json_of_a_stopped_node_lists_its_group_and_keys(stopped: LocalCluster) -> None:
    _assert_has_hello(_inspect(stopped.data_dir("n2")), "n2")


def test_inspect_json_works_while_the_node_runs(stopped: LocalCluster) -> None:
    try:
        stopped.start("n3", wait=0)
        _healthy(stopped, ["n3"])
        _assert_has_hello(_inspect(stopped.data_dir("n3")), "n3")
        assert stopped.is_running("n3"), "inspect disturbed the running node"
    finally:
        stopped.stop("n3")


def test_corrupt_group_store_exits_7_and_says_move_it_away(stopped: LocalCluster) -> None:
    data = stopped.data_dir("n1")
    mdb = data / "groups" / "g1" / "state" / "data.mdb"
    assert mdb.is_file()
    size = mdb.stat().st_size
    mdb.write_bytes(os.urandom(max(size, 16384)))
    proc = _node(stopped.topology_path, "n1", data)
    line = _assert_config_error(proc, "corrupt", "move it away")
    assert "g1" in line
