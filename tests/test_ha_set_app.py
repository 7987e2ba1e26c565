"""`hakv group set-app`: a group created without an app gets one at runtime (real
processes): its owners pick the spec up from the cluster records and run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import hakv
from hakv.cli import cli
from hakv.client.client import Client
from hakv.core.topology import CLUSTER_GROUP
from hakv.dev.local import LocalCluster
from tests.support import leader_of, wait_for, write_topology

pytestmark = pytest.mark.slow

HEARTBEAT = Path(__file__).parent / "apps" / "heartbeat.py"
NODES = ["n1", "n2", "n3"]


def test_an_app_set_at_runtime_starts_on_the_first_owner(tmp_path: Path) -> None:
    beats = tmp_path / "beats"
    topo = write_topology(tmp_path, NODES, {"g1": NODES})
    cluster = LocalCluster(tmp_path / "run")
    cluster.up(str(topo), wait=30)
    try:
        wait_for(lambda: leader_of(cluster.endpoints(), "g1"), 20, what="a leader")
        # The cluster records are seeded from the topology just after start-up.
        with Client(cluster.endpoints(), timeout=10) as client:
            wait_for(lambda: client.get(CLUSTER_GROUP, "groups/g1"), 20,
                     what="the cluster records to be seeded")
        spec = tmp_path / "app.toml"
        spec.write_text(
            f"start = {json.dumps([sys.executable, str(HEARTBEAT), 'run'])}\n"
            f"check = {json.dumps([sys.executable, str(HEARTBEAT), 'check'])}\n"
            "check_interval = 0.3\n"
            f'env = {{ HEARTBEAT_FILE = "{beats}" }}\n')
        runner = CliRunner()
        result = runner.invoke(cli, ["--dir", str(cluster.dir), "group", "set-app", "g1",
                                     "--file", str(spec)])
        assert result.exit_code == 0, result.output
        wait_for(lambda: beats.exists() and "n1 g1" in beats.read_text(), 30,
                 what="the app's heartbeats from n1, the first owner")
        # Issue 16: its first placement is not taken for a node restart, burns no token.
        with Client(cluster.endpoints(), timeout=10) as client:
            placement = client.admin.placement("g1").placement
            events = client.admin.events("g1")
        assert placement.token == 1, placement
        # `hakv status` shows where it runs (issue 16), also when watched.
        with Client(cluster.endpoints(), timeout=10) as client:
            app = client.cluster_status()["groups"]["g1"]["app"]
        assert (app["node"], app["token"]) == ("n1", 1), app
        shown = runner.invoke(cli, ["--dir", str(cluster.dir), "status"])
        assert shown.exit_code == 0 and "APP ON" in shown.output, shown.output
        row = next(line for line in shown.output.splitlines() if line.startswith("g1 "))
        # The app may move from starting to running between the two reads.
        cells = row.split()
        assert (cells[7], cells[9]) == ("n1", "1") and cells[8] in ("starting", "running"), row
        watched = subprocess.Popen(
            [sys.executable, "-m", "hakv", "--dir", str(cluster.dir), "status", "--watch",
             "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(Path(hakv.__file__).resolve().parent.parent)})
        time.sleep(2.5)
        watched.send_signal(signal.SIGINT)
        out, err = watched.communicate(timeout=10)
        assert watched.returncode == 0, err
        assert out.count("hakv status every 0.3 s") >= 2, out
        assert not [e for e in events if "restarted" in str(e.get("reason", ""))], events
        bad = tmp_path / "bad.toml"
        bad.write_text('stop = "true"\n')  # no start command
        result = runner.invoke(cli, ["--dir", str(cluster.dir), "group", "set-app", "g1",
                                     "--file", str(bad)])
        assert result.exit_code == 7 and "start" in result.output + (result.stderr or "")
    finally:
        cluster.down()
