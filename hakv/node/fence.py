"""The fence keeper: runs one app and kills it when its lease runs out (invariant I3).

Run as a script, not imported by the node (it needs the standard library only, so it
starts in a few milliseconds; hakv.node.supervisor starts it as
``python -I -S .../hakv/node/fence.py DEADLINE -- COMMAND...``)::

    DEADLINE   the lease deadline on CLOCK_MONOTONIC, which every process of the
               machine shares (Python's time.monotonic)
    COMMAND    the app's start command (argv)

The keeper runs COMMAND in its own process group and kills that group (SIGTERM
``TERM_ADVANCE`` before the deadline, SIGKILL ``KILL_ADVANCE`` before it) unless the
deadline is extended in time. It does not depend on the node process: a node frozen by
SIGSTOP, stalled, or killed cannot keep its app running past its lease. It reads lines on
stdin from the supervisor:

    deadline T     extend the lease to T (never shortens it)
    stop GRACE     SIGTERM the app now, SIGKILL after GRACE seconds
    kill           SIGKILL the app now

End of file on stdin (the node process died) counts as ``stop 1`` within what is left of
the lease. The keeper exits with the app's exit code (128+N for signal N, capped at
199), or EXIT_FENCED, EXIT_STOPPED or EXIT_ORPHANED.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

TERM_ADVANCE = 0.25
KILL_ADVANCE = 0.05
EXIT_FENCED = 200  # the lease deadline passed: the app was killed
EXIT_STOPPED = 201  # asked to stop (or kill): done
EXIT_ORPHANED = 202  # the node process went away: the app was stopped
USAGE = "usage: python fence.py DEADLINE -- COMMAND..."


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_code(returncode: int) -> int:
    if returncode < 0:
        return 128 + (-returncode)
    return min(returncode, 199)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    deadline = float(argv[0])
    if time.monotonic() >= deadline - KILL_ADVANCE:
        return EXIT_FENCED  # the lease is already over: never start
    proc = subprocess.Popen(argv[2:], stdin=subprocess.DEVNULL, start_new_session=True)
    pgid = proc.pid
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    waiters: list[int] = [stdin]
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
        waiters.append(pidfd)  # type: ignore[arg-type]
    except (AttributeError, OSError):
        pidfd = None
    kill_at: float | None = None  # set by a stop request
    exit_as = EXIT_STOPPED
    termed = False
    fencing = False  # SIGTERM sent because the lease is running out
    pending = b""
    while True:
        code = proc.poll()
        if code is not None:
            _killpg(pgid, signal.SIGKILL)  # stragglers of the group
            if kill_at is not None:
                return exit_as
            return EXIT_FENCED if fencing else _exit_code(code)
        now = time.monotonic()
        if now >= deadline - KILL_ADVANCE:
            _killpg(pgid, signal.SIGKILL)
            proc.wait()
            return EXIT_FENCED
        if kill_at is not None and now >= kill_at:
            _killpg(pgid, signal.SIGKILL)
            proc.wait()
            return exit_as
        if not termed and now >= deadline - TERM_ADVANCE:
            _killpg(pgid, signal.SIGTERM)
            termed = fencing = True
        wake = deadline - KILL_ADVANCE
        if not termed:
            wake = min(wake, deadline - TERM_ADVANCE)
        if kill_at is not None:
            wake = min(wake, kill_at)
        timeout = max(0.0, min(wake - now, 0.05 if pidfd is None else 1.0))
        try:
            ready, _, _ = select.select(waiters, [], [], timeout)
        except InterruptedError:
            continue
        if stdin not in ready:
            continue
        try:
            data = os.read(stdin, 4096)
        except BlockingIOError:
            continue
        if not data:  # the node process is gone: stop within the lease
            waiters.remove(stdin)
            if kill_at is None:
                _killpg(pgid, signal.SIGTERM)
                termed = True
                kill_at = min(now + 1.0, deadline - KILL_ADVANCE)
                exit_as = EXIT_ORPHANED
            continue
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            words = line.decode("ascii", "replace").split()
            if len(words) == 2 and words[0] == "deadline":
                deadline = max(deadline, float(words[1]))
            elif len(words) == 2 and words[0] == "stop" and kill_at is None:
                _killpg(pgid, signal.SIGTERM)
                termed = True
                kill_at = now + float(words[1])
            elif words == ["kill"]:
                kill_at = now


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
