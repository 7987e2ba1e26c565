"""An atomic counter in one key: ``client.counter(group, key)``.

::

    from hakv import Client

    with Client("127.0.0.1:8202") as c:
        hits = c.counter("220", "stats/hits")
        hits.add(1)              # the new value, after an atomic read-modify-write
        hits += 5                # the same (kazoo's shape)
        print(hits.value)        # a linearizable read; 0 while the key does not exist

The value is a decimal integer string in the key. ``add`` is a compare-and-swap loop: a
txn that writes ``old + delta`` only if the key's mod_revision is still the one read
(``version == 0`` when absent), and otherwise returns the current record in the same
answer (no extra read), until it wins.

What happens on failure:

- concurrent adders: each ``add`` retries its CAS until it wins; none is lost, none is
  counted twice;
- a leader change or node failure: the client retries the same txn (same client id and
  seq, so it applies at most once);
- ``OutcomeUnknownError`` (no answer within the client's timeout): the increment may or
  may not have applied — like any write, it is not retried behind your back after that;
- a key that holds something else than an integer: BadRequestError, nothing written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hakv.client.results import KeyValue
from hakv.client.txn import Compare, Op
from hakv.errors import BadRequestError, ConflictError, NotFoundError

if TYPE_CHECKING:
    from hakv.client.client import Client

__all__ = ["Counter"]

_MAX_ATTEMPTS = 1000


def _parse(key: str, kv: KeyValue | None, default: int) -> int:
    if kv is None:
        return default
    try:
        return int(kv.value)
    except ValueError:
        raise BadRequestError(f"counter {key!r} holds {kv.value[:40]!r}, not an integer") \
            from None


class Counter:
    """An integer counter in ``key`` of ``group``; ``default``: its value while absent."""

    def __init__(self, client: Client, group: str, key: str, default: int = 0) -> None:
        self.client = client
        self.group = group
        self.key = key
        self.default = default

    def __repr__(self) -> str:
        return f"Counter(group={self.group!r}, key={self.key!r})"

    @property
    def value(self) -> int:
        """The current value (a linearizable read)."""
        return _parse(self.key, self._read(), self.default)

    def _read(self) -> KeyValue | None:
        try:
            return self.client.get(self.group, self.key)
        except NotFoundError:
            return None

    def add(self, delta: int = 1) -> int:
        """Add ``delta`` atomically; the new value. ConflictError after 1000 lost CAS
        rounds (extreme contention)."""
        current = self._read()
        for _ in range(_MAX_ATTEMPTS):
            new = _parse(self.key, current, self.default) + delta
            guard = (Compare.mod_revision(self.key, "==", current.mod_revision)
                     if current is not None else Compare.version(self.key, "==", 0))
            r = self.client.txn(self.group, [guard], [Op.put(self.key, str(new))],
                                [Op.get(self.key)])
            if r.succeeded:
                return new
            current = r.results[0].kv  # type: ignore[union-attr]
        raise ConflictError(f"counter {self.key!r}: {_MAX_ATTEMPTS} compare-and-swap rounds "
                            f"lost to concurrent writers")

    def __iadd__(self, delta: int) -> Counter:
        self.add(delta)
        return self

    def __isub__(self, delta: int) -> Counter:
        self.add(-delta)
        return self
