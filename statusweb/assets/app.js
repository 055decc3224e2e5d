// ephemera status view: renders the state the server sends as server-sent
// events on /status/events; the page is never reloaded.
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);
  const seen = { job: new Map(), runner: new Map() };
  let updates = 0;
  let first = true;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }
  function dur(seconds) {
    if (seconds == null || isNaN(seconds)) return "";
    seconds = Math.max(0, seconds);
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " m " + Math.round(seconds % 60) + " s";
    return Math.floor(seconds / 3600) + " h " + Math.round((seconds % 3600) / 60) + " m";
  }
  const t = (s) => (s ? new Date(s) : null);
  const zero = (s) => !s || s.startsWith("0001-");
  const badge = (state) => el("span", { class: "state state-" + state }, state);
  const num = (v) => el("td", { class: "num" }, v);

  function replace(tbody, rows) { tbody.replaceChildren(...rows); }

  function renderPools(st) {
    replace($("#pools tbody"), st.pools.map((p) => el("tr", { "data-pool": p.pool },
      el("td", {}, p.pool), num(p.min_idle), num(p.max), num(p.idle), num(p.busy), num(p.provisioning),
      num(p.instances), num(p.waiting_jobs), num(p.waiting_jobs ? dur(p.oldest_waiting_seconds) : "—"))));
  }

  function renderRunners(st, now) {
    replace($("#runners tbody"), st.runners.map((r) => el("tr", { "data-runner": r.name, "data-state": r.state, "data-job": r.job || "" },
      el("td", {}, r.name), el("td", {}, r.pool), el("td", {}, badge(r.state)),
      num(dur((now - t(r.created_at)) / 1000)), el("td", {}, r.job || ""), el("td", {}, r.repo || ""))));
  }

  function renderJobs(st, now) {
    replace($("#jobs tbody"), st.jobs.map((j) => {
      const q = t(j.queued_at), s = zero(j.started_at) ? null : t(j.started_at), c = zero(j.completed_at) ? null : t(j.completed_at);
      const wait = s ? (s - q) / 1000 : (now - q) / 1000;
      const run = s ? ((c || now) - s) / 1000 : null;
      return el("tr", { "data-job": j.id, "data-state": j.state },
        el("td", {}, j.id), el("td", {}, j.pool), el("td", {}, j.repo), el("td", {}, badge(j.state)),
        el("td", {}, j.runner || ""), el("td", {}, q.toLocaleTimeString()),
        num(dur(wait) + (s ? "" : " …")), num(run == null ? "" : dur(run) + (c ? "" : " …")));
    }));
  }

  function renderChart(st, now) {
    const chart = $("#chart");
    const W = 600, H = 160, pad = 24;
    const items = [];
    const maxS = Math.max(1, ...st.waits.map((w) => w.seconds));
    items.push(svg("line", { x1: pad, y1: H - pad, x2: W - 4, y2: H - pad, stroke: "#c9ced8" }));
    items.push(svg("text", { x: 2, y: 12, "font-size": 10, fill: "#6b7385" }));
    items[1].textContent = dur(maxS);
    items.push(svg("text", { x: pad, y: H - 6, "font-size": 10, fill: "#6b7385" }));
    items[2].textContent = "−60 min";
    items.push(svg("text", { x: W - 30, y: H - 6, "font-size": 10, fill: "#6b7385" }));
    items[3].textContent = "now";
    for (const w of st.waits) {
      const age = (now - t(w.started_at)) / 1000;
      const x = pad + (W - pad - 8) * (1 - Math.min(3600, age) / 3600);
      const h = Math.max(2, (H - 2 * pad) * (w.seconds / maxS));
      items.push(svg("rect", { x: x.toFixed(1), y: (H - pad - h).toFixed(1), width: 4, height: h.toFixed(1), fill: "#2f6fdf", "data-seconds": w.seconds.toFixed(2) }));
    }
    chart.replaceChildren(...items);
    const ws = st.waits.map((w) => w.seconds).sort((a, b) => a - b);
    $("#chart-note").textContent = ws.length
      ? ws.length + " jobs started; median wait " + dur(ws[Math.floor(ws.length / 2)]) + ", longest " + dur(ws[ws.length - 1])
      : "no job started in the last hour";
  }

  // The activity log lists every state each job and runner was seen in.
  function log(kind, id, state, extra, job) {
    const li = el("li", { "data-kind": kind, "data-id": id, "data-state": state, "data-job": job || "" },
      new Date().toLocaleTimeString() + "  " + kind + " " + id + (extra ? " (" + extra + ")" : "") + " → ", badge(state));
    const ol = $("#log");
    ol.prepend(li);
    while (ol.children.length > 500) ol.lastChild.remove();
  }
  function diff(st) {
    const jobs = new Set(), runners = new Set();
    for (const j of st.jobs) {
      jobs.add(String(j.id));
      if (seen.job.get(String(j.id)) !== j.state) { seen.job.set(String(j.id), j.state); if (!first || j.state !== "done") log("job", j.id, j.state, j.repo); }
    }
    for (const r of st.runners) {
      runners.add(r.name);
      if (seen.runner.get(r.name) !== r.state) { seen.runner.set(r.name, r.state); log("runner", r.name, r.state, r.job ? "job " + r.job : "", r.job); }
    }
    for (const name of [...seen.runner.keys()]) {
      if (!runners.has(name)) { seen.runner.delete(name); log("runner", name, "gone"); }
    }
    first = false;
  }

  function render(st) {
    const now = new Date(st.at);
    renderPools(st);
    renderRunners(st, now);
    renderJobs(st, now);
    renderChart(st, now);
    diff(st);
    updates++;
    document.body.dataset.updates = updates;
    $("#updated").textContent = "updated " + now.toLocaleTimeString();
  }

  function connect() {
    const conn = $("#conn");
    const es = new EventSource("/status/events");
    es.addEventListener("state", (e) => {
      conn.textContent = "live";
      conn.dataset.state = "live";
      render(JSON.parse(e.data));
    });
    es.onerror = () => { conn.textContent = "reconnecting…"; conn.dataset.state = "down"; };
  }
  connect();
})();
