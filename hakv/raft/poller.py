"""The raft thread's poller: one ``poll(2)`` over every descriptor the node's loop serves.

It replaces pysyncobj's ``PollPoller`` (same interface: ``subscribe``, ``unsubscribe``,
``poll`` and pysyncobj's event bits), for two reasons:

- **A descriptor that stays ready must never make the loop spin.** ``poll(2)`` reports
  ``POLLNVAL`` for a descriptor that was closed while still registered, at once and on every
  call. pysyncobj's poller ignores that bit, so one such descriptor made the raft thread
  wake thousands of times a second, forever (issue 12: every node that had answered one
  client connection burned a core). Here an invalid descriptor, or one reported without a
  callback, is unregistered on the spot and counted in ``dropped``; its owner's bug is
  logged once, and the loop goes back to sleep.
- **Wake-ups are counted** (``polls``, ``events``), so tests and ``/v1/health`` can check
  that an idle node's raft thread is idle, without strace.

It is used by one thread only (the raft thread), but ``subscribe``/``unsubscribe`` may be
called from another thread before that thread starts.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable

log = logging.getLogger("hakv.raft.poller")

# pysyncobj.poller.POLL_EVENT_TYPE: the event bits its connections subscribe with.
READ = 1
WRITE = 2
ERROR = 4

Callback = Callable[[int, int], None]

_TO_POLL = ((READ, select.POLLIN | select.POLLPRI), (WRITE, select.POLLOUT),
            (ERROR, select.POLLERR))


def poll_mask(events: int) -> int:
    """pysyncobj event bits -> ``select.poll`` bits (POLLHUP and POLLNVAL are implicit)."""
    mask = 0
    for ours, theirs in _TO_POLL:
        if events & ours:
            mask |= theirs
    return mask


def event_bits(revents: int) -> int:
    """``select.poll`` revents -> pysyncobj event bits; a hang-up is an error."""
    bits = 0
    if revents & (select.POLLIN | select.POLLPRI):
        bits |= READ
    if revents & select.POLLOUT:
        bits |= WRITE
    if revents & (select.POLLERR | select.POLLHUP):
        bits |= ERROR
    return bits


class LoopPoller:
    """``poll(2)`` over registered descriptors, dispatching to their callbacks."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._callbacks: dict[int, Callback] = {}
        self.polls = 0
        """How many times the loop polled (its wake-ups, one per pass)."""
        self.events = 0
        """Descriptor events dispatched."""
        self.failures = 0
        """Callbacks that raised (each logged, its descriptor dropped)."""
        self.dropped = 0
        """Descriptors unregistered because they were closed while still registered."""

    def subscribe(self, fd: int, callback: Callback, events: int) -> None:
        self._callbacks[fd] = callback
        self._poll.register(fd, poll_mask(events))

    def unsubscribe(self, fd: int) -> None:
        self._callbacks.pop(fd, None)
        try:
            self._poll.unregister(fd)
        except KeyError:
            pass

    def registered(self) -> int:
        return len(self._callbacks)

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds, then dispatch every ready descriptor."""
        self.polls += 1
        ready = self._poll.poll(max(0.0, timeout) * 1000.0)
        for fd, revents in ready:
            callback = self._callbacks.get(fd)
            if revents & select.POLLNVAL or callback is None:
                self._drop(fd, revents, callback)
                continue
            self.events += 1
            try:
                callback(fd, event_bits(revents))
            except Exception:  # a bug on one connection must not end the raft thread
                self._failed(fd, callback)

    def _failed(self, fd: int, callback: Callback) -> None:
        """A callback raised: log it, drop that descriptor's owner (its ``disconnect``
        or ``close``), and go on with the others."""
        self.failures += 1
        owner = getattr(callback, "__self__", None)
        log.exception("internal error handling descriptor %d (%s); dropping it", fd,
                      getattr(callback, "__qualname__", callback))
        drop = getattr(owner, "disconnect", None) or getattr(owner, "close", None)
        try:
            if drop is not None:
                drop()
        except Exception:  # noqa: BLE001 - already failing; the fd goes regardless
            log.exception("dropping descriptor %d failed too", fd)
        self.unsubscribe(fd)

    def _drop(self, fd: int, revents: int, callback: Callback | None) -> None:
        self.dropped += 1
        self.unsubscribe(fd)
        owner = getattr(callback, "__qualname__", None) or "no callback"
        log.warning("descriptor %d was closed while the raft loop still polled it (%s, "
                    "revents=%#x); unregistered it", fd, owner, revents)


__all__ = ["ERROR", "READ", "WRITE", "LoopPoller", "event_bits", "poll_mask"]
