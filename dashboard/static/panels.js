// Rendering of the fleet panels: counts, health, agents, queue, task lists, dead-letter.

import { agentsSorted, state, tasksFor } from "./store.js";
import { bytes, esc, num, pill, rel, shortId } from "./util.js";

const $ = (id) => document.getElementById(id);
const STATUSES = ["queued", "assigned", "working", "completed", "dead_letter", "cancelled"];
const PRIORITIES = ["urgent", "high", "normal", "low"];

function canAct() {
  return state.role === "admin";
}

function empty(text) {
  return `<p class="empty">${esc(text)}</p>`;
}

export function renderCounts() {
  const agents = [...state.agents.values()];
  const online = agents.filter((a) => a.status === "online");
  const busy = online.filter((a) => a.fsm_state === "working" || a.fsm_state === "assigned").length;
  const s = state.queue.by_status || {};
  const items = [
    ["agents", `${online.length}`, `agents online${agents.length > online.length ? ` of ${agents.length}` : ""}`],
    ["busy", `${busy}`, "busy"],
    ["queued", num(s.queued ?? 0), "queued"],
    ["working", num((s.working ?? 0) + (s.assigned ?? 0)), "in flight"],
    ["completed", num(s.completed ?? 0), "completed"],
    ["dead_letter", num(state.queue.dead_letter ?? 0), "dead-letter"],
  ];
  $("counts").innerHTML = items.map(([key, value, label]) =>
    `<li data-count="${key}"${value === "0" ? " data-zero" : ""}><b>${esc(value)}</b> ${esc(label)}</li>`).join("");
}

export function renderHealth(localAlerts) {
  const h = state.health || { status: "unknown", conditions: [] };
  const el = $("health-pill");
  el.dataset.status = h.status;
  el.textContent = h.status === "ok" ? "healthy" : h.status;
  const alerts = [...localAlerts, ...h.conditions];
  $("alerts").innerHTML = alerts.map((c) =>
    `<div class="alert" data-severity="${esc(c.severity)}" data-condition="${esc(c.id)}">` +
    `<b>${esc(c.severity)}</b> ${esc(c.message)}` +
    `${c.tasks ? ` <span class="muted small">${c.tasks.slice(0, 5).map(shortId).map(esc).join(", ")}</span>` : ""}` +
    `</div>`).join("");
}

function resources(r) {
  if (!r || (r.cpu_percent === undefined && r.ram_used_bytes === undefined)) return '<span class="muted">—</span>';
  const parts = [];
  if (typeof r.cpu_percent === "number") parts.push(`CPU ${Math.round(r.cpu_percent)}%`);
  if (typeof r.ram_used_bytes === "number") {
    parts.push(`RAM ${bytes(r.ram_used_bytes)}${r.ram_total_bytes ? ` / ${bytes(r.ram_total_bytes)}` : ""}`);
  }
  if (typeof r.vram_used_bytes === "number") parts.push(`VRAM ${bytes(r.vram_used_bytes)}`);
  return parts.map((part) => `<div class="nowrap">${esc(part)}</div>`).join("");
}

function capabilities(a) {
  const chips = (a.capabilities || []).map((c) => `<span class="chip">${esc(c)}</span>`);
  if (a.sandbox_level) chips.push(`<span class="chip sandbox" title="sandbox level">sandbox: ${esc(a.sandbox_level)}</span>`);
  return chips.join("") || '<span class="muted">—</span>';
}

function currentTask(agent) {
  if (!agent.current_task_id) return '<span class="muted">—</span>';
  const task = state.tasks.get(agent.current_task_id);
  const last = agent.last_event && agent.last_event.task_id === agent.current_task_id ? agent.last_event : null;
  const tool = last ? `<div class="muted small">▸ ${esc(last.tool_name || last.event_type)} ${rel(last.timestamp)}</div>`
    : "";
  return `<a href="#" data-open-task="${esc(agent.current_task_id)}" class="task-link">` +
    `<code>${esc(shortId(agent.current_task_id))}</code> ${esc(task ? task.description : "")}</a>${tool}`;
}

export function renderAgents() {
  const agents = agentsSorted();
  const online = agents.filter((a) => a.status === "online").length;
  $("agents-summary").textContent = agents.length ? `${online} online · ${agents.length - online} offline` : "";
  if (!agents.length) {
    $("agents").innerHTML = empty("No agent has connected yet. Start a sidecar with an agent token to see it here.");
    return;
  }
  const rows = agents.map((a) => `<tr data-agent-id="${esc(a.agent_id)}" data-state="${esc(a.fsm_state)}">
    <td><div class="strong nowrap">${esc(a.name)}</div><div class="muted small">${esc(a.agent_id)}${a.client_type ? ` · ${esc(a.client_type)}` : ""}</div></td>
    <td>${pill(a.fsm_state)}${a.flags && a.flags.length ? `<div class="small warn">${esc(a.flags.join(", "))}</div>` : ""}</td>
    <td class="wide later${a.current_task_id ? "" : " none"}">${currentTask(a)}</td>
    <td class="opt caps">${capabilities(a)}</td>
    <td class="small opt">${resources(a.resources)}</td>
    <td class="num opt">${num(a.completed)} / <span class="${a.failed ? "bad" : ""}">${num(a.failed)}</span></td>
    <td class="nowrap">${a.status === "online" ? rel(a.last_seen) : rel(a.disconnected_at)}</td>
  </tr>`).join("");
  $("agents").innerHTML = `<table class="grid"><thead><tr><th>Agent</th><th>State</th><th>Current task</th>
    <th class="opt">Capabilities · sandbox</th><th class="opt">Resources</th>
    <th class="opt" title="tasks completed / failed">Done</th><th>Seen</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function bar(value, total, status) {
  const width = total ? Math.max(value ? 2 : 0, Math.round((value / total) * 100)) : 0;
  return `<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true">
    <rect class="track" x="0" y="0" width="100" height="8" rx="2"></rect>
    <rect class="fill" data-status="${status}" x="0" y="0" width="${width}" height="8" rx="2"></rect></svg>`;
}

export function renderQueue() {
  const q = state.queue;
  const s = q.by_status || {};
  const total = q.total || 0;
  $("queue-total").textContent = `${num(total)} tasks`;
  const statusRows = STATUSES.map((st) => `<tr data-queue-status="${st}"><td>${pill(st)}</td>
    <td class="num strong">${num(s[st] ?? 0)}</td><td class="barcell">${bar(s[st] ?? 0, total, st)}</td></tr>`);
  const p = q.by_priority || {};
  const lanes = PRIORITIES.map((name) => `<li data-priority="${name}"><span class="prio" data-priority="${name}">${name}</span>
    <b>${num(p[name] ?? 0)}</b></li>`).join("");
  const oldest = q.oldest_queued_at ? `<p class="muted small">oldest queued ${rel(q.oldest_queued_at)}</p>` : "";
  $("queue").innerHTML = `<table class="compact">${statusRows.join("")}</table>
    <p class="muted small label">Queued by priority</p><ul class="lanes">${lanes}</ul>${oldest}`;
}

function taskActions(t) {
  if (!canAct()) return "";
  const out = [];
  if (["queued", "assigned", "working", "dead_letter"].includes(t.status)) {
    out.push(`<button class="btn small" type="button" data-action="cancel" data-task-id="${esc(t.id)}">Cancel</button>`);
  }
  if (t.status === "dead_letter" || t.status === "cancelled") {
    out.push(`<button class="btn small" type="button" data-action="retry" data-task-id="${esc(t.id)}">Retry</button>`);
  }
  return out.join(" ");
}

function outcome(t) {
  if (t.status === "completed") return pill(`outcome-${t.outcome || "unverified"}`, t.outcome || "unverified");
  if (t.status === "dead_letter") return `<span class="bad small">${esc(t.dead_letter_reason || "failed")}</span>`;
  if (t.status === "queued" && t.waiting_reason) {
    const w = t.waiting_reason;
    return `<span class="warn small" data-waiting="${esc(w.code)}" title="${esc(w.code)}">waits: ${esc(w.detail)}</span>`;
  }
  if (t.retry_count) return `<span class="small warn">attempt ${t.retry_count + 1}/${t.max_retries}</span>`;
  return '<span class="muted">—</span>';
}

function progressCell(t) {
  const p = state.progress.get(t.id);
  if (!p) return '<span class="muted">—</span>';
  const tokens = typeof p.tokens_so_far === "number" ? `<div class="muted">${num(p.tokens_so_far)} tokens</div>` : "";
  return `<div class="small nowrap">${num(p.tool_calls)} tools${p.last_tool ? ` · ${esc(p.last_tool)}` : ""}${tokens}</div>`;
}

const EMPTY_TASKS = {
  recent: "No tasks yet. Submit one with the form, POST /api/tasks, or the CLI.",
  in_flight: "Nothing in flight.",
  queued: "The queue is empty.",
};

export function renderTasks(tab) {
  const tasks = tasksFor(tab);
  if (!tasks.length) {
    $("tasks").innerHTML = empty(EMPTY_TASKS[tab] || "Nothing here.");
    return;
  }
  const rows = tasks.map((t) => `<tr data-task-id="${esc(t.id)}" data-status="${esc(t.status)}" data-open-task="${esc(t.id)}" class="clickable">
    <td class="wide"><code>${esc(shortId(t.id))}</code> ${esc(t.description)}</td>
    <td>${pill(t.status)}</td>
    <td class="opt"><span class="prio" data-priority="${esc(t.priority_name)}">${esc(t.priority_name)}</span></td>
    <td class="nowrap opt">${t.assigned_to ? esc(t.assigned_to) : '<span class="muted">—</span>'}</td>
    <td>${outcome(t)}</td>
    <td class="opt">${progressCell(t)}</td>
    <td class="nowrap">${rel(t.updated_at)}</td>
    <td class="actions">${taskActions(t)}</td>
  </tr>`).join("");
  $("tasks").innerHTML = `<table class="grid"><thead><tr><th>Task</th><th>Status</th><th class="opt">Priority</th>
    <th class="opt">Agent</th><th>Outcome</th><th class="opt">Progress</th><th>Updated</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
}

export function renderDead() {
  const tasks = tasksFor("dead");
  const count = state.queue.dead_letter ?? tasks.length;
  $("dead-count").textContent = count ? `${num(count)} task${count === 1 ? "" : "s"}` : "";
  if (!tasks.length) {
    $("dead").innerHTML = empty("Dead-letter is empty: no task has run out of retries.");
    return;
  }
  $("dead").innerHTML = `<ul class="dead">${tasks.map((t) => `<li data-task-id="${esc(t.id)}">
    <div><a href="#" data-open-task="${esc(t.id)}"><code>${esc(shortId(t.id))}</code> ${esc(t.description)}</a></div>
    <div class="small bad">${esc(t.last_error || t.dead_letter_reason || "")}</div>
    <div class="row small muted">${esc(t.retry_count)} attempt${t.retry_count === 1 ? "" : "s"} · ${rel(t.updated_at)}<span class="spacer"></span>${taskActions(t)}</div>
  </li>`).join("")}</ul>`;
}

export function renderAssignOptions() {
  const select = $("assign-to");
  const current = select.value;
  const ids = agentsSorted().filter((a) => a.status === "online").map((a) => a.agent_id);
  const html = `<option value="">any</option>${ids.map((id) => `<option value="${esc(id)}">${esc(id)}</option>`).join("")}`;
  if (select.dataset.html !== html) {
    select.innerHTML = html;
    select.dataset.html = html;
    select.value = ids.includes(current) ? current : "";
  }
}

export function renderExtraPanels() {
  // Hub FSM, goals and costs arrive with their issues; until then their keys are null and the panels stay hidden.
  for (const [key, id] of [["hub_fsm", "hub-fsm-panel"], ["goals", "goals-panel"], ["costs", "costs-panel"]]) {
    $(id).hidden = state.extra[key] === null;
  }
}
