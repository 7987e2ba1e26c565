"""Consensus: per-group Raft ensembles on pysyncobj, and the loop that drives them.

The only package that imports pysyncobj. It knows nothing of LMDB (a member applies
through the ``StateMachine`` protocol) nor of the node's components.

Layers inside: the pure trackers (readindex, prevote, quiesce, handover) and settings
import no pysyncobj and read no clock; member (``GroupMember``, the pysyncobj plumbing)
feeds them; host (``RaftHost``) drives the members; wire is the transport under them.
pysyncobj_surface lists every pysyncobj private relied on.
"""
