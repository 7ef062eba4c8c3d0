// binance-executor dashboard: reads /api/v1/events (server-sent events over fetch, so the
// bearer token travels in a header, never in a URL) and draws the snapshot. No data is ever
// inserted as HTML: every value goes through textContent.
"use strict";

const STALE_MS = 5000;      // no update for this long: the bot is unreachable
const RETRY_MS = 2000;
let token = "";
let lastMessage = 0;
let unreachableSince = null;
let controller = null;

function $(id) { return document.getElementById(id); }

function readToken() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("bx-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);  // keep it out of the address bar
  }
  return sessionStorage.getItem("bx-token") || "";
}

function setText(id, text) { const el = $(id); if (el) el.textContent = text; }

function signClass(el, value) {
  el.classList.remove("pos", "neg");
  if (typeof value === "string" && value !== "0") el.classList.add(value.startsWith("-") ? "neg" : "pos");
}

function fmtTime(ms) { return ms ? new Date(ms).toISOString().slice(11, 19) : "-"; }

function fillRows(tbodyParent, rows) {
  const tbody = $(tbodyParent).querySelector("tbody");
  tbody.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c === null || c === undefined ? "-" : String(c);
      tr.appendChild(td);
    }
    return tr;
  }));
}

function setConnection(ok, text) {
  const el = $("conn-state");
  el.textContent = text;
  el.className = "badge " + (ok ? "ok" : "bad");
  $("unreachable").classList.toggle("hidden", ok);
  $("main").classList.toggle("stale", !ok);
  if (ok) unreachableSince = null;
  else {
    if (!unreachableSince) unreachableSince = new Date();
    setText("unreachable-since", "no answer since " + unreachableSince.toISOString().slice(11, 19) + " UTC");
  }
}

function renderPnl(pnl) {
  let quote = "";
  for (const period of ["run", "day", "all"]) {
    const p = pnl[period];
    const quotes = Object.keys(p.totals);
    quote = quotes.join(", ") || quote;
    const pick = (name) => quotes.length ? quotes.map((q) => p.totals[q][name]).join(" / ") : "0";
    setText(`pnl-${period}-fills`, String(p.fills));
    for (const name of ["realized", "unrealized", "fees", "total"]) {
      const el = $(`pnl-${period}-${name}`);
      el.textContent = pick(name);
      if (name !== "fees") signClass(el, el.textContent);
    }
  }
  setText("pnl-quote", quote ? `(${quote})` : "");
}

function renderChart(series, quote) {
  const svg = $("equity-chart");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  if (!series.length) return;
  const W = 800, H = 220, L = 70, B = 20, T = 10;
  const xs = series.map((p) => p[0]);
  const ys = series.map((p) => parseFloat(p[1]));  // drawing only; figures stay exact strings
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }
  const x0 = xs[0], x1 = Math.max(xs[xs.length - 1], x0 + 1);
  const X = (t) => L + (t - x0) / (x1 - x0) * (W - L - 5);
  const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", series.map((p, i) => `${X(xs[i]).toFixed(1)},${Y(ys[i]).toFixed(1)}`).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#1565c0");
  line.setAttribute("stroke-width", "2");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  const label = (x, y, text, anchor) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "11");
    t.setAttribute("fill", "#555"); t.setAttribute("text-anchor", anchor || "start");
    t.textContent = text; svg.appendChild(t);
  };
  const axis = document.createElementNS(ns, "path");
  axis.setAttribute("d", `M${L},${T} V${H - B} H${W}`);
  axis.setAttribute("stroke", "#bbb"); axis.setAttribute("fill", "none");
  svg.appendChild(axis);
  svg.appendChild(line);
  label(L - 4, T + 10, y1.toFixed(2), "end");
  label(L - 4, H - B, y0.toFixed(2), "end");
  label(L, H - 4, fmtTime(x0));
  label(W - 4, H - 4, fmtTime(x1), "end");
  label(W - 4, T + 12, quote, "end");
}

function render(s) {
  lastMessage = Date.now();
  setConnection(true, "live");
  const st = s.status;
  setText("run", `run ${st.run_id} · ${st.profile}`);
  setText("venue", st.venue);
  setText("uptime", `up ${Math.round(st.uptime_s)} s`);
  $("paused-badge").classList.toggle("hidden", !st.paused);
  $("kill-badge").classList.toggle("hidden", !st.kill_switch.engaged);
  renderPnl(s.pnl);
  setText("equity-now", `${s.equity.value} ${s.equity.quote}` +
    (s.equity.unpriced.length ? ` (without ${s.equity.unpriced.join(", ")})` : ""));
  renderChart(s.equity_series, s.equity.quote);
  fillRows("balances", s.balances.map((b) => [b.asset, b.free, b.locked, b.total]));
  fillRows("positions", s.positions.map((p) => [p.asset, p.position, p.mark, p.value]));
  setText("orders-count", `(${s.orders.length})`);
  fillRows("orders", s.orders.map((o) => [o.client_order_id, o.symbol, o.side, o.type, o.price, o.quantity,
                                            o.executed_qty, o.status]));
  fillRows("fills", s.fills.map((f) => [fmtTime(f.time_ms), f.symbol, f.side, f.price, f.qty,
                                         `${f.commission} ${f.commission_asset || ""}`, f.trade_id]));
  fillRows("streams", st.streams.map((x) => [x.name, x.state, x.age_s === null ? "-" : `${x.age_s} s ago`,
                                              x.reconnects]));
  fillRows("jobs", st.jobs.map((j) => [j.name, j.runs, j.errors]));
}

function showLogin(message) {
  $("login").classList.remove("hidden");
  setText("login-error", message || "");
}

async function listen() {
  if (!token) { showLogin(""); return; }
  controller = new AbortController();
  try {
    const resp = await fetch("/api/v1/events", {headers: {Authorization: "Bearer " + token},
                                                signal: controller.signal, cache: "no-store"});
    if (resp.status === 401 || resp.status === 429) {
      setConnection(false, resp.status === 401 ? "token refused" : "too many failures");
      sessionStorage.removeItem("bx-token");
      token = "";
      showLogin(resp.status === 401 ? "The bot refused this token." : "Too many failed attempts; wait a minute.");
      return;
    }
    if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
    $("login").classList.add("hidden");
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += decoder.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) render(JSON.parse(data));
      }
    }
  } catch (err) {
    // Unreachable (or the watchdog aborted a silent stream): shown below, retried.
  }
  setConnection(false, "unreachable");
  setTimeout(listen, RETRY_MS);
}

async function act(button) {
  if (!window.confirm(button.dataset.confirm)) return;
  setText("action-result", button.dataset.action + "…");
  try {
    const resp = await fetch("/api/v1/" + button.dataset.action, {
      method: "POST", headers: {Authorization: "Bearer " + token, "Content-Type": "application/json"},
      body: "{}", cache: "no-store"});
    if (!resp.ok) { setText("action-result", `${button.dataset.action}: HTTP ${resp.status}`); return; }
    const r = await resp.json();
    setText("action-result", `${r.action}: ${r.detail}`);
  } catch (err) {
    setText("action-result", `${button.dataset.action}: the bot is unreachable`);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  token = readToken();
  for (const b of document.querySelectorAll("button[data-action]")) b.addEventListener("click", () => act(b));
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token-input").value.trim();
    if (token) { sessionStorage.setItem("bx-token", token); $("token-input").value = ""; listen(); }
  });
  setInterval(() => {
    if (token && lastMessage && Date.now() - lastMessage > STALE_MS) {
      setConnection(false, "unreachable");
      if (controller) controller.abort();  // a silent stream: drop it, listen() retries
      lastMessage = 0;
    }
  }, 1000);
  listen();
});
