"""Linearizability of registers: the Wing–Gong / Lowe search (WGL), as in Porcupine/Knossos.

Model: one register per ``(group, key)``, initially absent (``None``), with operations

- ``read``: ``output`` is the value read (``None`` if absent);
- ``write``: ``input`` is the value written;
- ``delete``: the register becomes absent;
- ``cas``: ``input`` is ``(expected, new)``; ``output`` is ``True`` if it swapped and
  ``False`` if the compare failed (both are ``ok`` operations).

``ok`` operations must take effect at one instant between invocation and completion.
``unknown`` operations may take effect at any instant after invocation, or never.
``fail`` operations never took effect and are dropped.

The search (Lowe, "Testing for linearizability", 2017; Porcupine's ``checkSingle``): all
call and return events sorted by time in a doubly linked list. Walk it from the front; at a
call, try to linearize that operation now (apply it to the model); if legal and the pair
(set of linearized operations, model state) was not seen before, record it, remove the
operation's call and return from the list ("lift") and restart from the front. At a return
event, the operation it belongs to should have been linearized already: backtrack (pop the
last linearized operation, put it back, "unlift", and try the next call after it). The history
is linearizable when every ``ok`` operation is linearized; ``unknown`` operations have their
return at +inf, so reaching the first of them means all ``ok`` operations are done and the
remaining ``unknown`` ones are simply never applied.

The set of seen (linearized set, state) pairs is the memo that makes this practical; the
number of configurations explored is the budget (``max_states``). When the budget runs out
the result is ``ok=False`` with details starting ``inconclusive:`` — a run must never pass
unchecked. Three exact reductions keep the search small (each argued where it is applied):
pure steps are never re-tried, and pending writes of values no read or successful compare
observes ("dead" and "helper" writes) are only applied where a failed compare needs them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chaos.history import CheckResult, Operation, aggregate, partition_by_key

NAME = "linearizable-register"
DEFAULT_MAX_STATES = 2_000_000
REGISTER_KINDS = frozenset(("read", "write", "cas", "delete"))

# model steps
_READ, _WRITE, _CAS_TRUE, _CAS_FALSE = 0, 1, 2, 3
_CALL, _RETURN = 0, 1


def freeze(value: object) -> object:
    """A hashable stand-in for a JSON-ish value (lists become tuples, dicts item sets)."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return frozenset((k, freeze(v)) for k, v in value.items())
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


class _Unobserved:
    """The model state after writing a value that no operation ever compares with. All such
    values are alike for every later step (no read returns them, every compare fails on
    them), so they share one state, which keeps the memo small."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<a value never read>"


_DEAD = _Unobserved()


class _Entry:
    """A call or return event in the doubly linked list."""

    __slots__ = ("kind", "id", "time", "prev", "next", "match", "unknown", "helper")

    def __init__(self, kind: int, id: int, time: float, unknown: bool,
                 helper: bool = False) -> None:
        self.kind = kind
        self.id = id
        self.time = time
        self.unknown = unknown
        self.helper = helper
        self.prev: _Entry | None = None
        self.next: _Entry | None = None
        self.match: _Entry | None = None


@dataclass(frozen=True)
class _Step:
    code: int
    a: object  # read: value; write: value; cas: expected
    b: object  # cas: new value


@dataclass
class _Prepared:
    searched: list[Operation]  # operations in the linked list
    dead: list[Operation]  # pooled unknown writes of values nobody compares with
    helpers: set[int]  # ids (in searched) of unknown writes only failed compares can see
    observed: set[object]  # values some operation compares with (read, cas expected)
    positive: set[object]  # values a read returns or a cas (maybe) swapped on


def _cas_args(op: Operation) -> tuple[object, object]:
    inp = op.input
    if not isinstance(inp, list | tuple) or len(inp) != 2:
        raise ValueError(f"cas input must be (expected, new), got {inp!r}: {op.describe()}")
    return inp[0], inp[1]


def _written(op: Operation) -> object:
    if op.kind == "cas":
        return freeze(_cas_args(op)[1])
    if op.kind == "delete":
        return None
    return freeze(op.input)


def _prepare(ops: Iterable[Operation]) -> _Prepared:
    """Split a register's operations for the search.

    ``fail`` operations and unanswered reads are dropped. Values are *positively observed*
    when an ok read returns them or a cas that swapped (or may have: unknown) expected them,
    and *negatively observed* when only failed compares (ok cas -> False) expected them.

    A pending (``unknown``) write or delete whose value is not positively observed leaves
    the register in a state where every later read and successful compare is illegal, so
    the only use of applying it is to make a later failed compare legal. In any
    linearization it can be moved to just before the first failed compare after it whose
    expected value equals the state it replaces (or dropped if there is none): everything
    between is a failed compare that is legal either way, and moving an unknown operation
    later never breaks real-time order. Such writes are therefore never applied on their
    own: values nobody compares with at all are *dead* and pooled (a failed compare may
    draw one, see ``_check_single``); values only failed compares expect are *helpers*,
    searched over but applied only where a pending failed compare needs them.
    """
    kept: list[Operation] = []
    for op in ops:
        if op.kind not in REGISTER_KINDS:
            raise ValueError(f"not a register operation: {op.describe()}")
        if op.status == "fail":
            continue
        if op.status == "unknown" and op.kind == "read":
            continue  # a read changes nothing; an unanswered one constrains nothing
        kept.append(op)
    positive: set[object] = set()
    observed: set[object] = set()
    for op in kept:
        if op.kind == "read":
            positive.add(freeze(op.output))
        elif op.kind == "cas":
            expected = freeze(_cas_args(op)[0])
            observed.add(expected)
            if op.status == "unknown" or op.output is True:
                positive.add(expected)
    observed |= positive
    searched: list[Operation] = []
    dead: list[Operation] = []
    helpers: set[int] = set()
    for op in kept:
        if op.status == "unknown" and op.kind in ("write", "delete"):
            v = _written(op)
            if v not in observed:
                dead.append(op)
                continue
            if v not in positive:
                helpers.add(len(searched))
        searched.append(op)
    return _Prepared(searched, dead, helpers, observed, positive)


def _step_of(op: Operation, observed: set[object]) -> _Step:
    def written(v: object) -> object:
        return v if v in observed else _DEAD

    if op.kind == "read":
        return _Step(_READ, freeze(op.output), None)
    if op.kind == "write":
        return _Step(_WRITE, written(freeze(op.input)), None)
    if op.kind == "delete":
        return _Step(_WRITE, written(None), None)
    expected, new = _cas_args(op)
    if op.status == "ok" and op.output is not True:
        if op.output is not False:
            raise ValueError(f"ok cas needs output True/False: {op.describe()}")
        return _Step(_CAS_FALSE, freeze(expected), None)
    # ok True, or unknown: an unknown cas that would fail is the same as never applying it
    return _Step(_CAS_TRUE, freeze(expected), written(freeze(new)))


def _name(ops: Sequence[Operation]) -> str:
    return f"{ops[0].group}/{ops[0].key}" if ops else "?"


def check_register(ops: Iterable[Operation], *, max_states: int = DEFAULT_MAX_STATES,
                   initial: object = None) -> CheckResult:
    """Check that the register operations in ``ops`` are linearizable.

    If ``ops`` spans several ``(group, key)`` registers each is checked on its own (see
    ``check_history``). ``max_states`` bounds the configurations explored per register.
    """
    ops = list(ops)
    if len({op.register for op in ops}) > 1:
        return check_history(ops, max_states=max_states, initial=initial)
    return _check_single(ops, max_states=max_states, initial=initial)


def check_history(ops: Iterable[Operation], *, max_states: int = DEFAULT_MAX_STATES,
                  initial: object = None) -> CheckResult:
    """Check every register in a history (operations of other kinds are ignored); the
    result is ok only if every register is linearizable."""
    parts = partition_by_key(op for op in ops if op.kind in REGISTER_KINDS)
    results = [_check_single(part, max_states=max_states, initial=initial)
               for _, part in sorted(parts.items())]
    return aggregate(NAME, results)


def _check_single(all_ops: list[Operation], *, max_states: int,
                  initial: object) -> CheckResult:
    name = _name(all_ops)
    prep = _prepare(all_ops)
    n_ok = sum(1 for op in prep.searched if op.status == "ok")
    if n_ok == 0:
        return CheckResult(NAME, True, f"{name}: no acknowledged operations", None)

    # ids in order of return time: then the linearized set is mostly a prefix of the ids,
    # and the memo stores it compactly as (length of that prefix, the rest shifted down).
    order = sorted(range(len(prep.searched)),
                   key=lambda i: (prep.searched[i].end, prep.searched[i].invoke, i))
    ops = [prep.searched[i] for i in order]
    helper = [i in prep.helpers for i in order]
    steps = [_step_of(op, prep.observed) for op in ops]
    # values failed compares expect: the only states in which a helper write can help
    cas_false_expected = {s.a for s in steps if s.code == _CAS_FALSE}
    # the dead-write pool: how many were invoked by time t is bisect_right(pool, t)
    pool = sorted(op.invoke for op in prep.dead) if cas_false_expected else []

    events: list[_Entry] = []
    for i, op in enumerate(ops):
        unknown = op.status == "unknown"
        call = _Entry(_CALL, i, op.invoke, unknown, helper[i])
        done = _Entry(_RETURN, i, op.end, unknown)
        call.match = done
        events.append(call)
        events.append(done)
    # calls before returns at equal times: touching operations count as concurrent
    events.sort(key=lambda e: (e.time, e.kind, e.id))
    head = _Entry(_CALL, -1, -math.inf, False)
    prev = head
    for e in events:
        prev.next = e
        e.prev = prev
        prev = e

    state: object = freeze(initial)
    if state not in prep.observed:
        state = _DEAD
    linearized = 0  # bitset of linearized ids
    used = 0  # dead writes drawn from the pool (always the earliest invoked ones)
    # Stack of (call entry, state before it, dead writes used before it, pure).
    # A step is *pure* when it leaves the state as it was (a read, a failed compare that
    # needed no dead write). A pure operation that is legal now can always be linearized
    # now: moving it to the front of any linearization of the rest keeps that valid (its
    # call precedes every pending return, and it changes nothing). So if the search fails
    # after a pure step, the configuration before it fails too, and backtracking skips the
    # alternatives to a pure step. This removes the branching over concurrent reads.
    calls: list[tuple[_Entry, object, int, bool]] = []
    # memo: (linearized set, state) -> fewest dead writes used when it was reached; with
    # more used (fewer left) the same configuration can only do worse, so it is pruned
    seen: dict[tuple[int, int, object], int] = {}
    explored = 0
    best_depth = -1
    best_prefix: list[int] = []
    best_stuck = -1
    best_state: object = None

    entry = head.next
    while True:
        if entry is None:
            return _success(name, prep, explored)
        if entry.kind == _CALL:
            st = steps[entry.id]
            code = st.code
            new_used = used
            if code == _READ:
                legal, new = state == st.a, state
            elif code == _WRITE:
                if entry.helper:
                    # only where a pending failed compare expects the current state
                    legal = (state in cas_false_expected and state != st.a
                             and _pending_cas_false(entry, head, steps, state))
                else:
                    legal = True
                new = st.a
            elif code == _CAS_TRUE:
                legal, new = state == st.a, st.b
            elif state != st.a:
                legal, new = True, state
            else:
                # a failed compare on the expected value: legal only if a dead write,
                # invoked before the first pending return, is applied just before it
                legal, new = False, state
                if pool:
                    frontier = entry.next
                    while frontier is not None and frontier.kind == _CALL:
                        frontier = frontier.next
                    limit = math.inf if frontier is None else frontier.time
                    if bisect.bisect_right(pool, limit) > used:
                        legal, new, new_used = True, _DEAD, used + 1
            if legal:
                lin = linearized | (1 << entry.id)
                low = (~lin & (lin + 1)).bit_length() - 1  # ids below all linearized
                key = (low, lin >> low, new)
                before = seen.get(key)
                if before is None or new_used < before:
                    if explored >= max_states:
                        return _inconclusive(name, ops, explored, max_states, best_depth,
                                             n_ok)
                    explored += 1
                    seen[key] = new_used
                    pure = code == _READ or (code == _CAS_FALSE and new_used == used)
                    calls.append((entry, state, used, pure))
                    state = new
                    used = new_used
                    linearized = lin
                    # lift: unlink the call and its return
                    ret = entry.match
                    assert ret is not None and entry.prev is not None
                    entry.prev.next = entry.next
                    if entry.next is not None:
                        entry.next.prev = entry.prev
                    assert ret.prev is not None
                    ret.prev.next = ret.next
                    if ret.next is not None:
                        ret.next.prev = ret.prev
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if entry.unknown:
                # every ok operation is linearized; the rest are unknown and may never apply
                return _success(name, prep, explored)
            if len(calls) > best_depth:
                best_depth = len(calls)
                best_prefix = [c[0].id for c in calls]
                best_stuck = entry.id
                best_state = state
            # backtrack; past a pure step, further (see above)
            while True:
                if not calls:
                    return _failure(name, ops, best_prefix, best_stuck, best_state)
                entry, state, used, pure = calls.pop()
                linearized &= ~(1 << entry.id)
                # unlift: relink return then call (reverse order of lift)
                ret = entry.match
                assert ret is not None and ret.prev is not None and entry.prev is not None
                ret.prev.next = ret
                if ret.next is not None:
                    ret.next.prev = ret
                entry.prev.next = entry
                if entry.next is not None:
                    entry.next.prev = entry
                if not pure:
                    break
            entry = entry.next


def _pending_cas_false(entry: _Entry, head: _Entry, steps: list[_Step],
                       state: object) -> bool:
    """Is a failed compare expecting ``state`` callable now (before the first return)?"""
    e = head.next
    while e is not None and e.kind == _CALL:
        if e is not entry:
            st = steps[e.id]
            if st.code == _CAS_FALSE and st.a == state:
                return True
        e = e.next
    return False


def _success(name: str, prep: _Prepared, states: int) -> CheckResult:
    extra = ""
    if prep.dead:
        extra = f", {len(prep.dead)} unanswered writes of never-compared values pooled"
    return CheckResult(NAME, True,
                       f"{name}: linearizable ({len(prep.searched)} operations searched, "
                       f"{states} states{extra})", None)


def _shown_value(ops: list[Operation], prefix: list[int]) -> object:
    """The real value behind the merged "never read" state, for the report."""
    for i in reversed(prefix):
        op = ops[i]
        if op.kind in ("write", "delete"):
            return _Shown(f"{_written(op)!r}, never read")
        if op.kind == "cas" and op.output is not False:
            return _Shown(f"{_written(op)!r}, never read")
    return _DEAD


class _Shown:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _inconclusive(name: str, ops: list[Operation], states: int, max_states: int,
                  depth: int, n_ok: int) -> CheckResult:
    return CheckResult(
        NAME, False,
        f"inconclusive: {name}: search budget of {max_states} states exhausted "
        f"({len(ops)} operations, {n_ok} acknowledged, deepest linearized prefix "
        f"{max(depth, 0)}); check shorter per-key histories (rotate keys) or raise max_states",
        None)


def _failure(name: str, ops: list[Operation], prefix: list[int], stuck: int,
             state: object) -> CheckResult:
    stuck_op = ops[stuck]
    in_prefix = set(prefix)
    # the operations that could have been linearized instead: pending at the stuck point
    concurrent = [op for i, op in enumerate(ops)
                  if i not in in_prefix and i != stuck and op.invoke <= stuck_op.end
                  and op.end >= stuck_op.invoke]
    tail = [ops[i] for i in prefix[-5:]]
    cex = tail + [stuck_op] + concurrent
    if state is _DEAD:
        state = _shown_value(ops, prefix)
    lines = [
        f"{name}: not linearizable: after the longest linearizable prefix "
        f"({len(prefix)} of {len(ops)} operations; register then holds {state!r}) "
        f"no order explains {stuck_op.describe()}",
        "  last linearized:" + "".join(f"\n    {op.describe()}" for op in tail),
        "  concurrent with it, not linearized:"
        + ("".join(f"\n    {op.describe()}" for op in concurrent[:10]) or " none"),
    ]
    return CheckResult(NAME, False, "\n".join(lines), cex)
