"use strict";
// Bandwidth Meter dashboard: the public API only, every value from it set as text (never HTML).
const COLORS = ["#0969da", "#bc4c00", "#1a7f37", "#8250df", "#cf222e", "#9a6700"];
const RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "365d": 365 * 86400};
const state = {services: [], blocked: {}, key: localStorage.getItem("bwm-key") || ""};
const $ = (id) => document.getElementById(id);

function human(bytes) {
  if (bytes === null || bytes === undefined) return "not collected";
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let value = bytes, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return unit === 0 ? `${value} B` : `${value.toFixed(2)} ${units[unit]}`;
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

async function api(path) {
  const headers = state.key ? {"x-api-key": state.key} : {};
  const response = await fetch(path, {headers});
  if (response.status === 404) return null;
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
  return body;
}

function showError(error) {
  $("error").textContent = error ? `Could not load: ${error.message}` : "";
  $("error").hidden = !error;
}

function level(percent) {
  if (percent === null) return "ok";
  return percent >= 100 ? "over" : percent >= 90 ? "high" : percent >= 80 ? "warn" : "ok";
}

function renderOverview() {
  const filter = $("filter").value.toLowerCase();
  const sort = $("sort").value;
  const rows = state.services.filter((s) => s.service.toLowerCase().includes(filter));
  rows.sort((a, b) => sort === "name" ? a.service.localeCompare(b.service)
    : sort === "percent" ? (b.percent ?? -1) - (a.percent ?? -1) : b.usage.total - a.usage.total);
  const body = $("services").tBodies[0];
  body.replaceChildren();
  for (const s of rows) {
    const tr = el("tr");
    const name = el("td");
    name.append(el("a", s.service, {href: `#service=${encodeURIComponent(s.service)}&range=24h`}));
    if (state.blocked[s.service]) {
      name.append(" ", el("span", "blocked", {class: "badge", title: `answered 429 until ${state.blocked[s.service].period_end}`}));
    }
    const percent = s.percent === null ? null : s.percent;
    const bar = el("div", null, {class: "bar", role: "img",
      "aria-label": percent === null ? "no quota" : `${percent}% of quota`});
    const fill = el("span", null, {class: level(percent)});
    fill.style.width = `${Math.min(100, percent ?? 0)}%`;
    bar.append(fill);
    const used = el("td");
    used.append(bar, el("small", percent === null ? "no quota" : `${percent}%`));
    tr.append(name, el("td", human(s.usage.total)), el("td", s.quota ? human(s.quota.limit_bytes) : "—"), used);
    body.append(tr);
  }
}

function svgChart(container, series, options) {
  // series: [{label, color, points: [{t, v (number|null)}]}]; nulls break the line (gaps).
  const width = 800, height = 220, pad = 36;
  const all = series.flatMap((s) => s.points);
  const times = all.map((p) => p.t);
  const values = all.map((p) => p.v).filter((v) => v !== null).concat(options.extra || []);
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
  const top = Math.max(1, ...values);
  const x = (t) => pad + (width - 2 * pad) * (t - t0) / (t1 - t0);
  const y = (v) => height - pad - (height - 2 * pad) * v / top;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", options.label);
  series.forEach((s) => {
    let d = "", open = false, segments = 0;
    for (const p of s.points) {
      if (p.v === null) { open = false; continue; }
      d += `${open ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)} `;
      if (!open) segments += 1;
      open = true;
    }
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d.trim());
    path.setAttribute("stroke", s.color);
    path.setAttribute("data-series", s.label);
    path.setAttribute("data-points", String(s.points.length));
    path.setAttribute("data-segments", String(segments));
    svg.append(path);
  });
  if (options.limit) {
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", pad); line.setAttribute("x2", width - pad);
    line.setAttribute("y1", y(options.limit)); line.setAttribute("y2", y(options.limit));
    line.setAttribute("stroke", "#cf222e"); line.setAttribute("stroke-dasharray", "6 4");
    line.setAttribute("class", "quota-line");
    svg.append(line);
  }
  for (const m of options.markers || []) {
    const c = document.createElementNS(ns, "circle");
    c.setAttribute("cx", x(m.t)); c.setAttribute("cy", pad / 2); c.setAttribute("r", 5);
    c.setAttribute("fill", "#cf222e"); c.setAttribute("class", "alert-marker");
    const title = document.createElementNS(ns, "title");
    title.textContent = m.label;
    c.append(title);
    svg.append(c);
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 4); label.setAttribute("y", 14); label.setAttribute("font-size", 12);
  label.textContent = human(top);
  svg.append(label);
  svg.addEventListener("mousemove", (event) => {
    const box = svg.getBoundingClientRect();
    const t = t0 + (t1 - t0) * ((event.clientX - box.left) / box.width * width - pad) / (width - 2 * pad);
    const parts = series.map((s) => {
      const p = s.points.reduce((best, q) => Math.abs(q.t - t) < Math.abs(best.t - t) ? q : best, s.points[0]);
      return `${s.label}: ${human(p.v)}`;
    });
    $("readout").textContent = `${new Date(t * 1000).toISOString().slice(0, 16)}Z — ${parts.join(", ")}`;
  });
  container.replaceChildren(svg);
}

function seriesFrom(chart) {
  return chart.series.map((s, i) => ({
    label: `${s.direction}${s.route ? " " + s.route : ""}`, color: COLORS[i % COLORS.length],
    points: s.points.map((p) => ({t: Date.parse(p.time) / 1000, v: p.bytes}))}));
}

async function renderService(name, range) {
  $("overview").hidden = true;
  $("service").hidden = false;
  $("service-title").textContent = name;
  document.querySelectorAll("[data-range]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.range === range)));
  const end = Math.floor(Date.now() / 1000);
  const start = end - RANGES[range];
  const split = $("split").checked ? "&split=route" : "";
  const encoded = encodeURIComponent(name);
  const [chart, summary, alerts, stats, enforcement] = await Promise.all([
    api(`/v1/services/${encoded}/bandwidth?start=${start}&end=${end}&step=auto${split}`),
    api(`/v1/services/${encoded}`),
    api(`/v1/services/${encoded}/alerts`),
    api(`/v1/services/${encoded}/stats?start=${start}&end=${end}`).catch(() => null),
    api("/v1/enforcement").catch(() => null)]);
  const block = enforcement ? enforcement.blocked.find((b) => b.service === name) : null;
  $("blocked").hidden = !block;
  $("blocked").textContent = block ? `Blocked at the gateway: requests are answered 429 until ${block.period_end} `
    + `(${human(block.usage_bytes)} used, ${block.reject_at}% of ${human(block.limit_bytes)} rejects)`
    + (block.at_gateway ? "" : "; not applied at the gateway yet") : "";
  if (!chart) { showError(new Error(`unknown service ${name}`)); return; }
  $("step").textContent = chart.step;
  const markers = (alerts ? alerts.alerts : []).filter((a) => a.sent_at)
    .map((a) => ({t: Date.parse(a.crossed_at) / 1000, label: `${a.threshold}% ${a.status}`}))
    .filter((m) => m.t >= start);
  svgChart($("chart"), seriesFrom(chart), {label: `bandwidth of ${name}`, markers});
  const periodStart = Date.parse(summary.period.start) / 1000;
  const cumulative = await api(`/v1/services/${encoded}/bandwidth?start=${periodStart}&end=${end}&step=auto&direction=total`);
  let running = 0;
  const points = cumulative.series[0].points.map((p) => {
    if (p.bytes === null) return {t: Date.parse(p.time) / 1000, v: null};
    running += p.bytes;
    return {t: Date.parse(p.time) / 1000, v: running};
  });
  const limit = summary.quota ? summary.quota.limit_bytes : null;
  svgChart($("cumulative"), [{label: "total", color: COLORS[0], points}],
    {label: `cumulative usage of ${name}`, limit, extra: limit ? [limit] : []});
  const list = $("alerts");
  list.replaceChildren();
  for (const a of alerts ? alerts.alerts : []) {
    list.append(el("li", `${a.forecast ? "forecast" : a.threshold + "%"} — ${a.status} — ${a.sent_at || a.crossed_at}`));
  }
  if (!list.children.length) list.append(el("li", "none this period"));
  const panel = $("stats");
  panel.hidden = !stats;
  if (stats) {
    const dl = panel.querySelector("dl");
    dl.replaceChildren();
    const facts = [["Successful requests", stats.requests_count.success], ["Errors", stats.requests_count.error],
      ["Latency p95", stats.latency_ms.p95 === null ? "—" : `${stats.latency_ms.p95} ms`],
      ["Latency p99", stats.latency_ms.p99 === null ? "—" : `${stats.latency_ms.p99} ms`]];
    for (const [k, v] of facts) dl.append(el("dt", k), el("dd", v));
  }
}

async function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  try {
    showError(null);
    if (params.get("service")) {
      await renderService(params.get("service"), RANGES[params.get("range")] ? params.get("range") : "24h");
    } else {
      $("service").hidden = true;
      $("overview").hidden = false;
      const [page, enforcement] = await Promise.all([api("/v1/services?limit=1000"),
        api("/v1/enforcement").catch(() => null)]);
      state.services = page ? page.services : [];
      state.blocked = Object.fromEntries((enforcement ? enforcement.blocked : []).map((b) => [b.service, b]));
      renderOverview();
    }
  } catch (error) {
    showError(error);
  }
  document.body.dataset.ready = "true";
}

$("api-key").value = state.key;
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  localStorage.setItem("bwm-key", state.key);
  route();
});
$("filter").addEventListener("input", renderOverview);
$("sort").addEventListener("change", renderOverview);
$("split").addEventListener("change", route);
document.querySelectorAll("[data-range]").forEach((b) => b.addEventListener("click", () => {
  const params = new URLSearchParams(location.hash.slice(1));
  params.set("range", b.dataset.range);
  location.hash = params.toString();
}));
window.addEventListener("hashchange", route);
setInterval(route, 60000);
route();
