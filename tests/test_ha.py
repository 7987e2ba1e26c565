"""The HA resource manager on real processes with a real app (docs/ha.md): the patent's
Fig. 4 scenarios on the nine-node example, single runner under a pause (SIGSTOP) of the
runner, and fallback, manual move, maintenance and restart-then-failover.

The app is tests/apps/heartbeat.py: every 50 ms it appends ``time node group token`` to
one file shared by all nodes; chaos/checkers/single_runner.check_heartbeats finds any two
runs of a group that overlap and any token that goes backwards.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from chaos.checkers.single_runner import check_heartbeats, parse_heartbeat_file
from hakv.cli import cli
from hakv.dev.local import LocalCluster
from tests.support import free_ports, post, wait_for

pytestmark = pytest.mark.slow

HEARTBEAT = Path(__file__).parent / "apps" / "heartbeat.py"
NINE = [str(n) for n in range(202, 219, 2)]
NINE_GROUPS = {"220": ["202", "208", "214"], "222": ["204", "210", "216"],
               "224": ["206", "212", "218"], "226": ["208", "210", "212"]}


def ha_topology(directory: Path, nodes: list[str], groups: dict[str, dict[str, Any]],
                beats: Path, cluster: str = "ha-test", ha: dict[str, float] | None = None,
                check_interval: float = 0.3) -> Path:
    """A topology whose groups all run the heartbeat app (per-group options: owners,
    fallback, restart_limit, env); ``ha``: the [ha] table."""
    ports = free_ports(2 * len(nodes))
    lines = ["[cluster]", f'name = "{cluster}"', ""]
    if ha:
        lines += ["[ha]", *(f"{k} = {v}" for k, v in ha.items()), ""]
    for i, node in enumerate(nodes):
        lines += ["[[nodes]]", f'id = "{node}"', 'host = "127.0.0.1"',
                  f"raft_port = {ports[2 * i]}", f"api_port = {ports[2 * i + 1]}", ""]
    for gid, g in groups.items():
        run = json.dumps([sys.executable, str(HEARTBEAT), "run"])
        check = json.dumps([sys.executable, str(HEARTBEAT), "check"])
        env = {"HEARTBEAT_FILE": str(beats), **g.get("env", {})}
        env_toml = ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items())
        lines += ["[[groups]]", f'id = "{gid}"', f"owners = {json.dumps(g['owners'])}"]
        if "fallback" in g:
            lines.append(f'fallback = "{g["fallback"]}"')
        lines += ["[groups.app]", f"start = {run}", f"check = {check}", f"check_interval = {check_interval}",
                  "start_timeout = 5.0", "stop_timeout = 3.0",
                  f"restart_limit = {g.get('restart_limit', 2)}", f"env = {{ {env_toml} }}", ""]
    path = directory / "topology.toml"
    path.write_text("\n".join(lines))
    return path


def _ask(cluster: LocalCluster, op: str, group: str, **body: Any) -> dict[str, Any] | None:
    """/v1/<op> for the group from the first running owner that answers 200, or None."""
    for owner in cluster.topology.group(group).owners:
        if not cluster.is_running(owner) or cluster.is_paused(owner):
            continue
        try:
            status, answer = post(cluster.endpoint(owner), op, {"group": group, **body},
                                  timeout=5)
        except OSError:
            continue
        if status == 200:
            return answer
    return None


def placement(cluster: LocalCluster, group: str) -> dict[str, Any]:
    """The group's /v1/placement answer (linearizable: retried across elections)."""
    return wait_for(lambda: _ask(cluster, "placement", group), 15,  # type: ignore[no-any-return]
                    what=f"/v1/placement of {group}")


def wait_running(cluster: LocalCluster, group: str, on: str | None = None,
                 token_above: int = 0, timeout: float = 30) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        p = placement(cluster, group)["placement"]
        ok = (p["state"] == "running" and p["token"] > token_above
              and (on is None or p["node"] == on))
        return p if ok else None

    where = f" on {on}" if on else ""
    return wait_for(ready, timeout, interval=0.1,  # type: ignore[no-any-return]
                    what=f"group {group} running{where} with a token above {token_above}")


def events(cluster: LocalCluster, group: str) -> list[dict[str, Any]]:
    answer = wait_for(lambda: _ask(cluster, "events", group), 15, what=f"events of {group}")
    return answer["events"]  # type: ignore[no-any-return]


def beats_of(path: Path, group: str, after: float = 0.0) -> list[Any]:
    return [b for b in parse_heartbeat_file(path) if b.group == group and b.time > after]


def assert_single_runner(path: Path) -> None:
    result = check_heartbeats(parse_heartbeat_file(path))
    assert result.ok, result.details


def hakv_cli(cluster: LocalCluster, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--dir", str(cluster.dir)])
    assert result.exit_code == 0, (args, result.output)
    return result.output


# --------------------------------------------------------------------------- policies


def test_restart_then_failover_fallback_move_and_maintenance(tmp_path: Path) -> None:
    beats = tmp_path / "beats.txt"
    groups = {
        "stay": {"owners": ["a", "b", "c"]},
        "back": {"owners": ["a", "b", "c"], "fallback": "return"},
        # Fails at once on a: restarted once in place, then failed over to b.
        "flaky": {"owners": ["a", "b", "c"], "restart_limit": 1,
                  "env": {"HEARTBEAT_FAIL_ON": "a"}},
    }
    cluster = LocalCluster(tmp_path / "run")
    cluster.up(ha_topology(tmp_path, ["a", "b", "c"], groups, beats), wait=30)
    try:
        # Initial placement: the highest-precedence live owner.
        stay = wait_running(cluster, "stay", on="a")
        back = wait_running(cluster, "back", on="a")
        # Restart count, then failover: two failures on a (restart_limit 1), then b.
        flaky = wait_running(cluster, "flaky", on="b")
        p = placement(cluster, "flaky")["placement"]
        assert p["failed_on"] == ["a"]
        trail = [(e["action"], e["node"], e["state"]) for e in events(cluster, "flaky")
                 if e["kind"] == "placement"]
        assert ("report", "a", "failed") in trail, trail
        restarts = [e for e in events(cluster, "flaky")
                    if e.get("action") == "report" and "restarting in place" in e["reason"]]
        assert len(restarts) == 1, restarts
        assert flaky["token"] == 2

        # The runner a dies: both groups fail over to b (next by precedence).
        cluster.kill("a")
        stay = wait_running(cluster, "stay", on="b", token_above=stay["token"])
        back = wait_running(cluster, "back", on="b", token_above=back["token"])
        # a returns: "back" (fallback = return) moves back to it, "stay" stays.
        cluster.start("a")
        back = wait_running(cluster, "back", on="a", token_above=back["token"], timeout=20)
        assert "fallback" in [e for e in events(cluster, "back")
                              if e.get("action") == "stop"][-1]["reason"]
        p = placement(cluster, "stay")["placement"]
        assert (p["node"], p["token"], p["state"]) == ("b", stay["token"], "running")
        # ... and a's status went down, then up again (reintegrated), in b's records.
        marks = [(e["node"], e["state"]) for e in events(cluster, "stay")
                 if e["kind"] == "node_status" and e["node"] == "a"]
        assert ("a", "down") in marks and marks[-1] == ("a", "up"), marks

        # Manual move: stopped on b, started on c, with a new token.
        out = hakv_cli(cluster, "group", "move", "stay", "--to", "c")
        assert "move to c requested" in out
        stay = wait_running(cluster, "stay", on="c", token_above=stay["token"], timeout=20)

        # Maintenance: the app keeps running, but nothing is managed: its node dies and
        # nobody fails it over until maintenance is off.
        hakv_cli(cluster, "group", "maintenance", "stay", "on")
        time.sleep(0.5)
        assert beats_of(beats, "stay", after=time.time() - 0.3), "the app stopped"
        cluster.kill("c")
        time.sleep(3.0)
        p = placement(cluster, "stay")["placement"]
        assert (p["node"], p["token"], p["maintenance"]) == ("c", stay["token"], True)
        assert not beats_of(beats, "stay", after=time.time() - 1.0)
        hakv_cli(cluster, "group", "maintenance", "stay", "off")
        stay = wait_running(cluster, "stay", on="a", token_above=stay["token"], timeout=20)

        out = hakv_cli(cluster, "events", "--group", "stay")
        assert "maintenance" in out and "move" in out
        text = hakv_cli(cluster, "explain", "placement", "stay")
        assert "runs on a" in text and "Fallback: stay" in text, text
        assert_single_runner(beats)
    finally:
        cluster.down()


# --------------------------------------------------------------------------- the patent


def _term(cluster: LocalCluster, group: str) -> tuple[str | None, int]:
    with cluster.client() as c:
        g = c.cluster_status()["groups"][group]
    return g["leader"], g["term"]


def _down_here(cluster: LocalCluster, node: str, group: str, about: str) -> bool:
    """Whether ``node``'s own copy of ``group``'s records has ``about`` marked down."""
    status, answer = post(cluster.endpoint(node), "placement",
                          {"group": group, "serializable": True})
    record = answer.get("node_status", {}).get(about) or {}
    return status == 200 and record.get("status", {}).get("state") == "down"


def test_patent_fig4_on_the_nine_node_example(tmp_path: Path) -> None:
    beats = tmp_path / "beats.txt"
    # Nine nodes and their apps on two shared cores: leases of 2 s ride out the stalls
    # of a loaded machine (the defaults, 1 s, are what bench/failover.py measures).
    topo = ha_topology(tmp_path, NINE, {g: {"owners": o} for g, o in NINE_GROUPS.items()},
                       beats, cluster="patent-example", check_interval=1.0,
                       ha={"lease": 2.0, "renew_interval": 0.4, "failure_timeout": 1.5})
    cluster = LocalCluster(tmp_path / "run")
    cluster.up(topo, wait=60)
    try:
        for group, owners in NINE_GROUPS.items():
            wait_running(cluster, group, timeout=40)
            initial = [e for e in events(cluster, group) if e.get("action") == "place"][0]
            assert initial["node"] == owners[0], initial  # by precedence
        first = {}
        for group, owners in NINE_GROUPS.items():
            if placement(cluster, group)["placement"]["node"] != owners[0]:
                hakv_cli(cluster, "group", "move", group, "--to", owners[0])  # after a hiccup
            first[group] = wait_running(cluster, group, on=owners[0], timeout=20)
        terms = {g: _term(cluster, g) for g in ("222", "224")}

        # Node 208 fails: 202, 214 (group 220) and 210, 212 (group 226) mark it down;
        # group 226's app restarts on 210, the next live owner by precedence.
        killed_at = time.time()
        cluster.kill("208")
        moved = wait_running(cluster, "226", on="210", token_above=first["226"]["token"])
        for node, group in (("202", "220"), ("214", "220"), ("210", "226"), ("212", "226")):
            wait_for(lambda n=node, g=group: _down_here(cluster, n, g, "208"), 10,
                     what=f"208 marked down in {node}'s copy of group {group}")
        assert "lease of 208 expired" in [e for e in events(cluster, "226")
                                          if e.get("action") == "place"][-1]["reason"]
        # 220 lists 208 but its app ran on 202: it stays. 222 and 224 share no node with
        # 208: no placement change, no election.
        for group in ("220", "222", "224"):
            p = placement(cluster, group)["placement"]
            assert (p["node"], p["token"], p["state"]) == (
                first[group]["node"], first[group]["token"], "running"), (group, p)
            assert not [e for e in events(cluster, group)
                        if e["kind"] == "placement" and e["time"] > killed_at], group
        assert {g: _term(cluster, g) for g in ("222", "224")} == terms

        # Pause the runner of 222 (SIGSTOP): its keeper stops the app when the lease
        # runs out, before the app starts on 210 with a higher token.
        paused_at = time.time()
        cluster.pause("204")
        taken = wait_running(cluster, "222", on="210", token_above=first["222"]["token"])
        cluster.resume("204")
        time.sleep(1.5)
        old = [b for b in beats_of(beats, "222", after=paused_at - 1) if b.node == "204"]
        new = [b for b in beats_of(beats, "222") if b.token == taken["token"]]
        assert old and new and max(b.time for b in old) < min(b.time for b in new)
        assert not [b for b in beats_of(beats, "222", after=time.time() - 1.0)
                    if b.node == "204"], "the paused runner's app came back"
        assert_single_runner(beats)
        assert moved["token"] > first["226"]["token"]

        # The whole cluster restarts with only 202 and 208 up: group 220 has quorum (2 of
        # 3) and runs its app; group 226 (only 208 of 3) does not, although the cluster
        # as a whole (2 of 9) has no majority either way.
        cluster.down()
        restarted_at = time.time()
        cluster.start("202")
        cluster.start("208")
        wait_for(lambda: beats_of(beats, "220", after=restarted_at), 30,
                 what="group 220's app running again")
        p = wait_running(cluster, "220", timeout=10)
        assert p["node"] in ("202", "208"), p
        time.sleep(3.0)
        assert not beats_of(beats, "226", after=restarted_at), "226 has no quorum"
        with cluster.client() as c:
            g226 = c.cluster_status()["groups"].get("226", {})
        assert not g226.get("quorum"), g226
        assert_single_runner(beats)
    finally:
        cluster.down()
