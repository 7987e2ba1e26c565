"""Consensus: per-group Raft ensembles on pysyncobj, and the loop that drives them.

The only package that imports pysyncobj. It knows nothing of LMDB (a member applies
through the ``StateMachine`` protocol) nor of the node's components.
"""
