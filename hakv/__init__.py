"""hakv: coordination for very large HA clusters, one small Raft ensemble per resource group.

Layers (docs/architecture.md; a package imports only packages below it, packages on one
line do not import each other; ``make lint`` checks this with import-linter):

  cli                        the ``hakv`` command and the demo: a thin layer over the library
  dev | sim                  a local cluster launcher; a seeded simulation of 1,000-10,000 nodes
  node                       the node process: members, loop, client API, bridge, HA manager,
                             supervisor, membership reconciler
  client | raft | storage    the client library (and operator admin); per-group Raft on
  | security                 pysyncobj (the only package importing it); LMDB (the only one
                             importing lmdb); certificates (hakv certs)
  core | failpoints          pure: topology, quorum, replication, routing, codec, membership
                             planning, HA decisions (data in, decisions out); the test-only
                             unsafe switches, read once at start-up
  errors                     the one error tree
"""

from hakv.client import Client
from hakv.errors import HakvError

__all__ = ["Client", "HakvError"]
__version__ = "0.1.0"
