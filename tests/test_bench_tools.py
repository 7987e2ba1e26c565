"""The tools the benchmark's claims rest on: the interpreter pick and the etcd reference."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _version_of(python: str) -> tuple[int, int]:
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def test_pick_python_names_a_python_of_at_least_3_11_that_can_make_a_venv() -> None:
    picked = subprocess.run(["sh", str(ROOT / "tools" / "pick-python")], capture_output=True,
                            text=True, check=True, timeout=60).stdout.strip()
    assert Path(picked).is_absolute() and Path(picked).exists()
    assert _version_of(picked) >= (3, 11)
    subprocess.run([picked, "-c", "import ensurepip, venv"], check=True)


def test_pick_python_never_picks_an_interpreter_older_than_3_11(tmp_path: Path) -> None:
    """A too-old 'python3' first on PATH is passed over: another qualifying interpreter (from
    /usr/bin) is picked, or, with none, it says so and fails."""
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\nexec " + sys.executable + " -c 'import sys; sys.exit(1)'\n")
    fake.chmod(0o755)
    result = subprocess.run(["/bin/sh", str(ROOT / "tools" / "pick-python")], capture_output=True,
                            text=True, env={"PATH": str(tmp_path)}, timeout=60)
    picked = result.stdout.strip()
    if result.returncode == 0:  # found one in /usr/bin: it must still qualify
        assert picked != str(fake) and picked.startswith("/usr/bin/")
        assert _version_of(picked) >= (3, 11)
    else:
        assert "no CPython >= 3.11" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("etcd") is None,
                    reason="no etcd binary (apt-get install etcd-server) to compare against")
def test_the_etcd_reference_cluster_elects_a_leader_and_serves_puts_and_gets(
        tmp_path: Path) -> None:
    from bench.etcd import EtcdClient, EtcdCluster

    cluster = EtcdCluster(tmp_path / "etcd")
    try:
        cluster.up()
        leader = cluster.leader_endpoint()
        assert leader in cluster.endpoints
        with EtcdClient(leader) as client:
            client.put("k", "v1")
            assert client.get("k") == "v1"
            assert client.get("missing") is None
    finally:
        cluster.down()
    assert all(p.poll() is not None for p in cluster.procs) and not cluster.procs
