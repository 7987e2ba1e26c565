"""The delayer: holds packets queued by an iptables NFQUEUE rule and lets them go later.

``tc netem`` is not available in this kernel (no ``sch_netem``), so the ``delay`` fault is
built from what is: the ``NFQUEUE`` target (nfnetlink_queue) hands every matching packet to
a user-space program, which must give a verdict per packet. This program gives every
packet the verdict *accept* ``delay`` seconds (± ``jitter``) after the kernel queued it.
The harness (``chaos.netns.Network.apply_delay``) starts it inside the delayed node's
network namespace (queues are per namespace) and only then installs the rule::

    ip netns exec hakv-RUN-n1 python -m chaos.delay --queue 1003 --delay 0.1 --jitter 0.02

Protocol with the harness: one line ``ready queue=N`` on stdout once the queue is bound
(the rule goes in after it); it stops on SIGTERM/SIGINT or when its stdin reaches end of
file (the harness died), first releasing every packet it still holds. Statistics go to
stderr at exit. The rule is installed with ``--queue-bypass``: while no program is bound
to the queue (before start, after exit, or if this process is killed), packets pass
undelayed instead of being dropped.

Packets keep their order: a packet is never released before one queued earlier (with
jitter, a packet whose own draw would be earlier waits for its predecessor), as on a real
slow link. Verdicts are given outside the library's callback, from a loop on the queue's
netlink socket (``select`` with the time until the next due packet as timeout), which
NetfilterQueue >= 1.0 allows.

Needs the PyPI package ``NetfilterQueue`` (built against Debian's libnetfilter-queue-dev;
``pip install -e '.[chaos]'``). :func:`available` says whether it can run here.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import random
import select
import signal
import sys
import time
from typing import Any

__all__ = ["INSTALL_HINT", "available", "main"]

INSTALL_HINT = ("the delay fault needs the Python package NetfilterQueue (iptables NFQUEUE; "
                "`tc netem` is not available in this kernel): apt-get install -y "
                "libnetfilter-queue-dev build-essential python3-dev, then "
                ".venv/bin/pip install -e '.[chaos]'")
MAX_QUEUE = 20000  # packets the kernel may hold for us before it drops new ones


def available() -> str | None:
    """None if the delayer can run here, else why not (with how to fix it)."""
    if importlib.util.find_spec("netfilterqueue") is None:
        return INSTALL_HINT
    if not os.path.exists("/proc/net/netfilter/nfnetlink_queue"):
        return ("the kernel has no nfnetlink_queue (CONFIG_NETFILTER_NETLINK_QUEUE): the "
                "delay fault cannot queue packets here")
    return None


class Delayer:
    """Holds packets in arrival order and accepts each when it is due."""

    def __init__(self, delay: float, jitter: float, seed: int) -> None:
        if delay < 0 or jitter < 0:
            raise ValueError("delay and jitter must be >= 0")
        self.delay = delay
        self.jitter = jitter
        self.rng = random.Random(seed)
        self.held: collections.deque[tuple[float, Any]] = collections.deque()
        self.last_due = 0.0
        self.count = 0
        self.max_held = 0
        self.late = 0.0  # worst lateness of a release behind its due time

    def due(self, now: float) -> float:
        d = self.delay
        if self.jitter:
            d = max(0.0, d + self.rng.uniform(-self.jitter, self.jitter))
        self.last_due = max(now + d, self.last_due)
        return self.last_due

    def hold(self, packet: Any) -> None:
        self.held.append((self.due(time.monotonic()), packet))
        self.count += 1
        self.max_held = max(self.max_held, len(self.held))

    def release_due(self) -> float | None:
        """Accept every packet that is due; seconds until the next one (None: none held)."""
        now = time.monotonic()
        while self.held and self.held[0][0] <= now:
            due, packet = self.held.popleft()
            self.late = max(self.late, now - due)
            packet.accept()
        return self.held[0][0] - now if self.held else None

    def release_all(self) -> None:
        while self.held:
            _, packet = self.held.popleft()
            try:
                packet.accept()
            except (RuntimeError, OSError):
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.delay",
                                     description="Delay packets of an NFQUEUE queue.")
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE queue number")
    parser.add_argument("--delay", type=float, required=True, help="seconds")
    parser.add_argument("--jitter", type=float, default=0.0, help="± seconds, uniform")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    why = available()
    if why is not None:
        print(f"chaos.delay: cannot run: {why}", file=sys.stderr, flush=True)
        return 3
    from netfilterqueue import COPY_META, NetfilterQueue

    delayer = Delayer(args.delay, args.jitter, args.seed)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    stop = False

    def on_signal(_sig: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.set_wakeup_fd(wake_w)

    queue = NetfilterQueue()
    queue.bind(args.queue, delayer.hold, max_len=MAX_QUEUE, mode=COPY_META)
    fd = queue.get_fd()
    stdin = sys.stdin.fileno()
    watch = [fd, wake_r, stdin]
    t_start = time.monotonic()
    print(f"ready queue={args.queue}", flush=True)
    try:
        while not stop:
            wait = delayer.release_due()
            readable, _, _ = select.select(watch, [], [], 1.0 if wait is None else wait)
            if fd in readable:
                queue.run(block=False)  # the callback holds each packet
            if wake_r in readable:
                os.read(wake_r, 512)
            if stdin in readable and not os.read(stdin, 4096):
                stop = True  # the harness went away
                watch.remove(stdin)
    finally:
        delayer.release_all()
        queue.unbind()
        print(f"chaos.delay: queue {args.queue}: delayed {delayer.count} packets by "
              f"{args.delay:g}s ±{args.jitter:g}s over {time.monotonic() - t_start:.1f}s; "
              f"at most {delayer.max_held} held at once; worst lateness "
              f"{delayer.late * 1000:.1f} ms", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
