"""Failpoints: the switches that make a node deliberately unsafe.

They exist so that a test or a chaos self-test can run a *broken* build and show that a
checker rejects it (docs/chaos.md). They are

    HAKV_UNSAFE_STOCK_REPLICATION=1  pysyncobj's own replication: a follower may truncate
                                     committed entries, so acknowledged writes can be lost
    HAKV_UNSAFE_LOCAL_READS=1        every read is served from the local copy without a
                                     barrier: reads are not linearizable (invariant I5)
    HAKV_UNSAFE_NO_FENCE=1           fence keepers ignore lease expiry: an app can run on two
                                     nodes at once (invariant I3)
    HAKV_UNSAFE_WATCH_SKIP=1         the watch endpoint drops the batch of every 7th revision
                                     (a watcher misses events: the chaos watch check)
    HAKV_UNSAFE_LEASE_NO_CHECKPOINT=1  the lessor never checkpoints: a new leader restarts
                                     every lease's full TTL, as etcd does (the lease bound
                                     breaks across a leader change)
    HAKV_UNSAFE_ACCESS_FORWARDED=1   a node does not check a request it forwards, and an
                                     owner serves a forwarded request with the forwarding
                                     node's rights instead of its caller's (the access check
                                     skipped on one path: the chaos access check)

Three rules keep them out of production, as etcd keeps its failpoints out of release
builds:

1. They are read once, when a node starts (``Failpoints.from_environ`` in
   ``hakv.node.process.run_node``), never at import, and passed down as a value.
2. A node refuses to start with any of them set unless ``HAKV_TEST_FAILPOINTS=1`` says
   that this is a test (a stray variable in a production environment stops the node with
   a clear error instead of silently weakening it).
3. Each one that is on is logged at WARNING when the node starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields

from hakv.errors import ConfigError

__all__ = ["NONE", "TEST_FLAG", "WATCH_SKIP_EVERY", "Failpoints"]

TEST_FLAG = "HAKV_TEST_FAILPOINTS"
WATCH_SKIP_EVERY = 7
"""With HAKV_UNSAFE_WATCH_SKIP=1, the batch of every revision divisible by this is dropped."""

_ENV = {
    "stock_replication": "HAKV_UNSAFE_STOCK_REPLICATION",
    "local_reads": "HAKV_UNSAFE_LOCAL_READS",
    "no_fence": "HAKV_UNSAFE_NO_FENCE",
    "watch_skip": "HAKV_UNSAFE_WATCH_SKIP",
    "lease_no_checkpoint": "HAKV_UNSAFE_LEASE_NO_CHECKPOINT",
    "access_forwarded": "HAKV_UNSAFE_ACCESS_FORWARDED",
}
_WHAT = {
    "stock_replication": "pysyncobj's stock replication: acknowledged writes CAN BE LOST",
    "local_reads": "reads are served locally without a barrier: NOT linearizable",
    "no_fence": "apps are NOT fenced when their lease expires",
    "watch_skip": "watches SKIP the events of every 7th revision",
    "lease_no_checkpoint": "leases are NOT checkpointed: a failover restarts their full TTL",
    "access_forwarded": "forwarded requests are NOT checked against their caller's grants",
}


@dataclass(frozen=True)
class Failpoints:
    """Which unsafe switches are on (all off by default: ``NONE``)."""

    stock_replication: bool = False
    local_reads: bool = False
    no_fence: bool = False
    watch_skip: bool = False
    lease_no_checkpoint: bool = False
    access_forwarded: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Failpoints:
        """Read the switches from ``environ``; raises ConfigError for a value other than
        0/1, or for a switch that is on without ``HAKV_TEST_FAILPOINTS=1``."""
        on: dict[str, bool] = {}
        for name, var in _ENV.items():
            value = environ.get(var, "").strip()
            if value not in ("", "0", "1"):
                raise ConfigError(f"{var}={value!r}: a failpoint is 1 (on) or 0/unset (off)")
            on[name] = value == "1"
        points = cls(**on)
        if points.active() and environ.get(TEST_FLAG) != "1":
            names = ", ".join(f"{_ENV[n]}=1" for n in points.active())
            raise ConfigError(
                f"{names} makes this node deliberately unsafe and exists for tests only; "
                f"unset it, or set {TEST_FLAG}=1 if this really is a test")
        return points

    def active(self) -> list[str]:
        """The names of the switches that are on."""
        return [f.name for f in fields(self) if getattr(self, f.name)]

    @property
    def watch_skip_every(self) -> int:
        """``WatchHub``'s ``skip_every``: drop the batch of each revision divisible by it
        (0: none)."""
        return WATCH_SKIP_EVERY if self.watch_skip else 0

    def warn(self, log: logging.Logger) -> None:
        """Log each switch that is on, loudly (once, at start-up)."""
        for name in self.active():
            log.warning("FAILPOINT %s=1: %s (tests only)", _ENV[name], _WHAT[name])


NONE = Failpoints()
