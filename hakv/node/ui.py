"""The web status page every node serves read-only (docs/operations.md, "Web status page").

Two paths, both ``GET``, routed by hakv.node.api next to ``/metrics``:

- ``/ui``: one self-contained HTML page (inline CSS and JS, the picture drawn as SVG by
  the page itself). It holds no data, so it is served without an identity, like
  ``/v1/health``; its Content-Security-Policy allows only its own inline script and style
  (by hash) and requests to this origin.
- ``/ui/status``: the JSON the page draws, through the API's one access check (any
  authenticated identity, as ``/v1/status``): every node's ``/v1/status`` merged as
  ``hakv status --json`` does (hakv.client.client.merge_status), asked by this node (its
  own directly, the others in parallel through ``PeerApi``), plus the topology (nodes in
  file order, groups and owners, shared nodes) so the page can draw nodes that do not
  answer. A node that does not answer within ``PEER_TIMEOUT`` s is ``reachable: false``.
  Answers are reused for ``MAX_AGE`` s and one fan-out runs at a time, so any number of
  open pages costs at most one round of status requests per ``MAX_AGE``.

The recent events come from the ordinary ``POST /v1/events`` (the ``read`` verb on each
group), which the page calls itself with the same credentials.

A browser usually has no client certificate: the page takes a bearer token from its URL
fragment (``/ui#token=...``; a fragment is never sent to the server), keeps it in
sessionStorage, removes it from the address bar and sends it as ``Authorization: Bearer``.
``hakv ui`` prints such a link (hakv/cli/ui.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hakv.client.client import merge_status
from hakv.node.ports import PeerApi, PeerUnreachable, Service, TopologyView

__all__ = ["DATA_HEADERS", "PAGE", "PAGE_HEADERS", "PAGE_TYPE", "PATHS", "StatusPage"]

PEER_TIMEOUT = 1.5  # s: a node slower than this is shown as not answering
MAX_AGE = 0.5  # s: a merged status is reused this long
_FANOUT = 16

#: Request path -> the API server's op name.
PATHS = {b"/ui": "ui", b"/ui/": "ui", b"/ui/index.html": "ui", b"/ui/status": "ui_status"}


class StatusPage:
    """The data of ``/ui/status`` (worker threads): the merged status of every node."""

    def __init__(self, me: str, service: Service, view: TopologyView, peers: PeerApi,
                 timeout: float = PEER_TIMEOUT, max_age: float = MAX_AGE) -> None:
        self.me, self.service, self.view, self.peers = me, service, view, peers
        self.timeout, self.max_age = timeout, max_age
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # one fan-out at a time; the others reuse its answer
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._closed = False

    def cluster_status(self) -> dict[str, Any]:
        with self._lock:
            cached = self._cached
            if cached is not None and time.monotonic() - cached[0] < self.max_age:
                return cached[1]
            answer = self._gather()
            self._cached = (time.monotonic(), answer)
            return answer

    def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _ask(self, node_id: str, address: str) -> tuple[str, dict[str, Any] | None, str | None]:
        if node_id == self.me:
            try:
                return address, self.service.status(), None
            except Exception as exc:  # e.g. while starting: shown as this node's error
                return address, None, f"internal: {type(exc).__name__}: {exc}"
        try:
            code, raw = self.peers.post(address, "status", b"{}", timeout=self.timeout)
        except PeerUnreachable as exc:
            return address, None, f"unavailable: {exc}"
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return address, None, f"malformed answer (HTTP {code})"
        if code != 200 or not isinstance(body, dict):
            err = body.get("error") if isinstance(body, dict) else None
            what = (f"{err.get('code')}: {err.get('message')}" if isinstance(err, dict)
                    else f"HTTP {code}")
            return address, None, what
        return address, body, None

    def _gather(self) -> dict[str, Any]:
        topology = self.view.topology
        nodes = [(n.id, n.api_address) for n in topology.nodes]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(min(_FANOUT, max(1, len(nodes))),
                                            thread_name_prefix="ui-status")
        answers = list(self._pool.map(lambda item: self._ask(*item), nodes))
        merged = merge_status(answers)
        by_endpoint = dict((address, node_id) for node_id, address in nodes)
        for entry in merged["nodes"]:
            if entry.get("node") is None:
                entry["node"] = by_endpoint.get(entry["endpoint"])
        # The status records as the reachable nodes hold them (a node that is down keeps
        # the last record its sphere of influence has of it: shown, not trusted).
        recorded: dict[str, Any] = {}
        for _, answer, _ in answers:
            for node_id, record in ((answer or {}).get("node_status") or {}).items():
                if isinstance(record, dict):
                    recorded.setdefault(node_id, record.get("status"))
        for entry in merged["nodes"]:
            entry["recorded_status"] = recorded.get(entry.get("node") or "")
        merged.update({
            "served_by": self.me,
            "time": time.time(),
            "cluster": merged.get("cluster") or topology.cluster,
            "topology": {
                "nodes": [n.id for n in topology.nodes],
                "groups": [{"id": g.id, "owners": list(g.owners)} for g in topology.groups],
                "shared": {n: list(gs) for n, gs in topology.shared_nodes().items()},
            },
        })
        return merged


# --------------------------------------------------------------------------- the page

_STYLE = r"""
:root { --up: #2e9d4f; --down: #d64541; --unknown: #9aa0a6; --ink: #1d2329; --muted: #66707a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       background: #f6f7f9; }
header { display: flex; flex-wrap: wrap; gap: 4px 18px; align-items: baseline; padding: 10px 18px;
         background: #1d2329; color: #fff; }
header h1 { font-size: 17px; margin: 0; }
header .meta { color: #c9d1d9; font-size: 13px; }
#fresh.stale { color: #ffb347; font-weight: bold; }
main { padding: 12px 18px 30px; display: grid; gap: 16px; grid-template-columns: minmax(0, 1fr); }
@media (min-width: 1200px) { main { grid-template-columns: minmax(0, 560px) minmax(0, 1fr); } }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 10px 14px; }
section h2 { font-size: 15px; margin: 0 0 8px; }
section div + h2 { margin-top: 18px; }
.wide { grid-column: 1 / -1; }
#banner { display: none; padding: 10px 18px; font-weight: 600; }
#banner.show { display: block; }
#banner.error { background: #fde8e7; color: #8a1f17; border-bottom: 1px solid #f3b7b2; }
#banner.warn { background: #fff4dc; color: #6b4a00; border-bottom: 1px solid #f0d59b; }
#banner code { background: rgba(0,0,0,.07); padding: 1px 4px; border-radius: 3px; }
#login { display: none; margin-top: 8px; font-weight: normal; }
#login.show { display: block; }
#login input { width: 30em; max-width: 70vw; font: inherit; padding: 3px 6px; }
body.stale #picture svg, body.stale table { opacity: .55; }
svg { width: 100%; height: auto; max-height: 78vh; display: block; }
svg text { font-family: system-ui, sans-serif; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceef1; vertical-align: top; }
th { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
td.num { font-variant-numeric: tabular-nums; }
.pill { display: inline-block; padding: 0 6px; border-radius: 9px; font-size: 12px; color: #fff;
        margin: 1px 3px 1px 0; white-space: nowrap; }
.pill.up { background: var(--up); } .pill.down { background: var(--down); }
.pill.unknown { background: var(--unknown); }
.bad { color: var(--down); font-weight: 600; } .good { color: var(--up); font-weight: 600; }
.muted { color: var(--muted); }
.legend { font-size: 12px; color: var(--muted); margin-top: 6px; }
#events-note { font-size: 12px; color: var(--muted); }
"""

_SCRIPT = r"""
"use strict";
(function () {
  const BASE = 2000, MAX = 30000, TIMEOUT = 8000, STALE = 3 * BASE, KEEP_EVENTS = 40;
  const COLORS = ["#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2",
                  "#bcbd22", "#7f7f7f", "#2ca02c", "#d62728"];
  const SVGNS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  let token = null;
  let status = null, lastOk = 0, delay = BASE, failures = 0, lastError = null, nextAt = 0;
  const events = [], after = {}, eventErrors = {};
  let eventCursor = 0, timer = null, inflight = false;

  // The token: from the URL fragment (never sent to the server), kept for this tab only.
  function tokenFromFragment() {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (!m) return false;
    token = decodeURIComponent(m[1]);
    try { sessionStorage.setItem("hakv-token", token); } catch (e) { /* private mode */ }
    history.replaceState(null, "", location.pathname + location.search);
    return true;
  }
  if (!tokenFromFragment()) {
    try { token = sessionStorage.getItem("hakv-token"); } catch (e) { token = null; }
  }
  window.addEventListener("hashchange", () => {
    if (tokenFromFragment()) refreshSoon();
  });

  async function call(method, path, body) {
    const headers = {"Accept": "application/json"};
    if (token) headers["Authorization"] = "Bearer " + token;
    const init = {method, headers, cache: "no-store", credentials: "same-origin"};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const ctl = new AbortController();
    const abortTimer = setTimeout(() => ctl.abort(), TIMEOUT);
    init.signal = ctl.signal;
    try {
      let r;
      try {
        r = await fetch(path, init);
      } catch (e) {
        const err = new Error(e.name === "AbortError" ? "no answer within " + TIMEOUT / 1000 + " s"
                                                      : "the node does not answer (" + e.message + ")");
        err.status = 0;
        throw err;
      }
      let data = null;
      try { data = await r.json(); } catch (e) { data = null; }
      if (!r.ok) {
        const wire = data && data.error;
        const err = new Error(wire && wire.message ? wire.message : "HTTP " + r.status);
        err.status = r.status;
        err.code = wire && wire.code;
        throw err;
      }
      return data;
    } finally {
      clearTimeout(abortTimer);
    }
  }

  function el(tag, attrs, text) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4))
                                     : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function fmtTime(t) {
    if (!t) return "-";
    const d = new Date(t * 1000);
    return d.toLocaleTimeString([], {hour12: false}) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  // ---- the model: what each node and group is, from the merged status
  function nodeInfo(st) {
    const out = {};
    for (const n of st.nodes || []) {
      if (!n.node) continue;
      const state = (n.status || {}).state;
      let cls, text;
      if (!n.reachable) { cls = "down"; text = "down"; }
      else if (state) { cls = state === "down" ? "down" : "up"; text = String(state); }
      else { cls = "unknown"; text = "unknown (not reported yet)"; }
      out[n.node] = {cls, text, entry: n};
    }
    for (const id of st.topology.nodes) {
      if (!out[id]) out[id] = {cls: "unknown", text: "unknown (not asked)", entry: {node: id}};
    }
    return out;
  }

  function userGroups(st) { return st.topology.groups.filter((g) => !g.id.startsWith("_")); }

  // ---- the picture (the patent's Fig. 2): nodes, spheres of influence, leaders, apps
  function hull(points) {
    const pts = points.slice().sort((a, b) => a.x - b.x || a.y - b.y);
    if (pts.length < 3) return pts;
    const cross = (o, a, b) => (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);
    const lower = [], upper = [];
    for (const p of pts) {
      while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], p) <= 0) lower.pop();
      lower.push(p);
    }
    for (const p of pts.slice().reverse()) {
      while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], p) <= 0) upper.pop();
      upper.push(p);
    }
    upper.pop(); lower.pop();
    return lower.concat(upper);
  }

  function draw(st, nodes) {
    const ids = st.topology.nodes, groups = userGroups(st);
    const cols = Math.max(1, Math.round(Math.sqrt(ids.length)));
    const rows = Math.max(1, Math.ceil(ids.length / cols));
    const SP = 205, M = 110;
    const pos = {};
    ids.forEach((id, i) => { pos[id] = {x: M + (i % cols) * SP, y: M + Math.floor(i / cols) * SP}; });
    const W = 2 * M + (cols - 1) * SP, H = 2 * M + (rows - 1) * SP + 34;
    const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, role: "img", id: "topology",
                               "aria-label": "nodes, groups and where each app runs"});
    const color = {};
    groups.forEach((g, k) => { color[g.id] = COLORS[k % COLORS.length]; });
    // spheres of influence: a translucent hull around each group's owners
    groups.forEach((g, k) => {
      const pts = g.owners.filter((o) => pos[o]).map((o) => pos[o]);
      if (!pts.length) return;
      const h = hull(pts);
      const d = "M" + h.map((p) => `${p.x},${p.y}`).join(" L") + " Z";
      const pad = 52 + 9 * (k % 3);
      svg.appendChild(el("svg:path", {d, fill: color[g.id], stroke: color[g.id], "stroke-width": 2 * pad,
                                      "stroke-linejoin": "round", "stroke-linecap": "round",
                                      opacity: 0.13, class: "sphere", "data-group": g.id}));
    });
    groups.forEach((g, k) => {
      const pts = g.owners.filter((o) => pos[o]).map((o) => pos[o]);
      if (!pts.length) return;
      const pad = 52 + 9 * (k % 3);
      const minx = Math.min(...pts.map((p) => p.x)), miny = Math.min(...pts.map((p) => p.y));
      const maxx = Math.max(...pts.map((p) => p.x));
      const vertical = maxx === minx;
      svg.appendChild(el("svg:text", {x: vertical ? minx - pad + 4 : minx - pad + 16, y: miny - pad + 14,
                                      fill: color[g.id], "font-size": 14, "font-weight": "bold"},
                         "group " + g.id));
    });
    // precedence numbers: a badge per (group, owner), placed around the node by group
    const nG = Math.max(groups.length, 1);
    groups.forEach((g, k) => {
      const merged = (st.groups || {})[g.id] || {};
      const angle = (-135 + (k * 360) / nG) * Math.PI / 180;
      g.owners.forEach((o, r) => {
        const p = pos[o];
        if (!p) return;
        const x = p.x + 40 * Math.cos(angle), y = p.y + 40 * Math.sin(angle);
        const leader = merged.leader === o;
        svg.appendChild(el("svg:circle", {cx: x, cy: y, r: leader ? 11 : 9, fill: leader ? "#fff" : color[g.id],
                                          stroke: color[g.id], "stroke-width": leader ? 3 : 1}));
        svg.appendChild(el("svg:text", {x, y: y + 4, "text-anchor": "middle", "font-size": 11,
                                        "font-weight": "bold", fill: leader ? color[g.id] : "#fff"},
                           leader ? "\u2605" + (r + 1) : r + 1));
      });
    });
    // nodes
    const shared = st.topology.shared || {};
    for (const id of ids) {
      const p = pos[id], info = nodes[id];
      const fill = info.cls === "up" ? "#2e9d4f" : info.cls === "down" ? "#d64541" : "#9aa0a6";
      const isShared = Object.prototype.hasOwnProperty.call(shared, id);
      if (isShared) {
        svg.appendChild(el("svg:circle", {cx: p.x, cy: p.y, r: 31, fill: "none", stroke: "#1d2329",
                                          "stroke-width": 3, "stroke-dasharray": "5 3"}));
      }
      const c = el("svg:circle", {cx: p.x, cy: p.y, r: 25, fill, stroke: isShared ? "#1d2329" : "#fff",
                                  "stroke-width": isShared ? 3 : 2, class: "node " + info.cls,
                                  "data-node": id, "data-state": info.cls});
      c.appendChild(el("svg:title", {}, `node ${id}: ${info.text}` +
                       (isShared ? ` (shared: groups ${shared[id].join(", ")})` : "")));
      svg.appendChild(c);
      svg.appendChild(el("svg:text", {x: p.x, y: p.y + 5, "text-anchor": "middle", "font-size": 14,
                                      "font-weight": "bold", fill: "#fff"}, id));
      // the apps running here, under the node
      let line = 0;
      for (const g of groups) {
        const app = ((st.groups || {})[g.id] || {}).app;
        if (!app || app.node !== id) continue;
        const state = (app.state || "none") + (app.maintenance ? " (maintenance)" : "");
        const t = el("svg:text", {x: p.x, y: p.y + 44 + 14 * line, "text-anchor": "middle",
                                  "font-size": 12, fill: color[g.id], "font-weight": "bold",
                                  class: "app", "data-group": g.id, "data-node": id},
                     `\u25B6 ${g.id} ${state}, token ${app.token ?? "-"}`);
        svg.appendChild(t);
        line += 1;
      }
    }
    svg.appendChild(el("svg:text", {x: 10, y: H - 24, "font-size": 12, fill: "#66707a"},
      "nodes: green up, red down, grey unknown; dashed ring: shared node (a bridge)"));
    svg.appendChild(el("svg:text", {x: 10, y: H - 8, "font-size": 12, fill: "#66707a"},
      "shaded: a group's owners; numbers: failover precedence; \u2605 leader; \u25B6 its app"));
    const box = $("picture");
    clear(box);
    box.appendChild(svg);
  }

  // ---- the tables
  function pill(id, nodes, prefix) {
    const info = nodes[id] || {cls: "unknown", text: "unknown"};
    return el("span", {class: "pill " + info.cls, title: `${id}: ${info.text}`}, (prefix || "") + id);
  }

  function row(cells, attrs) {
    const tr = el("tr", attrs);
    for (const c of cells) {
      const td = el("td");
      if (c instanceof Node) td.appendChild(c);
      else if (Array.isArray(c)) c.forEach((x) => td.appendChild(x instanceof Node ? x : document.createTextNode(x)));
      else td.textContent = c === null || c === undefined || c === "" ? "-" : String(c);
      tr.appendChild(td);
    }
    return tr;
  }

  function table(id, headers, rows) {
    const t = el("table", {id});
    const head = el("tr");
    headers.forEach((h) => head.appendChild(el("th", {}, h)));
    t.appendChild(el("thead")).appendChild(head);
    const body = t.appendChild(el("tbody"));
    rows.forEach((r) => body.appendChild(r));
    return t;
  }

  function groupTable(st, nodes) {
    const rows = userGroups(st).map((g) => {
      const m = (st.groups || {})[g.id];
      const owners = g.owners.map((o, i) => pill(o, nodes, `${i + 1}. `));
      if (!m) {
        return row([g.id, owners, "-", "-", el("span", {class: "bad"}, "no owner answered"), "-", "-", "-"],
                   {id: "group-" + g.id, "data-app-node": ""});
      }
      const app = m.app;
      const health = m.quorum && m.leader ? el("span", {class: "good"}, "quorum")
                                          : el("span", {class: "bad"}, m.leader ? "no quorum" : "no leader");
      let appOn = "-", appState = "-", tokenCell = "-";
      if (app) {
        appOn = app.node || "none";
        appState = (app.state || "none") + (app.maintenance ? " (maintenance)" : "");
        tokenCell = app.token ?? "-";
      }
      return row([g.id, owners, m.leader || "none", m.term, health, appOn, appState, tokenCell],
                 {id: "group-" + g.id, "data-app-node": app && app.node ? app.node : "",
                  "data-leader": m.leader || ""});
    });
    const box = $("groups");
    clear(box);
    box.appendChild(table("group-table", ["group", "owners (precedence)", "leader", "term", "health",
                                          "app on", "app state", "token"], rows));
  }

  function nodeTable(st, nodes) {
    const rows = st.topology.nodes.map((id) => {
      const info = nodes[id], n = info.entry;
      const shared = (st.topology.shared || {})[id];
      // groups and sphere from the topology: also for a node that does not answer
      const mine = userGroups(st).filter((g) => g.owners.includes(id));
      const sphere = new Set([id]);
      mine.forEach((g) => g.owners.forEach((o) => sphere.add(o)));
      const order = st.topology.nodes;
      const reach = el("span", {class: "pill " + (n.reachable ? "up" : "down")}, n.reachable ? "yes" : "no");
      return row([id, n.endpoint, reach, info.text === "down" && n.recorded_status
                    ? `down (last record: ${n.recorded_status.state || "?"})` : info.text,
                  (mine.length ? mine.map((g) => g.id).join(", ") : "-") + (shared ? " (shared)" : ""),
                  [...sphere].sort((a, b) => order.indexOf(a) - order.indexOf(b)).join(", "),
                  n.error || ""],
                 {id: "node-" + id, "data-state": info.cls});
    });
    const box = $("nodes");
    clear(box);
    box.appendChild(table("node-table", ["node", "endpoint", "reachable", "status", "groups",
                                         "sphere of influence", "error"], rows));
  }

  function eventTable() {
    const shown = events.slice(-KEEP_EVENTS).reverse();
    const rows = shown.map((e) => {
      const placement = e.kind === "placement";
      return row([fmtTime(e.time), e.group, placement ? e.action : "node", e.node, e.state,
                  placement ? e.token : "", e.reason || ""]);
    });
    const box = $("events");
    clear(box);
    box.appendChild(table("event-table", ["time", "group", "event", "node", "state", "token", "reason"], rows));
    const notes = Object.entries(eventErrors).map(([g, msg]) => `group ${g}: ${msg}`);
    $("events-note").textContent = notes.length ? "not shown: " + notes.join("; ") : "";
  }

  async function fetchEvents(st) {
    const groups = userGroups(st).map((g) => g.id);
    if (!groups.length) return;
    const per = Math.min(groups.length, 4);  // a few groups per refresh, in turn
    for (let i = 0; i < per; i++) {
      const gid = groups[(eventCursor + i) % groups.length];
      try {
        const ans = await call("POST", "/v1/events", {group: gid, after: after[gid] || 0, limit: 500,
                                                      serializable: true});
        delete eventErrors[gid];
        for (const e of ans.events || []) {
          e.group = e.group || gid;
          if ((e.index || 0) > (after[gid] || 0)) after[gid] = e.index;
          events.push(e);
        }
      } catch (e) {
        if (e.status === 401) throw e;
        eventErrors[gid] = e.status === 403 ? "forbidden (" + e.message + ")" : e.message;
      }
    }
    eventCursor = (eventCursor + per) % groups.length;
    events.sort((a, b) => (a.time || 0) - (b.time || 0) || String(a.group).localeCompare(String(b.group)) ||
                          (a.index || 0) - (b.index || 0));
    if (events.length > 5 * KEEP_EVENTS) events.splice(0, events.length - 5 * KEEP_EVENTS);
    eventTable();
  }

  // ---- banners and freshness
  function banner(kind, parts, login) {
    const b = $("banner");
    clear(b);
    if (!kind) { b.className = ""; $("login").className = ""; return; }
    b.className = "show " + kind;
    parts.forEach((p) => b.appendChild(typeof p === "string" ? document.createTextNode(p) : p));
    $("login").className = login ? "show" : "";
  }

  function showError() {
    const e = lastError;
    const retry = ` Retrying in ${Math.max(1, Math.round((nextAt - Date.now()) / 1000))} s.`;
    if (e.status === 401) {
      banner("error", ["Not authenticated: this page needs a bearer token (or a client certificate). " +
        "Open the link that ", el("code", {}, "hakv ui"), " prints, or paste a token (",
        el("code", {}, "hakv token create USER"), ") here. The node said: " + e.message], true);
    } else if (e.status === 403) {
      banner("error", ["Forbidden: this identity may not read the cluster status. The node said: " +
        e.message], true);
    } else {
      banner("warn", [`Cannot load the status from this node (${e.message}).` +
        (status ? " The data below is from " + fmtTime(status.time) + "." : "") + retry], false);
    }
  }

  function freshness() {
    const f = $("fresh");
    if (!lastOk) { f.textContent = "loading\u2026"; return; }
    const age = Math.round((Date.now() - lastOk) / 1000);
    const stale = Date.now() - lastOk > STALE;
    f.textContent = stale ? `STALE: last update ${age} s ago` : `updated ${fmtTime(lastOk / 1000)}`;
    f.className = stale ? "stale" : "";
    document.body.classList.toggle("stale", stale);
    if (lastError && lastError.status !== 401 && lastError.status !== 403) showError();
  }

  function render(st) {
    const nodes = nodeInfo(st);
    $("cluster").textContent = "hakv cluster " + (st.cluster || "?");
    $("served").textContent = "served by node " + st.served_by;
    const down = st.topology.nodes.filter((id) => nodes[id].cls === "down");
    $("summary").textContent = `${st.topology.nodes.length} nodes (${down.length} down), ` +
                               `${userGroups(st).length} groups`;
    draw(st, nodes);
    groupTable(st, nodes);
    nodeTable(st, nodes);
  }

  // ---- the refresh loop: one request chain at a time, back-off with jitter on errors
  async function cycle() {
    timer = null;
    if (document.hidden) { schedule(BASE); return; }
    inflight = true;
    try {
      const st = await call("GET", "/ui/status");
      status = st; lastOk = Date.now(); lastError = null; failures = 0; delay = BASE;
      render(st);
      banner(null);
      await fetchEvents(st);
    } catch (e) {
      failures += 1;
      lastError = e;
      delay = Math.min(MAX, BASE * Math.pow(2, failures));
      nextAt = Date.now() + delay;
      showError();
    }
    inflight = false;
    freshness();
    schedule(delay);
  }

  function schedule(ms) {
    const wait = ms * (0.8 + 0.4 * Math.random());
    nextAt = Date.now() + wait;
    timer = setTimeout(cycle, wait);
  }

  function refreshSoon() {  // a new token: retry now, unless a request is in flight
    failures = 0; delay = BASE;
    banner(null);
    if (!inflight && timer !== null) { clearTimeout(timer); schedule(100); }
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();  // never submitted anywhere: the token stays in this tab
    const v = $("login-token").value.trim();
    if (!v) return;
    token = v;
    try { sessionStorage.setItem("hakv-token", v); } catch (e) { /* private mode */ }
    $("login-token").value = "";
    refreshSoon();
  });
  setInterval(freshness, 1000);
  cycle();
})();
"""

_BODY = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>hakv status</title>
<style>{style}</style>
</head>
<body>
<header>
  <h1 id="cluster">hakv cluster</h1>
  <span class="meta" id="served"></span>
  <span class="meta" id="summary"></span>
  <span class="meta" id="fresh">loading&hellip;</span>
</header>
<div id="banner" role="alert"></div>
<form id="login">
  <label for="login-token">Bearer token:</label>
  <input id="login-token" type="password" autocomplete="off" placeholder="hakv_...">
  <button id="login-go" type="submit">Use it</button>
</form>
<main>
  <section><h2>Cluster</h2><div id="picture"></div></section>
  <section><h2>Groups</h2><div id="groups"></div>
    <h2>Nodes</h2><div id="nodes"></div></section>
  <section class="wide"><h2>Recent events</h2><div id="events-note"></div><div id="events"></div></section>
</main>
<noscript>This page draws the cluster with JavaScript; `hakv status` shows the same in a terminal.</noscript>
<script>{script}</script>
</body>
</html>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE = _BODY.replace("{style}", _STYLE).replace("{script}", _SCRIPT).encode("utf-8")
PAGE_TYPE = "text/html; charset=utf-8"
_CSP = ("default-src 'none'; "
        f"script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'")
_COMMON = ("X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
           "X-Frame-Options: DENY\r\nCache-Control: no-store\r\n")
#: Extra response headers of ``/ui`` and of ``/ui/status`` (CRLF-terminated lines).
PAGE_HEADERS = f"Content-Security-Policy: {_CSP}\r\n{_COMMON}"
DATA_HEADERS = _COMMON
