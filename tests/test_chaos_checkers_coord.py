"""Coordination checkers (watch, lease, fencing): each accepts known-good histories and
rejects known-bad ones — stored in tests/testdata/histories/{watch,lease,fencing}/, built
inline, and generated (hypothesis) from a model of a correct server."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.checkers import (
    Change,
    FencedWrite,
    Grant,
    LeaseRecord,
    WatchEvent,
    WatchRecord,
    WatchWrite,
    check_fencing,
    check_leases,
    check_watch,
    load_fencing_history,
    load_lease_records,
    load_watch_history,
)
from chaos.checkers._records import dump_records, load_records
from chaos.checkers.access import (
    AccessFinal,
    AccessOp,
    allowed,
    check_access,
    load_access_records,
)
from chaos.history import CheckResult

TESTDATA = Path(__file__).parent / "testdata" / "histories"


def accepts(res: CheckResult) -> None:
    assert res.ok, res.details


def rejects(res: CheckResult, needle: str = "") -> None:
    assert not res.ok, res.details
    assert not res.details.startswith(("inconclusive", "vacuous")), res.details
    assert needle in res.details, f"{needle!r} not in:\n{res.details}"


# --- stored histories: '# expect: ok' or '# expect: violation <words in the details>' --


def _bound(lines: list[str]) -> Callable[[float], float]:
    """'# bound: ttl + X' -> lambda ttl: ttl + X (the lease files' second line)."""
    for line in lines:
        if line.startswith("# bound:"):
            extra = float(line.split("+", 1)[1])
            return lambda ttl: ttl + extra
    raise AssertionError("lease history lacks '# bound: ttl + X'")


def _run_stored(path: Path) -> CheckResult:
    kind = path.parent.name
    if kind == "watch":
        return check_watch(*load_watch_history(path))
    if kind == "lease":
        return check_leases(load_lease_records(path), _bound(path.read_text().splitlines()))
    if kind == "access":
        recs = load_access_records(str(path))
        return check_access([r for r in recs if isinstance(r, AccessOp)],
                            [r for r in recs if isinstance(r, AccessFinal)])
    assert kind == "fencing"
    return check_fencing(*load_fencing_history(path))


def _stored() -> list[Path]:
    return sorted(p for sub in ("watch", "lease", "fencing", "access")
                  for p in (TESTDATA / sub).glob("*.jsonl"))


@pytest.mark.parametrize("path", _stored(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stored_histories(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks '# expect:'"
    expected = first.removeprefix("# expect: ").strip()
    res = _run_stored(path)
    if expected == "ok":
        accepts(res)
    else:
        assert expected.startswith("violation"), expected
        rejects(res, expected.removeprefix("violation").strip())


def test_every_flaw_has_a_stored_history() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in _stored()}
    for must in ("watch/skipped-revision", "watch/duplicate-after-resume",
                 "watch/split-revision", "watch/phantom-event",
                 "watch/progress-overtakes-event", "lease/expired-before-ttl",
                 "lease/survived-bound", "lease/two-revisions",
                 "fencing/overlapping-critical-sections", "fencing/non-increasing-token",
                 "fencing/stale-token-accepted", "access/forbidden-answered-ok",
                 "access/forbidden-write-took-effect", "access/forbidden-txn-read-back"):
        assert must in names


# --- records: validation and JSON round trips --------------------------------------------


def test_records_round_trip(tmp_path: Path) -> None:
    w = WatchWrite(1, (Change("put", "w/a", "v"), Change("delete", "w/b")), "ok", 3, 0.0, 0.1)
    r = WatchRecord("w1", "batch", 0.2, 3, (WatchEvent("put", "w/a", "v", 3, 3, 1),
                                           WatchEvent("delete", "w/b", None, 3)))
    dump_records(tmp_path / "w.jsonl", [w, r])
    writes, records = load_watch_history(tmp_path / "w.jsonl")
    assert writes == [w] and records == [r]
    lr = LeaseRecord("observe", 7, 1.0, 1.1, key="l/a", present=False, revision=4)
    dump_records(tmp_path / "l.jsonl", [lr])
    assert load_lease_records(tmp_path / "l.jsonl") == [lr]
    g = Grant("L", "A", 3, 0.0, 0.1)
    fw = FencedWrite("L", "A", 3, 0.2, None, "unknown", value={"x": [1]})
    dump_records(tmp_path / "f.jsonl", [g, fw])
    assert load_fencing_history(tmp_path / "f.jsonl") == ([g], [fw])
    for line in (tmp_path / "f.jsonl").read_text().splitlines():
        assert json.loads(line)["kind"] in ("grant", "write")


def test_records_validate() -> None:
    with pytest.raises(ValueError, match="revision"):
        WatchWrite.put(1, "w/a", "v", None, 0.0, 0.1)  # ok without its revision
    with pytest.raises(ValueError, match="needs a revision"):
        WatchRecord("w1", "batch", 0.0)
    with pytest.raises(ValueError, match="kind"):
        WatchRecord("w1", "bogus", 0.0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        LeaseRecord("grant", 1, 0.0, 0.1)
    with pytest.raises(ValueError, match="present"):
        LeaseRecord("observe", 1, 0.0, 0.1, key="k")
    with pytest.raises(ValueError, match="status"):
        FencedWrite("L", "A", 1, 0.0, 0.1, "ok")  # type: ignore[arg-type]


def test_load_names_bad_line(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('# c\n{"kind": "grant", "lease": 1}\n')
    with pytest.raises(ValueError, match=":2: bad record"):
        load_records(tmp_path / "x.jsonl", LeaseRecord.from_dict)


def test_vacuous_is_not_a_pass() -> None:
    assert check_watch([], []).details.startswith("vacuous")
    start = WatchRecord("w1", "start", 0.0, 1, prefix="w/")
    assert not check_watch([], [start, WatchRecord("w1", "end", 1.0, 5)]).ok
    assert check_leases([], 3.0).details.startswith("vacuous")
    grant = LeaseRecord("grant", 1, 0.0, 0.1, ttl=2.0)
    assert check_leases([grant], 3.0).details.startswith("vacuous")
    assert check_fencing([], []).details.startswith("vacuous")
    assert check_access([], []).details.startswith("vacuous")
    only_denied = AccessOp("chaos-nobody", "get", ("a/open/k",), "denied", 0.0,
                           error="permission_denied")
    assert not check_access([only_denied], []).ok  # no allowed op, no final read


# --- watch: inline cases ---------------------------------------------------------------


def put(rev: int, key: str, value: str, t: float, status: str = "ok") -> WatchWrite:
    return WatchWrite.put(1, key, value, rev if status == "ok" else None, t, t + 0.1,
                          status)  # type: ignore[arg-type]


def batch(rev: int, t: float, *events: tuple[str, str], watcher: str = "w1",
          created: int | None = None, version: int = 1) -> WatchRecord:
    return WatchRecord(watcher, "batch", t, rev, tuple(
        WatchEvent("put", k, v, rev, created or rev, version) for k, v in events))


def start(rev: int, t: float = 0.0, prefix: str = "w/", watcher: str = "w1",
          snapshot: bool = False) -> WatchRecord:
    return WatchRecord(watcher, "start", t, rev, prefix=prefix, snapshot=snapshot)


def end(rev: int, t: float, watcher: str = "w1") -> WatchRecord:
    return WatchRecord(watcher, "end", t, rev)


def test_watch_unknown_write_absent_is_fine_and_trailing_gap_needs_end() -> None:
    writes = [put(2, "w/a", "1", 0.0), put(0, "w/b", "2", 0.2, "unknown"),
              put(3, "w/c", "3", 0.4)]
    accepts(check_watch(writes, [start(1), batch(2, 0.15, ("w/a", "1")),
                                 batch(3, 0.55, ("w/c", "3")), end(3, 0.6)]))
    # without the end record, a missing last write cannot be seen: say so in the details
    res = check_watch(writes, [start(1), batch(2, 0.15, ("w/a", "1"))])
    assert res.ok and "no end record" in res.details
    rejects(check_watch(writes, [start(1), batch(2, 0.15, ("w/a", "1")), end(3, 0.6)]),
            "revision 3 never delivered")


def test_watch_watchers_disagree() -> None:
    writes = [put(0, "w/a", "1", 0.0, "unknown"), put(0, "w/a", "2", 0.0, "unknown")]
    recs = [start(1), batch(2, 0.2, ("w/a", "1")), end(2, 0.3),
            start(1, watcher="w2"), batch(2, 0.2, ("w/a", "2"), watcher="w2"),
            end(2, 0.3, watcher="w2")]
    rejects(check_watch(writes, recs), "watcher w1 saw")


def test_watch_writers_revisions_against_real_time() -> None:
    writes = [put(5, "w/a", "1", 0.0), put(4, "w/b", "2", 0.5)]
    recs = [start(1), batch(4, 0.7, ("w/b", "2")), batch(5, 0.7, ("w/a", "1")), end(5, 1)]
    rejects(check_watch(writes, recs), "revision order contradicts real time")


def test_watch_resume_below_cursor_and_event_outside_prefix() -> None:
    writes = [put(2, "w/a", "1", 0.0), put(3, "x/b", "2", 0.2)]
    rejects(check_watch(writes, [start(1), batch(2, 0.15, ("w/a", "1")),
                                 WatchRecord("w1", "disconnect", 0.16), start(2, 0.17),
                                 end(3, 0.4)]), "resumed from revision 2")
    rejects(check_watch(writes, [start(1), batch(2, 0.15, ("w/a", "1")),
                                 batch(3, 0.35, ("x/b", "2")), end(3, 0.4)]),
            "outside the watched prefix")


def test_watch_bad_put_metadata() -> None:
    writes = [put(2, "w/a", "1", 0.0)]
    rejects(check_watch(writes, [start(1), batch(2, 0.15, ("w/a", "1"), version=2),
                                 end(2, 0.2)]), "inconsistent")


# --- watch: generated histories of a correct server -------------------------------------


@dataclasses.dataclass
class _Sim:
    writes: list[WatchWrite]
    applied: dict[int, tuple[WatchWrite, tuple[WatchEvent, ...]]]  # revision -> events
    head: int


@st.composite
def _server_runs(draw: st.DrawFn) -> _Sim:
    """Writes against a correct server: ok ones at increasing revisions, unknown ones
    applied or not, failed ones never; keys under w/ and o/, some txns of two keys."""
    n = draw(st.integers(1, 25))
    keys = ["w/a", "w/b", "w/x/c", "o/d"]
    state: dict[str, tuple[int, int]] = {}  # key -> (create_revision, version)
    writes: list[WatchWrite] = []
    applied: dict[int, tuple[WatchWrite, tuple[WatchEvent, ...]]] = {}
    rev = 1
    for i in range(n):
        status = draw(st.sampled_from(["ok", "ok", "ok", "unknown", "fail"]))
        applies = status == "ok" or (status == "unknown" and draw(st.booleans()))
        chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True))
        changes: list[Change] = []
        for j, k in enumerate(chosen):
            if k in state and draw(st.booleans()):
                changes.append(Change("delete", k))
            else:
                changes.append(Change("put", k, f"p{i}-{j}"))
        t = float(i)
        if applies:
            rev += 1
            events = []
            for c in changes:
                if c.type == "delete":
                    del state[c.key]
                    events.append(WatchEvent("delete", c.key, None, rev))
                else:
                    cr, ver = state.get(c.key, (rev, 0))
                    state[c.key] = (cr, ver + 1)
                    events.append(WatchEvent("put", c.key, c.value, rev, cr, ver + 1))
        elif status == "fail":
            pass  # never applied: the keys keep their state
        w = WatchWrite(1, tuple(changes), status,  # type: ignore[arg-type]
                       rev if status == "ok" else None, t, t + 0.5)
        writes.append(w)
        if applies:
            applied[rev] = (w, tuple(events))
    return _Sim(writes, applied, rev)


@st.composite
def _watched(draw: st.DrawFn) -> tuple[_Sim, list[WatchRecord]]:
    sim = draw(_server_runs())
    records: list[WatchRecord] = []
    for wid in range(draw(st.integers(1, 3))):
        name = f"w{wid}"
        prefix = draw(st.sampled_from(["w/", "w/x/", ""]))
        first = draw(st.integers(1, sim.head + 1))
        t = 0.0
        records.append(WatchRecord(name, "start", t, first, prefix=prefix))
        cursor = first
        for r in range(first, sim.head + 1):
            events = tuple(e for e in sim.applied[r][1] if e.key.startswith(prefix)) \
                if r in sim.applied else ()
            t += 0.01
            if events:
                records.append(WatchRecord(name, "batch", t, r, events))
                cursor = r + 1
            if draw(st.integers(0, 9)) == 0:
                records.append(WatchRecord(name, "progress", t, r))
                cursor = r + 1
            if draw(st.integers(0, 9)) == 0:
                records.append(WatchRecord(name, "disconnect", t))
                # the client's cursor may have moved silently past event-less revisions
                records.append(WatchRecord(name, "start", t, max(cursor, r + 1 if not events
                                                                 else cursor),
                                           prefix=prefix))
        records.append(WatchRecord(name, "end", t + 1, sim.head))
    return sim, records


@settings(max_examples=150, deadline=None)
@given(_watched())
def test_watch_generated_good_histories_accepted(case: tuple[_Sim, list[WatchRecord]]) -> None:
    sim, records = case
    res = check_watch(sim.writes, records)
    expected_any = any(w.status == "ok" and w.revision is not None
                       and any(c.key.startswith(rec.prefix) for c in w.changes)
                       and w.revision >= (rec.revision or 0)
                       for rec in records if rec.kind == "start" for w in sim.writes)
    if res.details.startswith("vacuous"):
        assert not expected_any
    else:
        accepts(res)


@settings(max_examples=150, deadline=None)
@given(_watched(), st.data())
def test_watch_generated_mutations_rejected(case: tuple[_Sim, list[WatchRecord]],
                                            data: st.DataObject) -> None:
    sim, records = case
    batches = [i for i, r in enumerate(records) if r.kind == "batch"]
    if not batches:
        return
    i = data.draw(st.sampled_from(batches))
    rec = records[i]
    assert rec.revision is not None
    how = data.draw(st.sampled_from(["drop", "duplicate", "phantom"]))
    if how == "drop":
        w = sim.applied[rec.revision][0]
        if w.status != "ok":
            return  # an unknown write may legitimately be missing
        mutated = records[:i] + records[i + 1:]
    elif how == "duplicate":
        mutated = records[:i + 1] + [rec] + records[i + 1:]
    else:
        ghost = WatchEvent("put", rec.events[0].key, "ghost", rec.revision, rec.revision, 1)
        mutated = records[:i] + [dataclasses.replace(rec, events=(ghost,))] + records[i + 1:]
    rejects(check_watch(sim.writes, mutated))


# --- lease ---------------------------------------------------------------------------


def lrec(kind: str, start: float, end: float | None = None, **kw: object) -> LeaseRecord:
    return LeaseRecord(kind, kw.pop("lease", 7), start, end, **kw)  # type: ignore[arg-type]


def _lease_base(ttl: float = 2.0) -> list[LeaseRecord]:
    return [lrec("grant", 0.0, 0.1, ttl=ttl), lrec("put", 0.2, 0.3, key="l/a", revision=2)]


def test_lease_bound_must_cover_ttl() -> None:
    with pytest.raises(ValueError, match="below the TTL"):
        check_leases(_lease_base() + [lrec("observe", 1.0, 1.1, key="l/a", present=True)],
                     1.0)


def test_lease_read_interval_makes_it_sound() -> None:
    # ttl 2 from the send at 0.0: a read [1.5, 2.5] that finds the key absent may have
    # taken effect after 2.0 -> fine; one that ended at 1.9 -> early
    accepts(check_leases(_lease_base() + [lrec("observe", 1.5, 2.5, key="l/a",
                                               present=False)], 3.0))
    rejects(check_leases(_lease_base() + [lrec("observe", 1.5, 1.9, key="l/a",
                                               present=False)], 3.0), "before the TTL")
    # present in a read [2.9, 3.5]: may have taken effect before 0.1 + 3.0 -> fine
    accepts(check_leases(_lease_base() + [lrec("observe", 2.9, 3.5, key="l/a",
                                               present=True)], 3.0))
    rejects(check_leases(_lease_base() + [lrec("observe", 3.2, 3.5, key="l/a",
                                               present=True)], 3.0), "deadline")


def test_lease_absent_before_put_and_revoke_are_not_expiry() -> None:
    recs = [lrec("grant", 0.0, 0.1, ttl=2.0), lrec("put", 0.2, 0.6, key="l/a"),
            lrec("observe", 0.3, 0.4, key="l/a", present=False),  # put not yet applied
            lrec("observe", 0.7, 0.8, key="l/a", present=True)]
    accepts(check_leases(recs, 3.0))
    revoked = _lease_base() + [lrec("revoke", 0.5, None, status="unknown"),
                               lrec("observe", 0.9, 1.0, key="l/a", present=False)]
    accepts(check_leases(revoked, 3.0))
    acked = _lease_base() + [lrec("revoke", 0.5, 0.6),
                             lrec("observe", 0.9, 1.0, key="l/a", present=True)]
    rejects(check_leases(acked, 3.0), "revoke acknowledged")


def test_lease_unknown_keepalive_may_extend() -> None:
    recs = _lease_base() + [lrec("keepalive", 1.0, 1.5, status="unknown"),
                            lrec("observe", 4.0, 4.1, key="l/a", present=True)]
    accepts(check_leases(recs, 3.0))  # applied at, say, 1.4: alive until 4.4
    failed = _lease_base() + [lrec("keepalive", 1.0, 1.5, status="fail"),
                              lrec("observe", 4.0, 4.1, key="l/a", present=True)]
    rejects(check_leases(failed, 3.0), "deadline")


def test_lease_keepalive_acknowledged_after_keys_gone() -> None:
    recs = _lease_base() + [lrec("observe", 2.1, 2.2, key="l/a", present=False),
                            lrec("keepalive", 2.3, 2.4)]
    rejects(check_leases(recs, 3.0), "before the TTL")


def test_lease_key_present_after_its_deletion_revision() -> None:
    recs = _lease_base() + [lrec("deleted", 2.5, key="l/a", revision=5),
                            lrec("observe", 2.6, 2.7, key="l/a", present=True, revision=6)]
    rejects(check_leases(recs, 3.0), "present at revision 6")


@settings(max_examples=200, deadline=None)
@given(ttl=st.floats(1.0, 5.0), slack=st.floats(0.1, 3.0),
       sends=st.lists(st.floats(0.05, 0.9), max_size=6), latency=st.floats(0.001, 0.5),
       where=st.floats(0.0, 1.0), reads=st.lists(st.floats(0.0, 12.0), max_size=8))
def test_lease_generated_good_histories_accepted(ttl: float, slack: float,
                                                 sends: list[float], latency: float,
                                                 where: float, reads: list[float]) -> None:
    """A correct server: each keepalive applied inside [send, ack]; the keys are deleted
    (both, at one revision) at a moment between TTL after the last apply and the bound."""
    bound = ttl + slack
    recs = [lrec("grant", 0.0, latency, ttl=ttl),
            lrec("put", latency, 2 * latency, key="l/a", revision=2),
            lrec("put", latency, 2 * latency, key="l/b", revision=3)]
    applied_at = latency / 2
    t = 2 * latency
    for frac in sends:  # keepalives every frac * ttl, while alive
        send = t + frac * ttl
        if send >= applied_at + ttl:
            break
        applied_at = send + latency / 2
        recs.append(lrec("keepalive", send, send + latency))
        t = send + latency
    last_ack = max(r.end for r in recs if r.kind in ("grant", "keepalive") and r.end)
    gone = applied_at + ttl + where * (last_ack + bound - applied_at - ttl)
    recs.append(lrec("deleted", gone + 0.01, key="l/a", revision=4))
    for r0 in reads:
        r1 = r0 + latency
        if r1 < 2 * latency:
            continue
        point = (r0 + r1) / 2
        present = point < gone
        rev = 3 if present else 4
        for k in ("l/a", "l/b"):
            recs.append(lrec("observe", r0, r1, key=k, present=present, revision=rev))
    res = check_leases(recs, bound)
    if not res.details.startswith("vacuous"):
        accepts(res)


# --- fencing -------------------------------------------------------------------------


def test_fencing_unknown_token_and_wrong_holder() -> None:
    g = [Grant("L", "A", 3, 0.0, 0.1)]
    rejects(check_fencing(g, [FencedWrite("L", "A", 4, 0.2, 0.3, "accepted")]),
            "never granted")
    rejects(check_fencing(g, [FencedWrite("L", "B", 3, 0.2, 0.3, "accepted")]),
            "B wrote with A's token")


def test_fencing_seq_order_beats_real_time() -> None:
    g = [Grant("L", "A", 3, 0.0, 0.1), Grant("L", "B", 5, 0.2, 0.3)]
    # concurrent in real time, but the register's order (seq) puts B's write first
    ws = [FencedWrite("L", "B", 5, 0.4, 1.0, "accepted", seq=8),
          FencedWrite("L", "A", 3, 0.5, 0.9, "accepted", seq=9)]
    rejects(check_fencing(g, ws), "stale token accepted")
    ws[1] = dataclasses.replace(ws[1], seq=7)
    accepts(check_fencing(g, ws))
    # without seq the two overlap in real time: either order is possible
    accepts(check_fencing(g, [dataclasses.replace(w, seq=None) for w in ws]))


@st.composite
def _fenced_runs(draw: st.DrawFn) -> tuple[list[Grant], list[FencedWrite]]:
    """Holders one after another, tokens growing (with gaps); each writes a few times;
    a paused old holder sometimes writes late and a correct register rejects it."""
    grants: list[Grant] = []
    writes: list[FencedWrite] = []
    t, token, seq = 0.0, 0, 0
    for h in range(draw(st.integers(1, 6))):
        token += draw(st.integers(1, 5))
        grants.append(Grant("L", f"h{h}", token, t, t + 0.1))
        t += 0.2
        for _ in range(draw(st.integers(0, 3))):
            seq += 1
            writes.append(FencedWrite("L", f"h{h}", token, t, t + 0.1, "accepted",
                                      seq=seq if draw(st.booleans()) else None))
            t += 0.2
        if h and draw(st.booleans()):  # a stale holder wakes up: rejected, or no answer
            old = draw(st.sampled_from(grants[:-1]))
            writes.append(FencedWrite("L", old.holder, old.token, t, t + 0.1,
                                      draw(st.sampled_from(["rejected", "unknown"]))))
            t += 0.2
    return grants, writes


@settings(max_examples=200, deadline=None)
@given(_fenced_runs())
def test_fencing_generated_good_histories_accepted(
        run: tuple[list[Grant], list[FencedWrite]]) -> None:
    accepts(check_fencing(*run))


@settings(max_examples=200, deadline=None)
@given(_fenced_runs(), st.data())
def test_fencing_generated_stale_acceptance_rejected(
        run: tuple[list[Grant], list[FencedWrite]], data: st.DataObject) -> None:
    grants, writes = run
    accepted_tokens = [w.token for w in writes if w.status == "accepted"]
    stale = [i for i, w in enumerate(writes) if w.status != "accepted"
             and any(tok > w.token for tok in accepted_tokens)]
    if not stale:
        return
    i = data.draw(st.sampled_from(stale))
    t = writes[i].invoke
    # the register lets it in (after every earlier accepted write, in real time)
    broken = [dataclasses.replace(w, seq=None) for w in writes]
    broken[i] = dataclasses.replace(writes[i], status="accepted", complete=t + 0.1, seq=None)
    if any(w.token > writes[i].token and w.status == "accepted" and w.end < t
           for w in broken):
        rejects(check_fencing(grants, broken))


# --- access: the checker's own reading of the policy ------------------------------------


@pytest.mark.parametrize("user, op, keys, ops, expected", [
    ("chaos-writer", "put", ["a/open/x"], [], True),
    ("chaos-writer", "put", ["a/closed/x"], [], False),
    ("chaos-writer", "range", ["a/"], [], False),  # the prefix reaches beyond a/open/
    ("chaos-reader", "range", ["a/"], [], True),
    ("chaos-reader", "delete", ["a/open/x"], [], False),
    ("chaos-nobody", "get", ["a/open/x"], [], False),
    ("chaos-writer", "txn", ["a/open/x", "a/open/y"], ["put", "get"], True),
    ("chaos-writer", "txn", ["a/open/x", "a/closed/y"], ["put", "put"], False),
    ("chaos-writer", "txn", ["a/open/x"], ["put", "put"], False),  # malformed: no
    ("chaos-writer", "lease_grant", [], [], False),
    ("chaos-writer", "status", [], [], False),  # a verb the model does not know: no
])
def test_access_model(user: str, op: str, keys: list[str], ops: list[str],
                      expected: bool) -> None:
    assert allowed(user, op, keys, ops) is expected
