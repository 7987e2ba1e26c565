"""The HA resource manager's pure core: plain data in, decisions out (DESIGN.md points 4-5,
patent Fig. 4, invariants I2 and I3). No sockets, LMDB, threads or clock reads: every time
is an argument, so every rule here is a row of a table in tests/test_ha_decisions.py.

One module per concept, in the order a failover uses them; each imports only those above
it (hakv.core.topology imports ``spec`` alone):

- ``spec``: :class:`AppSpec` (a group's app, like an OCF resource agent), the fallback
  policy and window, :class:`HaTuning` (the ``[ha]`` table), parsed with TopologyErrors
  that name the broken rule.
- ``record``: the placement record (:class:`Placement`: the patent's
  ``current_computer_id``, a state, a fencing token, the renewal count) and the
  deterministic log commands that change it (:func:`apply_command`).
- ``lease``: lease arithmetic (:func:`runner_deadline` on the runner's clock,
  :func:`lease_expiry` on the manager's) and :func:`observe`.
- ``decision``: :func:`decide` (what the group's leader does next), :func:`node_marks`,
  :func:`handover_target`.
- ``explain``: :func:`explain_placement` (why the app runs where it runs).

Everything public is re-exported here: ``from hakv.core import ha; ha.decide(...)``.
"""

from hakv.core.ha.decision import (
    Decision,
    GroupView,
    candidates,
    decide,
    handover_target,
    node_marks,
)
from hakv.core.ha.explain import PlacementFacts, explain_placement
from hakv.core.ha.lease import LeaseWatch, lease_expiry, observe, runner_deadline
from hakv.core.ha.record import (
    ACTIONS,
    LIVE_STATES,
    MAX_REASON,
    PLACEMENT_OP,
    REPORT_STATES,
    STATES,
    Applied,
    Placement,
    apply_command,
    command,
    validate_command,
)
from hakv.core.ha.spec import (
    FALLBACK_POLICIES,
    RESERVED_ENV_PREFIX,
    AppSpec,
    Command,
    HaTuning,
    argv,
    ha_toml_lines,
    in_window,
    parse_app,
    parse_fallback,
    parse_ha,
    parse_window,
)

__all__ = [
    "ACTIONS",
    "FALLBACK_POLICIES",
    "LIVE_STATES",
    "MAX_REASON",
    "PLACEMENT_OP",
    "REPORT_STATES",
    "RESERVED_ENV_PREFIX",
    "STATES",
    "AppSpec",
    "Applied",
    "Command",
    "Decision",
    "GroupView",
    "HaTuning",
    "LeaseWatch",
    "Placement",
    "PlacementFacts",
    "apply_command",
    "argv",
    "candidates",
    "command",
    "decide",
    "explain_placement",
    "ha_toml_lines",
    "handover_target",
    "in_window",
    "lease_expiry",
    "node_marks",
    "observe",
    "parse_app",
    "parse_fallback",
    "parse_ha",
    "parse_window",
    "runner_deadline",
    "validate_command",
]
