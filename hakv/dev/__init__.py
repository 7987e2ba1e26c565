"""For developers: a whole topology as local processes under one run directory (local).

The nine-node demo that uses it is ``hakv.cli.demo`` (``make demo``).
"""
