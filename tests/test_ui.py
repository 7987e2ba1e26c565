"""The web status page (hakv.node.ui, docs/operations.md "Web status page").

Unit tests of the page and of the merged status it draws (fakes, no processes); then, on
the patent's nine-node example as real processes (TLS), the server side over HTTPS
(``GET /ui`` with its headers and no identity, ``/ui/status`` only with one, ``POST /ui``
refused) and the page itself in a real browser: headless Chromium (Debian's ``chromium``
and ``chromium-driver``) driven by selenium loads ``/ui#token=...`` as a read-only user,
shows the groups and where each app runs, and, after node 208 is killed, updates without
a reload to show 208 down and group 226's app on 210. Skipped with the reason when
Chromium, its driver or selenium are absent (.ci/run installs them).

``HAKV_UI_SCREENSHOT=PATH`` also saves a screenshot of the page after the failover (the
picture of docs/img/ui.png).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hakv.dev.local import LocalCluster
from hakv.node import ui
from hakv.node.ports import PeerUnreachable
from tests.support import NINE_GROUPS, NINE_NODES, nine_node_cluster, wait_for

NODES, GROUPS = NINE_NODES, NINE_GROUPS
RAFT = {"election_timeout_min": 0.4, "election_timeout_max": 1.0,
        "leader_fallback_timeout": 1.0, "connection_retry": 0.5}  # as examples/nine-node.toml
BEACON = Path(__file__).resolve().parent.parent / "examples" / "apps" / "beacon.py"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


# --------------------------------------------------------------------------- unit


def _block(tag: str) -> str:
    found = re.search(rf"<{tag}>(.*?)</{tag}>", ui.PAGE.decode(), re.S)
    assert found, tag
    return found.group(1)


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_is_self_contained_and_its_csp_allows_exactly_its_script_and_style() -> None:
    page = ui.PAGE.decode()
    assert page.count("<script>") == 1 and page.count("<style>") == 1
    assert "src=" not in page  # nothing loaded from anywhere (not even a favicon:)
    assert re.findall(r'href="([^"]*)"', page) == ["data:,"]
    csp = dict(part.strip().split(" ", 1) for part in
               re.search(r"Content-Security-Policy: (.*?)\r\n", ui.PAGE_HEADERS).group(1)  # type: ignore[union-attr]
               .split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == _hash(_block("script"))
    assert csp["style-src"] == _hash(_block("style"))
    assert csp["connect-src"] == "'self'"
    assert "unsafe" not in ui.PAGE_HEADERS
    for headers in (ui.PAGE_HEADERS, ui.DATA_HEADERS):
        assert "X-Content-Type-Options: nosniff\r\n" in headers
        assert "Cache-Control: no-store\r\n" in headers
    # the token stays out of the server's logs and the address bar
    assert "sessionStorage" in page and "history.replaceState" in page


class _Node:
    def __init__(self, id: str, port: int) -> None:
        self.id, self.api_address = id, f"127.0.0.1:{port}"


class _Group:
    def __init__(self, id: str, owners: tuple[str, ...]) -> None:
        self.id, self.owners = id, owners


class _Topology:
    cluster = "fake"
    nodes = [_Node("a", 1), _Node("b", 2), _Node("c", 3)]
    groups = [_Group("g1", ("a", "b")), _Group("g2", ("b", "c"))]

    def shared_nodes(self) -> dict[str, tuple[str, ...]]:
        return {"b": ("g1", "g2")}


class _View:
    topology = _Topology()


def _answer(node: str, groups: dict[str, Any]) -> dict[str, Any]:
    return {"node": node, "cluster": "fake", "groups": groups, "sphere_of_influence": [node],
            "node_status": {node: {"status": {"state": "up"}}}}


class _Service:
    def status(self) -> dict[str, Any]:
        return _answer("a", {"g1": {"owners": ["a", "b"], "leader": "a", "term": 3,
                                    "role": "leader", "quorum": True,
                                    "app": {"node": "a", "state": "running", "token": 4}}})


class _Peers:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def post(self, address: str, op: str, body: bytes, timeout: float | None = None,
             on_behalf: str | None = None) -> tuple[int, bytes]:
        self.calls.append(address)
        assert op == "status"
        if address.endswith(":3"):
            raise PeerUnreachable("connection refused")
        return 200, json.dumps(_answer("b", {
            "g1": {"owners": ["a", "b"], "leader": "a", "term": 3, "role": "follower",
                   "quorum": True},
            "g2": {"owners": ["b", "c"], "leader": None, "term": 5, "role": "candidate",
                   "quorum": False}})).encode()


def test_status_page_data_merges_every_node_and_reuses_a_fresh_answer() -> None:
    peers = _Peers()
    page = ui.StatusPage("a", _Service(), _View(), peers, max_age=60)  # type: ignore[arg-type]
    try:
        st = page.cluster_status()
        assert sorted(peers.calls) == ["127.0.0.1:2", "127.0.0.1:3"]  # not itself
        assert st["served_by"] == "a" and st["cluster"] == "fake"
        assert [n["node"] for n in st["nodes"]] == ["a", "b", "c"]
        assert [n["reachable"] for n in st["nodes"]] == [True, True, False]
        assert "connection refused" in st["nodes"][2]["error"]
        assert st["groups"]["g1"]["leader"] == "a"
        assert st["groups"]["g1"]["app"] == {"node": "a", "state": "running", "token": 4}
        assert st["groups"]["g2"]["quorum"] is False
        assert st["topology"] == {"nodes": ["a", "b", "c"],
                                  "groups": [{"id": "g1", "owners": ["a", "b"]},
                                             {"id": "g2", "owners": ["b", "c"]}],
                                  "shared": {"b": ["g1", "g2"]}}
        assert page.cluster_status() is st and len(peers.calls) == 2  # reused, not re-asked
    finally:
        page.close()


# --------------------------------------------------------------------------- live


@pytest.fixture(scope="module")
def nine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with nine_node_cluster(tmp_path_factory.mktemp("ui"), raft=RAFT) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def viewer_token(nine: LocalCluster) -> str:
    """A bearer token of a user who may only read (the role ``viewer``: read on every
    group), valid 10 minutes: what an operator would hand the page."""
    with nine.client(timeout=20) as c:
        c.admin.add_role("viewer")
        c.admin.grant("viewer", "*", ["read"])
        c.admin.add_user("viewer", ["viewer"])
        token = c.admin.create_token("viewer", 600)["token"]
    # the nodes read the access records every ~0.25 s
    wait_for(lambda: _get(nine, "202", "/ui/status", token)[0] == 200, 10,
             what="the token to be accepted")
    return str(token)


def _ca_only(nine: LocalCluster) -> ssl.SSLContext:
    """HTTPS trusting the cluster's CA, with no client certificate: a browser's view."""
    files = nine.client_files()
    assert files is not None
    ctx = ssl.create_default_context(cafile=str(files[0]))
    ctx.check_hostname = False
    return ctx


def _get(nine: LocalCluster, node: str, path: str, token: str | None = None,
         method: str = "GET") -> tuple[int, Any, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"https://{nine.endpoint(node)}{path}", headers=headers,
                                 method=method, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10, context=_ca_only(nine)) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@pytest.mark.slow
def test_the_page_is_served_without_identity_with_its_security_headers(
        nine: LocalCluster) -> None:
    for path in ("/ui", "/ui/"):
        code, headers, body = _get(nine, "210", path)
        assert code == 200, body[:200]
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert body == ui.PAGE


@pytest.mark.slow
def test_the_data_needs_an_identity_and_the_page_takes_only_get(
        nine: LocalCluster, viewer_token: str) -> None:
    code, _, body = _get(nine, "210", "/ui/status")
    assert code == 401 and json.loads(body)["error"]["code"] == "unauthenticated"
    code, _, body = _get(nine, "210", "/ui/status", "hakv_00000000_forged")
    assert code == 401, body
    code, headers, body = _get(nine, "210", "/ui/status", viewer_token)
    assert code == 200 and headers["Cache-Control"] == "no-store"
    st = json.loads(body)
    assert st["served_by"] == "210" and st["topology"]["nodes"] == NODES
    assert set(GROUPS) <= set(st["groups"])
    assert all(n["reachable"] for n in st["nodes"])
    code, _, body = _get(nine, "210", "/ui", method="POST")
    assert code == 400 and "use GET /ui" in json.loads(body)["error"]["message"]
    code, _, body = _get(nine, "210", "/ui/nothing-here")
    assert code in (400, 404) and "unknown endpoint" in json.loads(body)["error"]["message"]


def _browser() -> Any:
    if sys.platform != "linux":
        pytest.skip("the browser test runs on Linux (Debian's chromium)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("Chromium or its driver is not installed "
                    "(apt-get install -y chromium chromium-driver; .ci/run does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install 'selenium>=4.15')")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1300",
                # the nodes' certificates are of the test CA, on loopback only
                "--ignore-certificate-errors"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, checked
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _attr(driver: Any, element_id: str, name: str) -> str | None:
    value = driver.execute_script(
        "const e = document.getElementById(arguments[0]); "
        "return e ? e.getAttribute(arguments[1]) : null;", element_id, name)
    return None if value is None else str(value)


def _text(driver: Any, element_id: str) -> str:
    return str(driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';",
        element_id))


@pytest.mark.slow
def test_the_page_in_a_browser_shows_groups_and_apps_and_follows_a_failover(
        nine: LocalCluster, viewer_token: str) -> None:
    driver = _browser()
    try:
        with nine.client(timeout=20) as c:
            app = {"start": [sys.executable, str(BEACON), "run"],
                   "check": [sys.executable, str(BEACON), "check"], "check_interval": 0.3}
            for gid in GROUPS:
                c.admin.set_app(gid, app)
        base = f"https://{nine.endpoint('202')}/ui"

        # Without a token: a clear message, not a blank page.
        driver.get(base)
        wait_for(lambda: "Not authenticated" in _text(driver, "banner"), 15,
                 what="the unauthenticated message")
        # ... with a field to paste a token into, which it then uses at once
        driver.execute_script("document.getElementById('login-token').value = arguments[0];"
                              "document.getElementById('login-go').click();", viewer_token)
        wait_for(lambda: _attr(driver, "group-220", "data-leader"), 10,
                 what="the page with a pasted token")
        assert "Not authenticated" not in _text(driver, "banner")

        driver.get("about:blank")  # a new document (a changed fragment alone is not)
        driver.get(f"{base}#token={viewer_token}")
        wait_for(lambda: all(_attr(driver, f"group-{g}", "data-app-node") for g in GROUPS), 40,
                 what="every group's app placed, on the page")
        assert "token=" not in driver.current_url  # taken off the address bar
        placed = {g: _attr(driver, f"group-{g}", "data-app-node") for g in GROUPS}
        assert placed == {"220": "202", "222": "204", "224": "206", "226": "208"}, placed
        for g in GROUPS:  # drawn too: a sphere per group, each app under its node
            assert driver.execute_script(
                "return document.querySelectorAll('path.sphere[data-group=\"' + arguments[0]"
                " + '\"]').length", g) == 1
        assert driver.execute_script(
            "return document.querySelector('text.app[data-group=\"226\"]')"
            ".getAttribute('data-node')") == "208"
        assert _attr(driver, "node-208", "data-state") == "up"
        assert "Not authenticated" not in _text(driver, "banner")
        wait_for(lambda: "226" in _text(driver, "events"), 15, what="group 226's events")

        driver.execute_script("window.__sameDocument = 'yes';")  # gone if the page reloads
        killed = time.monotonic()
        nine.kill("208")
        wait_for(lambda: _attr(driver, "node-208", "data-state") == "down", 20,
                 what="node 208 shown down")
        wait_for(lambda: _attr(driver, "group-226", "data-app-node") == "210"
                 and "running" in _text(driver, "group-226"), 40,
                 what="group 226's app shown running on 210")
        assert driver.execute_script("return window.__sameDocument") == "yes"
        assert driver.execute_script(
            "return document.querySelector('text.app[data-group=\"226\"]')"
            ".getAttribute('data-node')") == "210"
        print(f"the page showed the failover {time.monotonic() - killed:.1f} s after the kill")
        console = [entry["message"] for entry in driver.get_log("browser")]
        print("\n".join(console))
        # no script error, nothing the Content-Security-Policy blocked (the one expected
        # error: the 401 of the first load, without a token)
        assert not [line for line in console if "Content Security Policy" in line
                    or "Uncaught" in line or "TypeError" in line], console
        shot = os.environ.get("HAKV_UI_SCREENSHOT")
        if shot:
            time.sleep(2.5)  # one more refresh: the events of the failover
            driver.save_screenshot(shot)
    finally:
        driver.quit()
        nine.start("208")


@pytest.mark.slow
def test_hakv_ui_prints_a_link_whose_token_opens_the_page(
        nine: LocalCluster, viewer_token: str) -> None:
    from click.testing import CliRunner

    from hakv.cli import cli

    res = CliRunner().invoke(cli, ["ui", "--dir", str(nine.dir), "--node", "204",
                                   "--user", "viewer", "--ttl", "120"])
    assert res.exit_code == 0, res.output
    found = re.search(r"^https://([0-9.:]+)/ui#token=(hakv_\S+)$", res.output, re.M)
    assert found and found.group(1) == nine.endpoint("204"), res.output
    token = found.group(2)
    wait_for(lambda: _get(nine, "204", "/ui/status", token)[0] == 200, 10,
             what="the new token to open /ui/status")
    with nine.client(timeout=10) as c:
        made = {t["user"]: t["expires"] for t in c.admin.tokens().values()
                if t["expires"] and t["expires"] < time.time() + 200}
    assert "viewer" in made  # short-lived
    res = CliRunner().invoke(cli, ["ui", "--dir", str(nine.dir), "--no-token"])
    assert res.exit_code == 0 and res.output.strip() == f"https://{nine.endpoint('202')}/ui"
    res = CliRunner().invoke(cli, ["ui", "--dir", str(nine.dir), "--node", "999"])
    assert res.exit_code == 7 and "not a node of the topology" in res.output
