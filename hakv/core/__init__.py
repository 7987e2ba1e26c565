"""The pure core: the cluster model and every decision made from it.

No sockets, LMDB, pysyncobj, threads or clock reads here: data in, decisions out, with
time, ids and randomness passed as arguments. topology (the model and its file),
replication (which records live where, invariant I1), routing (patent Fig. 3 and the
bridges), codec (requests and log commands), membership (records and plans), seed (the
cluster records a topology seeds), ha (app specs, leases, placement, decisions),
explain (what a failure would do), quorum (majorities and the k-th highest ack).
"""
