"""For developers and demos: a local cluster launcher (local) and the nine-node demo."""
