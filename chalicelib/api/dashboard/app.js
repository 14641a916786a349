"use strict";
// Bandwidth Meter dashboard. This file fetches and shapes data; uPlot (inlined before it) draws.
// Every request is a relative URL, so the page works under any path prefix (API Gateway's stage,
// a custom domain's base path); every value from the API is set as text, never parsed as HTML.
const DIRECTION_COLORS = {ingress: "#0969da", egress: "#bc4c00"};
// Scraped from the gateways' Prometheus, or pushed (POST /v1/events, imports): split=source.
const SOURCE_COLORS = {scraped: "#0969da", pushed: "#8250df"};
const SPLITS = ["route", "source"];
const ROUTE_COLORS = ["#0969da", "#bc4c00", "#1a7f37", "#8250df", "#cf222e", "#9a6700", "#1b7c83", "#6e7781"];
const RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "365d": 365 * 86400};
const STEPS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400};
const UNITS = {B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12};
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
const state = {services: [], blocked: {}, key: localStorage.getItem("bwm-key") || "", admin: null, csv: null,
  consumerPages: {sort: null, cursors: [null], index: 0}};
const charts = {};  // uPlot instances by container id (also handy from the console)
const $ = (id) => document.getElementById(id);

function human(bytes) {
  if (bytes === null || bytes === undefined) return "not collected";
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let value = bytes, unit = 0;
  while (Math.abs(value) >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${+value.toFixed(2)} ${units[unit]}`;
}

// The legend's value at the hovered point; "—" while nothing is hovered.
const atCursor = (u, v, s, idx) => (idx === null || idx === undefined ? "—" : human(v));
const utc = (t) => `${new Date(t * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC`;

function duration(seconds) {
  if (seconds < 120) return `${seconds} s`;
  return seconds < 7200 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 3600)} h`;
}

// Epoch seconds from the API's RFC 3339 times, or from a URL's epoch seconds or RFC 3339.
const epoch = (value) => /^\d+(\.\d+)?$/.test(value) ? Math.floor(Number(value)) : Math.floor(Date.parse(value) / 1000);

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

async function api(path, {method = "GET", body, as = "json"} = {}) {
  const headers = state.key ? {"x-api-key": state.key} : {};
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  if (response.status === 404) return null;
  if (!response.ok) {
    const error = await response.json().catch(() => ({}));
    throw new Error((error.error && error.error.message) || `HTTP ${response.status}`);
  }
  return as === "text" ? response.text() : response.json();
}

function showError(error) {
  $("error").textContent = error ? `Could not load: ${error.message}` : "";
  $("error").hidden = !error;
}

// The view's parameters: the hash, or the query string when there is no hash. The alert emails
// link to dashboard#service=S&start=EPOCH&end=EPOCH; the page itself navigates by the hash.
function viewParams() {
  return new URLSearchParams(location.hash.slice(1) || location.search.slice(1));
}

function timeRange(params) {
  const end = params.get("end") ? epoch(params.get("end")) : Math.floor(Date.now() / 1000);
  const range = RANGES[params.get("range")] ? params.get("range") : "24h";
  const start = params.get("start") ? epoch(params.get("start")) : end - RANGES[range];
  if (!(start < end)) throw new Error("the URL's start and end are not a time range");
  return {start, end, range: params.get("start") ? null : range};
}

// -- charts: data arrays and a small options object; uPlot draws axes, legend and gaps ----------
function draw(id, series, data, yLabel) {
  if (charts[id]) charts[id].destroy();
  const container = $(id);
  container.replaceChildren();
  charts[id] = new uPlot({
    width: container.clientWidth, height: 240,
    series: [{label: "Time", value: (u, t) => (t === null ? "—" : utc(t))}, ...series],
    // Bytes start at zero; a range with nothing collected still gets a y axis.
    scales: {y: {range: (u, min, max) => uPlot.rangeNum(0, max > 0 ? max : 1, 0.1, true)}},
    axes: [{label: `Time (${ZONE})`}, {label: yLabel, size: 70, values: (u, ticks) => ticks.map(human)}],
  }, data, container);
}

window.addEventListener("resize", () => {
  for (const [id, chart] of Object.entries(charts)) chart.setSize({width: $(id).clientWidth, height: 240});
});

const timesOf = (points) => points.map((p) => epoch(p.time));
const bytesOf = (points) => points.map((p) => p.bytes);

// A point only partly collected (collection began in it, or it is still filling) holds what was
// collected so far: drawn dashed and lighter, as its own series, so a low last hour or day does not
// read as a drop. The solid line leaves it out; the dashed one joins it to its neighbours.
const partialOf = (points) => points.map((p, i) => (p.bytes !== null && (p.partial
  || (points[i - 1] && points[i - 1].partial) || (points[i + 1] && points[i + 1].partial)) ? p.bytes : null));
const wholeOf = (points) => points.map((p) => (p.partial ? null : p.bytes));

function drawBandwidth(chart) {
  drawLines("chart", chart, (s) => s.direction, (s) => DIRECTION_COLORS[s.direction], `bytes per ${chart.step}`);
}

// One line per series (a direction, or a consumer's service), each with its partial points dashed.
function drawLines(id, chart, labelOf, colorOf, yLabel) {
  const series = [], data = [timesOf(chart.series[0].points)];
  for (const [i, s] of chart.series.entries()) {
    series.push({label: labelOf(s), stroke: colorOf(s, i), width: 1.5, value: atCursor});
    data.push(wholeOf(s.points));
  }
  for (const [i, s] of chart.series.entries()) {
    if (!s.points.some((p) => p.partial)) continue;
    series.push({label: `${labelOf(s)} (partly collected)`, stroke: colorOf(s, i) + "99",
      width: 1.5, dash: [6, 4], points: {show: true, size: 6}, value: atCursor});
    data.push(partialOf(s.points));
  }
  draw(id, series, data, yLabel);
}

// Per route, stacked: each route's band sits on the ones below it; null (not collected) stays a gap.
function drawStackedRoutes(chart) {
  const raw = chart.series.map((s) => bytesOf(s.points));
  let below = raw[0].map(() => 0);
  const sums = raw.map((row) => (below = row.map((v, i) => (v === null || below[i] === null ? null : below[i] + v))));
  // Topmost band first, each filled down to the axis, so the lower bands are drawn over it.
  const order = raw.map((_, i) => i).reverse();
  const series = order.map((i) => ({
    label: chart.series[i].route, stroke: ROUTE_COLORS[i % ROUTE_COLORS.length],
    fill: ROUTE_COLORS[i % ROUTE_COLORS.length] + "cc", width: 1,
    value: (u, v, s, idx) => atCursor(u, idx === null ? null : raw[i][idx], s, idx)}));
  draw("chart", series, [timesOf(chart.series[0].points), ...order.map((i) => sums[i])],
    `bytes per ${chart.step}, all routes`);
}

// The quota period so far, summed. The step is the finest that keeps the elapsed part under
// about 3,000 points (1m up to two days, at most 15m for a month), so the line follows the
// traffic closely. The line ends at the period's counted total (what the quota is checked against),
// which also holds the bytes of buckets that are not final or not wholly collected yet; a running
// total only rises, so the line spans gaps. It starts at 0 where the service was first seen in
// the period (nothing was counted for it before), so a new service has a line from its first
// minute, not a lone point at "now". The x axis spans the whole period.
function cumulativeStep(elapsed) {
  return Object.keys(STEPS).find((step) => elapsed / STEPS[step] <= 3000) || "1d";
}

async function drawCumulative(name, summary) {
  const periodStart = epoch(summary.period.start), periodEnd = epoch(summary.period.end);
  const now = Math.min(Math.max(Math.floor(Date.now() / 1000), periodStart + 60), periodEnd);
  const quota = summary.quota;
  const direction = quota ? quota.direction : "total";
  const chart = await api(`v1/services/${encodeURIComponent(name)}/bandwidth?start=${periodStart}&end=${now}`
    + `&step=${cumulativeStep(now - periodStart)}&direction=${direction}`);
  const size = STEPS[chart.step];
  let running = 0;
  const times = [periodStart], usage = [null];  // the axis starts with the period, the line with the data
  const firstSeen = summary.first_seen ? epoch(summary.first_seen) : null;
  let begun = firstSeen === null || firstSeen < periodStart;
  const begin = (until) => {  // the line's 0 at first sight, before the first total at or after it
    if (begun || firstSeen > until) return;
    begun = true;
    if (firstSeen === times[times.length - 1]) usage[usage.length - 1] = 0;
    else { times.push(firstSeen); usage.push(0); }
  };
  for (const p of chart.series[0].points) {
    const end = epoch(p.time) + size;  // a bucket's bytes are all in by its end
    if (end >= now) break;
    if (p.bytes !== null) begin(end);
    times.push(end);
    usage.push(p.bytes === null ? null : (running += p.bytes));
  }
  begin(now);
  times.push(now);
  usage.push(summary.usage[direction]);
  if (periodEnd > now) { times.push(periodEnd); usage.push(null); }
  const series = [{label: `used (${direction})`, stroke: "#0969da", width: 2, fill: "#0969da22",
    spanGaps: true, value: atCursor}];
  const data = [times, usage];
  if (quota) {
    series.push({label: "quota", stroke: "#cf222e", width: 2, dash: [8, 4], value: () => human(quota.limit_bytes)});
    data.push(times.map(() => quota.limit_bytes));
    for (const threshold of quota.thresholds.filter((t) => t < 100)) {
      const bytes = Math.round(quota.limit_bytes * threshold / 100);
      series.push({label: `${threshold} %`, stroke: "#9a6700", width: 1, dash: [2, 4], value: () => human(bytes)});
      data.push(times.map(() => bytes));
    }
  }
  $("period-kind").textContent = summary.period.kind;
  draw("cumulative", series, data, `bytes this ${summary.period.kind}`);
}

// -- the service page ---------------------------------------------------------------------------
// What is due and what the gateway applies differ until the collector's next run (each minute)
// reconciles them; the banner says which, so it never reads "not blocked" while requests get 429.
// A block names a service or, when its kind is "consumer", a consumer (refused on every service).
const blockKind = (block) => (block.kind === "consumer" ? "consumer" : "service");
const blockName = (block) => (blockKind(block) === "consumer" ? block.consumer : block.service);
const blockKey = (kind, name) => `${kind}:${name}`;

function blockText(block) {
  const why = block.usage_bytes === undefined ? ""
    : ` (${human(block.usage_bytes)} used, ${block.reject_at}% of ${human(block.limit_bytes)} rejects)`;
  switch (block.state) {
    case "lift pending":
      return "Lift pending: no longer over its quota, but the gateway answers 429 until the collector's next run "
        + "(within a minute) lifts the block.";
    case "block pending":
      return `Block pending: the collector's next run (within a minute) blocks it at the gateway, answering 429 `
        + `until ${block.period_end}${why}.`;
    case "missing at gateway":
      return `Block due, but the gateway has no ${blockKind(block)} of this name${why}.`;
    case "apply with decK":
      return `Block due until ${block.period_end}${why}: apply it at the gateway with decK (bwmeter enforcement --deck).`;
    default:
      return `Blocked at the gateway: requests are answered 429 until ${block.period_end}${why}`;
  }
}

const BADGES = {"lift pending": "lift pending", "block pending": "block pending", "missing at gateway": "block due",
  "apply with decK": "block due"};

async function renderService(name, params) {
  $("overview").hidden = true;
  $("service").hidden = false;
  $("service-title").textContent = name;
  const {start, end, range} = timeRange(params);
  document.querySelectorAll("[data-range]")
    .forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.range === range)));
  $("range").textContent = `${utc(start)} to ${utc(end)}`;
  // The lines are in the hash like the range: ingress and egress, per route, or by source.
  const split = SPLITS.includes(params.get("split")) ? params.get("split") : "";
  $("split").value = split;
  const encoded = encodeURIComponent(name);
  const path = `v1/services/${encoded}/bandwidth?start=${start}&end=${end}&step=auto`
    + (split ? `&direction=total&split=${split}` : "");
  const [chart, summary, alerts, stats, enforcement] = await Promise.all([
    api(path), api(`v1/services/${encoded}`), api(`v1/services/${encoded}/alerts`),
    api(`v1/services/${encoded}/stats?start=${start}&end=${end}`).catch(() => null),
    api("v1/enforcement").catch(() => null)]);
  if (!chart || !summary) throw new Error(`unknown service ${name}`);
  setBlocks(enforcement);
  showBlock("blocked", state.blocked[blockKey("service", name)]);
  state.csv = {path: `${path}&format=csv`, file: `${name}-${start}-${end}.csv`};
  $("step").textContent = chart.step;
  if (!chart.series.length) {
    $("chart").replaceChildren(el("p", "No route had traffic in this range."));
  } else if (split === "route") {
    drawStackedRoutes(chart);
  } else if (split === "source") {
    drawLines("chart", chart, (s) => s.source, (s) => SOURCE_COLORS[s.source], `bytes per ${chart.step}, by source`);
  } else {
    drawBandwidth(chart);
  }
  await drawCumulative(name, summary);
  renderStats(stats);
  renderAlerts("alerts", alerts ? alerts.alerts : []);
}

function showBlock(id, block) {
  $(id).hidden = !block;
  $(id).textContent = block ? blockText(block) : "";
}

// Blocks due or being lifted, by kind and name: a consumer and a service may share a name.
function setBlocks(enforcement) {
  const all = enforcement ? [...enforcement.blocked, ...(enforcement.lift_pending || [])] : [];
  state.blocked = Object.fromEntries(all.map((b) => [blockKey(blockKind(b), blockName(b)), b]));
}

function renderEnforcement() {
  const items = Object.values(state.blocked).map((b) => {
    const kind = blockKind(b), name = blockName(b);
    const li = el("li", null, {"data-kind": kind});
    li.append(`${kind === "consumer" ? "Consumer" : "Service"} `,
      el("a", name, {href: `#${kind}=${encodeURIComponent(name)}&range=24h`}), `: ${blockText(b)}`);
    return li;
  });
  $("enforcement").querySelector("ul").replaceChildren(...items);
  $("enforcement").hidden = !items.length;
}

function badge(cell, block) {
  if (block) cell.append(" ", el("span", BADGES[block.state] || "blocked", {class: "badge", title: blockText(block)}));
}

function usageBar(percent) {
  const bar = el("div", null, {class: "bar", role: "img",
    "aria-label": percent === null ? "no quota" : `${percent}% of quota`});
  const fill = el("span", null, {class: level(percent)});
  fill.style.width = `${Math.min(100, percent ?? 0)}%`;
  bar.append(fill);
  const used = el("td");
  used.append(bar, el("small", percent === null ? "no quota" : `${percent}%`));
  return used;
}

// -- consumers ------------------------------------------------------------------------------------
// The API sorts and pages (a page of 50, or the hash's limit=; next_cursor for the next); the
// cursors of the pages seen are kept so Previous goes back. A new sort starts at the first page.
const CONSUMERS_PER_PAGE = 50;

async function renderConsumers(params) {
  const sort = ["usage", "name", "percent"].includes(params.get("sort")) ? params.get("sort") : "usage";
  const asked = Number(params.get("limit"));
  const limit = Number.isInteger(asked) && asked >= 1 && asked <= 1000 ? asked : CONSUMERS_PER_PAGE;
  const pages = state.consumerPages;
  if (pages.sort !== sort || pages.limit !== limit) Object.assign(pages, {sort, limit, cursors: [null], index: 0});
  $("consumer-sort").value = sort;
  const cursor = pages.cursors[pages.index];
  const order = sort === "name" ? "asc" : "desc";
  const [page, enforcement] = await Promise.all([
    api(`v1/consumers?sort=${sort}&order=${order}&limit=${limit}`
      + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "")),
    api("v1/enforcement").catch(() => null)]);
  setBlocks(enforcement);
  renderEnforcement();
  const rows = page ? page.consumers : [];
  pages.cursors[pages.index + 1] = page ? page.next_cursor : null;
  const body = $("consumer-table").tBodies[0];
  body.replaceChildren();
  for (const c of rows) {
    const tr = el("tr");
    const name = el("td");
    name.append(el("a", c.consumer, {href: `#consumer=${encodeURIComponent(c.consumer)}&range=24h`}));
    badge(name, state.blocked[blockKey("consumer", c.consumer)]);
    tr.append(name, el("td", human(c.usage.total)), el("td", c.quota ? human(c.quota.limit_bytes) : "—"),
      usageBar(c.percent));
    body.append(tr);
  }
  if (!rows.length) {
    const tr = el("tr");
    tr.append(el("td", "No consumer has been seen yet.", {colspan: "4"}));
    body.append(tr);
  }
  const total = page && page.total_count !== null && page.total_count !== undefined ? ` of ${page.total_count}` : "";
  const first = pages.index * limit;
  $("consumers-page").textContent = rows.length ? `${first + 1}–${first + rows.length}${total}` : "";
  $("consumers-prev").disabled = pages.index === 0;
  $("consumers-next").disabled = !pages.cursors[pages.index + 1];
  $("ranked-at").textContent = page && page.ranked_at ? `ranked at ${utc(epoch(page.ranked_at))}` : "";
}

function turnConsumersPage(delta) {
  const pages = state.consumerPages;
  pages.index = Math.max(0, pages.index + delta);
  route();
}

async function renderConsumer(key, params) {
  $("consumer-title").textContent = key;
  const {start, end, range} = timeRange(params);
  document.querySelectorAll("[data-range]")
    .forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.range === range)));
  $("consumer-range").textContent = `${utc(start)} to ${utc(end)}`;
  const encoded = encodeURIComponent(key);
  const [chart, summary, alerts, enforcement] = await Promise.all([
    api(`v1/consumers/${encoded}/bandwidth?start=${start}&end=${end}&step=auto&direction=total&split=service`),
    api(`v1/consumers/${encoded}`), api(`v1/consumers/${encoded}/alerts`), api("v1/enforcement").catch(() => null)]);
  if (!chart || !summary) throw new Error(`unknown consumer ${key}`);
  setBlocks(enforcement);
  showBlock("consumer-blocked", state.blocked[blockKey("consumer", key)]);
  const quota = summary.quota;
  const direction = quota ? quota.direction : "total";
  const facts = [
    [`Usage this ${summary.period.kind}`, `${human(summary.usage[direction])}`
      + (direction === "total" ? "" : ` (${direction})`)],
    ["Quota", quota ? `${human(quota.limit_bytes)} per ${summary.period.kind}` : "none"],
    ["Used", summary.percent === null ? "no quota" : `${summary.percent}%`],
    ["Period", `${utc(epoch(summary.period.start))} to ${utc(epoch(summary.period.end))}`],
    ["Workspace", summary.workspace],
    ["Last active", utc(epoch(summary.last_active))]];
  $("consumer-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
  $("consumer-step").textContent = chart.step;
  if (!chart.series.length) {
    $("consumer-chart").replaceChildren(el("p", "No service had traffic of this consumer in this range."));
  } else {
    drawLines("consumer-chart", chart, (s) => s.service, (s, i) => ROUTE_COLORS[i % ROUTE_COLORS.length],
      `bytes per ${chart.step}`);
  }
  const services = $("consumer-services").tBodies[0];
  services.replaceChildren(...Object.entries(summary.services || {})
    .sort(([, a], [, b]) => (b.ingress + b.egress) - (a.ingress + a.egress)).map(([service, u]) => {
      const tr = el("tr"), name = el("td");
      // "(other services)" sums the services past an item's bound: not a service to link to.
      name.append(service.startsWith("(") ? service
        : el("a", service, {href: `#service=${encodeURIComponent(service)}&range=24h`}));
      tr.append(name, el("td", human(u.ingress)), el("td", human(u.egress)), el("td", human(u.ingress + u.egress)));
      return tr;
    }));
  renderAlerts("consumer-alerts", alerts ? alerts.alerts : []);
}

function renderStats(stats) {
  $("stats").hidden = !stats;
  if (!stats) return;
  const ms = (v) => (v === null ? "—" : `${v} ms`);
  const facts = [["Successful requests", stats.requests_count.success], ["Errors", stats.requests_count.error],
    ["Latency p95", ms(stats.latency_ms.p95)], ["Latency p99", ms(stats.latency_ms.p99)]];
  $("stats").querySelector("dl").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
}

function renderAlerts(id, alerts) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const a of alerts) {
    const tr = el("tr");
    tr.append(el("td", utc(epoch(a.crossed_at))), el("td", a.forecast ? "forecast" : `${a.threshold} %`),
      el("td", a.status), el("td", `${human(a.usage_bytes)} of ${human(a.limit_bytes)}`));
    body.append(tr);
  }
  if (!alerts.length) {
    const tr = el("tr");
    tr.append(el("td", "No alerts this period.", {colspan: "4"}));
    body.append(tr);
  }
}

async function downloadCsv() {
  try {
    const text = await api(state.csv.path, {as: "text"});
    const url = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
    el("a", null, {href: url, download: state.csv.file}).click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } catch (error) {
    showError(error);
  }
}

// -- the overview -------------------------------------------------------------------------------
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
    badge(name, state.blocked[blockKey("service", s.service)]);
    tr.append(name, el("td", human(s.usage.total)), el("td", s.quota ? human(s.quota.limit_bytes) : "—"),
      usageBar(s.percent));
    body.append(tr);
  }
  $("service-names").replaceChildren(...state.services.map((s) => el("option", null, {value: s.service})));
}

async function renderCollector() {
  const status = await api("v1/collector/status");
  $("collector").hidden = !status;
  if (!status) return;
  const late = status.lag_seconds === null || status.lag_seconds > 300;
  const recovered = status.last_error && status.last_success && status.last_error_at
    && epoch(status.last_success) > epoch(status.last_error_at);
  $("collector").className = `banner ${late || (status.last_error && !recovered) ? "warn" : "ok"}`;
  $("collector-summary").textContent = status.watermark === null ? "Collector: nothing collected yet."
    : `Collector: data until ${utc(epoch(status.watermark))}, ${duration(status.lag_seconds)} behind`
      + (status.running ? "; running now." : ".");
  $("collector-error").hidden = !status.last_error;
  $("collector-error").textContent = status.last_error
    ? `Last error${status.last_error_at ? ` at ${utc(epoch(status.last_error_at))}` : ""}: ${status.last_error}`
      + (recovered ? " (collected successfully since)" : "") : "";
  // One bad series is set aside and reported; the others are still collected.
  const quarantined = Array.isArray(status.quarantined) ? status.quarantined : [];
  const describe = (q) => (typeof q === "string" ? q : Object.entries(q)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" "));
  $("quarantine").hidden = !quarantined.length;
  $("quarantine").querySelector("summary").textContent = `${quarantined.length} series quarantined`;
  $("quarantine").querySelector("ul").replaceChildren(...quarantined.map((q) => el("li", describe(q))));
}

// The audit as bwmeter audit shows it: each changed field, old -> new.
function shownValue(key, value) {
  if (value === null || value === undefined) return "-";
  if (key === "limit_bytes" && typeof value === "number") return human(value);
  if (Array.isArray(value)) return value.join(",") || "none";
  return String(value);
}

function auditChange(entry) {
  const {old, new: now} = entry;
  const rules = (list) => (!list || !list.length ? "none" : `${list.length} rule${list.length === 1 ? "" : "s"}`);
  if (entry.key === "quota-rules") return `${rules(old)} -> ${rules(now)}`;
  if (entry.action === "delete" || !now) return old ? `removed (was ${human(old.limit_bytes)})` : "removed";
  if (!old) return `set: ${human(now.limit_bytes)} per ${now.period}`;
  const keys = [...new Set([...Object.keys(old), ...Object.keys(now)])].sort()
    .filter((k) => JSON.stringify(old[k]) !== JSON.stringify(now[k]));
  return keys.length ? keys.map((k) => `${k} ${shownValue(k, old[k])} -> ${shownValue(k, now[k])}`).join(", ")
    : "nothing";
}

async function renderAudit() {
  const body = await api("v1/quota-audit?limit=20");
  const rows = $("audit").querySelector("tbody");
  rows.replaceChildren();
  for (const e of (body && body.entries) || []) {
    const tr = el("tr");
    tr.append(el("td", utc(epoch(e.at))), el("td", `${e.key} (${e.action})`), el("td", e.actor || "—"),
      el("td", auditChange(e)));
    rows.append(tr);
  }
  $("audit").hidden = !rows.children.length;
}

// Only admin keys may read the quota audit, so reading one entry tells whether to offer the form.
async function isAdmin() {
  if (state.admin === null) state.admin = await api("v1/quota-audit?limit=1").then(() => true, () => false);
  return state.admin;
}

async function saveQuota(event) {
  event.preventDefault();
  const service = $("quota-service").value.trim();
  const period = $("quota-period").value;
  const path = `v1/services/${encodeURIComponent(service)}/quota`;
  const result = $("quota-result");
  try {
    // PUT replaces the quota: keep its recipients and thresholds, change the limit and period.
    const current = (await api(path)) || {};
    if (current.period !== period) delete current.anchor_day;
    const limit = Math.round(Number($("quota-limit").value) * UNITS[$("quota-unit").value]);
    const saved = await api(path, {method: "PUT", body: {...current, limit_bytes: limit, period}});
    result.className = "ok-text";
    result.textContent = `Saved: ${service} may use ${human(saved.limit_bytes)} per ${saved.period}.`
      + (saved.warnings || []).map((w) => ` Note: ${w}${/[.?!]$/.test(w) ? "" : "."}`).join("");  // never seen: a typo?
    await route();
  } catch (error) {
    result.className = "refused";
    result.textContent = `Refused: ${error.message}`;
  }
}

async function route() {
  const params = viewParams();
  try {
    showError(null);
    const collector = renderCollector().catch(() => { $("collector").hidden = true; });
    const view = params.get("service") ? "service" : params.get("consumer") ? "consumer"
      : params.get("view") === "consumers" ? "consumers" : "overview";
    for (const id of ["overview", "consumers", "consumer", "service"]) $(id).hidden = id !== view;
    $("enforcement").hidden = true;
    const current = (id, on) => (on ? $(id).setAttribute("aria-current", "page") : $(id).removeAttribute("aria-current"));
    current("nav-consumers", view === "consumers" || view === "consumer");
    current("nav-services", view === "overview" || view === "service");
    if (view === "service") {
      await renderService(params.get("service"), params);
    } else if (view === "consumer") {
      await renderConsumer(params.get("consumer"), params);
    } else if (view === "consumers") {
      await renderConsumers(params);
    } else {
      const [page, enforcement] = await Promise.all([api("v1/services?limit=1000"),
        api("v1/enforcement").catch(() => null)]);
      state.services = page ? page.services : [];
      setBlocks(enforcement);
      renderEnforcement();
      renderOverview();
      const admin = await isAdmin();
      $("quota-form").hidden = !admin;
      if (admin) await renderAudit(); else $("audit").hidden = true;
    }
    await collector;
  } catch (error) {
    showError(error);
  }
  document.body.dataset.ready = "true";
}

document.querySelectorAll(".tz").forEach((node) => { node.textContent = ZONE; });
$("api-key").value = state.key;
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  state.admin = null;
  localStorage.setItem("bwm-key", state.key);
  route();
});
$("filter").addEventListener("input", renderOverview);
$("sort").addEventListener("change", renderOverview);
$("split").addEventListener("change", () => {
  const params = viewParams();
  if ($("split").value) params.set("split", $("split").value); else params.delete("split");
  location.hash = params.toString();
});
$("consumer-sort").addEventListener("change", () => {
  location.hash = new URLSearchParams({view: "consumers", sort: $("consumer-sort").value}).toString();
});
$("consumers-prev").addEventListener("click", () => turnConsumersPage(-1));
$("consumers-next").addEventListener("click", () => turnConsumersPage(1));
$("csv").addEventListener("click", downloadCsv);
$("quota-form").addEventListener("submit", saveQuota);
document.querySelectorAll("[data-range]").forEach((b) => b.addEventListener("click", () => {
  const params = viewParams();
  params.set("range", b.dataset.range);
  params.delete("start");
  params.delete("end");
  location.hash = params.toString();
}));
window.addEventListener("hashchange", route);
setInterval(route, 60000);
route();
