"""A tiny HA test app: appends ``time node group token`` to a shared file while it runs.

    python heartbeat.py run     # the app (start command): beats every HEARTBEAT_INTERVAL s
    python heartbeat.py check   # the monitor: exit 0 if this placement beat recently

Environment: HEARTBEAT_FILE (required), HAKV_NODE, HAKV_GROUP, HAKV_FENCING_TOKEN (set by
the hakv supervisor), HEARTBEAT_INTERVAL (default 0.05), HEARTBEAT_FAIL_ON (comma-separated
node ids where the app exits with code 3 at once: for restart-then-failover tests),
HEARTBEAT_CHECK_AGE (default 1.0: the newest beat of this node and token must be younger).

Each beat is one O_APPEND write, so beats of several processes never interleave inside a
line. chaos/checkers/single_runner.py reads the file.
"""

from __future__ import annotations

import os
import sys
import time


def _env() -> tuple[str, str, str, str]:
    return (os.environ["HEARTBEAT_FILE"], os.environ.get("HAKV_NODE", "?"),
            os.environ.get("HAKV_GROUP", "?"), os.environ.get("HAKV_FENCING_TOKEN", "0"))


def run() -> int:
    path, node, group, token = _env()
    fail_on = [n for n in os.environ.get("HEARTBEAT_FAIL_ON", "").split(",") if n]
    if node in fail_on:
        print(f"heartbeat: refusing to run on {node} (HEARTBEAT_FAIL_ON)", flush=True)
        return 3
    interval = float(os.environ.get("HEARTBEAT_INTERVAL", "0.05"))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, f"{time.time():.6f} {node} {group} {token}\n".encode())
            time.sleep(interval)
    finally:
        os.close(fd)


def check() -> int:
    path, node, group, token = _env()
    max_age = float(os.environ.get("HEARTBEAT_CHECK_AGE", "1.0"))
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return 1
    for line in reversed(lines):
        parts = line.split()
        if len(parts) == 4 and parts[1:] == [node, group, token]:
            try:
                return 0 if time.time() - float(parts[0]) < max_age else 1
            except ValueError:
                return 1
    return 1


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "run"
    sys.exit(check() if mode == "check" else run())
