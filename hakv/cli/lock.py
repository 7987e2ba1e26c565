"""``hakv lock`` and ``hakv elect`` (docs/cli.md): a lock held around a command, an
election campaigned from a shell, over hakv.client.recipe.

``hakv lock GROUP NAME [--ttl S] [--timeout S] [--grace S] -- COMMAND...`` runs COMMAND
while holding the lock, with ``HAKV_FENCING_TOKEN``, ``HAKV_LOCK_KEY`` and
``HAKV_LOCK_GROUP`` in its environment; SIGTERM/SIGINT/SIGHUP to hakv are passed on to
it; while still queued, they make hakv leave the queue at once (exit 128 + N, COMMAND
not run). If the lock is lost, COMMAND gets SIGTERM, then SIGKILL after ``--grace`` seconds,
and hakv exits 9 (``lock_lost``). Otherwise hakv releases the lock when COMMAND ends and
exits with its status (128 + N when a signal N ended it). Not acquired within
``--timeout``: exit 10 (``lock_timeout``), COMMAND not run.

``hakv elect GROUP NAME VALUE [--ttl S] [--timeout S] [--json]`` campaigns, prints one line
when leader (with the fencing token), stays leader until SIGTERM/SIGINT (then resigns,
exit 0) or until the leadership is lost (exit 9). ``hakv elect GROUP NAME --observe
[--json] [--count N]`` prints the leader, then each change, one line each.

The root ``--timeout`` (before the command name) is the per-call timeout here: after the
command name ``--timeout`` is how long to wait for the lock or the office.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import click

from hakv.cli._options import client, json_option
from hakv.client import ENDPOINTS_ENV, Leader
from hakv.errors import LeadershipLostError, LockLostError, LockTimeoutError

__all__ = ["FENCING_TOKEN_ENV", "LOCK_KEY_ENV", "elect", "lock", "leader_line"]

FENCING_TOKEN_ENV = "HAKV_FENCING_TOKEN"
LOCK_KEY_ENV = "HAKV_LOCK_KEY"
LOCK_GROUP_ENV = "HAKV_LOCK_GROUP"

F = TypeVar("F", bound=Callable[..., Any])
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _where_options(f: F) -> F:
    """--endpoints/--topology/--dir (not --timeout: it means the wait here)."""
    f = click.option("--dir", "run_dir", type=click.Path(file_okay=False), default=None,
                     help="Run dir of a local cluster: use its nodes as endpoints.")(f)
    f = click.option("--topology", type=click.Path(dir_okay=False), default=None,
                     help="Topology file: use its nodes as endpoints.")(f)
    f = click.option("--endpoints", "-e", default=None,
                     help=f"host:port[,host:port...] of hakv nodes (env {ENDPOINTS_ENV}).")(f)
    return f


def leader_line(leader: Leader | None, as_json: bool) -> str:
    """One line for a leader (or none): ``TOKEN VALUE`` / ``-``, or JSON."""
    if as_json:
        return json.dumps({"leader": None if leader is None else leader.to_dict()},
                          ensure_ascii=False, separators=(",", ":"))
    return "-" if leader is None else f"{leader.token} {leader.value}"


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Stopped(Exception):
    """SIGTERM/SIGINT/SIGHUP while waiting for a lock or leading: leave the queue (or
    resign) at once instead of leaving the key behind until its lease expires."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(signum)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("group")
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--ttl", type=float, default=10.0, show_default=True,
              help="Lease TTL: how long the lock outlives a dead hakv.")
@click.option("--timeout", "wait", type=float, default=None,
              help="Seconds to wait for the lock (default: forever); exit 10 after.")
@click.option("--grace", type=float, default=5.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL when the lock is lost.")
@_where_options
@click.pass_context
def lock(ctx: click.Context, group: str, name: str, command: tuple[str, ...], ttl: float,
         wait: float | None, grace: float, **conn: Any) -> None:
    """Run COMMAND while holding lock NAME of GROUP (put it after --)."""
    done = threading.Event()
    with client(ctx, **conn) as c:
        held = c.lock(group, name, ttl=ttl, on_lost=lambda _lock: done.set())
        # A signal while queued leaves the queue now (acquire revokes the lease on any
        # exception): a killed waiter must not hold up the waiters behind it for a TTL.
        waiting = {s: signal.signal(s, _raise_stopped) for s in _FORWARDED}
        try:
            acquired = held.acquire(timeout=wait)
        except _Stopped as stop:
            ctx.exit(128 + stop.signum)
        finally:
            for s, handler in waiting.items():
                signal.signal(s, handler)
        if not acquired:
            raise LockTimeoutError(f"lock {name!r} of group {group!r} not acquired within "
                                   f"{wait:g}s; the command was not run")
        try:
            env = {**os.environ, FENCING_TOKEN_ENV: str(held.fence),
                   LOCK_KEY_ENV: held.key or "", LOCK_GROUP_ENV: group}
            try:
                proc = subprocess.Popen(list(command), env=env)
            except OSError as err:
                raise click.ClickException(f"cannot run {command[0]!r}: {err}") from None

            def forward(signum: int, _frame: FrameType | None) -> None:
                if proc.poll() is None:
                    proc.send_signal(signum)

            previous = {s: signal.signal(s, forward) for s in _FORWARDED}
            try:
                def reap() -> None:
                    proc.wait()
                    done.set()

                waiter = threading.Thread(target=reap, daemon=True, name="hakv-lock-command")
                waiter.start()
                done.wait()
                if proc.poll() is None:  # the lock was lost
                    _stop(proc, grace)
                    raise LockLostError(
                        f"lock {name!r} of group {group!r} lost "
                        f"({held.lease.lost_reason if held.lease else 'lease lost'}): "
                        f"the command was stopped")
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
        finally:
            held.release()
    ctx.exit(_exit_status(proc.returncode))




@click.command()
@click.argument("group")
@click.argument("name")
@click.argument("value", required=False)
@click.option("--ttl", type=float, default=10.0, show_default=True,
              help="Lease TTL: how long the office outlives a dead hakv.")
@click.option("--timeout", "wait", type=float, default=None,
              help="Seconds to wait to become leader (default: forever); exit 10 after.")
@click.option("--observe", is_flag=True, help="Print the leader and each change instead.")
@click.option("--count", type=int, default=None, help="With --observe: stop after N lines.")
@json_option
@_where_options
@click.pass_context
def elect(ctx: click.Context, group: str, name: str, value: str | None, ttl: float,
          wait: float | None, observe: bool, count: int | None, as_json: bool,
          **conn: Any) -> None:
    """Campaign in election NAME of GROUP with VALUE and stay leader until interrupted;
    or --observe it."""
    if observe == (value is not None):
        raise click.UsageError("give VALUE to campaign, or --observe (not both)")
    with client(ctx, **conn) as c:
        election = c.election(group, name, ttl=ttl)
        if observe:
            seen = 0
            try:
                with election.observe() as changes:
                    for leader in changes:
                        click.echo(leader_line(leader, as_json))
                        seen += 1
                        if count is not None and seen >= count:
                            return
            except KeyboardInterrupt:
                return
        assert value is not None
        lost = election.lost
        previous = {s: signal.signal(s, _raise_stopped) for s in _FORWARDED}
        try:
            try:
                token = election.campaign(value, timeout=wait)
                if as_json:
                    click.echo(json.dumps({"leader": {"value": value, "token": token,
                                                      "key": election.key}},
                                          ensure_ascii=False, separators=(",", ":")))
                else:
                    click.echo(f"leader of {name} in group {group}: {value} "
                               f"(fencing token {token})")
                lost.wait()
            except _Stopped:
                return
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
                election.resign()
            raise LeadershipLostError(f"election {name!r} of group {group!r}: leadership "
                                      f"lost (the lease was lost)")
        except LockLostError as err:
            if isinstance(err, LeadershipLostError):
                raise
            raise LeadershipLostError(err.message) from None
