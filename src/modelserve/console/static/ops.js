// Operations (admin key): every model with its state, load / unload, and live charts from
// /admin/summary polled every 2 s (rates and windowed quantiles from successive polls).

import { ApiError, forgetModels, getJSON, say } from "./api.js";
import { Sparkline, bucketDelta, quantile } from "./charts.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const TTFT = "modelserve_time_to_first_token_seconds";
let timer = null;
let previous = null;
let charts = null;

const fixed = (digits, unit = "") => (v) => `${v.toFixed(digits)}${unit}`;
const ms = (v) => `${(v * 1000).toFixed(0)} ms`;

export function init() {
  $("ops-models").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) act(button.dataset.action, button.dataset.model);
  });
}

export function show() {
  if (!charts) {
    const parent = $("ops-charts");
    charts = {
      requests: new Sparkline(parent, "Requests / s", fixed(2)),
      tokens: new Sparkline(parent, "Tokens / s", fixed(1)),
      queue: new Sparkline(parent, "Queue depth", fixed(0)),
      p50: new Sparkline(parent, "TTFT p50", ms),
      p99: new Sparkline(parent, "TTFT p99", ms),
      hits: new Sparkline(parent, "Cache hit rate", (v) => `${(v * 100).toFixed(0)} %`),
      limited: new Sparkline(parent, "Rate-limited / min", fixed(1)),
    };
  }
  stop();
  poll();
  timer = setInterval(poll, POLL_MS);
}

export function hide() {
  stop();
}

function stop() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

async function poll() {
  try {
    const [models, summary] = await Promise.all([
      getJSON("/admin/models?stats=true"), getJSON("/admin/summary")]);
    renderModels(models.data);
    plot(summary);
    say($("ops-status"), `Updated ${new Date().toLocaleTimeString()}.`);
  } catch (err) {
    const refused = err instanceof ApiError && (err.status === 401 || err.status === 403);
    say($("ops-status"), refused ? `An admin key is needed for operations: ${err.message}` : err.message, true);
    if (refused) stop();
  }
}

function total(summary, name) {
  return summary.totals[name] ?? 0;
}

function plot(summary) {
  const before = previous;
  previous = summary;
  charts.queue.push(total(summary, "modelserve_waiting_sequences") + total(summary, "modelserve_image_waiting"));
  const ttft = summary.histograms[TTFT]?.buckets ?? [];
  if (!before) {  // the first poll: lifetime quantiles until there is a window
    charts.p50.push(quantile(ttft, 0.5));
    charts.p99.push(quantile(ttft, 0.99));
    return;
  }
  const seconds = Math.max(summary.time - before.time, 1e-3);
  const rate = (name) => Math.max(0, total(summary, name) - total(before, name)) / seconds;
  charts.requests.push(rate("api_requests"));  // model traffic, not this page's polls
  charts.tokens.push(rate("modelserve_completion_tokens"));
  charts.limited.push(rate("modelserve_rate_limited_requests") * 60);
  const window = bucketDelta(ttft, before.histograms[TTFT]?.buckets);
  charts.p50.push(quantile(window, 0.5));
  charts.p99.push(quantile(window, 0.99));
  const lookups = (s) => s.by_label.modelserve_cache_requests ?? {};
  const [now, then] = [lookups(summary), lookups(before)];
  const hits = (now.hit ?? 0) - (then.hit ?? 0);
  const misses = (now.miss ?? 0) - (then.miss ?? 0);
  charts.hits.push(hits + misses > 0 ? hits / (hits + misses) : null);
}

function bytes(n) {
  if (!n) return "–";
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(0)} MiB`;
}

function ago(epoch) {
  if (!epoch) return "never";
  const s = Math.max(0, Date.now() / 1000 - epoch);
  return s < 90 ? `${s.toFixed(0)} s ago` : s < 5400 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}

function left(model) {
  if (model.pinned) return "pinned";
  const s = model.keep_alive_seconds_left;
  if (s === null || s === undefined) return "–";
  return s < 90 ? `${s.toFixed(0)} s` : `${(s / 60).toFixed(0)} min`;
}

function kv(model) {
  if (model.kv_capacity_tokens == null) return "–";
  const used = model.kv_used_tokens ?? 0;
  return `${used}/${model.kv_capacity_tokens} (${((100 * used) / (model.kv_capacity_tokens || 1)).toFixed(0)} %)`;
}

function renderModels(models) {
  // Rows are rebuilt on every poll: keep the keyboard focus on the same model's button.
  const focused = document.activeElement?.closest?.("#ops-models button")?.dataset.model;
  const rows = models.map((m) => {
    const row = document.createElement("tr");
    row.dataset.model = m.name;
    const cells = [m.name, m.kind, m.state, bytes(m.memory_bytes), String(m.in_flight), kv(m),
      ago(m.last_used), left(m)];
    for (const text of cells) {
      const cell = row.insertCell();
      cell.textContent = text;
    }
    row.cells[2].className = "state";
    if (m.error) row.cells[2].title = m.error;
    const action = row.insertCell();
    const loaded = m.state === "ready" || m.state === "loading";
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.action = loaded ? "unload" : "load";
    button.dataset.model = m.name;
    button.textContent = loaded ? "Unload" : "Load";
    button.setAttribute("aria-label", `${button.textContent} ${m.name}`);
    button.disabled = m.state === "unloading" || m.state === "loading";
    action.append(button);
    return row;
  });
  $("ops-models").tBodies[0].replaceChildren(...rows);
  if (focused) $("ops-models").querySelector(`button[data-model="${CSS.escape(focused)}"]`)?.focus();
}

async function act(action, name) {
  say($("ops-status"), `${action === "load" ? "Loading" : "Unloading"} ${name}…`);
  try {
    await getJSON(`/admin/models/${action}`, { json: { name } });
    forgetModels();  // the other views' model lists show states
  } catch (err) {
    say($("ops-status"), err.message, true);
    return;
  }
  await poll();
}
