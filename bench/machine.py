"""How fast this machine is right now, at the two things a write waits for most.

    python -m bench.machine

A durable write here waits for journal fdatasyncs, for wake-ups of other processes over
loopback TCP, and for Python code to run. On a shared virtual machine both drift (seen on the 2-core machine of
docs/benchmarks.md: fdatasync p50 0.14-0.25 ms, round trip 23-38 us within one day), and
the throughput figures drift with them, so the benchmarks print these numbers next to
their results.
"""

from __future__ import annotations

import mmap
import os
import socket
import statistics
import tempfile
import time


def fdatasync_ms(directory: str | None = None, count: int = 300) -> float:
    """p50 of appending 300 bytes to an mmap'ed file and fdatasync'ing it (the journal's
    pattern), in milliseconds."""
    size = 1 << 20
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        os.ftruncate(f.fileno(), size)
        with mmap.mmap(f.fileno(), size) as m:
            times = []
            for i in range(count):
                offset = 4096 + (i * 300) % (size - 8192)
                m[offset:offset + 300] = b"x" * 300
                m[0:8] = offset.to_bytes(8, "little")
                start = time.perf_counter()
                os.fdatasync(f.fileno())
                times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def round_trip_us(count: int = 2000) -> float:
    """Mean round trip of 300 bytes between two processes over loopback TCP, in µs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        pid = os.fork()
        if pid == 0:  # the echoing peer
            try:
                with socket.create_connection(("127.0.0.1", port)) as peer:
                    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    for _ in range(count):
                        peer.sendall(peer.recv(1000))
            finally:
                os._exit(0)
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start = time.perf_counter()
            for _ in range(count):
                conn.sendall(b"x" * 300)
                got = 0
                while got < 300:
                    got += len(conn.recv(1000))
            elapsed = time.perf_counter() - start
        os.waitpid(pid, 0)
    return 1e6 * elapsed / count


def python_loop_ms(count: int = 1_000_000) -> float:
    """Best of three runs of a plain Python loop, in ms: the CPU this process gets."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(count):
            total += i
        best = min(best, time.perf_counter() - start)
    return 1000 * best


def describe(directory: str | None = None) -> str:
    return (f"machine now: fdatasync p50 {fdatasync_ms(directory):.2f} ms, "
            f"loopback round trip {round_trip_us():.0f} us, "
            f"1M-step Python loop {python_loop_ms():.0f} ms")


if __name__ == "__main__":
    print(describe())
