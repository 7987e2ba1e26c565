"""``Completion``: a submitted command's outcome, resolved by the raft thread.

Threads other than the raft thread only submit commands and wait on completions; the
raft thread resolves them *after* the store batch holding their result has been
committed (hakv.raft.member, ``finish_batch``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from hakv import errors


class Completion:
    """A submitted command's outcome, resolved by the raft thread.

    ``wait`` returns the state machine's result or raises the typed error. Timing out
    while waiting means the outcome is unknown (the command may still commit).

    A completion made with ``on_done`` is not waited on: the callback runs in the raft
    thread once it is resolved (the client API answers from it), and ``outcome`` gives the
    result there. Such completions carry no ``threading.Event``: at thousands of writes a
    second, making one (a lock and a condition) was a visible share of a leader's CPU.
    """

    __slots__ = ("_event", "_result", "_error", "_on_done", "_resolved")

    def __init__(self, on_done: Callable[[], None] | None = None) -> None:
        self._event = threading.Event() if on_done is None else None
        self._result: Any = None
        self._error: errors.HakvError | None = None
        self._on_done = on_done
        self._resolved = False

    def resolve(self, result: Any = None, error: errors.HakvError | None = None) -> None:
        self._result, self._error = result, error
        self._resolved = True
        if self._event is not None:
            self._event.set()
        if self._on_done is not None:
            self._on_done()

    @property
    def answers_in_loop(self) -> bool:
        """Whether the raft thread acts on it (an ``on_done`` callback)."""
        return self._on_done is not None

    def done(self) -> bool:
        """Whether the outcome is known (``wait`` would not block)."""
        return self._resolved

    def outcome(self) -> Any:
        """The result of a resolved completion, or raises its error."""
        if not self._resolved:
            raise errors.OutcomeUnknownError("the outcome is not known yet")
        if self._error is not None:
            raise self._error
        return self._result

    def wait(self, timeout: float) -> Any:
        if self._event is not None and not self._event.wait(timeout):
            raise commit_timed_out(timeout)
        return self.outcome()


def commit_timed_out(timeout: float) -> errors.OutcomeUnknownError:
    """The error of a write whose commit was not seen within ``timeout`` seconds."""
    return errors.OutcomeUnknownError(
        f"no commit within {timeout:.1f}s: the write may or may not apply; "
        "retry with the same client id and seq"
    )
