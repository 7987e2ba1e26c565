"""Storage: a group's state machine on LMDB (the only package that imports lmdb).

store (the key tree, sessions, kv execution, HA and bridge records), machine (the
adapter Raft applies through, with its snapshot format), inspect (offline reading of a
data dir).
"""
