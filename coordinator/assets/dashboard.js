// The mesh dashboard: renders the coordinator's view document, and renders
// it again each time the coordinator's stream (server-sent events) sends a
// new one. Text only (textContent), so nothing an agent reports can become
// markup. Read-only.
"use strict";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function bytes(n) {
  if (!n) return "0";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function us(n) {
  if (n === null || n === undefined) return "-";
  return n >= 1000 ? (n / 1000).toFixed(1) + " ms" : n + " us";
}

function cls(word) {
  return String(word).replace(/\s+/g, "-");
}

function fill(table, rows) {
  const body = document.querySelector(table + " tbody");
  body.replaceChildren(...rows);
  if (!rows.length) {
    const cols = document.querySelectorAll(table + " thead th").length;
    body.append(el("tr", {}, el("td", { colspan: cols, class: "muted" }, "none")));
  }
}

function gpuCell(host) {
  if (!host.gpus.length) return el("span", { class: "muted" }, "no GPU");
  const box = el("div");
  for (const g of host.gpus) {
    const pct = (x) => (g.total_bytes ? Math.min(100, (100 * x) / g.total_bytes) : 0).toFixed(1) + "%";
    const bar = el("span", { class: "bar", title: "used " + bytes(g.used_bytes) + ", planned " + bytes(g.planned_bytes) },
      el("span", { class: "used", style: "width:" + pct(g.used_bytes) }),
      el("span", { class: "planned", style: "width:" + pct(g.planned_bytes) }));
    const extra = [];
    if (g.utilization_percent !== null) extra.push(g.utilization_percent + "%");
    if (g.temperature_celsius !== null) extra.push(g.temperature_celsius + " C");
    box.append(el("div", { class: "gpu", "data-gpu": host.name + "/" + g.index },
      bar, "GPU " + g.index + " " + g.name + ": " + bytes(g.planned_bytes) + " / " + bytes(g.used_bytes) +
      " / " + bytes(g.free_bytes) + (extra.length ? " (" + extra.join(", ") + ")" : "") +
      (g.source === "declared" ? " declared" : "")));
  }
  return box;
}

// When this page first showed each host in each state (ms since the
// epoch): how long a change took to reach the page can be read off it.
const firstSeen = {};
window.meshFirstSeen = firstSeen;

function render(v) {
  document.getElementById("mesh").textContent = v.mesh;
  for (const h of v.hosts) {
    const key = h.name + "/" + h.state;
    if (!(key in firstSeen)) firstSeen[key] = Date.now();
  }
  fill("#hosts", v.hosts.map((h) => {
    const lost = h.state === "suspect" || h.state === "down";
    return el("tr", { "data-host": h.name, "data-state": h.state, class: lost ? "lost" : "" },
      el("td", {}, h.name, el("div", { class: "muted" }, h.address)),
      el("td", { class: "state " + h.state }, h.state + (h.connected ? "" : " (not connected)")),
      el("td", {}, (h.heartbeat_age_ds / 10).toFixed(1) + " s ago"),
      el("td", {}, h.load1.toFixed(2)),
      el("td", {}, bytes(h.memory_available_bytes) + " of " + bytes(h.memory_total_bytes)),
      el("td", {}, bytes(h.disk_available_bytes)),
      el("td", {}, gpuCell(h)));
  }));
  const services = [];
  for (const g of v.groups) {
    for (const s of g.services) {
      services.push(el("tr", { "data-group": g.name, "data-service": s.name, "data-health": s.health, "data-phase": s.phase },
        el("td", {}, g.name),
        el("td", {}, s.name),
        el("td", {}, s.host || el("span", { class: "muted" }, "not placed")),
        el("td", { class: cls(s.phase) }, s.phase),
        el("td", {}, s.state),
        el("td", { class: cls(s.health) }, s.health),
        el("td", {}, s.restarts),
        el("td", {}, s.cpu_percent === null ? "-" : s.cpu_percent.toFixed(1) + "%"),
        el("td", {}, s.memory_bytes === null ? "-" : bytes(s.memory_bytes)),
        el("td", {}, s.gpu_memory_bytes ? bytes(s.gpu_memory_bytes) : "-"),
        el("td", { class: "muted" }, s.message)));
    }
  }
  fill("#services", services);
  fill("#failover", v.failover.map((f) => el("tr", { "data-group": f.group, "data-primary": f.primary, "data-epoch": f.epoch },
    el("td", {}, f.group),
    el("td", {}, f.volume),
    el("td", {}, f.primary),
    el("td", {}, f.standby || el("span", { class: "muted" }, "none")),
    el("td", {}, f.epoch),
    el("td", { class: cls(f.replication) }, f.replication),
    el("td", {}, f.standby_disk),
    el("td", {}, bytes(f.lag_bytes)),
    el("td", {}, f.lease_remaining_ms === null ? "-" : (f.lease_remaining_ms / 1000).toFixed(1) + " s"),
    el("td", {}, f.last_failover, f.problem ? el("div", { class: "down" }, f.problem) : null))));
  const bridges = [];
  for (const b of v.bridges) {
    const ends = b.endpoints.length ? b.endpoints : [null];
    for (const e of ends) {
      bridges.push(el("tr", { "data-bridge": b.service, "data-from": e ? e.node : "" },
        el("td", {}, b.service),
        el("td", { class: b.healthy ? "healthy" : "down" }, (b.host || "nowhere") + (b.epoch ? " (epoch " + b.epoch + ")" : "")),
        el("td", {}, b.port),
        el("td", {}, e ? e.node : el("span", { class: "muted" }, "no traffic yet")),
        el("td", {}, e ? e.msgs_out + " / " + e.msgs_in : ""),
        el("td", {}, e ? bytes(e.bytes_out) + " / " + bytes(e.bytes_in) : ""),
        el("td", { class: e && e.errors ? "down" : "" }, e ? e.errors : ""),
        el("td", {}, e ? e.in_flight : ""),
        el("td", {}, e ? us(e.rtt_mean_us) + " / " + us(e.rtt_max_us) : ""),
        el("td", {}, e ? us(e.tunnel_rtt_us) : "")));
    }
  }
  fill("#bridges", bridges);
  const feed = document.getElementById("events");
  feed.replaceChildren(...v.events.map((e) => el("li", { "data-seq": e.seq, "data-kind": e.kind },
    el("time", {}, new Date(e.at_unix_ms).toLocaleTimeString()),
    el("span", { class: "kind" }, e.kind),
    e.message)));
  const updated = document.getElementById("updated");
  updated.textContent = "updated " + new Date().toLocaleTimeString();
  updated.dataset.renders = String(Number(updated.dataset.renders || 0) + 1);
}

function live(state) {
  const badge = document.getElementById("live");
  badge.dataset.live = state;
  badge.textContent = state === "live" ? "live" : state === "lost" ? "coordinator unreachable, retrying" : state;
}

function connect() {
  const source = new EventSource("api/stream");
  source.addEventListener("view", (m) => {
    live("live");
    render(JSON.parse(m.data));
  });
  // EventSource reconnects by itself; the badge says so meanwhile.
  source.onerror = () => live("lost");
}

connect();
