"""The delay fault (chaos/delay.py, Network.apply_delay): the delayer's release order, the
scenario keys, and -- as root, with NetfilterQueue -- that a delayed link really is slow,
only where it should be, and heals; skipped with the reason where it cannot run."""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chaos import delay as delay_mod
from chaos import netns
from chaos.nemesis import Fault, Nemesis, schedule
from chaos.scenario import ScenarioError, parse_scenario
from tests.chaos_support import (
    EXAMPLES,
    killed_harness,
    need_root,
    process_gone,
    throwaway_network,
)

# --------------------------------------------------------------------------- pure parts


class _Packet:
    def __init__(self, n: int, log: list[tuple[int, float]]) -> None:
        self.n = n
        self.log = log

    def accept(self) -> None:
        self.log.append((self.n, time.monotonic()))


def test_delayer_keeps_order_and_holds_each_packet_its_delay() -> None:
    released: list[tuple[int, float]] = []
    d = delay_mod.Delayer(0.05, 0.04, seed=3)
    queued = {}
    for n in range(30):
        queued[n] = time.monotonic()
        d.hold(_Packet(n, released))
        time.sleep(0.002)
    dues = [due for due, _ in d.held]
    assert dues == sorted(dues)  # order kept even with jitter
    deadline = time.monotonic() + 2
    while d.held and time.monotonic() < deadline:
        wait = d.release_due()
        time.sleep(min(wait or 0.0, 0.01))
    assert [n for n, _ in released] == list(range(30))
    for n, at in released:
        assert at - queued[n] >= 0.05 - 0.04 - 1e-3  # never earlier than delay - jitter
    assert d.count == 30 and not d.held


def test_delayer_releases_everything_when_it_stops() -> None:
    released: list[tuple[int, float]] = []
    d = delay_mod.Delayer(5.0, 0.0, seed=0)
    for n in range(5):
        d.hold(_Packet(n, released))
    assert d.release_due() is not None and not released
    d.release_all()
    assert [n for n, _ in released] == list(range(5))


def test_delay_keys_in_scenarios() -> None:
    base = "[scenario]\nname='x'\ntopology='three-node'\nduration=30\n"
    sc = parse_scenario(base + "[[faults]]\nat=1\nduration=2\nkind='delay'\nnode='n1'\n"
                        "delay=0.2\njitter=0.05\n", base=EXAMPLES)
    (f,) = schedule(sc)
    assert (f.kind, f.delay, f.jitter, f.nodes) == ("delay", 0.2, 0.05, ("n1",))
    assert f.describe() == "delay 200 ±50 ms on n1"
    mixed = parse_scenario(base + "[nemesis]\nkinds=['delay']\ndelay=[0.05, 0.3]\n",
                           base=EXAMPLES)
    faults = [f for seed in range(5) for f in schedule(mixed, seed)]
    assert faults and all(f.kind == "delay" and 0.05 <= (f.delay or 0) <= 0.3 for f in faults)


@pytest.mark.parametrize("fault, message", [
    ("kind='delay'\nnode='n1'\n", "needs delay = SECONDS"),
    ("kind='delay'\nnode='n1'\ndelay=0.1\njitter=0.2\n", "must not exceed delay"),
    ("kind='isolate'\nnode='n1'\ndelay=0.1\n", "only apply to delay faults"),
    ("kind='delay'\nnodes=['n1', 'n2']\ndelay=0.1\n", "exactly one node"),
    ("kind='delay'\nnode='n1'\ndelay=30\n", "at most 10"),
])
def test_bad_delay_faults_are_named(fault: str, message: str) -> None:
    text = ("[scenario]\nname='x'\ntopology='three-node'\nduration=30\n"
            "[[faults]]\nat=1\nduration=2\n" + fault)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="bad.toml", base=EXAMPLES)
    assert message in info.value.message


def test_jitter_above_the_delay_range_is_refused() -> None:
    with pytest.raises(ScenarioError, match="jitter"):
        parse_scenario("[scenario]\nname='x'\ntopology='three-node'\n[nemesis]\n"
                       "kinds=['delay']\ndelay=[0.05, 0.3]\njitter=0.1\n", base=EXAMPLES)


def test_an_unavailable_delay_is_skipped_with_its_reason_not_silently() -> None:
    logged: list[str] = []
    fault = Fault(0, "delay", 1.0, 2.0, ("n1",), delay=0.1)
    nem = Nemesis(None, [fault], seed=1, t0=time.monotonic(),  # type: ignore[arg-type]
                  log=logged.append, unavailable={"delay": "no NetfilterQueue here"})
    nem._apply(nem.windows[0])  # never touches the (absent) cluster
    nem._heal(nem.windows[0])
    w = nem.windows[0]
    assert w.skipped == "no NetfilterQueue here" and w.start is None
    assert any("SKIPPED" in n for n in w.notes)
    assert any("SKIPPED: no NetfilterQueue here" in line for line in logged)


def test_report_lists_skipped_faults_and_colours_delays(tmp_path: Path) -> None:
    from chaos.nemesis import FaultWindow
    from chaos.report import FAULT_COLORS, ScenarioResult, write_report

    r = ScenarioResult(name="d", source="d.toml", seed=1, command="python -m chaos.run d")
    w = FaultWindow(Fault(0, "delay", 1.0, 2.0, ("n1",), delay=0.1), skipped="no NFQ here")
    w.notes.append("SKIPPED: no NFQ here")
    r.windows = [w]
    r.plot_note = "not drawn"
    text = write_report([r], tmp_path, ["python", "-m", "chaos.run"]).read_text()
    assert "**fault 0 skipped** (delay): no NFQ here" in text
    assert "PASS (1 fault(s) skipped: see below)" in text
    assert "| 0 | — | — | delay 100 ms on n1 |" in text and "SKIPPED: no NFQ here" in text
    assert "delay" in FAULT_COLORS


def test_availability_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "netfilterqueue" else real(name, *a))
    why = delay_mod.available()
    assert why is not None and "NetfilterQueue" in why and "libnetfilter-queue-dev" in why


# --------------------------------------------------------------------------- real packets


def _need_delay() -> None:
    need_root()
    why = delay_mod.available()
    if why is not None:
        pytest.skip(why)


@pytest.fixture
def net() -> Iterator[netns.Network]:
    _need_delay()
    with throwaway_network(["a", "b"]) as network:
        yield network


class _Echo:
    """A TCP echo server in one namespace and a connected client in another; ``rtt()`` is
    one 1-byte round trip (TCP_NODELAY)."""

    def __init__(self, net: netns.Network, server: str, client: str, port: int) -> None:
        ns = {n: (net.ns_of(n) if n != "client" else net.client.ns) for n in (server, client)}
        self.pools = {n: ThreadPoolExecutor(1, initializer=netns.enter_netns,
                                            initargs=(ns[n],)) for n in (server, client)}
        addr = net.address(server)
        srv = self.pools[server].submit(self._listen, addr, port).result()
        self.pools[server].submit(self._serve, srv)
        self.sock: socket.socket = self.pools[client].submit(
            lambda: socket.create_connection((addr, port), timeout=5)).result()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client = client

    @staticmethod
    def _listen(addr: str, port: int) -> socket.socket:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((addr, port))
        srv.listen(1)
        srv.settimeout(10)
        return srv

    @staticmethod
    def _serve(srv: socket.socket) -> None:
        try:
            conn, _ = srv.accept()
            with conn:
                while data := conn.recv(64):
                    conn.sendall(data)
        except OSError:
            pass
        finally:
            srv.close()

    def rtt(self) -> float:
        t = time.monotonic()
        self.sock.sendall(b"x")
        assert self.sock.recv(8) == b"x"
        return time.monotonic() - t

    def rtts(self, n: int = 8) -> list[float]:
        return [self.rtt() for _ in range(n)]

    def close(self) -> None:
        self.sock.close()
        for p in self.pools.values():
            p.shutdown(wait=False)


def _echo(net: netns.Network, server: str, client: str, port: int) -> _Echo:
    return _Echo(net, server, client, port)


def _wait(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_delay_really_delays_and_heals(net: netns.Network, tmp_path: Path) -> None:
    a_to_b = _echo(net, "b", "a", 9301)  # round trips a starts
    b_to_a = _echo(net, "a", "b", 9302)  # round trips b starts (a's answers are delayed)
    from_client = _echo(net, "a", "client", 9303)
    try:
        before = a_to_b.rtts()
        assert statistics.median(before) < 0.02, before
        pid = net.apply_delay("f1", netns.Delay("a", ("b",), 0.15), queue=1001, seed=1,
                              log=tmp_path / "delay.log")
        assert "NFQUEUE" in net.rules("a") and "--queue-bypass" in net.rules("a")
        assert net.delayer_pids() == {"f1": pid}
        delayed = a_to_b.rtts()
        assert min(delayed) >= 0.15, delayed
        assert statistics.median(delayed) < 0.15 + 0.1, delayed
        back = b_to_a.rtts()
        assert min(back) >= 0.15, back
        assert statistics.median(from_client.rtts()) < 0.02  # clients are never delayed
        net.heal("f1")
        assert "NFQUEUE" not in net.rules("a") and "hakv-" not in net.rules("a")
        assert net.delayer_pids() == {} and process_gone(pid)
        after = a_to_b.rtts()
        assert statistics.median(after) < 0.02, after
        assert "delayed" in (tmp_path / "delay.log").read_text()

        # jitter: every round trip within [delay - jitter, delay + jitter + slack]
        net.apply_delay("f2", netns.Delay("a", ("b",), 0.1, 0.05), queue=1002, seed=2)
        jittered = a_to_b.rtts(12)
        assert min(jittered) >= 0.05 and max(jittered) < 0.15 + 0.1, jittered
        net.heal_all()
        assert net.delayer_pids() == {} and "NFQUEUE" not in net.rules("a")
        assert statistics.median(a_to_b.rtts()) < 0.02
    finally:
        for e in (a_to_b, b_to_a, from_client):
            e.close()


def test_a_dead_delayer_lets_packets_pass(net: netns.Network) -> None:
    echo = _echo(net, "b", "a", 9304)
    try:
        pid = net.apply_delay("f1", netns.Delay("a", ("b",), 0.2), queue=1001)
        assert min(echo.rtts(3)) >= 0.2
        os.kill(pid, 9)
        assert _wait(lambda: net.delayer_pids() == {})
        # --queue-bypass: nobody listens on the queue, the packets pass undelayed
        assert "NFQUEUE" in net.rules("a")
        assert statistics.median(echo.rtts()) < 0.02
        net.heal("f1")  # healing a fault whose delayer died is fine
        assert "NFQUEUE" not in net.rules("a")
    finally:
        echo.close()


def test_delayer_and_namespaces_go_when_the_harness_dies() -> None:
    _need_delay()
    script = (
        "import time\n"
        "from chaos import netns\n"
        "net = netns.Network(['x', 'y'])\n"
        "net.create()\n"
        "pid = net.apply_delay('f0', netns.Delay('x', ('y',), 0.1), queue=1000)\n"
        "print(net.run_id, pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    with killed_harness(script) as (run_id, delayer):
        # the delayer notices (its stdin closes) and exits by itself
        assert _wait(lambda: process_gone(int(delayer)))
        netns.cleanup_stale()
        assert not [ns for ns in netns.list_namespaces() if run_id in ns]
