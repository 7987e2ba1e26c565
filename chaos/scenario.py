"""Chaos scenarios as data: ``chaos/scenarios/*.toml`` parsed into frozen dataclasses.

A scenario names a topology, a workload, the faults (a random mix drawn from a seed, or an
explicit list) and the checks. Every key is optional except ``[scenario] name`` and
``topology``; the defaults are the ones in the dataclasses below. Example::

    [scenario]
    name = "partition-leader"
    description = "isolate the leader of g1 again and again"
    topology = "three-node"          # examples/three-node.toml, or a path (relative to this file)
    duration = 40.0                  # seconds of workload
    seed = 1
    smoke = false                    # part of `python -m chaos.run --smoke`

    [raft]                           # optional: override the topology's Raft timing
    election_timeout_min = 0.3

    [nodes]
    env = { HAKV_LOG_LEVEL = "WARNING" }   # extra environment of every node process

    [workload]
    clients = 3                      # client threads per group
    groups = ["g1", "g2"]            # default: every group
    mix = { read = 0.35, write = 0.25, cas = 0.2, add = 0.2 }
    keys = 3                         # registers in use at once per group
    key_rotate = 5.0                 # seconds until the next generation of keys
    timeout = 2.0                    # client timeout per operation, retries included
    think = 0.02                     # mean pause between a client's operations
    reads = "failover"               # or "node-local": each client reads only its home node
    kinds = ["register"]             # workloads: register (the above), watch, lease, lock,
                                     # access

    [workload.watch]                 # the watch workload (chaos.workload_watch)
    groups = ["g1"]                  # default: [workload] groups
    writers = 2                      # writer threads (put, two-key txn, delete under w/)
    watchers = 2                     # watcher threads, each recording its stream
    keys = 4                         # keys w/k0.. written
    reconnect = 3.0                  # mean seconds between a watcher's resumes from its cursor
    poll_timeout = 1.0               # long-poll: a progress notification at least this often
    think = 0.03

    [workload.lease]                 # the lease workload (chaos.workload_lease)
    clients = 3                      # lease holders, each granting leases one after another
    ttl = [2.0, 4.0]                 # TTL range (seconds)
    keys = 2                         # keys l/<lease>/k<i> attached to each lease
    hold = [0.5, 3.0]                # seconds of keepalives before the holder stops
    revoke = 0.2                     # probability that it revokes instead of letting it expire
    observe = 0.3                    # seconds between two reads of the lease's keys
    leader_changes = 1               # k in the checked bound ttl + k(C + E) + M

    [workload.lock]                  # the lock workload (chaos.workload_lock)
    clients = 3                      # contenders
    locks = 1                        # lock names
    ttl = 2.0                        # the lock's lease TTL
    writes = 3                       # guarded writes to the register fence/<lock> per hold
    stall = 0.25                     # probability that a holder stalls past its lease
    guard = true                     # false: unguarded writes (a broken client, self-test)

    [workload.access]                # the access workload (chaos.workload_access)
    clients = 1                      # threads per identity (writer, reader, nobody)
    think = 0.02

    [ha]                             # optional: these groups run the heartbeat app
    apps = ["g1"]                    # (tests/apps/heartbeat.py); single-runner is checked
    interval = 0.05                  # seconds between two heartbeats of the app
    check_interval = 0.5             # the app's health check (hakv's [groups.app])
    lease = 1.0                      # any key of hakv's [ha] table overrides the topology's
                                     # (failure_timeout, lease, renew_interval, ...)

    [nemesis]                        # a random mix, drawn from the seed
    kinds = ["isolate", "kill"]      # see chaos.nemesis.FAULT_KINDS
    targets = ["leader:g1"]          # node ids and/or "leader:G", "runner:G" (default: every
                                     # node)
    groups = ["g1"]                  # groups for partition / ring / one-way (default: all)
    start = 3.0                      # first fault at
    duration = [3.0, 6.0]            # fault length range
    gap = [2.0, 4.0]                 # quiet time between faults
    loss = [0.2, 0.5]                # packet-loss probability range
    delay = [0.05, 0.3]              # delay range (seconds), drawn per delay fault
    jitter = 0.0                     # ± seconds per packet on top (at most the low delay)
    end_margin = 3.0                 # no fault in the last seconds

    [[faults]]                       # or explicit faults (then [nemesis] kinds are unused)
    at = 4.0
    duration = 5.0
    kind = "isolate"
    nodes = ["leader:g1"]            # a delay fault: delay = 0.1 (seconds), jitter = 0.02

    [checks]
    isolation = false                # groups sharing no node with a fault must not notice
    max_latency = 1.0                # ... no operation slower than this during a fault
    expect_violation = []            # self-test: these checkers MUST reject (broken build)

Every problem is a ``ScenarioError`` whose message names the file and the key.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hakv.core.config import type_name
from hakv.core.ha import HaTuning
from hakv.core.topology import RaftTuning, Topology, load_topology
from hakv.errors import ConfigError, HakvError

__all__ = [
    "CHECKERS",
    "AccessWorkload",
    "EXAMPLES",
    "FAULT_KINDS",
    "ChecksConfig",
    "FaultSpec",
    "HaConfig",
    "LeaseWorkload",
    "LockWorkload",
    "WatchWorkload",
    "NemesisConfig",
    "Scenario",
    "ScenarioError",
    "WorkloadConfig",
    "load_scenario",
    "parse_scenario",
]

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"

FAULT_KINDS = ("isolate", "partition", "bridge", "one-way", "ring", "kill", "pause", "loss",
               "delay")
OP_KINDS = ("read", "write", "cas", "add")
WORKLOAD_KINDS = ("register", "watch", "lease", "lock", "access")
READ_MODES = ("failover", "node-local")
CHECKERS = ("linearizable-register", "lost-writes-set", "group-isolation", "single-runner",
            "ha-placement", "watch", "lease", "fencing", "access")
_KIND_CHECKER = {"watch": "watch", "lease": "lease", "lock": "fencing", "access": "access"}
TOKENS = ("leader", "follower", "runner")


class ScenarioError(ConfigError):
    """A scenario file is wrong; the message names the file and the key."""

    code = "scenario"


@dataclass(frozen=True)
class WatchWorkload:
    """``[workload.watch]``: writers under ``w/`` and watchers recording their streams."""

    groups: tuple[str, ...] = ()
    writers: int = 2
    watchers: int = 2
    keys: int = 4
    reconnect: float = 3.0
    poll_timeout: float = 1.0
    think: float = 0.03


@dataclass(frozen=True)
class LeaseWorkload:
    """``[workload.lease]``: holders granting leases, keeping them alive, letting go."""

    groups: tuple[str, ...] = ()
    clients: int = 3
    ttl: tuple[float, float] = (2.0, 4.0)
    keys: int = 2
    hold: tuple[float, float] = (0.5, 3.0)
    revoke: float = 0.2
    observe: float = 0.3
    leader_changes: int = 1


@dataclass(frozen=True)
class LockWorkload:
    """``[workload.lock]``: contenders writing to a register guarded by the fencing token."""

    groups: tuple[str, ...] = ()
    clients: int = 3
    locks: int = 1
    ttl: float = 2.0
    writes: int = 3
    stall: float = 0.25
    guard: bool = True
    think: float = 0.05


@dataclass(frozen=True)
class AccessWorkload:
    """``[workload.access]``: three identities sending allowed and forbidden operations
    through every node (chaos.workload_access)."""

    groups: tuple[str, ...] = ()
    clients: int = 1
    think: float = 0.02


@dataclass(frozen=True)
class WorkloadConfig:
    clients: int = 3
    groups: tuple[str, ...] = ()
    mix: tuple[tuple[str, float], ...] = (("read", 0.35), ("write", 0.25), ("cas", 0.2),
                                          ("add", 0.2))
    keys: int = 3
    key_rotate: float = 5.0
    timeout: float = 2.0
    think: float = 0.02
    reads: str = "failover"
    kinds: tuple[str, ...] = ("register",)
    watch: WatchWorkload = field(default_factory=WatchWorkload)
    lease: LeaseWorkload = field(default_factory=LeaseWorkload)
    lock: LockWorkload = field(default_factory=LockWorkload)
    access: AccessWorkload = field(default_factory=AccessWorkload)


@dataclass(frozen=True)
class NemesisConfig:
    kinds: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    start: float = 3.0
    duration: tuple[float, float] = (3.0, 6.0)
    gap: tuple[float, float] = (2.0, 4.0)
    loss: tuple[float, float] = (0.2, 0.5)
    delay: tuple[float, float] = (0.05, 0.3)
    jitter: float = 0.0
    end_margin: float = 3.0


@dataclass(frozen=True)
class HaConfig:
    """Groups that run the heartbeat app (tests/apps/heartbeat.py) during the scenario."""

    apps: tuple[str, ...] = ()
    interval: float = 0.05
    check_interval: float = 0.5


@dataclass(frozen=True)
class FaultSpec:
    """One explicit fault: ``kind`` at ``at`` for ``duration`` seconds. ``nodes``: node ids
    or ``leader:G`` / ``follower:G`` tokens resolved when the fault starts."""

    at: float
    duration: float
    kind: str
    nodes: tuple[str, ...] = ()
    group: str | None = None
    probability: float | None = None
    delay: float | None = None
    jitter: float = 0.0


@dataclass(frozen=True)
class ChecksConfig:
    linearizable: bool = True
    lost_writes: bool = True
    isolation: bool = False
    max_latency: float = 1.0
    expect_violation: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    topology_ref: str
    topology: Topology
    duration: float
    seed: int
    description: str = ""
    smoke: bool = False
    node_env: tuple[tuple[str, str], ...] = ()
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    nemesis: NemesisConfig = field(default_factory=NemesisConfig)
    ha: HaConfig = field(default_factory=HaConfig)
    faults: tuple[FaultSpec, ...] = ()
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    source: str = "<string>"

    @property
    def workload_groups(self) -> tuple[str, ...]:
        return self.workload.groups or self.topology.group_ids

    @property
    def register_groups(self) -> tuple[str, ...]:
        """Groups running the register/set workload (none without kind "register")."""
        return self.workload_groups if "register" in self.workload.kinds else ()

    def coord_groups(self, kind: str) -> tuple[str, ...]:
        """Groups running the ``watch``, ``lease`` or ``lock`` workload."""
        if kind not in self.workload.kinds:
            return ()
        cfg: WatchWorkload | LeaseWorkload | LockWorkload | AccessWorkload = getattr(
            self.workload, kind)
        return cfg.groups or self.workload_groups

    def with_seed(self, seed: int) -> Scenario:
        return replace(self, seed=seed)


# --------------------------------------------------------------------------- parsing

_SECTIONS = ("scenario", "raft", "ha", "nodes", "workload", "nemesis", "faults", "checks")
_SCENARIO_KEYS = ("name", "description", "topology", "duration", "seed", "smoke")
_NODES_KEYS = ("env",)
_WORKLOAD_KEYS = ("clients", "groups", "mix", "keys", "key_rotate", "timeout", "think", "reads",
                  "kinds", "watch", "lease", "lock", "access")
_WATCH_KEYS = ("groups", "writers", "watchers", "keys", "reconnect", "poll_timeout", "think")
_LEASE_KEYS = ("groups", "clients", "ttl", "keys", "hold", "revoke", "observe",
               "leader_changes")
_LOCK_KEYS = ("groups", "clients", "locks", "ttl", "writes", "stall", "guard", "think")
_ACCESS_KEYS = ("groups", "clients", "think")
_NEMESIS_KEYS = ("kinds", "targets", "groups", "start", "duration", "gap", "loss", "delay",
                 "jitter", "end_margin")
_FAULT_KEYS = ("at", "duration", "kind", "nodes", "node", "group", "probability", "delay",
               "jitter")
_HA_TUNING_KEYS = tuple(HaTuning().to_dict())
_HA_KEYS = ("apps", "interval", "check_interval", *_HA_TUNING_KEYS)
MAX_DELAY = 10.0
_CHECKS_KEYS = ("linearizable", "lost_writes", "isolation", "max_latency", "expect_violation")
_RAFT_KEYS = tuple(RaftTuning().to_dict())


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {message}", source=self.source)

    def keys(self, table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.fail(f"{where}: unknown key {key!r}{hint} "
                                f"(allowed: {', '.join(allowed)})")

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(f"[{key}] must be a table, got {type_name(value)}")
        return value

    def number(self, table: Mapping[str, Any], key: str, where: str, default: float, *,
               positive: bool = True, zero_ok: bool = False) -> float:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise self.fail(f"{where} {key} must be a number, got {type_name(value)}")
        if positive and (value < 0 or (value == 0 and not zero_ok)):
            raise self.fail(f"{where} {key} must be {'>= 0' if zero_ok else '> 0'}, "
                            f"got {value!r}")
        return float(value)

    def integer(self, table: Mapping[str, Any], key: str, where: str, default: int,
                minimum: int) -> int:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{where} {key} must be an integer, got {type_name(value)}")
        if value < minimum:
            raise self.fail(f"{where} {key} must be >= {minimum}, got {value}")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, bool):
            raise self.fail(f"{where} {key} must be true or false, got {type_name(value)}")
        return value

    def strings(self, table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        if key not in table:
            return ()
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(v, str | int) and
                                                  not isinstance(v, bool) for v in value):
            raise self.fail(f"{where} {key} must be an array of strings, got {type_name(value)}")
        return tuple(str(v) for v in value)

    def span(self, table: Mapping[str, Any], key: str, where: str,
             default: tuple[float, float], upper: float | None = None) -> tuple[float, float]:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value, value]
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in value)):
            raise self.fail(f"{where} {key} must be a number or [low, high], "
                            f"got {type_name(value)}")
        lo, hi = float(value[0]), float(value[1])
        if not (0 < lo <= hi) or (upper is not None and hi > upper):
            bound = f" and at most {upper}" if upper is not None else ""
            raise self.fail(f"{where} {key} must satisfy 0 < low <= high{bound}, got {value!r}")
        return (lo, hi)


def resolve_topology(ref: str, base: Path | None) -> Path:
    """``three-node`` -> examples/three-node.toml; otherwise a path (relative to ``base``,
    the scenario file's folder)."""
    if "/" not in ref and not ref.endswith(".toml"):
        return EXAMPLES / f"{ref}.toml"
    path = Path(ref)
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def _check_token(ctx: _Ctx, token: str, topo: Topology, where: str,
                 apps: Sequence[str] = ()) -> None:
    if ":" in token:
        what, _, group = token.partition(":")
        if what not in TOKENS:
            raise ctx.fail(f"{where}: {token!r}: only 'leader:GROUP', 'follower:GROUP' and "
                           "'runner:GROUP' tokens are understood")
        if not topo.has_group(group):
            raise ctx.fail(f"{where}: {token!r} names group {group!r}, which is not in the "
                           f"topology (groups: {', '.join(topo.group_ids)})")
        if what == "runner" and group not in apps:
            raise ctx.fail(f"{where}: {token!r}: group {group!r} runs no app; list it in "
                           "[ha] apps")
    elif not topo.has_node(token):
        raise ctx.fail(f"{where}: node {token!r} is not in the topology "
                       f"(nodes: {', '.join(topo.node_ids)})")


def _check_group(ctx: _Ctx, group: str, topo: Topology, where: str) -> None:
    if not topo.has_group(group):
        raise ctx.fail(f"{where}: group {group!r} is not in the topology "
                       f"(groups: {', '.join(topo.group_ids)})")


def _check_kind(ctx: _Ctx, kind: str, where: str) -> None:
    if kind not in FAULT_KINDS:
        close = difflib.get_close_matches(kind, FAULT_KINDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ctx.fail(f"{where}: unknown fault kind {kind!r}{hint} "
                       f"(kinds: {', '.join(FAULT_KINDS)})")


def parse_scenario(text: str, source: str = "<string>", base: Path | None = None) -> Scenario:
    """Parse and validate scenario TOML (``base``: folder for relative topology paths)."""
    ctx = _Ctx(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ctx.fail(f"not valid TOML: {err}") from None
    ctx.keys(data, _SECTIONS, "top level")

    head = ctx.table(data, "scenario")
    ctx.keys(head, _SCENARIO_KEYS, "[scenario]")
    name = head.get("name")
    if not isinstance(name, str) or not name:
        raise ctx.fail("[scenario] name is required (a non-empty string)")
    ref = head.get("topology")
    if not isinstance(ref, str) or not ref:
        raise ctx.fail("[scenario] topology is required: an example name (three-node, "
                       "nine-node) or a path to a topology file")
    path = resolve_topology(ref, base)
    try:
        topo = load_topology(path)
    except HakvError as err:
        raise ctx.fail(f"[scenario] topology {ref!r}: {err.message}") from None
    duration = ctx.number(head, "duration", "[scenario]", 30.0)
    seed = ctx.integer(head, "seed", "[scenario]", 1, 0)
    description = head.get("description", "")
    if not isinstance(description, str):
        raise ctx.fail(f"[scenario] description must be a string, got {type_name(description)}")
    smoke = ctx.boolean(head, "smoke", "[scenario]", False)

    raft_t = ctx.table(data, "raft")
    ctx.keys(raft_t, _RAFT_KEYS, "[raft]")
    if raft_t:
        tuning = topo.raft.to_dict()
        for key in raft_t:
            tuning[key] = ctx.number(raft_t, key, "[raft]", tuning[key])
        raft = RaftTuning(**tuning)
        try:
            raft.validate()
        except HakvError as err:
            raise ctx.fail(err.message) from None
        topo = replace(topo, raft=raft)

    ha_t = ctx.table(data, "ha")
    ctx.keys(ha_t, _HA_KEYS, "[ha]")
    apps = ctx.strings(ha_t, "apps", "[ha]")
    for g in apps:
        _check_group(ctx, g, topo, "[ha] apps")
        if topo.group(g).app is not None:
            raise ctx.fail(f"[ha] apps: group {g!r} already has an app in the topology; "
                           "the harness runs its heartbeat app only in groups without one")
    if len(set(apps)) != len(apps):
        raise ctx.fail(f"[ha] apps lists a group twice: {list(apps)}")
    ha_cfg = HaConfig(
        apps=apps,
        interval=ctx.number(ha_t, "interval", "[ha]", 0.05),
        check_interval=ctx.number(ha_t, "check_interval", "[ha]", 0.5),
    )
    tuning_keys = [k for k in _HA_TUNING_KEYS if k in ha_t]
    if tuning_keys:
        values = topo.ha.to_dict()
        for key in tuning_keys:
            values[key] = ctx.number(ha_t, key, "[ha]", values[key], zero_ok=True)
        ha_tuning = HaTuning(**values)
        try:
            ha_tuning.validate()
        except HakvError as err:
            raise ctx.fail(err.message) from None
        topo = replace(topo, ha=ha_tuning)
    if (apps or tuning_keys) and ha_cfg.interval * 4 > topo.ha.lease:
        raise ctx.fail(f"[ha] interval ({ha_cfg.interval:g}s) must be at most a quarter of "
                       f"the lease ({topo.ha.lease:g}s): the single-runner check needs "
                       "several beats per lease to see an overlap")

    nodes_t = ctx.table(data, "nodes")
    ctx.keys(nodes_t, _NODES_KEYS, "[nodes]")
    env_raw = nodes_t.get("env", {})
    if not isinstance(env_raw, Mapping) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in env_raw.values()):
        raise ctx.fail("[nodes] env must be a table of strings, e.g. "
                       '{ HAKV_LOG_LEVEL = "WARNING" }')
    node_env = tuple((str(k), str(v)) for k, v in env_raw.items())

    wl_t = ctx.table(data, "workload")
    ctx.keys(wl_t, _WORKLOAD_KEYS, "[workload]")
    groups = ctx.strings(wl_t, "groups", "[workload]")
    for g in groups:
        _check_group(ctx, g, topo, "[workload] groups")
    mix_raw = wl_t.get("mix", None)
    mix = WorkloadConfig.mix
    if mix_raw is not None:
        if not isinstance(mix_raw, Mapping) or not mix_raw:
            raise ctx.fail("[workload] mix must be a table like "
                           "{ read = 0.4, write = 0.3, cas = 0.2, add = 0.1 }")
        ctx.keys(mix_raw, OP_KINDS, "[workload] mix")
        weights = tuple((k, ctx.number(mix_raw, k, "[workload] mix", 0.0, zero_ok=True))
                        for k in OP_KINDS if k in mix_raw)
        if sum(w for _, w in weights) <= 0:
            raise ctx.fail("[workload] mix: the weights must not all be 0")
        mix = weights
    reads = wl_t.get("reads", "failover")
    if reads not in READ_MODES:
        raise ctx.fail(f"[workload] reads must be one of {', '.join(READ_MODES)}, "
                       f"got {type_name(reads)}")
    wkinds = ctx.strings(wl_t, "kinds", "[workload]") if "kinds" in wl_t else ("register",)
    if not wkinds:
        raise ctx.fail("[workload] kinds must name at least one workload "
                       f"({', '.join(WORKLOAD_KINDS)})")
    for k in wkinds:
        if k not in WORKLOAD_KINDS:
            close = difflib.get_close_matches(k, WORKLOAD_KINDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ctx.fail(f"[workload] kinds: unknown workload {k!r}{hint} "
                           f"(workloads: {', '.join(WORKLOAD_KINDS)})")
    if len(set(wkinds)) != len(wkinds):
        raise ctx.fail(f"[workload] kinds lists a workload twice: {list(wkinds)}")
    for k in ("watch", "lease", "lock", "access"):
        if k in wl_t and k not in wkinds:
            raise ctx.fail(f"[workload.{k}] is given but {k!r} is not in [workload] kinds "
                           f"(kinds = {list(wkinds)})")
    watch_cfg, lease_cfg, lock_cfg = _coord_workloads(ctx, wl_t, topo)
    access_t, access_where, access_groups = _sub(ctx, wl_t, "access", _ACCESS_KEYS, topo)
    access_cfg = AccessWorkload(
        groups=access_groups,
        clients=ctx.integer(access_t, "clients", access_where, AccessWorkload.clients, 1),
        think=ctx.number(access_t, "think", access_where, AccessWorkload.think, zero_ok=True))
    workload = WorkloadConfig(
        kinds=wkinds, watch=watch_cfg, lease=lease_cfg, lock=lock_cfg, access=access_cfg,
        clients=ctx.integer(wl_t, "clients", "[workload]", 3, 1),
        groups=groups,
        mix=mix,
        keys=ctx.integer(wl_t, "keys", "[workload]", 3, 1),
        key_rotate=ctx.number(wl_t, "key_rotate", "[workload]", 5.0),
        timeout=ctx.number(wl_t, "timeout", "[workload]", 2.0),
        think=ctx.number(wl_t, "think", "[workload]", 0.02, zero_ok=True),
        reads=reads,
    )

    nm_t = ctx.table(data, "nemesis")
    ctx.keys(nm_t, _NEMESIS_KEYS, "[nemesis]")
    kinds = ctx.strings(nm_t, "kinds", "[nemesis]")
    for k in kinds:
        _check_kind(ctx, k, "[nemesis] kinds")
    targets = ctx.strings(nm_t, "targets", "[nemesis]")
    for t in targets:
        _check_token(ctx, t, topo, "[nemesis] targets", apps)
    nm_groups = ctx.strings(nm_t, "groups", "[nemesis]")
    for g in nm_groups:
        _check_group(ctx, g, topo, "[nemesis] groups")
    nemesis = NemesisConfig(
        kinds=kinds,
        targets=targets,
        groups=nm_groups,
        start=ctx.number(nm_t, "start", "[nemesis]", 3.0, zero_ok=True),
        duration=ctx.span(nm_t, "duration", "[nemesis]", (3.0, 6.0)),
        gap=ctx.span(nm_t, "gap", "[nemesis]", (2.0, 4.0)),
        loss=ctx.span(nm_t, "loss", "[nemesis]", (0.2, 0.5), upper=1.0),
        delay=ctx.span(nm_t, "delay", "[nemesis]", (0.05, 0.3), upper=MAX_DELAY),
        jitter=ctx.number(nm_t, "jitter", "[nemesis]", 0.0, zero_ok=True),
        end_margin=ctx.number(nm_t, "end_margin", "[nemesis]", 3.0, zero_ok=True),
    )

    if nemesis.jitter > nemesis.delay[0]:
        raise ctx.fail(f"[nemesis] jitter ({nemesis.jitter:g}s) must not exceed the low end of "
                       f"delay ({nemesis.delay[0]:g}s)")

    faults_raw = data.get("faults", [])
    if not isinstance(faults_raw, list) or not all(isinstance(f, Mapping) for f in faults_raw):
        raise ctx.fail("faults must be an array of tables ([[faults]] sections)")
    faults = []
    for i, f in enumerate(faults_raw):
        where = f"[[faults]] #{i + 1}"
        ctx.keys(f, _FAULT_KEYS, where)
        kind = f.get("kind")
        if not isinstance(kind, str):
            raise ctx.fail(f"{where}: kind is required (one of {', '.join(FAULT_KINDS)})")
        _check_kind(ctx, kind, where)
        if "at" not in f or "duration" not in f:
            raise ctx.fail(f"{where}: 'at' and 'duration' (seconds) are required")
        at = ctx.number(f, "at", where, 0.0, zero_ok=True)
        fdur = ctx.number(f, "duration", where, 0.0)
        if at + fdur > duration:
            raise ctx.fail(f"{where}: ends at {at + fdur:g}s, after the scenario's duration "
                           f"({duration:g}s)")
        fnodes = ctx.strings(f, "nodes", where)
        if "node" in f:
            if not isinstance(f["node"], str | int) or isinstance(f["node"], bool):
                raise ctx.fail(f"{where}: node must be a string, got {type_name(f['node'])}")
            fnodes = (str(f["node"]), *fnodes)
        for t in fnodes:
            _check_token(ctx, t, topo, where, apps)
        fgroup = f.get("group")
        if fgroup is not None:
            if not isinstance(fgroup, str):
                raise ctx.fail(f"{where}: group must be a string, got {type_name(fgroup)}")
            _check_group(ctx, fgroup, topo, where)
        prob = None
        if "probability" in f:
            prob = ctx.number(f, "probability", where, 0.0)
            if prob > 1.0:
                raise ctx.fail(f"{where}: probability must be in (0, 1], got {prob!r}")
        fdelay = None
        if "delay" in f:
            fdelay = ctx.number(f, "delay", where, 0.0)
            if fdelay > MAX_DELAY:
                raise ctx.fail(f"{where}: delay must be at most {MAX_DELAY:g} s, got {fdelay!r}")
        jitter = ctx.number(f, "jitter", where, 0.0, zero_ok=True)
        _check_fault_shape(ctx, where, kind, fnodes, fgroup, prob, fdelay, jitter,
                           "jitter" in f)
        faults.append(FaultSpec(at=at, duration=fdur, kind=kind, nodes=fnodes, group=fgroup,
                                probability=prob, delay=fdelay, jitter=jitter))

    ch_t = ctx.table(data, "checks")
    ctx.keys(ch_t, _CHECKS_KEYS, "[checks]")
    expect = ctx.strings(ch_t, "expect_violation", "[checks]")
    for e in expect:
        if e not in CHECKERS:
            raise ctx.fail(f"[checks] expect_violation: unknown checker {e!r} "
                           f"(checkers: {', '.join(CHECKERS)})")
    checks = ChecksConfig(
        linearizable=ctx.boolean(ch_t, "linearizable", "[checks]", True),
        lost_writes=ctx.boolean(ch_t, "lost_writes", "[checks]", True),
        isolation=ctx.boolean(ch_t, "isolation", "[checks]", False),
        max_latency=ctx.number(ch_t, "max_latency", "[checks]", 1.0),
        expect_violation=expect,
    )
    if checks.isolation and faults == [] and not kinds:
        raise ctx.fail("[checks] isolation = true needs faults ([nemesis] kinds or "
                       "[[faults]])")
    for e in expect:
        if e in ("single-runner", "ha-placement") and not apps:
            raise ctx.fail(f"[checks] expect_violation: {e} runs only with [ha] apps")
        for kind, checker in _KIND_CHECKER.items():
            if e == checker and kind not in workload.kinds:
                raise ctx.fail(f"[checks] expect_violation: {e} runs only with the {kind} "
                               "workload ([workload] kinds)")
        if e in ("linearizable-register", "lost-writes-set") \
                and "register" not in workload.kinds:
            raise ctx.fail(f"[checks] expect_violation: {e} runs only with the register "
                           "workload ([workload] kinds)")
    return Scenario(name=name, topology_ref=ref, topology=topo, duration=duration, seed=seed,
                    description=description, smoke=smoke, node_env=node_env,
                    workload=workload, nemesis=nemesis, ha=ha_cfg, faults=tuple(faults),
                    checks=checks, source=source)


def _sub(ctx: _Ctx, wl_t: Mapping[str, Any], kind: str, allowed: Sequence[str],
         topo: Topology) -> tuple[Mapping[str, Any], str, tuple[str, ...]]:
    where = f"[workload.{kind}]"
    value = wl_t.get(kind, {})
    if not isinstance(value, Mapping):
        raise ctx.fail(f"{where} must be a table, got {type_name(value)}")
    ctx.keys(value, allowed, where)
    groups = ctx.strings(value, "groups", where)
    for g in groups:
        _check_group(ctx, g, topo, f"{where} groups")
    return value, where, groups


def _probability(ctx: _Ctx, t: Mapping[str, Any], key: str, where: str,
                 default: float) -> float:
    p = ctx.number(t, key, where, default, zero_ok=True)
    if p > 1.0:
        raise ctx.fail(f"{where} {key} must be a probability in [0, 1], got {p!r}")
    return p


def _coord_workloads(ctx: _Ctx, wl_t: Mapping[str, Any], topo: Topology
                     ) -> tuple[WatchWorkload, LeaseWorkload, LockWorkload]:
    """``[workload.watch]``, ``[workload.lease]``, ``[workload.lock]`` (defaults if absent)."""
    t, where, groups = _sub(ctx, wl_t, "watch", _WATCH_KEYS, topo)
    d = WatchWorkload()
    watch = WatchWorkload(
        groups=groups,
        writers=ctx.integer(t, "writers", where, d.writers, 1),
        watchers=ctx.integer(t, "watchers", where, d.watchers, 1),
        keys=ctx.integer(t, "keys", where, d.keys, 1),
        reconnect=ctx.number(t, "reconnect", where, d.reconnect),
        poll_timeout=ctx.number(t, "poll_timeout", where, d.poll_timeout),
        think=ctx.number(t, "think", where, d.think, zero_ok=True),
    )
    if watch.poll_timeout > 10:
        raise ctx.fail(f"{where} poll_timeout must be at most 10 s (the watcher drains "
                       f"with it at the end), got {watch.poll_timeout!r}")
    t, where, groups = _sub(ctx, wl_t, "lease", _LEASE_KEYS, topo)
    e = LeaseWorkload()
    lease = LeaseWorkload(
        groups=groups,
        clients=ctx.integer(t, "clients", where, e.clients, 1),
        ttl=ctx.span(t, "ttl", where, e.ttl, upper=60.0),
        keys=ctx.integer(t, "keys", where, e.keys, 1),
        hold=ctx.span(t, "hold", where, e.hold, upper=60.0),
        revoke=_probability(ctx, t, "revoke", where, e.revoke),
        observe=ctx.number(t, "observe", where, e.observe),
        leader_changes=ctx.integer(t, "leader_changes", where, e.leader_changes, 0),
    )
    if lease.ttl[0] < 1.0:
        raise ctx.fail(f"{where} ttl must be at least 1 s (hakv's shortest lease), "
                       f"got {list(lease.ttl)}")
    t, where, groups = _sub(ctx, wl_t, "lock", _LOCK_KEYS, topo)
    f = LockWorkload()
    lock = LockWorkload(
        groups=groups,
        clients=ctx.integer(t, "clients", where, f.clients, 1),
        locks=ctx.integer(t, "locks", where, f.locks, 1),
        ttl=ctx.number(t, "ttl", where, f.ttl),
        writes=ctx.integer(t, "writes", where, f.writes, 1),
        stall=_probability(ctx, t, "stall", where, f.stall),
        guard=ctx.boolean(t, "guard", where, f.guard),
        think=ctx.number(t, "think", where, f.think, zero_ok=True),
    )
    if not 1.0 <= lock.ttl <= 60.0:
        raise ctx.fail(f"{where} ttl must be in 1..60 s, got {lock.ttl!r}")
    return watch, lease, lock


def _check_fault_shape(ctx: _Ctx, where: str, kind: str, nodes: tuple[str, ...],
                       group: str | None, prob: float | None, delay: float | None = None,
                       jitter: float = 0.0, has_jitter: bool = False) -> None:
    one_node = ("isolate", "bridge", "kill", "pause", "loss", "delay")
    if kind in one_node and len(nodes) != 1:
        raise ctx.fail(f"{where}: a {kind} fault needs exactly one node "
                       f"(node = \"ID\" or \"leader:GROUP\"), got {list(nodes)}")
    if kind == "one-way" and len(nodes) != 2:
        raise ctx.fail(f"{where}: a one-way fault needs nodes = [FROM, TO], got {list(nodes)}")
    if kind == "partition" and not nodes:
        raise ctx.fail(f"{where}: a partition needs nodes = [...] (the side cut off from "
                       "every other node)")
    if kind == "ring" and group is None:
        raise ctx.fail(f"{where}: a ring fault needs group = \"GROUP\" (the ring is over its "
                       "owners)")
    if kind == "loss" and prob is None:
        raise ctx.fail(f"{where}: a loss fault needs probability = p (0 < p <= 1)")
    if kind != "loss" and prob is not None:
        raise ctx.fail(f"{where}: probability only applies to loss faults")
    if kind == "delay" and delay is None:
        raise ctx.fail(f"{where}: a delay fault needs delay = SECONDS (e.g. 0.1)")
    if kind != "delay" and (delay is not None or has_jitter):
        raise ctx.fail(f"{where}: delay and jitter only apply to delay faults")
    if delay is not None and jitter > delay:
        raise ctx.fail(f"{where}: jitter ({jitter:g}s) must not exceed delay ({delay:g}s)")


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{p}: scenario file does not exist (see chaos/scenarios/)",
                            source=str(p)) from None
    except OSError as err:
        raise ScenarioError(f"{p}: cannot read: {err}", source=str(p)) from None
    return parse_scenario(text, source=str(p), base=p.parent)


def find_scenario(ref: str) -> Path:
    """A scenario argument: a path, or a name in chaos/scenarios/ (``smoke``)."""
    p = Path(ref)
    if p.exists() or "/" in ref or ref.endswith(".toml"):
        return p
    return SCENARIOS / f"{ref}.toml"


def all_scenarios() -> list[Path]:
    return sorted(SCENARIOS.glob("*.toml"))
