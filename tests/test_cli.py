"""The hakv CLI through click's CliRunner: exit codes, the one stderr line per error class,
--json shapes, endpoint resolution, inspect and local on bad dirs; and one real-process run
of ``hakv local`` (marked slow)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hakv import errors
from hakv.cli import cli
from hakv.cli.render import render_status, render_table
from tests.test_client import KV, Reply, ScriptedServer, err, ok, refused_endpoint


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Scripted servers speak plain HTTP: no TLS from the session (tests/conftest.py).
    for name in ("HAKV_ENDPOINTS", "HAKV_TOPOLOGY", "HAKV_DEBUG", "HAKV_CACERT", "HAKV_CERT",
                 "HAKV_KEY"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, env=env)


def assert_error(result: Result, exit_code: int, code: str) -> str:
    """Exactly one stderr line ``hakv: error: <code>: ...`` and the exit code; no traceback."""
    lines = result.stderr.splitlines()
    assert result.exit_code == exit_code, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"hakv: error: {code}: "), lines[0]
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_topology(path: Path, api_ports: list[int], cluster: str = "t") -> Path:
    """A topology of len(api_ports) nodes n1.. (one group g1 over all) on 127.0.0.1."""
    lines = ["[cluster]", f'name = "{cluster}"', ""]
    ids = [f"n{i + 1}" for i in range(len(api_ports))]
    for node, api in zip(ids, api_ports, strict=True):
        lines += [
            "[[nodes]]",
            f'id = "{node}"',
            'host = "127.0.0.1"',
            f"raft_port = {free_port()}",
            f"api_port = {api}",
            "",
        ]
    lines += ["[[groups]]", 'id = "g1"', f"owners = {json.dumps(ids)}", ""]
    path.write_text("\n".join(lines))
    return path


# --------------------------------------------------------------------------- error classes


@pytest.mark.parametrize(
    ("reply", "exit_code", "code"),
    [
        (err("bad_request", 400), 2, "bad_request"),
        (err("too_large", 413), 2, "too_large"),
        (err("unknown_group", 404), 2, "unknown_group"),
        (err("request_expired", 410), 2, "request_expired"),
        (err("not_found", 404), 5, "not_found"),
        (err("conflict", 409), 6, "conflict"),
        (err("no_quorum"), 3, "no_quorum"),
        (err("unavailable"), 3, "unavailable"),
        (err("outcome_unknown", 504), 4, "outcome_unknown"),
        (err("internal", 500), 1, "internal"),
        (Reply(200, b"not json"), 1, "internal"),
    ],
)
def test_each_error_class_exit_code_and_one_line(reply: Reply, exit_code: int, code: str) -> None:
    with ScriptedServer([reply]) as srv:
        result = run("--endpoints", srv.endpoint, "--timeout", "0.3", "put", "g", "k", "v")
    line = assert_error(result, exit_code, code)
    assert result.stdout == ""
    if code in ("bad_request", "no_quorum", "conflict"):
        assert "scripted" in line  # the server's message is passed on


def test_error_exit_codes_match_the_error_tree() -> None:
    assert errors.NotFoundError.exit_code == 5 and errors.ConflictError.exit_code == 6
    assert errors.OutcomeUnknownError.exit_code == 4 and errors.NoQuorumError.exit_code == 3
    assert errors.DataDirError.exit_code == 7 and errors.BadRequestError.exit_code == 2


def test_unreachable_read_is_unavailable() -> None:
    result = run("--endpoints", refused_endpoint(), "--timeout", "0.3", "get", "g", "k")
    line = assert_error(result, 3, "unavailable")
    assert "connection refused" in line


def test_no_endpoints_is_a_config_error() -> None:
    line = assert_error(run("get", "g", "k"), 7, "config")
    assert "HAKV_ENDPOINTS" in line and "--dir" in line


def test_bad_topology_is_a_topology_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[cluster\n")
    assert_error(run("--topology", str(bad), "get", "g", "k"), 7, "topology")


def test_unexpected_exception_is_one_line_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    from hakv.client.client import Client

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(Client, "get", boom)
    line = assert_error(run("--endpoints", "127.0.0.1:1", "get", "g", "k"), 1, "internal")
    assert "ValueError: boom; second line" in line and "HAKV_DEBUG" in line
    debug = run("--endpoints", "127.0.0.1:1", "get", "g", "k", env={"HAKV_DEBUG": "1"})
    assert debug.exit_code == 1 and "Traceback" in debug.stderr


# --------------------------------------------------------------------------- output


def kv_script(path: str, body: dict[str, Any]) -> Reply:
    return {
        "/v1/get": ok(kv={**KV, "key": body.get("key", "k")}, revision=9),
        "/v1/put": ok(revision=10, prev=None),
        "/v1/delete": ok(revision=11, deleted=1, prev=KV),
        "/v1/range": ok(kvs=[KV, {**KV, "key": "k2", "value": "w"}], more=True, revision=11),
        "/v1/txn": ok(succeeded=body.get("compare") == [], revision=12, results=[{"kv": None}]),
    }[path]


def test_get_prints_the_value_or_the_record() -> None:
    with ScriptedServer(kv_script) as srv:
        plain = run("-e", srv.endpoint, "get", "g", "k")
        as_json = run("get", "g", "k", "--json", "--endpoints", srv.endpoint)
        serial = run("-e", srv.endpoint, "get", "g", "k", "--serializable")
    assert plain.exit_code == 0 and plain.stdout == "v\n"
    assert json.loads(as_json.stdout) == KV
    assert serial.exit_code == 0 and srv.seen[-1].body["serializable"] is True


def test_put_del_range_json_shapes() -> None:
    with ScriptedServer(kv_script) as srv:
        put = run("-e", srv.endpoint, "put", "g", "k", "v", "--if-mod-revision", "0", "--json")
        dele = run("-e", srv.endpoint, "del", "g", "k", "--json")
        rng = run("-e", srv.endpoint, "range", "g", "k", "--limit", "2", "--json")
        table = run("-e", srv.endpoint, "range", "g")
    assert json.loads(put.stdout) == {"revision": 10, "prev": None}
    assert srv.seen[0].body["if_mod_revision"] == 0
    assert json.loads(dele.stdout) == {"revision": 11, "deleted": 1, "prev": KV}
    assert json.loads(rng.stdout) == {
        "kvs": [KV, {**KV, "key": "k2", "value": "w"}],
        "more": True,
        "revision": 11,
    }
    assert srv.seen[2].body["limit"] == 2 and srv.seen[2].body["prefix"] == "k"
    assert table.stdout.splitlines()[0].split() == [
        "KEY",
        "VALUE",
        "CREATE_REV",
        "MOD_REV",
        "VERSION",
    ]
    assert "more keys follow" in table.stdout


def test_txn_from_file_and_stdin_exit_6_when_compares_fail(tmp_path: Path) -> None:
    spec = {
        "compare": [{"key": "lock", "target": "version", "op": "==", "value": 0}],
        "success": [{"op": "put", "key": "lock", "value": "me"}],
        "failure": [{"op": "get", "key": "lock"}],
    }
    f = tmp_path / "txn.json"
    f.write_text(json.dumps(spec))
    with ScriptedServer(kv_script) as srv:
        failed = run("-e", srv.endpoint, "txn", "g", "--file", str(f), "--json")
        stdin = run("-e", srv.endpoint, "txn", "g", "--file", "-", stdin=json.dumps(spec))
        good = run(
            "-e",
            srv.endpoint,
            "txn",
            "g",
            "-f",
            "-",
            stdin=json.dumps({"compare": [], "success": [{"op": "get", "key": "x"}]}),
        )
    assert failed.exit_code == 6 and failed.stderr == ""
    assert json.loads(failed.stdout) == {
        "succeeded": False,
        "revision": 12,
        "results": [{"kv": None}],
    }
    assert stdin.exit_code == 6 and stdin.stdout.startswith("succeeded: no")
    assert good.exit_code == 0 and good.stdout.startswith("succeeded: yes")
    assert srv.seen[0].body["compare"] == spec["compare"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{nope", "not JSON"),
        ("[]", "JSON object"),
        ('{"compare": {}}', "must be a list"),
        ('{"compare": [], "extra": 1}', "unknown keys extra"),
        ('{"compare": [{"key": "k", "target": "colour", "op": "==", "value": 1}]}', "colour"),
    ],
)
def test_bad_txn_file_is_a_bad_request(text: str, match: str) -> None:
    result = run("-e", "127.0.0.1:1", "txn", "g", "-f", "-", stdin=text)
    assert match in assert_error(result, 2, "bad_request")


def status_reply(node: str, leader: str) -> Reply:
    return ok(
        node=node,
        cluster="t",
        groups={
            "g1": {
                "owners": ["n1", "n2", "n3"],
                "role": "leader" if node == leader else "follower",
                "leader": leader,
                "term": 2,
                "commit_index": 7,
                "applied_index": 7,
                "revision": 3,
                "quorum": True,
                "app": {"node": "n2", "state": "running", "token": 4, "maintenance": False},
            }
        },
    )


def test_status_table_and_json_with_node_names_from_the_topology(tmp_path: Path) -> None:
    dead_port = free_port()
    with (
        ScriptedServer([status_reply("n1", "n1")]) as a,
        ScriptedServer([status_reply("n2", "n1")]) as b,
    ):
        topo = write_topology(tmp_path / "t.toml", [a.port, b.port, dead_port])
        table = run("--topology", str(topo), "status")
        as_json = run("status", "--json", "--topology", str(topo))
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "cluster t"
    assert lines[2].split() == ["GROUP", "OWNERS", "LEADER", "TERM", "COMMIT", "REVISION",
                                "QUORUM", "APP", "ON", "APP", "STATE", "TOKEN"]
    # Issue 16: where the app runs, its state and fencing token, as crm_mon shows them.
    assert lines[3].split() == ["g1", "n1,n2,n3", "n1", "2", "7", "3", "yes", "n2", "running",
                                "4"]
    assert any(line.startswith("n3") and " no " in line for line in lines)
    st = json.loads(as_json.stdout)
    assert set(st) == {"cluster", "nodes", "groups"}
    assert [(n["node"], n["reachable"]) for n in st["nodes"]] == [
        ("n1", True),
        ("n2", True),
        ("n3", False),
    ]
    g = st["groups"]["g1"]
    assert g["app"] == {"node": "n2", "state": "running", "token": 4, "maintenance": False}
    assert {
        k: g[k] for k in ("owners", "leader", "term", "commit_index", "revision", "quorum")
    } == {
        "owners": ["n1", "n2", "n3"],
        "leader": "n1",
        "term": 2,
        "commit_index": 7,
        "revision": 3,
        "quorum": True,
    }


def test_status_with_nobody_answering_prints_and_exits_3() -> None:
    result = run("-e", refused_endpoint(), "status")
    assert "REACHABLE" in result.stdout
    assert_error(result, 3, "unavailable")


# --------------------------------------------------------------------------- endpoints


def test_endpoints_from_env_topology_env_and_run_dir(tmp_path: Path) -> None:
    with ScriptedServer(kv_script) as srv:
        topo = write_topology(tmp_path / "t.toml", [srv.port, free_port()])
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "topology.toml").write_text(topo.read_text())
        (run_dir / "INSECURE").touch()  # a run of plain-HTTP nodes (`hakv local up --insecure`)
        by_env = run("get", "g", "k", env={"HAKV_ENDPOINTS": srv.endpoint})
        by_topology_env = run("get", "g", "k", env={"HAKV_TOPOLOGY": str(topo)})
        by_dir = run("get", "g", "k", "--dir", str(run_dir))
        by_root_dir = run("--dir", str(run_dir), "get", "g", "k")
        # an explicit option beats the environment
        explicit = run(
            "get", "g", "k", "-e", srv.endpoint, env={"HAKV_ENDPOINTS": refused_endpoint()}
        )
    for r in (by_env, by_topology_env, by_dir, by_root_dir, explicit):
        assert r.exit_code == 0 and r.stdout == "v\n", r.stderr
    assert len(srv.seen) == 5


def test_dir_without_a_cluster_is_a_config_error(tmp_path: Path) -> None:
    line = assert_error(run("get", "g", "k", "--dir", str(tmp_path)), 7, "config")
    assert "holds no local cluster" in line


def test_bad_endpoint_is_a_config_error() -> None:
    assert "bad endpoint" in assert_error(run("-e", "nohostport", "get", "g", "k"), 7, "config")


# --------------------------------------------------------------------------- inspect


def test_inspect_missing_dir(tmp_path: Path) -> None:
    line = assert_error(run("inspect", str(tmp_path / "nope")), 7, "data_dir")
    assert "does not exist" in line


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "is empty"),
        ("garbage", "corrupt"),
        ('{"format": 99, "cluster": "c", "node": "n"}', "format 99"),
        ('["a"]', "JSON object"),
    ],
)
def test_inspect_bad_node_json(tmp_path: Path, content: str | None, match: str) -> None:
    if content is not None:
        (tmp_path / "node.json").write_text(content)
    assert match in assert_error(run("inspect", str(tmp_path)), 7, "data_dir")


def test_inspect_foreign_dir_and_parent_of_data_dirs(tmp_path: Path) -> None:
    (tmp_path / "foreign.txt").write_text("x")
    assert "no node.json" in assert_error(run("inspect", str(tmp_path)), 7, "data_dir")
    parent = tmp_path / "data"
    (parent / "n1").mkdir(parents=True)
    (parent / "n1" / "node.json").write_text("{}")
    assert "try " in assert_error(run("inspect", str(parent)), 7, "data_dir")


def test_inspect_json_shape_on_an_empty_store(tmp_path: Path) -> None:
    from hakv.storage.store import GroupStore

    meta = {"format": 1, "cluster": "c", "node": "n1", "topology_fingerprint": "ab"}
    (tmp_path / "node.json").write_text(json.dumps(meta))
    with GroupStore(tmp_path / "groups" / "g1" / "state", "g1"):
        pass
    (tmp_path / "groups" / "g2").mkdir()  # a group dir whose store never got written
    result = run("inspect", str(tmp_path), "--json")
    assert result.exit_code == 0, result.stderr
    dump = json.loads(result.stdout)
    assert dump["node"] == "n1" and dump["cluster"] == "c"
    assert dump["groups"] == ["g1", "g2"] and dump["node_status"] == []
    assert dump["group_stores"]["g1"]["keys"] == 0
    assert "missing" in dump["group_stores"]["g2"]["error"]
    text = run("inspect", str(tmp_path))
    assert text.exit_code == 0 and text.stdout.startswith("node n1 of cluster c")


# --------------------------------------------------------------------------- local


def test_local_status_on_an_empty_dir(tmp_path: Path) -> None:
    line = assert_error(run("local", "status", "--dir", str(tmp_path)), 7, "config")
    assert "holds no local cluster" in line and "hakv local up" in line


def test_local_down_on_an_empty_dir_is_fine(tmp_path: Path) -> None:
    result = run("local", "down", "--dir", str(tmp_path / "never"))
    assert result.exit_code == 0 and "nothing to stop" in result.stdout


def test_local_kill_of_a_node_not_running(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_topology(run_dir / "topology.toml", [free_port(), free_port()])
    (run_dir / "pids").mkdir()
    (run_dir / "pids" / "n1.pid").write_text("1\n")  # pid 1 is not our node: never signalled
    line = assert_error(run("local", "kill", "n1", "--dir", str(run_dir)), 7, "config")
    assert "not running" in line
    env = run("local", "env", "--dir", str(run_dir))
    assert env.stdout.startswith("export HAKV_ENDPOINTS=127.0.0.1:")


def test_local_up_refuses_another_topology(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_topology(run_dir / "topology.toml", [free_port(), free_port()], cluster="one")
    other = write_topology(tmp_path / "other.toml", [free_port(), free_port()], cluster="two")
    line = assert_error(
        run("local", "up", "--topology", str(other), "--dir", str(run_dir)), 7, "config"
    )
    assert "different topology" in line


def test_render_table_aligns() -> None:
    assert render_table(["A", "BB"], [["xxx", None], [True, [1, 2]]]) == (
        "A    BB\nxxx  -\nyes  1,2"
    )


@pytest.mark.slow
def test_local_cluster_end_to_end(tmp_path: Path) -> None:
    """Real node processes: up, write, kill -9, inspect the dead node, restart, down."""
    from hakv.dev.local import LocalCluster

    topo = write_topology(tmp_path / "t.toml", [free_port(), free_port(), free_port()])
    run_dir = str(tmp_path / "run")
    lc = LocalCluster(run_dir)
    try:
        up = run("local", "up", "--topology", str(topo), "--dir", run_dir, "--wait", "60")
        assert up.exit_code == 0, up.stderr + up.stdout
        assert sorted(lc.running()) == ["n1", "n2", "n3"]
        assert run("--dir", run_dir, "--timeout", "20", "put", "g1", "k", "v").exit_code == 0

        again = run("local", "up", "--topology", str(topo), "--dir", run_dir)
        assert "already running" in assert_error(again, 7, "config")

        assert run("local", "kill", "n1", "--dir", run_dir).exit_code == 0
        assert not lc.is_running("n1")
        dump = json.loads(run("inspect", str(lc.data_dir("n1")), "--json").stdout)
        assert dump["node"] == "n1" and dump["groups"] == ["g1"]

        status = json.loads(run("local", "status", "--dir", run_dir, "--json").stdout)
        assert [(s["node"], s["alive"]) for s in status] == [
            ("n1", False),
            ("n2", True),
            ("n3", True),
        ]
        with lc.client(timeout=20) as c:  # the group keeps quorum without n1
            assert c.get("g1", "k").value == "v"
            c.put("g1", "k2", "w")

        assert run("local", "start", "n1", "--dir", run_dir, "--wait", "60").exit_code == 0
        with lc.client(timeout=20) as c:
            assert c.get("g1", "k2").value == "w"
        lc.pause("n2")
        assert lc.is_paused("n2")
        lc.resume("n2")
    finally:
        down = run("local", "down", "--dir", run_dir)
    assert down.exit_code == 0
    assert lc.running() == []
    assert not list((Path(run_dir) / "pids").glob("*.pid"))


def test_explain_node_says_where_its_records_live() -> None:
    result = run("explain", "node", "208", "--topology", "examples/nine-node.toml")
    assert result.exit_code == 0, result.stderr
    assert "202, 208, 210, 212 and 214" in result.stdout  # its sphere of influence
    assert "220 and 226" in result.stdout


def test_explain_group_names_its_owners_and_quorum() -> None:
    result = run("explain", "group", "226", "--topology", "examples/nine-node.toml")
    assert result.exit_code == 0, result.stderr
    assert "208 > 210 > 212" in result.stdout and "2 of 3" in result.stdout


def test_explain_without_a_topology_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAKV_TOPOLOGY", raising=False)
    assert_error(run("explain", "group", "226"), 7, "config")


# --------------------------------------------------------------------------- HA commands


PLACED = {"node": "n1", "state": "running", "token": 3, "renewals": 5, "reason": "first owner",
          "time": 0.0, "index": 12, "renewed_at": 0.0, "restarts": 0, "maintenance": False,
          "target": None, "failed_on": []}


def ha_script(path: str, body: dict[str, Any]) -> Reply:
    """g1 has quorum and an app on n1; g2 has no quorum (answers from n2's local copy)."""
    if path == "/v1/status":
        return ok(node="n1", groups={g: {"owners": ["n1", "n2"], "role": "leader",
                                         "quorum": True} for g in ("g1", "g2", "_cluster")})
    local = body.get("serializable", False)
    if body.get("group") == "g2" and not local and path != "/v1/ha":
        return err("no_quorum")
    if path == "/v1/placement":
        return ok(group=body["group"], node="n2" if local else "n1", owners=["n1", "n2"],
                  placement={**PLACED, "maintenance": local}, node_status={}, leader="n1",
                  quorum=not local, app={"start": ["true"]}, fallback="stay",
                  fallback_window=None, ha={}, local=None, decision=None)
    if path == "/v1/events":
        time = {"g1": 20.0, "g2": 10.0}[body["group"]]
        return ok(group=body["group"], node="n2", events=[
            {"kind": "placement", "time": time, "index": 4, "action": "start", "node": "n1",
             "state": "starting", "token": 1, "reason": "first owner"}])
    target = body.get("target")
    applied = body.get("action") != "maintenance" or body.get("on") is True
    return ok(group=body["group"], applied=applied,
              placement={**PLACED, "target": None if target == "n1" else target})


def test_ha_commands_print_through_client_admin() -> None:
    with ScriptedServer(ha_script) as srv:
        def out(*args: str) -> str:
            result = run("--endpoints", srv.endpoint, "--timeout", "0.3", *args)
            assert result.exit_code == 0, result.stderr
            return result.stdout

        table = out("group", "placement").splitlines()
        assert table[0].split() == ["GROUP", "APP", "NODE", "STATE", "TOKEN", "SINCE", "REASON"]
        assert table[1].split() == ["g1", "yes", "n1", "running", "3", "-", "first", "owner"]
        assert "running (maintenance)" in table[2]
        views = json.loads(out("group", "placement", "--json"))
        assert [(v["group"], v["local_view"]) for v in views] == [("g1", False), ("g2", True)]
        assert json.loads(out("group", "placement", "g1", "--json"))["placement"] == PLACED
        assert out("group", "move", "g1", "--to", "n1") == \
            "group g1: the app already runs on n1\n"
        assert "the app stops on n1 and starts on n2" in out("group", "move", "g1", "--to", "n2")
        assert out("group", "maintenance", "g1", "off") == \
            "group g1: maintenance already off\n"
        assert "maintenance on; hakv neither checks" in out("group", "maintenance", "g1", "on")
        assert "failures forgotten" in out("group", "cleanup", "g1")
        events = out("events").splitlines()
        assert [line.split()[2] for line in events[1:]] == ["g2", "g1"]  # oldest first
        assert json.loads(out("events", "--json"))[0]["local_view_of"] == "n2"
        assert out("explain", "placement", "g2").rstrip().endswith(
            "(The group has no quorum: this is node n2's local copy of its records.)")
    assert not any("serializable" in s.body for s in srv.seen if s.path == "/v1/ha")


def test_nodes_not_ready_prints_their_log_tails_before_the_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hakv.dev.local import LocalCluster, NodesNotReadyError

    def up(self: LocalCluster, topology: str, wait: float = 30.0,
           progress: object = None) -> dict[str, int]:
        raise NodesNotReadyError("n2 did not answer", {"n2": "boom\nlast line"})

    monkeypatch.setattr(LocalCluster, "up", up)
    topo = write_topology(tmp_path / "t.toml", [free_port(), free_port()])
    result = run("local", "up", "--topology", str(topo), "--dir", str(tmp_path / "run"))
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        "--- last lines of node n2's log ---", "boom", "last line",
        "hakv: error: unavailable: n2 did not answer"]


def test_command_families_import_only_render_options_and_the_library() -> None:
    """hakv/cli/__init__.py imports the families; a family never imports the root group
    or another family (docs/architecture.md, the cli layer)."""
    import ast

    cli_dir = Path(__file__).parent.parent / "hakv" / "cli"
    allowed = {"hakv.cli._options", "hakv.cli.render"}
    for path in sorted(cli_dir.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name == "hakv.cli" or name.startswith("hakv.cli."):
                    assert name in allowed, f"{path.name} imports {name}"


def test_the_status_column_is_never_blank() -> None:
    """Issue 16: a node that answers but has not published its status yet says so."""
    from hakv.cli.render import node_state

    assert node_state({"reachable": True, "status": {"state": "up"}}) == "up"
    assert node_state({"reachable": True, "status": None}) == "unknown (not reported yet)"
    assert node_state({"reachable": True, "status": {}}) == "unknown (not reported yet)"
    assert node_state({"reachable": False}) == "down"
    table = render_status({"groups": {}, "nodes": [
        {"node": "n1", "endpoint": "e:1", "reachable": True, "status": None}]})
    assert "unknown (not reported yet)" in table
