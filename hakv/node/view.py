"""The node's view of the cluster: the topology file plus the runtime changes recorded in
the cluster ensemble (adopted by the reconciler), and the HA specs read from both.

The one ``TopologyView`` of a node process (hakv.node.ports); plain data, no I/O, so
tests use it as it is.
"""

from __future__ import annotations

from dataclasses import replace

from hakv.core import ha
from hakv.core.topology import GroupSpec, Topology

__all__ = ["ClusterView"]


class ClusterView:
    """``topology`` is the current view; ``seed`` the topology file the node started with.

    Runtime membership changes do not carry app specs, fallback settings or HA tuning, so
    those come from the file (``group_spec``, ``tuning``)."""

    def __init__(self, seed: Topology, current: Topology | None = None) -> None:
        self.seed = seed
        self._current = current if current is not None else seed

    @property
    def topology(self) -> Topology:
        return self._current

    def adopt(self, topology: Topology) -> None:
        self._current = topology  # one reference swap: readers see the old or the new

    def group_spec(self, group: str) -> GroupSpec | None:
        """The group's spec for HA: owners from the current view, app and fallback from
        the topology file; None for a group the view does not have."""
        current = self._current
        if not current.has_group(group):
            return None
        spec = current.group(group)
        if spec.app is None and self.seed.has_group(group):
            filed = self.seed.group(group)
            return replace(spec, app=filed.app, fallback=filed.fallback,
                           fallback_window=filed.fallback_window)
        return spec

    def tuning(self) -> ha.HaTuning:
        return self.seed.ha
