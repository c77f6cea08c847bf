// srv console: plain JavaScript on the SRS-shaped HTTP API (/api/v1/...), no build step.
// Every value from the server goes into the page as text (textContent), never as HTML: stream
// names and client URLs are chosen by whoever connects. The page polls the API once a second
// and redraws the visible page only; the browser sends the API's Basic credentials itself.
"use strict";

const API = "/api/v1";
const POLL_MS = 1000;
const state = {
  page: "overview",
  summary: null,        // last /summaries data
  prevBytes: null,      // {t, send, recv} for the server-wide kbps
  kbps: {send: 0, recv: 0},
  config: null,         // last /config data (the -t result)
  configAt: 0,
  streams: [],
  clientStart: 0,
  clientCount: 100,
  clientTotal: 0,
  playerKey: "",
};

// ---- helpers ---------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function kv(rows) {
  return rows.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v)));
}

function bytes(n) {
  n = Number(n) || 0;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(seconds) {
  let s = Math.max(0, Math.floor(Number(seconds) || 0));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

function kbps(v) {
  v = Number(v) || 0;
  return v >= 1000 ? `${(v / 1000).toFixed(2)} Mbps` : `${v} kbps`;
}

async function api(path, options) {
  const r = await fetch(API + path, Object.assign({credentials: "same-origin", cache: "no-store"}, options));
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  const body = await r.json();
  if (body.code !== 0) throw new Error(`${path}: code ${body.code}`);
  return body;
}

function setStatus(text, bad) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = bad ? "bad" : "muted";
}

// ---- overview --------------------------------------------------------------------------------

async function refreshSummary() {
  const data = (await api("/summaries")).data;
  const now = Date.now() / 1000;
  const send = data.system.srs_send_bytes, recv = data.system.srs_recv_bytes;
  if (state.prevBytes && now > state.prevBytes.t) {
    const dt = now - state.prevBytes.t;
    state.kbps = {send: Math.max(0, Math.round((send - state.prevBytes.send) * 8 / 1000 / dt)),
                  recv: Math.max(0, Math.round((recv - state.prevBytes.recv) * 8 / 1000 / dt))};
  }
  state.prevBytes = {t: now, send, recv};
  state.summary = data;
}

async function refreshConfig() {
  if (state.config && Date.now() - state.configAt < 10000) return;
  state.config = (await api("/config")).data;
  state.configAt = Date.now();
}

function drawOverview() {
  const d = state.summary;
  if (!d) return;
  const streams = d.workers.reduce((n, w) => n + (w.streams || 0), 0);
  const cards = [
    ["version", d.self.version], ["uptime", duration(d.self.srs_uptime)],
    ["workers", d.workers.length], ["clients", d.system.conn_srs],
    ["streams", state.streams.filter((s) => s.publish && s.publish.active).length || streams],
    ["in", kbps(state.kbps.recv)], ["out", kbps(state.kbps.send)],
    ["CPU", `${d.self.cpu_percent}%`], ["memory", bytes(d.self.mem_kbyte * 1024)],
    ["received", bytes(d.system.srs_recv_bytes)], ["sent", bytes(d.system.srs_send_bytes)],
    ["worker restarts", d.worker_restarts],
  ];
  document.getElementById("ov-cards").replaceChildren(
    ...cards.map(([k, v]) => el("div", {class: "card"}, el("div", {class: "v"}, v), el("div", {class: "k"}, k))));
  fill(document.querySelector("#ov-workers tbody"), d.workers.map((w) => el("tr", {},
    el("td", {}, w.slot), el("td", {}, w.pid), el("td", {class: w.ready ? "ok" : "bad"}, w.ready ? "yes" : "no"),
    el("td", {}, duration(w.uptime)), el("td", {}, `${w.cpu_percent}%`), el("td", {}, bytes(w.mem_kbyte * 1024)),
    el("td", {}, w.clients), el("td", {}, w.streams))));
  const c = state.config;
  const last = d.last_reload;
  const test = !c ? "-" : c.ok
    ? el("span", {class: "ok"}, `ok${c.warnings.length ? ` (${c.warnings.length} warnings)` : ""}`)
    : el("span", {class: "bad"}, c.errors.join("\n"));
  const lastText = !last ? "none since start" : el("span", {class: last.ok ? "ok" : "bad"},
    `${new Date(last.at * 1000).toLocaleString()}: ${last.ok ? "ok" : "failed"}${last.message ? ` - ${last.message}` : ""}`);
  const warnings = c && c.warnings.length ? el("pre", {class: "muted"}, c.warnings.join("\n")) : "";
  fill(document.querySelector("#ov-config tbody"), kv([
    ["config file", d.config.file], ["srs -t", test], ["warnings", warnings],
    ["last reload", lastText], ["reloads", `${d.reloads.ok} ok, ${d.reloads.failed} failed`],
    ["listen", Object.entries(d.listen).filter(([, v]) => v.length).map(([k, v]) => `${k} ${v.join(" ")}`).join("; ")],
    ["master pid", d.self.pid],
  ]));
}

// ---- streams ---------------------------------------------------------------------------------

async function refreshStreams() {
  state.streams = (await api("/streams")).streams;
}

function videoText(v, s) {
  if (!v) return "-";
  const parts = [v.codec, v.profile, v.level && `L${v.level}`].filter(Boolean).join(" ");
  const size = v.width ? `${v.width}x${v.height}` : "";
  const fps = s.fps ? `${s.fps} fps` : "";
  return [parts, size, fps].filter(Boolean).join(", ");
}

function audioText(a) {
  if (!a) return "-";
  return [a.codec, a.profile, a.sample_rate && `${a.sample_rate} Hz`, a.channel && `${a.channel} ch`]
    .filter(Boolean).join(", ");
}

function forwardsTable(forwards) {
  if (!forwards || !forwards.length) return null;
  return el("table", {class: "fwd"}, ...forwards.map((f) => el("tr", {},
    el("td", {}, "→ ", f.destination),
    el("td", {}, el("span", {class: `badge ${f.state}`}, f.state)),
    el("td", {}, `${bytes(f.bytes_sent)}, ${f.reconnects} reconnects, ${f.messages_dropped} dropped`),
    el("td", {class: f.last_error ? "bad" : "muted"}, f.last_error || ""))));
}

function playersText(s) {
  const by = s.players_by_type || {};
  const parts = Object.entries(by).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`);
  return `${s.players}${parts.length ? ` (${parts.join(", ")})` : ""}`;
}

function recordingText(s) {
  const parts = [];
  const h = s.hls;
  if (h && h.m3u8) {
    parts.push(`HLS ${h.format}: ${h.segments} segments, last ${h.last_duration} s, seq ${h.seq === null ? "-" : h.seq}`
      + (h.errors ? `, ${h.errors} errors` : ""));
  }
  const d = s.dvr;
  if (d && d.state && d.state !== "off") {
    parts.push(`DVR ${d.state}${d.file ? `: ${d.file}` : ""}${d.error ? ` (${d.error})` : ""}`);
  }
  return parts.join("; ") || "-";
}

function drawStreams() {
  const nowMs = Date.now();
  document.getElementById("st-empty").hidden = state.streams.length > 0;
  fill(document.querySelector("#st-table tbody"), state.streams.map((s) => {
    const pub = s.publish || {};
    const uptime = s.live_ms ? duration((nowMs - s.live_ms) / 1000) : "";
    const gop = s.gop && s.gop.frames ? `${s.gop.frames} frames, ${s.gop.seconds.toFixed(2)} s` : "-";
    const preview = el("button", {type: "button", onclick: () => { location.hash = `#player/${s.id}`; }}, "preview");
    return el("tr", {"data-stream": `${s.app}/${s.name}`},
      el("td", {}, el("strong", {}, `${s.app}/${s.name}`), el("div", {class: "muted"}, s.vhost_name),
        forwardsTable(s.forwards)),
      el("td", {class: "video"}, videoText(s.video, s)),
      el("td", {class: "audio"}, audioText(s.audio)),
      el("td", {}, `${kbps(s.kbps.recv_30s)} / ${kbps(s.kbps.send_30s)}`),
      el("td", {}, gop),
      el("td", {}, pub.active ? `${pub.ip || "?"} (${pub.cid}), ${uptime}` : el("span", {class: "muted"}, "none")),
      el("td", {}, playersText(s)),
      el("td", {}, recordingText(s)),
      el("td", {}, preview));
  }));
}

// ---- clients ---------------------------------------------------------------------------------

let clientRows = [];

async function refreshClients() {
  const body = await api(`/clients?start=${state.clientStart}&count=${state.clientCount}`);
  clientRows = body.clients;
  state.clientTotal = body.total !== undefined ? body.total : clientRows.length;
  if (state.clientStart && state.clientStart >= state.clientTotal) {  // the last page emptied
    state.clientStart = Math.max(0, state.clientTotal - state.clientCount);
  }
}

async function kick(c) {
  if (!window.confirm(`Kick ${c.type} client ${c.id} (${c.ip}) of ${c.url || "no stream"}?`)) return;
  try {
    await api(`/clients/${encodeURIComponent(c.id)}`, {method: "DELETE"});
    setStatus(`kicked ${c.id}`);
  } catch (e) {
    setStatus(`kick ${c.id} failed: ${e.message}`, true);
  }
  tick();
}

function drawClients() {
  const from = state.clientTotal ? state.clientStart + 1 : 0;
  const to = state.clientStart + clientRows.length;
  document.getElementById("cl-range").textContent = `${from}–${to} of ${state.clientTotal}`;
  document.getElementById("cl-prev").disabled = state.clientStart === 0;
  document.getElementById("cl-next").disabled = to >= state.clientTotal;
  fill(document.querySelector("#cl-table tbody"), clientRows.map((c) => el("tr", {"data-client": c.id},
    el("td", {}, c.id), el("td", {}, c.type), el("td", {}, c.ip), el("td", {}, c.url || "-"),
    el("td", {}, duration(c.alive)), el("td", {}, bytes(c.recv_bytes)), el("td", {}, bytes(c.send_bytes)),
    el("td", {}, el("button", {type: "button", class: "kick", onclick: () => kick(c)}, "kick")))));
}

// ---- player ----------------------------------------------------------------------------------

function urlsFor(s) {
  const d = state.summary;
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  const port = (list) => (list && list.length ? String(list[0]).split(":").pop() : "");
  const q = s.vhost_name && s.vhost_name !== "__defaultVhost__" ? `?vhost=${encodeURIComponent(s.vhost_name)}` : "";
  const rtmp = port(d.listen.rtmp), http = port(d.listen.http);
  return {
    server: rtmp ? `rtmp://${host}${rtmp === "1935" ? "" : `:${rtmp}`}/${s.app}${q}` : "",
    key: s.name,
    flv: http && s.flv ? `http://${host}:${http}${s.flv}` : "",
    hls: http && s.hls && s.hls.m3u8 ? `http://${host}:${http}/${s.hls.m3u8.replace(/^\//, "")}` : "",
    page: http ? `http://${host}:${http}/players/` : "",
  };
}

function drawPlayer() {
  const select = document.getElementById("pl-stream");
  const streams = state.streams.filter((s) => s.publish && s.publish.active);
  const keys = streams.map((s) => s.id);
  if (select.options.length !== keys.length || [...select.options].some((o, i) => o.value !== keys[i])) {
    select.replaceChildren(...streams.map((s) => el("option", {value: s.id}, `${s.app}/${s.name}`)));
  }
  if (state.playerKey && keys.includes(state.playerKey)) select.value = state.playerKey;
  const s = streams.find((x) => x.id === select.value);
  const note = document.getElementById("pl-note");
  const frame = document.getElementById("pl-frame");
  if (!s || !state.summary) {
    fill(document.querySelector("#pl-urls tbody"), []);
    note.textContent = "No stream is being published.";
    return;
  }
  const u = urlsFor(s);
  fill(document.querySelector("#pl-urls tbody"), kv([
    ["OBS server", el("code", {}, u.server || "-")], ["OBS stream key", el("code", {}, u.key)],
    ["HTTP-FLV", u.flv ? el("code", {}, u.flv) : "off for this stream"], ["HLS", u.hls ? el("code", {}, u.hls) : "off for this stream"],
  ]));
  const kindSelect = document.getElementById("pl-kind");
  if (!kindSelect.dataset.chosen && !u.flv && u.hls) kindSelect.value = "hls";  // what the stream has
  const kind = kindSelect.value;
  const media = kind === "hls" ? u.hls : u.flv;
  note.textContent = !u.page ? "No http_server listens: HTTP-FLV and HLS need one."
    : !media ? `${kind === "hls" ? "HLS (hls { enabled on; })" : "HTTP-FLV (http_remux { enabled on; })"} is off for this stream.`
      : "The player shows its latency (behind the live edge) under the picture.";
  const src = u.page && media ? `${u.page}?url=${encodeURIComponent(media)}&type=${kind}` : "about:blank";
  if (frame.dataset.src !== src) {
    frame.dataset.src = src;
    frame.src = src;
  }
}

// ---- the loop --------------------------------------------------------------------------------

const PAGES = {
  overview: {load: [refreshSummary, refreshStreams, refreshConfig], draw: drawOverview},
  streams: {load: [refreshStreams], draw: drawStreams},
  clients: {load: [refreshClients], draw: drawClients},
  player: {load: [refreshSummary, refreshStreams], draw: drawPlayer},
};

let timer = null;
let busy = false;

async function tick() {
  clearTimeout(timer);
  if (!busy) {
    busy = true;
    const page = PAGES[state.page];
    try {
      await Promise.all(page.load.map((f) => f()));
      page.draw();
      setStatus(`updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      setStatus(`API unavailable: ${e.message}`, true);
    } finally {
      busy = false;
    }
  }
  timer = setTimeout(tick, POLL_MS);
}

function route() {
  const [page, arg] = (location.hash.slice(1) || "overview").split("/");
  state.page = PAGES[page] ? page : "overview";
  if (state.page === "player" && arg) state.playerKey = decodeURIComponent(arg);
  for (const section of document.querySelectorAll(".page")) {
    section.classList.toggle("active", section.id === `page-${state.page}`);
  }
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.page === state.page);
  }
  tick();
}

document.getElementById("cl-prev").addEventListener("click", () => {
  state.clientStart = Math.max(0, state.clientStart - state.clientCount);
  tick();
});
document.getElementById("cl-next").addEventListener("click", () => {
  state.clientStart += state.clientCount;
  tick();
});
document.getElementById("cl-size").addEventListener("change", (e) => {
  state.clientCount = Number(e.target.value);
  state.clientStart = 0;
  tick();
});
document.getElementById("pl-stream").addEventListener("change", (e) => {
  state.playerKey = e.target.value;
  location.hash = `#player/${state.playerKey}`;
});
document.getElementById("pl-kind").addEventListener("change", (e) => {
  e.target.dataset.chosen = "1";
  drawPlayer();
});
window.addEventListener("hashchange", route);
window.srvConsole = {state, tick};
route();
