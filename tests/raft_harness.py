"""A deterministic harness for the Raft trackers (importable without pytest).

Several members, each holding the pure trackers hakv.raft's ``GroupMember`` holds
(``ReadIndex``, ``PreVote``, ``Quiescence``, ``HandOver``), on a fake network (messages
queue until delivered; a partition drops them) and a fake clock (``tick`` moves it in
10 ms steps). The harness plays pysyncobj's part with the least Raft that exercises the
trackers: terms and votes, an append-only log sent whole from the follower's match index,
commit as ``hakv.core.quorum.committed``, and the leader's step-down after
``leader_fallback_timeout`` without a majority. It does not test pysyncobj or the
member's plumbing (tests/test_raft_hardening.py and the real-process tests do); it tests
the decisions, step by step, with no socket and no sleep.

Election timeouts are fixed, not random: the i-th member (from 0) waits
``election_timeout_min + 0.1 * i`` seconds. Every other number is hakv.raft.settings'.

Driven by tests/test_raft_trackers.py over tests/testdata/raft/*.txt; ``Harness.run``
takes one command line and returns its output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hakv.core.quorum import VoteResult, committed, majority, vote_result
from hakv.raft import quiesce
from hakv.raft.handover import HandOver, HandOverStep
from hakv.raft.prevote import PRE_VOTE, PRE_VOTE_ACK, PreVote, grants
from hakv.raft.quiesce import Quiescence
from hakv.raft.readindex import (
    READ_PROBE,
    READ_PROBE_ACK,
    ReadIndex,
    answer_probe,
    may_read_by_index,
)
from hakv.raft.settings import RaftSettings

STEP_MS = 10  # the clock's step in ``tick``
TIMEOUT_STEP = 0.1  # seconds between the fixed election timeouts of successive members
#: An election deadline already passed: the member sets 0.0 (its clock is far from 0;
#: this one starts there).
PAST = -1.0

# The harness's stand-ins for pysyncobj's own messages.
APPEND = "append_entries"
APPEND_ACK = "append_ack"
REQUEST_VOTE = "request_vote"
VOTE = "vote"
TIMEOUT_NOW = "timeout_now"
NODE_HEARTBEAT = "node_heartbeat"
_RAFT = {APPEND, APPEND_ACK, REQUEST_VOTE, VOTE}  # messages whose term a member adopts


@dataclass
class Message:
    src: str
    dst: str
    body: dict[str, Any]

    def render(self) -> str:
        args = " ".join(f"{k}={_value(v)}" for k, v in self.body.items() if k != "type")
        return f"{self.src}->{self.dst} {self.body['type']}{' ' + args if args else ''}"


def _value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(str(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v).lower() if isinstance(v, bool) else str(v)


class Network:
    """Messages wait in one queue until delivered; a cut pair or a crashed end drops them."""

    def __init__(self) -> None:
        self.queue: list[Message] = []
        self.cuts: set[frozenset[str]] = set()
        self.crashed: set[str] = set()
        self.paused: set[str] = set()  # SIGSTOP: connected, but silent and deaf

    def linked(self, a: str, b: str) -> bool:
        """Whether a connection between ``a`` and ``b`` is up (a paused end keeps it)."""
        return frozenset((a, b)) not in self.cuts and not {a, b} & self.crashed

    def reachable(self, a: str, b: str) -> bool:
        return self.linked(a, b) and not {a, b} & self.paused

    def send(self, src: str, dst: str, body: dict[str, Any]) -> None:
        self.queue.append(Message(src, dst, dict(body)))


@dataclass
class Member:
    """One member: the trackers, and the least Raft state that drives them."""

    name: str
    peers: list[str]
    timeout: float
    settings: RaftSettings
    net: Network
    event: Callable[[str], None]
    term: int = 0
    voted_for: str | None = None
    role: str = "follower"
    leader: str | None = None
    log: list[int] = field(default_factory=list)  # the term of each entry, index = position + 1
    commit: int = 0
    applied: int = 0
    noop: int | None = None  # the leader's first entry of its term
    leader_heard_at: float | None = None
    last_append: float = 0.0
    deadline: float = 0.0
    transfer: bool = False  # obeying a TimeoutNow
    votes: dict[str, bool] = field(default_factory=dict)
    match: dict[str, int] = field(default_factory=dict)
    heard: dict[str, float] = field(default_factory=dict)
    next_append: float = 0.0
    next_node_heartbeat: float = 0.0
    proposals: list[str] = field(default_factory=list)
    reads_in: list[str] = field(default_factory=list)
    barriers: list[tuple[int, list[str]]] = field(default_factory=list)
    woken: bool = False  # has work: ticked again at the same instant
    held: list[str] = field(default_factory=list)  # proposals already said to be held
    apply_held: bool = False  # ``stall-apply``: committed entries wait to be applied

    def __post_init__(self) -> None:
        self.reads: ReadIndex[str] = ReadIndex()
        self.pre_vote = PreVote()
        self.quiescence = Quiescence()
        self.handover = HandOver()
        self.deadline = self.timeout

    @property
    def leading(self) -> bool:
        return self.role == "leader"

    def last_term(self) -> int:
        return self.log[-1] if self.log else 0

    def send(self, dst: str, body: dict[str, Any]) -> None:
        self.net.send(self.name, dst, body)

    def broadcast(self, body: dict[str, Any]) -> None:
        for peer in self.peers:
            self.send(peer, body)

    def connected(self) -> bool:
        return any(self.net.reachable(self.name, p) for p in self.peers)

    # ------------------------------------------------------------------ state changes

    def set_term(self, term: int) -> None:
        if term != self.term:
            self.pre_vote.new_term()
        self.term, self.voted_for = term, None

    def become_follower(self, leader: str | None) -> None:
        if self.role != "follower":
            self.event(f"{self.name} is a follower in term {self.term}")
        self.role, self.leader = "follower", leader

    def campaign(self, now: float) -> None:
        self.set_term(self.term + 1)
        self.role, self.voted_for, self.leader = "candidate", self.name, None
        self.votes = {self.name: True}
        self.deadline = now + self.timeout
        self.event(f"{self.name} campaigns in term {self.term}")
        self.broadcast({"type": REQUEST_VOTE, "term": self.term, "last": len(self.log),
                        "last_term": self.last_term()})
        self._count_votes(now)

    def _count_votes(self, now: float) -> None:
        if vote_result(self.votes, [self.name, *self.peers]) is VoteResult.WON:
            self.role, self.leader, self.transfer = "leader", self.name, False
            self.log.append(self.term)  # the no-op of the new term
            self.noop = len(self.log)
            self.match = {p: 0 for p in self.peers}
            self.heard = {p: now for p in self.peers}
            self.next_append = now
            self.quiescence = Quiescence()
            self.event(f"{self.name} leads in term {self.term}")
            self.woken = True

    # ------------------------------------------------------------------ tick

    def tick(self, now: float) -> None:
        self.woken = False
        if self.leading:
            self._lead(now)
            return
        if self.handover.active:  # no longer leading: given up
            self.handover.step(now, leading=False, target_connected=False)
        if self.pre_vote.should_ask(now=now, election_deadline=self.deadline, voter=True,
                                    leading=False, transfer=self.transfer,
                                    connected=self.connected()):
            self.deadline = now + self.timeout
            self.event(f"{self.name} asks for pre-votes for term {self.term + 1}")
            self.broadcast(self.pre_vote.ask(self.term, len(self.log), self.last_term(),
                                             self.peers))
            if self.pre_vote.won:
                self.deadline = PAST
        if self.deadline < now and self.connected():
            self.campaign(now)
        self._apply()
        if (self.role == "follower" and self.leader is not None
                and quiesce.hears_quiet_leader(now, self.last_append,
                                               self.settings.heartbeat_period)
                and now >= self.next_node_heartbeat):
            self.next_node_heartbeat = now + self._node_heartbeat_period()
            self.send(self.leader, {"type": NODE_HEARTBEAT, "followed": self.term})

    def _apply(self) -> None:
        if not self.apply_held:
            self.applied = self.commit

    def _node_heartbeat_period(self) -> float:
        return quiesce.node_heartbeat_period(self.settings.heartbeat_period)

    def _lead(self, now: float) -> None:
        fallback = self.settings.leader_fallback_timeout
        alive = 1 + sum(1 for p in self.peers if now - self.heard.get(p, 0.0) < fallback)
        if alive < majority(len(self.peers) + 1):
            self.event(f"{self.name} steps down: no majority heard for {fallback:.2f}s")
            self.become_follower(None)
            self.deadline = now + self.timeout
            self._restart_reads(self.reads.step(leading=False, term=self.term,
                                                applied=self.applied, voters=self.peers,
                                                now=now, resend_after=0.0).restart)
            return
        hold = False
        if self.handover.active:
            target = self.handover.target
            step = self.handover.step(now, leading=True, target_connected=target is not None
                                      and self.net.linked(self.name, target))
            if step is HandOverStep.RELEASE:
                self.event(f"{self.name} gives up the hand-over")
            elif step is HandOverStep.TIMEOUT_NOW and target is not None:
                if self.match.get(target, 0) >= len(self.log):  # pysyncobj: caught up only
                    self.send(target, {"type": TIMEOUT_NOW, "term": self.term})
                    self.handover.timeout_now_sent(now, self.settings.election_timeout_min)
                    self.event(f"{self.name} sends timeout_now to {target}")
            hold = step is not HandOverStep.RELEASE
            fresh = [p for p in self.proposals if p not in self.held]
            if hold and fresh:
                self.held += fresh
                self.event(f"{self.name} holds {' '.join(fresh)} for the hand-over")
        if self.proposals and not hold:
            for name in self.proposals:
                self.log.append(self.term)
                self.event(f"{self.name} appends {name} at {len(self.log)}")
            self.proposals = []
            self.next_append = now  # AppendEntries at once (GroupMember._checkCommandsToApply)
        acks = {**self.match, self.name: len(self.log)}
        index = committed(acks, [self.name, *self.peers])
        if index > self.commit and self.log[index - 1] == self.term:
            self.commit = index
        self._apply()
        self._start_reads(now)
        idle = (not self.handover.active and not self.proposals and not self.reads.waiting()
                and not self.barriers and quiesce.followers_caught_up(
                    now, last_index=len(self.log), commit_index=self.commit,
                    applied=self.applied,
                    voters=[(self.match.get(p, 0), self.heard.get(p, 0.0)) for p in self.peers],
                    readonly=[], heartbeat_period=self.settings.heartbeat_period))
        was = self.quiescence.quiesced
        at = self.quiescence.update(now, idle, self.settings.heartbeat_period)
        if at is not None:
            self.next_append = at
        if self.quiescence.quiesced != was:
            self.event(f"{self.name} {'quiesces' if not was else 'wakes up'}")
        if now >= self.next_append:
            self.next_append = now + self.settings.heartbeat_period
            for peer in self.peers:
                sent = self.match.get(peer, 0)
                self.send(peer, {"type": APPEND, "term": self.term, "prev": sent,
                                 "entries": self.log[sent:], "commit": self.commit})
        if self.quiescence.quiesced and now >= self.next_node_heartbeat:
            self.next_node_heartbeat = now + self._node_heartbeat_period()
            self.broadcast({"type": NODE_HEARTBEAT, "led": self.term})

    def _start_reads(self, now: float) -> None:
        batch, self.reads_in = self.reads_in, []
        if batch:
            if may_read_by_index(self.leading, self.commit, self.noop):
                self.event(f"{self.name} probes for {' '.join(batch)} at read index "
                           f"{self.commit}")
                self.broadcast(self.reads.probe(self.term, self.commit, batch, now))
            else:
                self.log.append(self.term)  # a barrier through the log
                self.barriers.append((len(self.log), batch))
                self.event(f"{self.name} reads {' '.join(batch)} through the log "
                           f"(barrier at {len(self.log)})")
        ready = [b for b in self.barriers if b[0] <= self.applied]
        self.barriers = [b for b in self.barriers if b[0] > self.applied]
        for index, batch in ready:
            self.event(f"{self.name} serves {' '.join(batch)} (barrier {index} applied)")
        if self.reads.waiting():
            step = self.reads.step(leading=True, term=self.term, applied=self.applied,
                                   voters=self.peers, now=now,
                                   resend_after=self.settings.heartbeat_period)
            if step.serve:
                self.event(f"{self.name} serves {' '.join(step.serve)} (applied "
                           f"{self.applied})")
            if step.send is not None:
                self.event(f"{self.name} probes again (seq {step.send['seq']})")
                self.broadcast(step.send)

    def _restart_reads(self, reads: list[str]) -> None:
        if reads:
            self.event(f"{self.name} starts {' '.join(reads)} over")
            self.reads_in[:0] = reads

    # ------------------------------------------------------------------ receive

    def receive(self, src: str, body: dict[str, Any], now: float) -> None:
        kind = body["type"]
        if kind in _RAFT and body["term"] > self.term:
            self.set_term(body["term"])
            if self.leading:
                self._restart_reads(self.reads.step(leading=False, term=self.term,
                                                    applied=self.applied, voters=self.peers,
                                                    now=now, resend_after=0.0).restart)
            self.become_follower(None)
        getattr(self, f"_on_{kind}")(src, body, now)

    def _on_append_entries(self, src: str, body: dict[str, Any], now: float) -> None:
        if body["term"] < self.term:
            self.send(src, {"type": APPEND_ACK, "term": self.term, "match": 0})
            return
        self.become_follower(src)
        self.leader_heard_at = self.last_append = now
        self.pre_vote.leader_heard()
        self.transfer = False
        self.deadline = now + self.timeout
        self.log = self.log[:body["prev"]] + list(body["entries"])
        self.commit = max(self.commit, min(body["commit"], len(self.log)))
        self.send(src, {"type": APPEND_ACK, "term": self.term, "match": len(self.log)})

    def _on_append_ack(self, src: str, body: dict[str, Any], now: float) -> None:
        if self.leading and body["term"] == self.term:
            self.match[src] = max(self.match.get(src, 0), body["match"])
            self.heard[src] = now
            self.woken = True

    def _on_request_vote(self, src: str, body: dict[str, Any], now: float) -> None:
        up_to_date = (body["last_term"], body["last"]) >= (self.last_term(), len(self.log))
        granted = (body["term"] == self.term and self.voted_for in (None, src)
                   and up_to_date and not self.leading)
        if granted:
            self.voted_for = src
            self.deadline = now + self.timeout
        self.send(src, {"type": VOTE, "term": self.term, "granted": granted})

    def _on_vote(self, src: str, body: dict[str, Any], now: float) -> None:
        if self.role == "candidate" and body["term"] == self.term:
            self.votes[src] = body["granted"]
            self._count_votes(now)

    def _on_hakv_pre_vote(self, src: str, body: dict[str, Any], now: float) -> None:
        answer = grants(body, term=self.term, last_index=len(self.log),
                        last_term=self.last_term(), voter=True, leading=self.leading,
                        leader_heard_at=None if self.leader is None else self.leader_heard_at,
                        now=now, election_timeout_min=self.settings.election_timeout_min)
        if answer is not None:
            self.send(src, answer)

    def _on_hakv_pre_vote_ack(self, src: str, body: dict[str, Any], now: float) -> None:
        if body.get("granted") is False:
            self.event(f"{self.name}'s pre-vote refused by {src}")
        if self.pre_vote.on_answer(src, body, term=self.term, leading=self.leading,
                                   voters=self.peers):
            self.event(f"{self.name} won its pre-vote")
            self.deadline = PAST
            self.woken = True

    def _on_hakv_read_probe(self, src: str, body: dict[str, Any], now: float) -> None:
        answer = answer_probe(body, term=self.term, leading=self.leading, voter=True)
        if answer is not None:
            self.send(src, answer)

    def _on_hakv_read_probe_ack(self, src: str, body: dict[str, Any], now: float) -> None:
        if self.reads.on_answer(src, body, leading=self.leading, term=self.term,
                                voters=self.peers):
            self.woken = True

    def _on_timeout_now(self, src: str, body: dict[str, Any], now: float) -> None:
        if body["term"] == self.term and not self.leading:
            self.transfer, self.deadline, self.woken = True, PAST, True

    def _on_node_heartbeat(self, src: str, body: dict[str, Any], now: float) -> None:
        if body.get("led") == self.term and self.role == "follower" and self.leader == src:
            self.deadline = quiesce.quiet_election_deadline(now, self.timeout,
                                                            self.settings.heartbeat_period)
            self.leader_heard_at = now
        if body.get("followed") == self.term and self.leading and src in self.peers:
            self.heard[src] = now


assert {f"_on_{k}" for k in (PRE_VOTE, PRE_VOTE_ACK, READ_PROBE, READ_PROBE_ACK)} <= set(
    dir(Member))


class Harness:
    """The members, the network and the clock, and the script's commands."""

    def __init__(self) -> None:
        self.ms = 0
        self.net = Network()
        self.members: dict[str, Member] = {}
        self.settings = RaftSettings()
        self.events: list[str] = []
        self.quiet_events = False  # ``tick``: only what changed, not every message

    @property
    def now(self) -> float:
        return self.ms / 1000

    def _event(self, text: str) -> None:
        self.events.append(f"{self.now:.2f} {text}")

    def run(self, command: str) -> str:
        verb, *words = command.split()
        self.events = []
        out: str = getattr(self, f"do_{verb.replace('-', '_')}")(words)
        return "\n".join([*self.events, *([out] if out else [])]) or "ok"

    def live(self) -> list[Member]:
        down = self.net.crashed | self.net.paused
        return [m for m in self.members.values() if m.name not in down]

    # ------------------------------------------------------------------ commands

    def do_cluster(self, words: list[str]) -> str:
        for i, name in enumerate(words):
            timeout = round(self.settings.election_timeout_min + TIMEOUT_STEP * i, 3)
            self.members[name] = Member(name, [w for w in words if w != name], timeout,
                                        self.settings, self.net, self._event)
        return "\n".join(f"{m.name}: election timeout {m.timeout:.2f}s"
                         for m in self.members.values())

    def do_campaign(self, words: list[str]) -> str:
        """The member's election deadline passes now: it ticks."""
        member = self.members[words[0]]
        member.deadline = self.now - 0.001
        member.tick(self.now)
        return self._queued()

    def do_deliver(self, words: list[str]) -> str:
        """Deliver every message queued now (not the answers they cause), then tick the
        members that got work."""
        batch, self.net.queue = self.net.queue, []
        for message in batch:  # in the output before the events they cause
            self._deliver(message)
        self._tick_woken()
        return "" if batch else "(nothing to deliver)"

    def do_stabilize(self, words: list[str]) -> str:
        if not self.net.queue:
            return "(nothing to deliver)"
        for _ in range(50):
            if not self.net.queue:
                break
            self.do_deliver([])
        return ""

    def _deliver(self, message: Message) -> None:
        if not self.net.reachable(message.src, message.dst):
            self.events.append(f"{message.render()} (dropped)")
            return
        self.events.append(message.render())
        self.members[message.dst].receive(message.src, message.body, self.now)

    def _tick_woken(self) -> None:
        for _ in range(10):
            woken = [m for m in self.live() if m.woken]
            if not woken:
                return
            for member in woken:
                member.tick(self.now)

    def _queued(self) -> str:
        return "\n".join(f"sends {m.render()}" for m in self.net.queue) or "sends nothing"

    def do_tick(self, words: list[str]) -> str:
        """Move the clock by ``words[0]`` seconds in 10 ms steps; at each step every live
        member ticks and the network delivers at once. Prints what changed (the events)."""
        end = self.ms + round(float(words[0]) * 1000)
        while self.ms < end:
            self.ms += STEP_MS
            for member in self.live():
                member.tick(self.now)
            for _ in range(50):
                if not self.net.queue:
                    break
                batch, self.net.queue = self.net.queue, []
                for message in batch:
                    if self.net.reachable(message.src, message.dst):
                        self.members[message.dst].receive(message.src, message.body, self.now)
                self._tick_woken()
        return ""

    def do_propose(self, words: list[str]) -> str:
        member = self.members[words[0]]
        if not member.leading:
            return f"{member.name} does not lead: refused"
        member.proposals.append(words[1])
        member.woken = True
        self._tick_woken()
        return self._queued()

    def do_read(self, words: list[str]) -> str:
        member = self.members[words[0]]
        if not member.leading:
            return f"{member.name} does not lead: {words[1]} goes to the leader's log"
        member.reads_in.append(words[1])
        member.woken = True
        self._tick_woken()
        return self._queued()

    def do_handover(self, words: list[str]) -> str:
        member, target = self.members[words[0]], words[1]
        within = float(dict(w.split("=") for w in words[2:]).get("within", "5"))
        if member.leading:
            member.handover.start(target, self.now, within)
            self._event(f"{member.name} hands over to {target} within {within:.2f}s")
        return ""

    def do_partition(self, words: list[str]) -> str:
        a, b = words
        self.net.cuts.add(frozenset((a, b)))
        return f"{a} and {b} cut off from each other"

    def do_heal(self, words: list[str]) -> str:
        self.net.cuts.clear()
        return "every link is back"

    def do_crash(self, words: list[str]) -> str:
        self.net.crashed.add(words[0])
        return f"{words[0]} is down"

    def do_pause(self, words: list[str]) -> str:
        self.net.paused.add(words[0])
        return f"{words[0]} is paused (its connections stay up)"

    def do_stall_apply(self, words: list[str]) -> str:
        self.members[words[0]].apply_held = True
        return f"{words[0]} applies nothing until resume-apply"

    def do_resume_apply(self, words: list[str]) -> str:
        self.members[words[0]].apply_held = False
        return f"{words[0]} applies again"

    def do_state(self, words: list[str]) -> str:
        lines = [f"t={self.now:.2f}"]
        for m in self.members.values():
            down = m.name in self.net.crashed or m.name in self.net.paused
            parts = [m.name, "down" if down else m.role,
                     f"term={m.term}"]
            if m.role == "follower":
                parts.append(f"leader={m.leader or '-'}")
            parts += [f"log={len(m.log)}", f"commit={m.commit}", f"applied={m.applied}"]
            if m.quiescence.quiesced:
                parts.append("quiesced")
            if m.handover.active:
                parts.append(f"handing-over-to={m.handover.target}")
            lines.append(" ".join(parts))
        return "\n".join(lines)
