"""The pure core: the cluster model and every decision made from it.

No sockets, LMDB, pysyncobj, threads or clock reads here: data in, decisions out, with
time, ids and randomness passed as arguments. topology (the model and its file), config
(TOML checks and the one TOML writer), replication (which records live where, invariant
I1), routing (patent Fig. 3 and the bridges), codec (requests and log commands),
membership (records and plans), seed (the cluster records a topology seeds), ha (a
package: app specs, the placement record, leases, decisions), explain (what a failure
would do, by ha's decisions), quorum (majorities and the k-th highest ack).
"""
