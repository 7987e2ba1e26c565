"""Security material for hakv (issue 15): certificates today (:mod:`hakv.security.certs`,
``hakv certs``); mutual TLS on the Raft and API ports comes next and will build on it.

Layering: this package imports only :mod:`hakv.errors` (and ``cryptography``); the node,
the client and the CLI import it, never the other way round.
"""

from __future__ import annotations
