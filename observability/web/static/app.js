// DOLPHIN web console page: renders the snapshot and the pushed batches from /ws; reads an entry on click.
// Every value from the bus is inserted as text (textContent), never as HTML, and written readably by fmt():
// a nested value as "key value" pairs, never "[object Object]".
"use strict";

const S = {
  sizes: {}, safety: null, posture: null, meta: null, metaSource: "none", services: [], trader: null,
  selMap: null, selKey: null, skew: 0, ws: null, retry: 500,
};
const SAFETY = "DOLPHIN_SAFETY";
const $ = (id) => document.getElementById(id);

// Any JSON value as text for a person (the same rules as observability/views.py readable()).
function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number") return isFinite(v) ? String(Number(v.toPrecision(digits))) : "—";
  const nested = (x) => { const t = fmt(x, digits); return (x && typeof x === "object" && Object.keys(x).length) ? `(${t})` : t; };
  if (Array.isArray(v)) return v.map(nested).join(", ") || "none";
  if (typeof v === "object") return Object.keys(v).sort().map(k => `${k} ${nested(v[k])}`).join(", ") || "none";
  return String(v);
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = typeof text === "object" ? fmt(text) : String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}
function num(v, digits) { return (typeof v === "number" && isFinite(v)) ? v.toFixed(digits) : "—"; }
function money(v) { return (typeof v === "number" && isFinite(v)) ? v.toLocaleString("en-US", {maximumFractionDigits: 2}) : "—"; }
function nowS() { return Date.now() / 1000 + S.skew; }
function age(ts) {
  if (typeof ts !== "number") return "age ?";
  const a = Math.max(0, nowS() - ts);
  return a < 120 ? `${a.toFixed(0)}s` : a < 7200 ? `${(a / 60).toFixed(0)}m` : `${(a / 3600).toFixed(1)}h`;
}
function hbClass(ts) {
  if (typeof ts !== "number") return "bad";
  const a = nowS() - ts;
  return a <= 15 ? "ok" : a <= 60 ? "warn" : "bad";
}

// ── panels ───────────────────────────────────────────────────────────────────────────────────
function renderBus(bus) {
  const b = $("bus");
  b.textContent = bus.connected ? `bus: connected (${bus.detail})` : `bus: disconnected (${bus.detail}) - reconnecting by itself`;
  b.className = bus.connected ? "ok" : "bad";
}

function renderHealth() {
  const m = S.meta, rm = $("rm-meta"), sens = $("sensors");
  sens.replaceChildren();
  if (!m) { rm.textContent = "waiting for DOLPHIN_META_HEALTH"; rm.className = "dim"; }
  else {
    const cls = m.status === "GREEN" ? "ok" : (m.status === "DEGRADED" ? "warn" : "bad");
    rm.textContent = `rm_meta ${num(m.rm_meta, 3)} [${fmt(m.status)}]  ${age(m.timestamp)} ago` +
      (S.metaSource === "file" ? "  (from run_logs/meta_health.json)" : "");
    rm.className = cls;
    for (const [k, v] of Object.entries(m.sensors || {}).sort()) {
      sens.appendChild(row([k, typeof v === "number" ? num(v, 3) : fmt(v)], typeof v === "number" ? (v >= 0.9 ? "ok" : v >= 0.5 ? "warn" : "bad") : ""));
    }
  }
  // one row per service: the server joins supervisord's group:name to the heartbeat name (observability/views.py)
  const body = $("services").tBodies[0];
  body.replaceChildren();
  for (const s of S.services || []) {
    const tr = row([]);
    const name = el("td", s.name);
    if (s.program) name.title = s.program;
    tr.appendChild(name);
    const st = s.supervisor;
    tr.appendChild(el("td", st ?? "not watched by MHS", st === "RUNNING" ? "ok" : st == null ? "dim" : "bad"));
    const hbTs = s.heartbeat_ts;
    tr.appendChild(el("td", typeof hbTs === "number" ? `${age(hbTs)} ago` : "no heartbeat", typeof hbTs === "number" ? hbClass(hbTs) : "bad"));
    const h = s.hold;
    tr.appendChild(el("td", h ? `HOLD ${fmt(h.reason ?? "no reason")}` + (typeof h.until === "number" ? ` (until ${new Date(h.until * 1000).toISOString().slice(11, 16)} UTC)` : "") : "",
                      h ? "warn" : ""));
    tr.dataset.service = s.name;
    body.appendChild(tr);
  }
}

function renderSafety() {
  const s = S.safety, p = $("posture"), t = $("safety-sensors");
  t.replaceChildren();
  if (!s) { p.textContent = "waiting for DOLPHIN_SAFETY (no posture published yet)"; p.className = "dim"; return; }
  const view = S.posture || {}, pending = view.pending || {}, awaiting = view.awaiting || [];
  if (view.warming_up) {        // the watchdog's placeholder (HIBERNATE, Rm 0) is not a computed posture
    p.textContent = `warming up: no posture computed yet, waiting for the first readings of ` +
      `${awaiting.length ? awaiting.join(", ") : "the survival-stack sensors"}  (${age(s.ts)} ago)`;
    p.className = "warn";
  } else {
    p.textContent = `posture ${fmt(s.posture)}  Rm ${num(s.Rm, 3)}  ${age(s.ts)} ago` +
      (awaiting.length ? `  (no reading yet: ${awaiting.join(", ")})` : "");
    p.className = {APEX: "ok", STALKER: "warn", TURTLE: "warn", HIBERNATE: "bad"}[s.posture] || "warn";
  }
  p.dataset.warmingUp = view.warming_up ? "1" : "0";
  for (const [k, v] of Object.entries(s.sensors || {}).sort()) {
    t.appendChild(k in pending ? row([k, "no reading yet"], "dim") : row([k, fmt(v)]));
  }
}

function renderTrader() {
  const tr = S.trader || {}, st = tr.state, pos = tr.position;
  const p = $("position");
  if (!st) { p.textContent = "waiting for DOLPHIN_STATE_BLUE"; p.className = "dim"; }
  else if (!pos) { p.textContent = `flat  capital ${money(st.capital)}  posture ${fmt(st.posture ?? "?")}`; p.className = ""; }
  else {
    const side = pos.direction === -1 ? "SHORT" : pos.direction === 1 ? "LONG" : fmt(pos.direction);
    p.textContent = `${side} ${fmt(pos.symbol)} @ ${fmt(pos.entry_price, 10)}  notional ${money(pos.notional)}  held ${age(pos.entry_ts)}` +
      `  capital ${money(st.capital)}`;
    p.className = "warn";
  }
  const pnl = tr.pnl_today, pe = $("pnl");
  if (pnl) {
    pe.textContent = `${tr.today}: pnl ${money(pnl.pnl)}  trades ${fmt(pnl.trades)}  capital ${money(pnl.capital)}`;
    pe.className = pnl.pnl >= 0 ? "ok" : "bad";
  } else { pe.textContent = `no PnL for ${tr.today || "today"} yet`; pe.className = "dim"; }
  const body = $("trades").tBodies[0];
  body.replaceChildren();
  for (const t of tr.trades_today || []) {
    const d = new Date(t.ts * 1000).toISOString().slice(11, 19);
    const r = row([d, fmt(t.symbol), fmt(t.side), fmt(t.entry_price, 10), fmt(t.price, 10)]);
    r.appendChild(el("td", money(t.net), t.net >= 0 ? "ok" : "bad"));
    r.appendChild(el("td", fmt(t.reason)));
    body.appendChild(r);
  }
  renderEquity(tr.equity || []);
}

function renderEquity(points) {
  const svg = $("equity"), label = $("equity-label");
  svg.replaceChildren();
  if (points.length < 2) { label.textContent = points.length ? `capital ${money(points[0][1])}` : "no equity points yet"; return; }
  const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const W = 600, H = 160, sx = (x1 - x0) || 1, sy = (y1 - y0) || 1;
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.map(p => `${((p[0] - x0) / sx * W).toFixed(1)},${(H - 4 - (p[1] - y0) / sy * (H - 8)).toFixed(1)}`).join(" "));
  svg.appendChild(line);
  label.textContent = `equity: ${points.length} points, ${money(y0)} – ${money(y1)}, last ${money(ys[ys.length - 1])}`;
}

function renderMaps() {
  const ul = $("maps");
  ul.replaceChildren();
  for (const [name, size] of Object.entries(S.sizes)) {
    const li = el("li", name, name === S.selMap ? "sel" : "");
    li.dataset.map = name;
    li.appendChild(el("span", size, "size"));
    li.onclick = () => openMap(name);
    ul.appendChild(li);
  }
  if (S.selMap) $("keys-title").textContent = `${S.selMap}: ${S.sizes[S.selMap] ?? 0} keys`;
}

async function openMap(name, keepKey) {
  S.selMap = name;
  if (!keepKey) S.selKey = null;
  renderMaps();
  const r = await fetch(`/api/map/${encodeURIComponent(name)}`);
  const ul = $("keys");
  ul.replaceChildren();
  if (!r.ok) { $("keys-title").textContent = await r.text(); return; }
  const d = await r.json();
  $("keys-title").textContent = `${name}: ${d.size} keys`;
  S.keysSeen = new Set(d.keys);
  for (const k of d.keys) {
    const li = el("li", k, k === S.selKey ? "sel" : "");
    li.dataset.key = k;
    li.onclick = () => openEntry(name, k);
    ul.appendChild(li);
  }
}

async function openEntry(map, key) {
  S.selMap = map; S.selKey = key;
  for (const li of $("keys").children) li.className = li.dataset.key === key ? "sel" : "";
  const r = await fetch(`/api/entry?map=${encodeURIComponent(map)}&key=${encodeURIComponent(key)}`);
  const title = $("entry-title"), pre = $("entry");
  if (!r.ok) { title.textContent = `${map}[${key}]`; pre.textContent = await r.text(); pre.className = "bad"; return; }
  const d = await r.json();
  title.textContent = `${map}[${key}]  (${d.source})`;
  title.className = d.error ? "bad" : "";
  pre.textContent = (d.error ? `ERROR ${d.error}\n\n` : "") + d.pretty;
  pre.className = d.error ? "bad" : "";
}

// ── messages ─────────────────────────────────────────────────────────────────────────────────
function onEntry(e) {
  if (e.map === SAFETY && e.key === "latest") S.safety = e.removed ? null : (e.value || S.safety);
  if (e.map === S.selMap && e.key === S.selKey && !e.removed) {
    if (e.value) {
      $("entry").textContent = JSON.stringify(e.value, Object.keys(flatKeys(e.value)).sort(), 2);
      $("entry").className = ""; $("entry-title").textContent = `${e.map}[${e.key}]  (listener)`;
      $("entry-title").className = "";
    } else openEntry(e.map, e.key);
  }
  if (e.map === S.selMap && (e.removed || e.cleared || !S.keysSeen?.has(e.key))) scheduleKeys();
}
function flatKeys(o, acc = {}) {       // every key at any depth, so JSON.stringify sorts them all
  if (o && typeof o === "object") for (const [k, v] of Object.entries(o)) { acc[k] = 1; flatKeys(v, acc); }
  return acc;
}
let keysTimer = null;
function scheduleKeys() {
  if (keysTimer) return;
  keysTimer = setTimeout(() => { keysTimer = null; if (S.selMap) openMap(S.selMap, true); }, 500);
}

function onMessage(msg) {
  if (typeof msg.now === "number") S.skew = msg.now - Date.now() / 1000;
  if (msg.bus) renderBus(msg.bus);
  if (msg.sizes) S.sizes = msg.sizes;
  if (msg.counts) $("counts").textContent = `updates ${msg.counts.updates}  bad payloads ${msg.counts.bad}`;
  if (msg.t === "snapshot") {
    S.safety = msg.safety; S.meta = msg.meta; S.metaSource = msg.meta_source;
    S.services = msg.services || []; S.posture = msg.posture; S.trader = msg.trader;
  }
  for (const e of msg.entries || []) onEntry(e);
  if ("meta" in msg) { S.meta = msg.meta; S.metaSource = msg.meta_source; }
  if ("services" in msg) S.services = msg.services || [];
  if ("posture" in msg) S.posture = msg.posture;
  if (msg.trader) S.trader = msg.trader;
  renderHealth(); renderSafety(); renderTrader(); renderMaps();
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  S.ws = ws;
  ws.onopen = () => { $("page-link").textContent = "page: live"; $("page-link").className = "ok"; S.retry = 500; };
  ws.onmessage = (ev) => { try { onMessage(JSON.parse(ev.data)); } catch (err) { console.error("bad message", err); } };
  ws.onclose = () => {
    $("page-link").textContent = "page: console unreachable, reconnecting"; $("page-link").className = "bad";
    setTimeout(connect, S.retry); S.retry = Math.min(S.retry * 2, 5000);
  };
}

setInterval(() => { renderHealth(); renderSafety(); renderTrader(); }, 1000);   // ages only; no request
connect();
