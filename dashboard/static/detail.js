// The task detail drawer: the task, its counters and its live tool-call timeline.

import { state } from "./store.js";
import { duration, esc, num, pill, rel, serverNow, shortId } from "./util.js";

const $ = (id) => document.getElementById(id);
const view = { taskId: null, task: null, timeline: new Map(), loaded: false, error: null };

export function detailTaskId() {
  return view.taskId;
}

export function openDetail(taskId, socket) {
  view.taskId = taskId;
  view.task = state.tasks.get(taskId) || null;
  view.timeline = new Map();
  view.loaded = false;
  view.error = null;
  $("detail").hidden = false;
  document.body.classList.add("detail-open");
  requestDetail(socket);
  render();
}

export function requestDetail(socket) {
  if (view.taskId && !socket.send({ type: "subscribe_task", task_id: view.taskId })) {
    view.error = "not connected; the timeline loads when the hub is back";
  }
}

export function closeDetail() {
  view.taskId = null;
  $("detail").hidden = true;
  document.body.classList.remove("detail-open");
}

export function onTaskDetail(data) {
  if (!data.task || data.task.id !== view.taskId) return;
  view.task = data.task;
  for (const entry of data.timeline) view.timeline.set(entry.seq, entry);
  view.loaded = true;
  view.error = null;
  view.truncated = data.truncated;
  render();
}

export function onDetailError(message) {
  if (message.task_id && message.task_id === view.taskId) {
    view.error = message.error;
    render();
  }
}

export function onExecution(event) {
  if (event.task_id !== view.taskId || view.timeline.has(event.seq)) return;
  const last = Math.max(0, ...view.timeline.keys());
  view.timeline.set(event.seq, event);
  const list = $("timeline");
  if (list && event.seq > last) {
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.querySelector(".empty")?.remove();
    list.insertAdjacentHTML("beforeend", entryHtml(event));
    if (nearBottom) list.scrollTop = list.scrollHeight;
    renderCounters();
  } else {
    render();
  }
}

// Returns true when the task's status changed (its result and history are then fetched again).
export function onTasksTouched(ids) {
  if (!view.taskId || !ids.has(view.taskId)) return false;
  const summary = state.tasks.get(view.taskId);
  const before = view.task?.status;
  if (summary) view.task = { ...(view.task || {}), ...summary };
  renderHead();
  renderCounters();
  return Boolean(summary && before !== summary.status);
}

function counters() {
  const entries = [...view.timeline.values()];
  const progress = state.progress.get(view.taskId) || {};
  const tools = Math.max(entries.filter((e) => e.event_type === "tool_call").length, progress.tool_calls || 0);
  let tokens = progress.tokens_so_far ?? null;
  let iteration = progress.iteration ?? null;
  let cost = progress.cost_usd ?? null;
  let entryCost = 0;
  for (const e of entries) {
    if (typeof e.tokens_so_far === "number") tokens = Math.max(tokens ?? 0, e.tokens_so_far);
    if (typeof e.iteration === "number") iteration = Math.max(iteration ?? 0, e.iteration);
    if (typeof e.cost_usd === "number") entryCost += e.cost_usd;
  }
  if (entryCost) cost = Math.max(cost ?? 0, entryCost);
  const t = view.task || {};
  if (typeof t.tokens_used === "number" && t.tokens_used) tokens = t.tokens_used;
  const start = t.accepted_at || t.assigned_at;
  const end = t.completed_at || (["working", "assigned"].includes(t.status) ? serverNow() : t.updated_at);
  return [
    ["tools", "tool calls", num(tools)],
    ["tokens", "tokens", tokens === null ? "—" : num(tokens)],
    ["cost", "cost", cost === null ? "—" : `$${cost.toFixed(4)}`],
    ["iteration", "iteration", iteration === null ? "—" : num(iteration)],
    ["elapsed", "run time", start ? duration(end - start) : "—"],
  ];
}

function renderCounters() {
  const el = $("detail-counters");
  if (!el) return;
  el.innerHTML = counters().map(([key, label, value]) =>
    `<li data-counter="${key}"><b>${esc(value)}</b><span>${esc(label)}</span></li>`).join("");
}

function actions(t) {
  if (state.role !== "admin") return "";
  const out = [];
  if (["queued", "assigned", "working", "dead_letter"].includes(t.status)) {
    out.push(`<button class="btn small" type="button" data-action="cancel" data-task-id="${esc(t.id)}">Cancel task</button>`);
  }
  if (["dead_letter", "cancelled"].includes(t.status)) {
    out.push(`<button class="btn small" type="button" data-action="retry" data-task-id="${esc(t.id)}">Retry task</button>`);
  }
  return out.join(" ");
}

function meta(label, value) {
  return `<dt>${esc(label)}</dt><dd>${value}</dd>`;
}

function renderHead() {
  const t = view.task;
  const el = $("detail-head");
  if (!el) return;
  if (!t) {
    el.innerHTML = `<p class="muted">Loading ${esc(view.taskId)}…</p>`;
    return;
  }
  $("detail-title").innerHTML = `Task <code>${esc(shortId(t.id))}</code>`;
  const attempts = `${t.retry_count ?? 0} failed of ${t.max_retries ?? "?"} allowed`;
  el.innerHTML = `<div class="row">${pill(t.status)}${t.outcome ? pill(`outcome-${t.outcome}`, t.outcome) : ""}
      <span class="prio" data-priority="${esc(t.priority_name)}">${esc(t.priority_name)}</span>
      <span class="spacer"></span>${actions(t)}</div>
    <p class="description">${esc(t.description)}</p>
    <dl class="meta">
      ${meta("id", `<code>${esc(t.id)}</code>`)}
      ${meta("agent", t.assigned_to ? esc(t.assigned_to) : '<span class="muted">—</span>')}
      ${meta("submitted", `${rel(t.created_at)}${t.submitted_by ? ` by ${esc(t.submitted_by)}` : ""}`)}
      ${meta("updated", rel(t.updated_at))}
      ${meta("attempts", esc(attempts))}
      ${t.needed_capabilities?.length ? meta("needs", t.needed_capabilities.map((c) => `<span class="chip">${esc(c)}</span>`).join("")) : ""}
      ${t.verification_status ? meta("verification", esc(t.verification_status)) : ""}
      ${t.last_error ? meta("last error", `<span class="bad">${esc(t.last_error)}</span>`) : ""}
    </dl>`;
}

function entryHtml(e) {
  const iter = typeof e.iteration === "number" ? `<span class="iter">it ${e.iteration}</span>` : "";
  const dur = typeof e.duration_ms === "number" ? `<span class="dur">${esc(duration(e.duration_ms))}</span>` : "";
  if (e.event_type === "tool_call") {
    return `<li data-seq="${e.seq}" data-type="tool_call"><div class="line"><span class="seq">#${e.seq}</span>${iter}
      <b class="tool">${esc(e.tool_name || "tool")}</b><span class="spacer"></span>${dur}${rel(e.timestamp)}</div>
      ${e.args_summary ? `<code class="args">${esc(e.args_summary)}</code>` : ""}
      ${e.result_summary ? `<div class="result">→ ${esc(e.result_summary)}</div>` : ""}</li>`;
  }
  const text = e.text || e.message || e.summary || "";
  return `<li data-seq="${e.seq}" data-type="${esc(e.event_type || "event")}"><div class="line"><span class="seq">#${e.seq}</span>${iter}
    <span class="etype">${esc(e.event_type || "event")}</span><span class="spacer"></span>${dur}${rel(e.timestamp)}</div>
    ${text ? `<div class="result">${esc(text)}</div>` : ""}</li>`;
}

function resultHtml(t) {
  const r = t.result;
  if (!r || !Object.keys(r).length) return "";
  const body = r.output || r.error || "";
  return `<h3>Result</h3><p class="small">${r.status ? pill(r.status === "success" ? "completed" : "dead_letter", r.status) : ""}
    ${r.reason ? esc(r.reason) : ""}</p>${body ? `<pre class="output">${esc(body)}</pre>` : ""}`;
}

function historyHtml(t) {
  if (!t.history?.length) return "";
  const items = t.history.slice().reverse().map((h) => `<li><b>${esc(h.event)}</b> ${rel(h.timestamp)}
    <span class="muted small">${esc(Object.entries(h.details || {}).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" "))}</span></li>`).join("");
  return `<details><summary>History (${t.history.length})</summary><ul class="history">${items}</ul></details>`;
}

export function tick() {
  if (view.taskId) renderCounters();
}

export function render() {
  if (!view.taskId) return;
  const entries = [...view.timeline.values()].sort((a, b) => a.seq - b.seq);
  const emptyText = view.loaded ? "No tool calls yet; they appear here as the agent makes them." : "Loading timeline…";
  const t = view.task || {};
  $("detail-body").innerHTML = `<div id="detail-head"></div>
    <ul class="counters" id="detail-counters"></ul>
    ${view.error ? `<p class="error">${esc(view.error)}</p>` : ""}
    <h3>Timeline ${view.truncated ? '<span class="muted small">(first 1000 events)</span>' : ""}</h3>
    <ol class="timeline" id="timeline">${entries.length ? entries.map(entryHtml).join("") : `<li class="empty">${esc(emptyText)}</li>`}</ol>
    ${resultHtml(t)}${historyHtml(t)}`;
  renderHead();
  renderCounters();
  const list = $("timeline");
  list.scrollTop = list.scrollHeight;
}
