// The dashboard page: draws the state the server streams (server-sent events) and posts controls.
"use strict";

const PALETTE = ["#2e9d5b", "#d97706", "#7c3aed", "#2563eb", "#db2777", "#0891b2", "#65a30d", "#b45309"];
const EVENT_COLOUR = { converged: "#2e9d5b", diverged: "#d97706", register: "#2563eb", deregister: "#2563eb",
                       heal: "#2563eb", restart: "#2563eb", unpause: "#2563eb" };
const $ = (id) => document.getElementById(id);
const picked = new Set();
let state = null;
let nodeNames = "";

function colour(group) { return group == null ? "#a1a1aa" : PALETTE[group % PALETTE.length]; }
function fmtBytes(b) { return b == null ? "–" : b >= 1e6 ? (b / 1e6).toFixed(1) + " MB/s" : b >= 1e3 ? (b / 1e3).toFixed(1) + " kB/s" : b + " B/s"; }
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

const cellOf = new Map();  // node -> its cell, updated in place so clicks never land on a replaced element
let layout = "";

function cell(name) {
  let c = cellOf.get(name);
  if (c) return c;
  c = el("div", { class: "cell", "data-node": name });
  for (const part of ["name", "state", "stat entries", "stat rps", "stat bps", "marks", "holds"]) c.appendChild(el("div", { class: part }));
  c.querySelector(".name").textContent = name;
  c.querySelector(".holds").title = "holds the watched address";
  c.addEventListener("click", () => { picked.has(name) ? picked.delete(name) : picked.add(name); render(); });
  cellOf.set(name, c);
  return c;
}

function fillCell(n) {
  const c = cell(n.name);
  c.dataset.state = n.state;
  c.dataset.group = n.group == null ? "" : String(n.group);
  c.style.background = colour(n.group);
  c.classList.toggle("picked", picked.has(n.name));
  c.classList.toggle("holds", n.holds);
  c.querySelector(".state").textContent = n.state === "running" ? "" : n.state === "exited" ? "killed" : n.state;
  c.querySelector(".entries").textContent = (n.entries == null ? "–" : n.entries) + " entries";
  c.querySelector(".rps").textContent = (n.rps == null ? "–" : n.rps.toFixed(1)) + " rounds/s";
  c.querySelector(".bps").textContent = fmtBytes(n.bps);
  const marks = [];
  if (n.loss) marks.push("loss " + n.loss + "%");
  for (const d of n.cuts_out) marks.push("-/-> " + d);
  for (const src of n.cuts_in) marks.push(src + " -/->");
  c.querySelector(".marks").textContent = marks.join(" · ");
  return c;
}

function renderCluster(s) {
  const byName = Object.fromEntries(s.nodes.map((n) => [n.name, n]));
  for (const n of s.nodes) fillCell(n);
  const box = $("cluster");
  const shape = JSON.stringify(s.partition) + "/" + s.nodes.map((n) => n.name).join(",");
  if (shape !== layout) {  // regroup the cells only when the partition or the nodes change
    layout = shape;
    box.replaceChildren();
    box.classList.toggle("partitioned", s.partition.length > 1);
    for (const group of s.partition) {
      const g = el("div", { class: "pgroup" });
      for (const name of group) if (byName[name]) g.appendChild(cell(name));
      box.appendChild(g);
    }
  }
  const sizes = {};
  for (const n of s.nodes) if (n.group != null) sizes[n.group] = (sizes[n.group] || 0) + 1;
  const legend = $("legend");
  legend.replaceChildren(document.createTextNode("digest groups:"));
  for (const [g, count] of Object.entries(sizes)) {
    const sw = el("span"); sw.style.background = colour(Number(g));
    legend.appendChild(sw); legend.appendChild(document.createTextNode(count + " node" + (count > 1 ? "s" : "")));
  }
}

function renderSelects(s) {
  const names = s.nodes.map((n) => n.name).join(",");
  if (names === nodeNames) return;
  nodeNames = names;
  for (const id of ["node-select", "cut-src", "cut-dst"]) {
    const sel = $(id), keep = sel.value;
    sel.replaceChildren(...s.nodes.map((n) => el("option", { value: n.name }, n.name)));
    if (keep) sel.value = keep;
  }
  if (s.nodes.length > 1 && !$("cut-dst").dataset.touched) $("cut-dst").value = s.nodes[1].name;
}

function renderSummary(s) {
  $("cluster-name").textContent = s.name + " · " + s.backend + " · " + s.nodes.length + " nodes";
  const badge = $("badge");
  badge.textContent = s.converged ? "converged" : s.digests + " digests";
  badge.className = "badge " + (s.converged ? "converged" : "diverged");
  badge.dataset.digests = String(s.digests);
  const up = s.nodes.filter((n) => n.state === "running").length;
  $("summary-text").textContent = up + " running · " + s.partition.length + " partition group" + (s.partition.length > 1 ? "s" : "");
  $("picked").textContent = picked.size ? "picked: " + [...picked].join(", ") : "no node picked";
}

function renderTrack(s) {
  const chart = $("chart"), holders = $("holders");
  chart.replaceChildren(); holders.replaceChildren();
  const t = s.track;
  if (!t) { $("chart-key").textContent = ""; $("track-text").textContent = "register or type an address to watch it spread"; return; }
  $("track-text").textContent = t.address + ": " + t.holders + " / " + t.nodes + " nodes";
  const W = 420, H = 220, L = 36, B = 24, T = 8, R = 10;
  const times = Object.values(t.since);
  const last = t.theory.curve[t.theory.curve.length - 1][0];
  const xmax = Math.max(last, times.length ? Math.max(...times) * 1.1 : 0, t.interval);
  const x = (v) => L + (W - L - R) * v / xmax, y = (f) => H - B - (H - B - T) * f;
  chart.appendChild(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  chart.appendChild(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (const f of [0, 0.5, 1]) { const lab = svg("text", { x: 4, y: y(f) + 4 }); lab.textContent = f * 100 + "%"; chart.appendChild(lab); }
  for (let i = 0; i <= 4; i++) { const v = xmax * i / 4, lab = svg("text", { x: x(v) - 8, y: H - 6 }); lab.textContent = v.toFixed(1) + "s"; chart.appendChild(lab); }
  chart.appendChild(svg("polyline", { class: "theory", points: t.theory.curve.map(([s_, f]) => x(s_) + "," + y(f)).join(" ") }));
  const pts = [[0, 0]];
  times.sort((a, b) => a - b).forEach((v, i) => { pts.push([v, i / t.nodes]); pts.push([v, (i + 1) / t.nodes]); });
  if (times.length) pts.push([Math.max(...times), times.length / t.nodes]);
  chart.appendChild(svg("polyline", { class: "seen", points: pts.map(([a, f]) => x(a) + "," + y(f)).join(" ") }));
  $("chart-key").textContent = "solid: nodes holding it, by their first-seen instants · dashed: Serf's model for N=" +
    t.nodes + ", fanout " + t.fanout + ", " + t.interval + " s rounds" +
    (t.theory.push_pull_mean_s != null ? " · push-pull table: all nodes in " + t.theory.push_pull_mean_s + " s on average" : "");
  for (const [name, since] of Object.entries(t.since)) holders.appendChild(el("li", {}, name + " +" + since.toFixed(2) + " s"));
}

function renderTimeline(s) {
  const line = $("timeline"), list = $("events");
  line.replaceChildren(); list.replaceChildren();
  const span = Math.max(s.now, 10);
  for (const e of s.events) {
    const xx = 1000 * e.t / span;
    const mark = svg("rect", { x: xx - 1, y: e.kind === "converged" || e.kind === "diverged" ? 24 : 4, width: 3, height: 16,
                               fill: EVENT_COLOUR[e.kind] || "#b91c1c" });
    const tip = svg("title"); tip.textContent = e.t.toFixed(1) + " s " + e.kind + ": " + e.text; mark.appendChild(tip);
    line.appendChild(mark);
  }
  for (const e of s.events.slice(-14).reverse()) {
    const li = el("li", { class: "k-" + e.kind });
    li.appendChild(el("span", { class: "t" }, e.t.toFixed(1) + " s "));
    li.appendChild(document.createTextNode(e.kind + ": " + e.text));
    list.appendChild(li);
  }
  const known = new Set(s.events.filter((e) => e.kind === "register").map((e) => e.text.split(" ")[0]));
  $("known").replaceChildren(...[...known].map((a) => el("option", { value: a })));
}

function render() {
  if (!state) return;
  renderSummary(state); renderSelects(state); renderCluster(state); renderTrack(state); renderTimeline(state);
}

function say(text, error) { const m = $("message"); m.textContent = text; m.className = error ? "error" : ""; }

async function act(body) {
  say(body.op + "…");
  try {
    const resp = await fetch("/api/action", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const reply = await resp.json();
    if (!resp.ok) { say(body.op + " failed: " + reply.message, true); return false; }
    say(body.op + " done");
    return true;
  } catch (err) { say(body.op + " failed: " + err, true); return false; }
}

function pickedOrSelected() { return picked.size ? [...picked] : [$("node-select").value]; }

function wire() {
  $("register-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act({ op: "register", node: $("node-select").value, address: $("address").value, app_name: $("app-name").value });
  });
  $("deregister").addEventListener("click", () => act({ op: "deregister", node: $("node-select").value, address: $("address").value }));
  $("partition").addEventListener("click", () => {
    const groups = $("groups").value.split("|").map((g) => g.split(/[\s,]+/).filter(Boolean)).filter((g) => g.length);
    act({ op: "partition", groups });
  });
  $("partition-picked").addEventListener("click", async () => { if (await act({ op: "partition", groups: [[...picked]] })) { picked.clear(); render(); } });
  $("heal").addEventListener("click", () => act({ op: "heal" }));
  for (const b of document.querySelectorAll("button[data-op]")) {
    b.addEventListener("click", async () => { for (const node of pickedOrSelected()) await act({ op: b.dataset.op, node }); });
  }
  $("apply-loss").addEventListener("click", async () => {
    for (const node of pickedOrSelected()) await act({ op: "loss", node, percent: Number($("loss").value) });
  });
  $("cut-dst").addEventListener("change", () => { $("cut-dst").dataset.touched = "1"; });
  $("one-way").addEventListener("click", () => act({ op: "one_way", src: $("cut-src").value, dst: $("cut-dst").value }));
  $("track-form").addEventListener("submit", (ev) => { ev.preventDefault(); act({ op: "track", address: $("track-address").value }); });
}

function connect() {
  const source = new EventSource("/api/events");
  source.onopen = () => $("link").classList.add("live");
  source.onmessage = (ev) => { state = JSON.parse(ev.data); render(); };
  source.onerror = () => $("link").classList.remove("live");  // EventSource reconnects by itself
}

wire();
connect();
