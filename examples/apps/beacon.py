"""The demo's HA app (examples/nine-node.toml, `make demo`): a beacon that says, every
0.2 s, where it runs and under which fencing token.

    python beacon.py run     # the app: writes "time node group token" to $HAKV_DATA/beacon
    python beacon.py check   # the monitor: exit 0 if this placement wrote in the last second

The hakv supervisor sets HAKV_NODE, HAKV_GROUP, HAKV_FENCING_TOKEN and HAKV_DATA (docs/ha.md).
A real app would guard its writes with the token (docs/recipes.md, fencing).
"""

from __future__ import annotations

import os
import sys
import time


def _beacon() -> str:
    return os.path.join(os.environ.get("HAKV_DATA", "."), "beacon")


def run() -> int:
    me = (os.environ.get("HAKV_NODE", "?"), os.environ.get("HAKV_GROUP", "?"),
          os.environ.get("HAKV_FENCING_TOKEN", "0"))
    while True:
        tmp = _beacon() + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{time.time():.3f} {' '.join(me)}\n")
        os.replace(tmp, _beacon())
        time.sleep(0.2)


def check() -> int:
    try:
        with open(_beacon(), encoding="utf-8") as f:
            stamp, node, group, token = f.read().split()
    except (OSError, ValueError):
        return 1
    fresh = time.time() - float(stamp) < 1.0
    ours = token == os.environ.get("HAKV_FENCING_TOKEN") and node == os.environ.get("HAKV_NODE")
    return 0 if fresh and ours else 1


if __name__ == "__main__":
    sys.exit({"run": run, "check": check}[sys.argv[1]]())
