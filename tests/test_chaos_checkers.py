"""Chaos history and checkers: each checker accepts known-good histories and rejects
known-bad ones (hand-built, from tests/testdata/histories, and randomly generated)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import cast

import pytest

from chaos.checkers import (
    Heartbeat,
    check_append_order,
    check_heartbeats,
    check_history,
    check_register,
    check_sets,
    check_untouched,
    final_reads_from,
    parse_heartbeat_file,
)
from chaos.history import CheckResult, History, Operation, Recorder, Status

TESTDATA = Path(__file__).parent / "testdata" / "histories"


def op(process: int, kind: str, inp: object, out: object, invoke: float,
       complete: float | None, status: Status = "ok", key: str = "k",
       group: str = "g") -> Operation:
    return Operation(process=process, kind=kind, key=key, group=group, input=inp, output=out,
                     invoke=invoke, complete=complete, status=status)


def w(p: int, v: object, t0: float, t1: float | None, status: Status = "ok",
      key: str = "k") -> Operation:
    return op(p, "write", v, None, t0, t1, status, key)


def r(p: int, v: object, t0: float, t1: float, key: str = "k") -> Operation:
    return op(p, "read", None, v, t0, t1, "ok", key)


def cas(p: int, exp: object, new: object, res: bool | None, t0: float, t1: float | None,
        status: Status = "ok") -> Operation:
    return op(p, "cas", (exp, new), res, t0, t1, status)


def accepts(res: CheckResult) -> None:
    assert res.ok, res.details


def rejects(res: CheckResult) -> None:
    assert not res.ok, res.details
    assert not res.details.startswith("inconclusive"), res.details


# --- history ---------------------------------------------------------------------------


def test_operation_validation() -> None:
    with pytest.raises(ValueError, match="status"):
        op(1, "read", None, None, 0, 1, status="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="completion"):
        op(1, "read", None, None, 0, None, status="ok")
    with pytest.raises(ValueError, match="before"):
        op(1, "read", None, None, 2, 1)
    assert w(1, 1, 0, None, "unknown").end == float("inf")
    assert w(1, 1, 0, 5, "unknown").end == float("inf")  # gave up at 5, may still apply
    assert w(1, 1, 0, 5).end == 5


def test_dump_load_round_trip(tmp_path: Path) -> None:
    h = History()
    h.append(w(1, "a", 0.5, 1.25))
    h.append(cas(2, "a", "b", True, 1.0, 2.0))
    h.append(cas(3, "b", "c", None, 1.5, None, "unknown"))
    h.append(op(4, "read_list", None, [1, [2, 3], {"x": (4, 5)}], 3.0, 4.0, key="l"))
    h.append(op(4, "add", 7, None, 5.0, 5.5, "fail", key="s", group="220"))
    path = tmp_path / "h.jsonl"
    h.dump(path)
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line) for line in lines)
    back = History.load(path)
    assert back.ops == h.ops
    assert isinstance(back.ops[1].input, tuple)
    assert set(back.by_key()) == {("g", "k"), ("g", "l"), ("220", "s")}
    assert len(back.by_key()[("g", "k")]) == 3


def test_load_names_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"process": 1}\n')
    with pytest.raises(ValueError, match=":1: bad operation"):
        History.load(path)


def test_recorder_with_fake_clock() -> None:
    now = [10.0]
    rec = Recorder(clock=lambda: now[0])
    rec.invoke(1, "write", "g", "k", 5)  # never completes
    now[0] = 11.0
    b = rec.invoke(2, "read", "g", "k", None)
    now[0] = 12.0
    rec.complete(b, "ok", 5)
    now[0] = 13.0
    c = rec.invoke(3, "write", "g", "k", 6)
    rec.complete(c, "fail", "no_quorum")
    with pytest.raises(ValueError, match="already"):
        rec.complete(c, "ok")
    assert rec.pending() == 1
    ops = list(rec.history())
    assert [o.process for o in ops] == [1, 2, 3]
    assert ops[0].status == "unknown" and ops[0].complete is None and ops[0].invoke == 10.0
    assert (ops[1].invoke, ops[1].complete, ops[1].output) == (11.0, 12.0, 5)
    assert ops[2].status == "fail"
    # the write that never completed may explain the read of 5
    accepts(check_register(ops))


def test_recorder_threads() -> None:
    rec = Recorder()

    def client(p: int) -> None:
        for i in range(200):
            tok = rec.invoke(p, "write", "g", f"k{p}", i)
            rec.complete(tok, "ok")

    threads = [threading.Thread(target=client, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    h = rec.history()
    assert len(h) == 800 and rec.pending() == 0
    invokes = [o.invoke for o in h]
    assert invokes == sorted(invokes)
    accepts(check_history(h))


# --- linearizable register -------------------------------------------------------------


def test_register_sequential_ok() -> None:
    accepts(check_register([r(1, None, 0, 1), w(1, 1, 2, 3), r(2, 1, 4, 5),
                            cas(1, 1, 2, True, 6, 7), r(2, 2, 8, 9),
                            cas(2, 1, 3, False, 10, 11), r(1, 2, 12, 13)]))
    accepts(check_register([]))


def test_stale_read_after_completed_write_rejected() -> None:
    res = check_register([w(1, 1, 0, 1), w(1, 2, 2, 3), r(2, 1, 4, 5)])
    rejects(res)
    assert res.counterexample and any(o.kind == "read" and o.output == 1
                                      for o in res.counterexample)
    assert "g/k" in res.details


def test_read_of_initial_after_write_rejected() -> None:
    rejects(check_register([w(1, 1, 0, 1), r(2, None, 2, 3)]))


def test_concurrent_writes_either_order_ok() -> None:
    base = [w(1, 1, 0, 10), w(2, 2, 0, 10)]
    accepts(check_register(base + [r(3, 1, 11, 12), r(3, 1, 13, 14)]))
    accepts(check_register(base + [r(3, 2, 11, 12), r(3, 2, 13, 14)]))
    # a read during both writes may see either, also the old value
    accepts(check_register(base + [r(3, None, 1, 2), r(3, 2, 3, 4), r(3, 1, 5, 6)]))


def test_concurrent_writes_impossible_order_rejected() -> None:
    base = [w(1, 1, 0, 10), w(2, 2, 0, 10)]
    # after both writes completed the value can no longer change
    rejects(check_register(base + [r(3, 1, 11, 12), r(3, 2, 13, 14)]))
    # 2 was seen, then 1 (so 1 was written last), then 2 again
    rejects(check_register(base + [r(3, 2, 1, 2), r(4, 1, 3, 4), r(3, 2, 11, 12)]))


def test_unknown_write_explains_later_read() -> None:
    h = [w(1, 1, 0, 1), w(2, 2, 2, None, "unknown"), r(3, 2, 50, 51)]
    accepts(check_register(h))
    # ... even long after the client gave up
    accepts(check_register([w(1, 1, 0, 1), w(2, 2, 2, 3, "unknown"), r(3, 1, 4, 5),
                            r(3, 2, 50, 51)]))
    # ... or it may never have applied
    accepts(check_register([w(1, 1, 0, 1), w(2, 2, 2, None, "unknown"), r(3, 1, 50, 51)]))
    # but once applied it cannot be undone
    rejects(check_register(h + [r(3, 1, 52, 53)]))
    # and it cannot apply before it was invoked
    rejects(check_register([w(1, 1, 0, 1), r(3, 2, 2, 3), w(2, 2, 4, None, "unknown")]))


def test_failed_write_never_visible() -> None:
    rejects(check_register([w(1, 1, 0, 1), w(2, 2, 2, 3, "fail"), r(3, 2, 4, 5)]))
    accepts(check_register([w(1, 1, 0, 1), w(2, 2, 2, 3, "fail"), r(3, 1, 4, 5)]))


def test_cas_semantics() -> None:
    # succeeded although the expected value was wrong
    rejects(check_register([w(1, 1, 0, 1), cas(2, 5, 6, True, 2, 3)]))
    rejects(check_register([w(1, 1, 0, 1), cas(2, 5, 6, True, 2, 3), r(1, 6, 4, 5)]))
    # failed although the expected value was right
    rejects(check_register([w(1, 1, 0, 1), cas(2, 1, 6, False, 2, 3)]))
    # a concurrent write may have made it fail
    accepts(check_register([w(1, 1, 0, 1), cas(2, 1, 6, False, 2, 5), w(3, 9, 2, 5),
                            r(1, 9, 6, 7)]))
    # an unknown cas may or may not have swapped
    accepts(check_register([w(1, 1, 0, 1), cas(2, 1, 6, None, 2, None, "unknown"),
                            r(1, 6, 4, 5)]))
    accepts(check_register([w(1, 1, 0, 1), cas(2, 1, 6, None, 2, None, "unknown"),
                            r(1, 1, 4, 5)]))
    # but an unknown cas with a wrong expected value cannot have swapped
    rejects(check_register([w(1, 1, 0, 1), cas(2, 5, 6, None, 2, None, "unknown"),
                            r(1, 6, 4, 5)]))
    with pytest.raises(ValueError, match="cas input"):
        check_register([op(1, "cas", 5, True, 0, 1)])


def test_unknown_write_needed_for_failed_cas() -> None:
    # only an application of the unknown write explains why the cas failed
    accepts(check_register([w(1, 1, 0, 1), w(2, 7, 2, None, "unknown"),
                            cas(3, 1, 5, False, 3, 4)]))


def test_delete_and_values_of_any_json_shape() -> None:
    accepts(check_register([w(1, [1, 2], 0, 1), r(2, [1, 2], 2, 3),
                            op(1, "delete", None, None, 4, 5), r(2, None, 6, 7),
                            w(1, {"a": 1}, 8, 9), r(2, {"a": 1}, 10, 11)]))
    rejects(check_register([w(1, [1, 2], 0, 1), op(1, "delete", None, None, 4, 5),
                            r(2, [1, 2], 6, 7)]))


def test_keys_are_independent_and_aggregated() -> None:
    good = [w(1, 1, 0, 1, key="a"), w(2, 1, 0, 1, key="b"), r(3, 1, 2, 3, key="a"),
            r(3, 1, 2, 3, key="b")]
    accepts(check_history(good))
    # the same value on another key does not explain a read
    bad = good + [w(4, 2, 4, 5, key="a"), r(3, 2, 6, 7, key="b")]
    res = check_history(bad)
    rejects(res)
    assert "g/b" in res.details and "1 of 2 violated" in res.details
    # groups have separate keyspaces
    other = dataclasses.replace(w(4, 3, 4, 5, key="a"), group="h")
    rejects(check_history(good + [other, r(3, 3, 6, 7, key="a")]))
    # non-register operations are ignored by check_history
    accepts(check_history(good + [op(1, "add", 5, None, 0, 1)]))


def test_budget_exhaustion_is_not_a_pass() -> None:
    # many fully concurrent writes and a read at the end that nothing explains
    h = [w(p, p, 0, 10) for p in range(12)] + [r(99, 42, 11, 12)]
    res = check_register(h, max_states=100)
    assert not res.ok and res.details.startswith("inconclusive:")
    assert res.inconclusive
    agg = check_history(h, max_states=100)
    assert not agg.ok and agg.details.startswith("inconclusive:")
    rejects(check_register(h))  # with the default budget it is decided


def test_long_history_iterative() -> None:
    # far deeper than the recursion limit, quick because sequential
    n = max(5000, sys.getrecursionlimit() + 1000)
    h = []
    for i in range(n):
        h.append(w(i % 3, i, 3 * i, 3 * i + 1))
        h.append(r((i + 1) % 3, i, 3 * i + 1.5, 3 * i + 2))
    t0 = time.monotonic()
    accepts(check_register(h))
    assert time.monotonic() - t0 < 5


def brute_force_linearizable(ops: list[Operation]) -> bool:
    """Try every subset of the unknown operations and every order: the definition."""
    ops = [o for o in ops if o.status != "fail" and not (o.status == "unknown"
                                                         and o.kind == "read")]
    ok_ops = [o for o in ops if o.status == "ok"]
    unknown = [o for o in ops if o.status == "unknown"]

    def legal(order: tuple[Operation, ...]) -> bool:
        for i, a in enumerate(order):
            for b in order[i + 1:]:
                if b.end < a.invoke:  # b completed before a began, yet comes after it
                    return False
        state: object = None
        for o in order:
            if o.kind == "read":
                if o.output != state:
                    return False
            elif o.kind == "write":
                state = o.input
            elif o.kind == "delete":
                state = None
            else:
                exp, new = cast(tuple[object, object], o.input)
                swapped = o.output if o.status == "ok" else True
                if (state == exp) != swapped:
                    return False
                if swapped:
                    state = new
        return True

    for mask in range(1 << len(unknown)):
        chosen = ok_ops + [u for j, u in enumerate(unknown) if mask >> j & 1]
        if any(legal(order) for order in itertools.permutations(chosen)):
            return True
    return False


def small_random_history(rng: random.Random) -> list[Operation]:
    values = [1, 2, 3]
    ops = []
    for _ in range(rng.randint(1, 6)):
        p = rng.randint(0, 3)
        t0 = rng.uniform(0, 10)
        t1 = t0 + rng.uniform(0, 4)
        status = cast(Status, rng.choices(["ok", "unknown", "fail"], [7, 2, 1])[0])
        end = None if status == "unknown" and rng.random() < 0.5 else t1
        kind = rng.choice(["read", "write", "write", "cas", "cas", "delete"])
        if kind == "read":
            out = rng.choice([None, *values]) if status == "ok" else None
            ops.append(op(p, "read", None, out, t0, end, status))
        elif kind == "write":
            ops.append(op(p, "write", rng.choice(values), None, t0, end, status))
        elif kind == "delete":
            ops.append(op(p, "delete", None, None, t0, end, status))
        else:
            res = rng.choice([True, False]) if status == "ok" else None
            ops.append(op(p, "cas", (rng.choice([None, *values]), rng.choice(values)), res,
                          t0, end, status))
    return ops


def test_search_agrees_with_brute_force() -> None:
    """The reductions of the search (pure steps, dead and helper writes, memo) are exact:
    compare with the definition on many small random histories, also with unique values
    (which exercise the dead/helper paths)."""
    rng = random.Random(42)
    verdicts = {True: 0, False: 0}
    for case in range(1500):
        ops = small_random_history(rng)
        if case % 2:  # make written values unique, reads/compares pick among them
            ops = [dataclasses.replace(o, input=f"u{i}") if o.kind == "write" else o
                   for i, o in enumerate(ops)]
            names = [None] + [f"u{i}" for i, o in enumerate(ops) if o.kind == "write"]
            ops = [dataclasses.replace(o, output=rng.choice(names)) if o.kind == "read"
                   and o.status == "ok" else
                   dataclasses.replace(o, input=(rng.choice(names), f"c{i}"))
                   if o.kind == "cas" else o for i, o in enumerate(ops)]
        expected = brute_force_linearizable(ops)
        res = check_register(ops)
        assert not res.inconclusive
        assert res.ok == expected, (expected, [o.describe() for o in ops], res.details)
        verdicts[expected] += 1
    assert min(verdicts.values()) > 200, verdicts


def random_history(seed: int, n_ops: int, n_proc: int = 5, window: float = 2.0,
                   key: str = "k", p_unknown: float = 0.05,
                   p_fail: float = 0.05) -> list[Operation]:
    """A history of a sequential register, each operation taking effect at its own instant
    inside a random [invoke, complete] window; a process runs one operation at a time."""
    rng = random.Random(seed)
    state: object = None
    written: list[object] = [None]
    free = [0.0] * n_proc  # when each process is idle again
    ops: list[Operation] = []
    t = 0.0
    for i in range(n_ops):
        t += rng.uniform(0.05, 0.5)  # this operation's linearization point
        idle = [p for p in range(n_proc) if free[p] < t]
        if not idle:
            continue
        p = rng.choice(idle)
        invoke = rng.uniform(max(free[p], t - window), t)
        complete = t + rng.uniform(0.0, window)
        free[p] = complete
        x = rng.random()
        value = f"v{i}"
        if x < p_unknown:
            if rng.random() < 0.5:  # applied, but the answer was lost
                state = value
                written.append(value)
            ops.append(op(p, "write", value, None, invoke, rng.choice([None, complete]),
                          "unknown", key))
        elif x < p_unknown + p_fail:
            ops.append(op(p, "write", value, "no_quorum", invoke, complete, "fail", key))
        elif x < 0.45:
            ops.append(op(p, "read", None, state, invoke, complete, "ok", key))
        elif x < 0.8:
            state = value
            written.append(value)
            ops.append(op(p, "write", value, None, invoke, complete, "ok", key))
        else:
            expected = state if rng.random() < 0.5 else rng.choice(written)
            swapped = expected == state
            if swapped:
                state = value
                written.append(value)
            ops.append(op(p, "cas", (expected, value), swapped, invoke, complete, "ok", key))
    ops.sort(key=lambda o: o.invoke)
    return ops


@pytest.mark.parametrize("seed", range(8))
def test_random_linearizable_history_accepted_and_mutation_rejected(seed: int) -> None:
    ops = random_history(seed, 400)
    accepts(check_register(ops))
    rng = random.Random(1000 + seed)
    reads = [i for i, o in enumerate(ops) if o.kind == "read"]
    i = rng.choice(reads)
    bad = list(ops)
    bad[i] = dataclasses.replace(ops[i], output="never-written")
    res = check_register(bad)
    rejects(res)
    assert res.counterexample and bad[i] in res.counterexample


def test_random_multi_key_history() -> None:
    ops = sorted(random_history(1, 300, key="a") + random_history(2, 300, key="b")
                 + random_history(3, 300, key="c"), key=lambda o: o.invoke)
    accepts(check_history(ops))


def test_random_history_more_concurrency_and_timeouts() -> None:
    ops = random_history(7, 1500, n_proc=10, window=3.0, p_unknown=0.02)
    t0 = time.monotonic()
    accepts(check_register(ops))
    assert time.monotonic() - t0 < 5


# --- lost writes -----------------------------------------------------------------------


def add(p: int, e: object, t0: float, t1: float | None, status: Status = "ok",
        key: str = "s") -> Operation:
    return op(p, "add", e, None, t0, t1, status, key)


def app(p: int, e: object, t0: float, t1: float | None, status: Status = "ok",
        key: str = "l") -> Operation:
    return op(p, "append", e, None, t0, t1, status, key)


def test_sets_ok_with_unknown_either_way() -> None:
    adds = [add(1, "a", 0, 1), add(2, "b", 0, 1), add(3, "c", 0, None, "unknown"),
            add(3, "d", 2, None, "unknown"), add(1, "e", 2, 3, "fail")]
    accepts(check_sets(adds, {("g", "s"): ["b", "a", "c"]}))
    accepts(check_sets(adds, {("g", "s"): ["a", "b", "d", "c"]}))


def test_lost_acknowledged_add_rejected() -> None:
    adds = [add(1, "a", 0, 1), add(2, "b", 0, 1)]
    res = check_sets(adds, {("g", "s"): ["a"]})
    rejects(res)
    assert "lost" in res.details and "'b'" in res.details
    assert res.counterexample == [adds[1]]
    rejects(check_sets(adds, {("g", "s"): None}))  # key gone entirely
    rejects(check_sets(adds, {}))  # no final read at all


def test_phantom_and_failed_elements_rejected() -> None:
    adds = [add(1, "a", 0, 1), add(2, "b", 0, 1, "fail")]
    res = check_sets(adds, {("g", "s"): ["a", "zzz"]})
    rejects(res)
    assert "phantom" in res.details
    res = check_sets(adds, {("g", "s"): ["a", "b"]})
    rejects(res)
    assert "failed" in res.details


def test_final_reads_from_history() -> None:
    ops = [add(1, "a", 0, 1), add(2, "b", 0, 1),
           op(9, "read_set", None, ["a"], 1.5, 1.6, key="s"),  # mid-run read: not final
           op(9, "read_set", None, ["a", "b"], 10, 11, key="s")]
    assert final_reads_from(ops) == {("g", "s"): ["a", "b"]}
    accepts(check_sets(ops))
    rejects(check_sets(ops[:3]))


def test_append_ok() -> None:
    ops = [app(1, "1a", 0, 1), app(1, "1b", 2, 3), app(2, "2a", 0.5, 2.5),
           app(2, "2b", 4, None, "unknown"), app(3, "3a", 1, None, "unknown"),
           app(3, "3b", 5, 6, "fail")]
    accepts(check_append_order(ops, {("g", "l"): ["1a", "2a", "1b"]}))
    accepts(check_append_order(ops, {("g", "l"): ["1a", "2a", "3a", "1b", "2b"]}))
    # an unknown append may land long after the client moved on
    accepts(check_append_order(ops, {("g", "l"): ["1a", "2a", "1b", "2b", "3a"]}))


def test_duplicate_append_rejected() -> None:
    ops = [app(1, "1a", 0, 1), app(1, "1b", 2, 3)]
    res = check_append_order(ops, {("g", "l"): ["1a", "1b", "1a"]})
    rejects(res)
    assert "more than once" in res.details
    # a duplicate of an unknown append is a double apply too
    ops2 = ops + [app(2, "2a", 0, None, "unknown")]
    rejects(check_append_order(ops2, {("g", "l"): ["2a", "1a", "1b", "2a"]}))
    # sets do not care
    accepts(check_sets([add(1, "a", 0, 1)], {("g", "s"): ["a", "a"]}))


def test_out_of_order_appends_rejected() -> None:
    ops = [app(1, "1a", 0, 1), app(1, "1b", 2, 3), app(1, "1c", 4, 5)]
    res = check_append_order(ops, {("g", "l"): ["1a", "1c", "1b"]})
    rejects(res)
    assert "client 1" in res.details
    # across clients: 2a was acknowledged before 3a was invoked
    ops2 = [app(2, "2a", 0, 1), app(3, "3a", 2, 3)]
    res = check_append_order(ops2, {("g", "l"): ["3a", "2a"]})
    rejects(res)
    assert "real-time" in res.details
    # concurrent appends may land in either order
    ops3 = [app(2, "2a", 0, 2), app(3, "3a", 1, 3)]
    accepts(check_append_order(ops3, {("g", "l"): ["3a", "2a"]}))
    # an unknown append cannot land before one acknowledged before it was invoked
    ops4 = [app(2, "2a", 0, 1), app(3, "3a", 2, None, "unknown")]
    rejects(check_append_order(ops4, {("g", "l"): ["3a", "2a"]}))


def test_append_lost_and_phantom() -> None:
    ops = [app(1, "1a", 0, 1), app(1, "1b", 2, 3)]
    rejects(check_append_order(ops, {("g", "l"): ["1a"]}))
    rejects(check_append_order(ops, {("g", "l"): ["1a", "1b", "x"]}))


# --- single runner ---------------------------------------------------------------------


def beats(node: str, token: int, start: float, end: float, group: str = "226",
          step: float = 0.25) -> list[Heartbeat]:
    out = []
    t = start
    while t <= end + 1e-9:
        out.append(Heartbeat(node=node, group=group, token=token, time=round(t, 6)))
        t += step
    return out


def test_heartbeats_clean_failover() -> None:
    hb = beats("208", 1, 0, 5) + beats("210", 2, 6.5, 10) + beats("208", 3, 11, 12)
    hb += beats("202", 1, 0, 12, group="220")  # another group, independent
    res = check_heartbeats(hb)
    accepts(res)
    assert "3 placements" in res.details


def test_heartbeats_overlap_rejected() -> None:
    hb = beats("208", 1, 0, 5) + beats("210", 2, 4.5, 10)
    res = check_heartbeats(hb)
    rejects(res)
    assert "two nodes ran at once" in res.details
    assert "node 208 token 1" in res.details and "node 210 token 2" in res.details


def test_heartbeats_overlap_same_token_on_two_nodes_rejected() -> None:
    hb = beats("208", 1, 0, 5) + beats("210", 1, 3, 10)
    rejects(check_heartbeats(hb))


def test_heartbeats_token_backwards_rejected() -> None:
    # the old runner was paused, the new one ran, then the old one woke up and beat once
    hb = beats("208", 1, 0, 5) + beats("210", 2, 6.5, 10) + [Heartbeat("208", "226", 1, 11)]
    res = check_heartbeats(hb)
    rejects(res)
    assert "backwards" in res.details
    # backwards even without overlap
    res = check_heartbeats([Heartbeat("a", "g", 5, 1.0), Heartbeat("b", "g", 4, 2.0)])
    rejects(res)
    assert "backwards" in res.details and "overlap" not in res.details


def test_heartbeats_vacuous() -> None:
    assert not check_heartbeats([]).ok


def test_parse_heartbeat_file(tmp_path: Path) -> None:
    f = tmp_path / "hb.log"
    f.write_text("# time node group token\n1.5 208 226 1\n\n2.0 208 226 1\n2.5 21")
    assert parse_heartbeat_file(f) == [Heartbeat("208", "226", 1, 1.5),
                                       Heartbeat("208", "226", 1, 2.0)]
    f.write_text("1.5 208 226 1\n2.0 208 226\n2.5 208 226 1\n")
    with pytest.raises(ValueError, match=":2: bad heartbeat"):
        parse_heartbeat_file(f)


# --- isolation -------------------------------------------------------------------------


def iso_ops() -> list[Operation]:
    return [op(1, "write", i, None, i, i + 0.05, group="220") for i in range(10)] + [
        op(2, "write", 1, None, 3, None, "unknown", group="224"),
        op(2, "write", 1, "no_quorum", 4, 4.1, "fail", group="224"),
        op(2, "write", 1, None, 5, 9, group="224"),
    ]


def test_isolation_ok() -> None:
    res = check_untouched(iso_ops(), {"224"}, [(3.0, 6.0)], max_latency=0.5)
    accepts(res)
    assert "220" in res.details


def test_isolation_error_in_unaffected_group_rejected() -> None:
    ops = iso_ops() + [op(3, "read", None, None, 4, 4.2, "fail", group="220")]
    res = check_untouched(ops, {"224"}, [(3.0, 6.0)], max_latency=0.5)
    rejects(res)
    assert res.counterexample == [ops[-1]]
    ops = iso_ops() + [op(3, "read", None, None, 7, None, "unknown", group="220")]
    rejects(check_untouched(ops, {"224"}, [(3.0, 6.0)], max_latency=0.5))
    # and the affected group itself is not judged
    rejects(check_untouched(iso_ops(), set(), [(3.0, 6.0)], max_latency=0.5))


def test_isolation_stall_during_fault_rejected() -> None:
    slow = op(3, "write", 1, None, 5.5, 7.5, group="220")  # overlaps the window
    res = check_untouched(iso_ops() + [slow], {"224"}, [(3.0, 6.0)], max_latency=0.5)
    rejects(res)
    assert "fault window" in res.details
    # the same latency outside any fault window is not this checker's business
    later = op(3, "write", 1, None, 8, 10, group="220")
    accepts(check_untouched(iso_ops() + [later], {"224"}, [(3.0, 6.0)], max_latency=0.5))


def test_isolation_vacuous() -> None:
    assert not check_untouched(iso_ops(), {"220", "224"}, [], 1.0).ok
    assert check_untouched(iso_ops(), {"220", "224"}, [], 1.0, require_ops=False).ok


# --- stored histories --------------------------------------------------------------------


def _stored() -> list[Path]:
    return sorted(TESTDATA.glob("*.jsonl")) if TESTDATA.exists() else []


@pytest.mark.parametrize("path", _stored(), ids=lambda p: p.name)
def test_stored_histories(path: Path) -> None:
    """Each file's first line is a comment ``# expect: ok|violation``."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks '# expect:'"
    expected = first.removeprefix("# expect: ").strip()
    res = check_history(History.load(path))
    if expected == "ok":
        accepts(res)
    else:
        assert expected == "violation"
        rejects(res)
