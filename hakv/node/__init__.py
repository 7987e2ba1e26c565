"""The node process: its members, its loop, and the components around them.

process (wiring, lifecycle, ``run_node``), api (the client API server), bridge
(cross-group changes), manager (HA decisions and probes), supervisor and fence (running
the app under a lease), reconciler (runtime membership).
"""
