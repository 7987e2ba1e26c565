"""The node process: its members, its loop, and the components around them.

process (wiring, lifecycle, ``run_node``), api (the client API server), bridge
(cross-group changes), manager (HA decisions and probes), supervisor and fence (running
the app under a lease), reconciler (runtime membership), peer (the one node-to-node HTTP
client), view (the node's view of the topology).

Layering: the components receive the ports they use (ports: Protocols for the group host,
the topology view, the clock, the peer API, ...), never the ``Node``; only process imports
them and wires them together (an import-linter contract in pyproject.toml checks it).
"""
