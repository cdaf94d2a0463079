// The task detail drawer: the task, its counters and its live tool-call timeline (DOM built with el()).

import { state } from "./store.js";
import { actionButton } from "./panels.js";
import { routingLine } from "./endpoints.js";
import { duration, el, fill, muted, num, pill, rel, serverNow, shortId } from "./util.js";

const $ = (id) => document.getElementById(id);
const view = { taskId: null, task: null, timeline: new Map(), loaded: false, error: null, socket: null };
const MAX_TIMELINE = 10000; // events kept in the page; the hub sends the timeline in byte-bounded pages

export function detailTaskId() {
  return view.taskId;
}

export function openDetail(taskId, socket) {
  view.taskId = taskId;
  view.task = state.tasks.get(taskId) || null;
  view.timeline = new Map();
  view.loaded = false;
  view.error = null;
  view.socket = socket;
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
  // A long timeline comes in pages: ask for the next one until it is all here (or the page holds enough).
  view.truncated = data.truncated && view.timeline.size < MAX_TIMELINE;
  if (view.truncated && view.socket) {
    view.socket.send({ type: "subscribe_task", task_id: view.taskId, after_seq: data.next_after_seq });
  }
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
    list.append(entryNode(event));
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
  const target = $("detail-counters");
  if (!target) return;
  fill(target, counters().map(([key, label, value]) =>
    el("li", { "data-counter": key }, el("b", {}, value), el("span", {}, label))));
}

function actions(t) {
  if (state.role !== "admin") return [];
  const out = [];
  if (["queued", "assigned", "working", "dead_letter"].includes(t.status)) {
    out.push(actionButton("cancel", t.id, "Cancel task"));
  }
  if (["dead_letter", "cancelled"].includes(t.status)) out.push(actionButton("retry", t.id, "Retry task"));
  return out.flatMap((b, i) => (i ? [" ", b] : [b]));
}

function meta(label, ...value) {
  return [el("dt", {}, label), el("dd", {}, value)];
}

function renderHead() {
  const t = view.task;
  const head = $("detail-head");
  if (!head) return;
  if (!t) {
    fill(head, el("p", { class: "muted" }, `Loading ${view.taskId}…`));
    return;
  }
  fill($("detail-title"), "Task ", el("code", {}, shortId(t.id)));
  const attempts = `${t.retry_count ?? 0} failed of ${t.max_retries ?? "?"} allowed`;
  const needs = Array.isArray(t.needed_capabilities) ? t.needed_capabilities : [];
  fill(head,
    el("div", { class: "row" }, pill(t.status), t.outcome ? pill(`outcome-${t.outcome}`, t.outcome) : null,
      el("span", { class: "prio", "data-priority": t.priority_name }, t.priority_name),
      el("span", { class: "spacer" }), actions(t)),
    el("p", { class: "description" }, t.description),
    el("dl", { class: "meta" },
      meta("id", el("code", {}, t.id)),
      meta("agent", t.assigned_to ? t.assigned_to : muted()),
      t.routing_decision ? meta("routing", routingLine(t.routing_decision)) : null,
      meta("submitted", rel(t.created_at), t.submitted_by ? ` by ${t.submitted_by}` : null),
      meta("updated", rel(t.updated_at)),
      meta("attempts", attempts),
      needs.length ? meta("needs", needs.map((c) => el("span", { class: "chip" }, c))) : null,
      t.verification_status ? meta("verification", t.verification_status) : null,
      t.last_error ? meta("last error", el("span", { class: "bad" }, t.last_error)) : null));
}

function entryNode(e) {
  const iter = typeof e.iteration === "number" ? el("span", { class: "iter" }, `it ${e.iteration}`) : null;
  const dur = typeof e.duration_ms === "number" ? el("span", { class: "dur" }, duration(e.duration_ms)) : null;
  const seq = el("span", { class: "seq" }, `#${e.seq}`);
  if (e.event_type === "tool_call") {
    return el("li", { "data-seq": e.seq, "data-type": "tool_call" },
      el("div", { class: "line" }, seq, iter, el("b", { class: "tool" }, e.tool_name || "tool"),
        el("span", { class: "spacer" }), dur, rel(e.timestamp)),
      e.args_summary ? el("code", { class: "args" }, e.args_summary) : null,
      e.result_summary ? el("div", { class: "result" }, `→ ${e.result_summary}`) : null);
  }
  const text = e.text || e.message || e.summary || "";
  return el("li", { "data-seq": e.seq, "data-type": e.event_type || "event" },
    el("div", { class: "line" }, seq, iter, el("span", { class: "etype" }, e.event_type || "event"),
      el("span", { class: "spacer" }), dur, rel(e.timestamp)),
    text ? el("div", { class: "result" }, typeof text === "object" ? JSON.stringify(text) : text) : null);
}

function resultNodes(t) {
  const r = t.result;
  if (!r || typeof r !== "object" || !Object.keys(r).length) return null;
  const body = r.output || r.error || "";
  return [
    el("h3", {}, "Result"),
    el("p", { class: "small" }, r.status ? pill(r.status === "success" ? "completed" : "dead_letter", r.status) : null,
      r.reason ? ` ${r.reason}` : null),
    body ? el("pre", { class: "output" }, typeof body === "object" ? JSON.stringify(body, null, 2) : body) : null,
  ];
}

// The change the task made on its repository: branch, commit, tier, publication, files with +/-, and the diff.
// Everything goes in as text nodes (el escapes), the diff in a <pre>; a PR link is shown as text, never followed.
function changeNodes(t) {
  const c = t.change;
  if (!c || typeof c !== "object") return null;
  const files = Array.isArray(c.files) ? c.files : [];
  return [
    el("h3", {}, "Change"),
    el("dl", { class: "meta", "data-change": "" },
      meta("branch", el("code", {}, c.branch || "—"), c.repo ? ` on ${c.repo}` : null),
      meta("commit", c.commit ? el("code", {}, String(c.commit).slice(0, 12)) : muted("no change")),
      c.rebased_onto ? meta("rebased onto", el("code", {}, String(c.rebased_onto).slice(0, 12))) : null,
      meta("tier", c.tier || muted(), (c.tier_reasons || []).length ? el("span", { class: "muted small" },
        ` (${c.tier_reasons.join("; ")})`) : null),
      meta("published", c.published || "no", c.pr_url ? [" ", el("code", {}, c.pr_url)] : null,
        c.merged_commit ? [" merged ", el("code", {}, String(c.merged_commit).slice(0, 12))] : null),
      c.publish_error ? meta("publish error", el("span", { class: "bad" }, c.publish_error)) : null,
      (c.conflict_files || []).length ? meta("conflict", el("span", { class: "bad" }, c.conflict_files.join(", "))) : null,
      meta("lines", el("span", { class: "good" }, `+${c.added ?? 0}`), " ", el("span", { class: "bad" }, `-${c.removed ?? 0}`),
        ` in ${c.n_files ?? files.length} files`)),
    files.length ? el("ul", { class: "files small" }, files.map((f) => el("li", {},
      el("code", {}, f.path), " ", el("span", { class: "good" }, `+${f.added}`), " ",
      el("span", { class: "bad" }, `-${f.removed}`), f.status && f.status !== "modified" ? ` (${f.status})` : null))) : null,
    c.diff ? el("details", {}, el("summary", {}, c.diff_truncated ? "Diff (truncated)" : "Diff"),
      el("pre", { class: "output diff" }, c.diff)) : null,
  ];
}

function historyNodes(t) {
  if (!t.history?.length) return null;
  const items = t.history.slice().reverse().map((h) => el("li", {}, el("b", {}, h.event), " ", rel(h.timestamp), " ",
    el("span", { class: "muted small" }, Object.entries(h.details || {}).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" "))));
  return el("details", {}, el("summary", {}, `History (${t.history.length})`), el("ul", { class: "history" }, items));
}

export function tick() {
  if (view.taskId) renderCounters();
}

export function render() {
  if (!view.taskId) return;
  const entries = [...view.timeline.values()].sort((a, b) => a.seq - b.seq);
  const emptyText = view.loaded ? "No tool calls yet; they appear here as the agent makes them." : "Loading timeline…";
  const t = view.task || {};
  const list = el("ol", { class: "timeline" }, entries.length ? entries.map(entryNode)
    : el("li", { class: "empty" }, emptyText));
  list.id = "timeline";
  const head = el("div");
  head.id = "detail-head";
  const counterList = el("ul", { class: "counters" });
  counterList.id = "detail-counters";
  fill($("detail-body"), head, counterList,
    view.error ? el("p", { class: "error" }, view.error) : null,
    el("h3", {}, "Timeline ", view.truncated ? el("span", { class: "muted small" }, `(${num(view.timeline.size)} events so far, loading more…)`)
      : view.timeline.size >= MAX_TIMELINE ? el("span", { class: "muted small" }, `(first ${num(MAX_TIMELINE)} events)`) : null),
    list, resultNodes(t), changeNodes(t), historyNodes(t));
  renderHead();
  renderCounters();
  list.scrollTop = list.scrollHeight;
}
