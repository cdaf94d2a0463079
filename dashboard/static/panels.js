// Rendering of the fleet panels: counts, health, agents, queue, task lists, dead-letter (DOM built with el()).

import { restarts } from "./actions.js";
import { acked, conditionsSeen } from "./alerts.js";
import { agentsSorted, state, tasksFor } from "./store.js";
import { active, pageOf } from "./tasklist.js";
import { bytes, el, fill, muted, num, pill, rel, shortId } from "./util.js";

const $ = (id) => document.getElementById(id);
const STATUSES = ["queued", "assigned", "working", "completed", "dead_letter", "cancelled"];
const PRIORITIES = ["urgent", "high", "normal", "low"];

function canAct() {
  return state.role === "admin";
}

function empty(text) {
  return el("p", { class: "empty" }, text);
}

function table(headers, rows) {
  return el("table", { class: "grid" }, el("thead", {}, el("tr", {}, headers)), el("tbody", {}, rows));
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
  fill($("counts"), items.map(([key, value, label]) =>
    el("li", { "data-count": key, "data-zero": value === "0" }, el("b", {}, value), ` ${label}`)));
}

export function renderHealth(localAlerts) {
  const h = state.health || { status: "unknown", conditions: [] };
  const server = h.conditions || [];
  if (state.role === "admin") conditionsSeen(server);
  // Acknowledged conditions no longer count toward the status, as in GET /api/alerts.
  const counted = server.filter((c) => !acked.has(c.id));
  const status = h.status === "unknown" ? "unknown" : counted.some((c) => c.severity === "critical") ? "critical"
    : counted.length ? "warning" : "ok";
  const pillEl = $("health-pill");
  pillEl.dataset.status = status;
  pillEl.textContent = status === "ok" ? "healthy" : status;
  const alertNode = (c, fromHub) => {
    const isAcked = fromHub && acked.has(c.id);
    return el("div", { class: "alert", "data-severity": c.severity, "data-condition": c.id,
      "data-acknowledged": isAcked ? "true" : null },
    el("b", {}, c.severity), ` ${c.message}`,
    Array.isArray(c.tasks) && c.tasks.length ? [" ", el("span", { class: "muted small" },
      c.tasks.slice(0, 5).map(shortId).join(", "))] : null,
    isAcked ? el("span", { class: "muted small" }, ` · acknowledged${acked.get(c.id) ? ` by ${acked.get(c.id)}` : ""}`)
      : null,
    fromHub && !isAcked && canAct() ? [" ", el("button", { class: "btn small", type: "button",
      "data-ack": c.id }, "Acknowledge")] : null);
  };
  fill($("alerts"), localAlerts.map((c) => alertNode(c, false)), server.map((c) => alertNode(c, true)));
}

function resources(r) {
  if (!r || (r.cpu_percent === undefined && r.ram_used_bytes === undefined)) return muted();
  const parts = [];
  if (typeof r.cpu_percent === "number") parts.push(`CPU ${Math.round(r.cpu_percent)}%`);
  if (typeof r.ram_used_bytes === "number") {
    parts.push(`RAM ${bytes(r.ram_used_bytes)}${r.ram_total_bytes ? ` / ${bytes(r.ram_total_bytes)}` : ""}`);
  }
  if (typeof r.vram_used_bytes === "number") parts.push(`VRAM ${bytes(r.vram_used_bytes)}`);
  return parts.map((part) => el("div", { class: "nowrap" }, part));
}

function capabilities(a) {
  const chips = (a.capabilities || []).map((c) => el("span", { class: "chip" }, c));
  if (a.sandbox_level) {
    chips.push(el("span", { class: "chip sandbox", title: "sandbox level" }, `sandbox: ${a.sandbox_level}`));
  }
  return chips.length ? chips : muted();
}

function currentTask(agent) {
  if (!agent.current_task_id) return muted();
  const task = state.tasks.get(agent.current_task_id);
  const last = agent.last_event && agent.last_event.task_id === agent.current_task_id ? agent.last_event : null;
  return [
    el("a", { href: "#", "data-open-task": agent.current_task_id, class: "task-link" },
      el("code", {}, shortId(agent.current_task_id)), ` ${task ? task.description : ""}`),
    last ? el("div", { class: "muted small" }, `▸ ${last.tool_name || last.event_type} `, rel(last.timestamp)) : null,
  ];
}

function agentRow(a) {
  return el("tr", { "data-agent-id": a.agent_id, "data-state": a.fsm_state },
    el("td", {}, el("div", { class: "strong nowrap" }, a.name),
      el("div", { class: "muted small" }, a.agent_id, a.client_type ? ` · ${a.client_type}` : null)),
    el("td", {}, pill(a.fsm_state),
      a.flags && a.flags.length ? el("div", { class: "small warn" }, a.flags.join(", ")) : null, restartCell(a)),
    el("td", { class: `wide later${a.current_task_id ? "" : " none"}` }, currentTask(a)),
    el("td", { class: "opt caps" }, capabilities(a)),
    el("td", { class: "small opt" }, resources(a.resources)),
    el("td", { class: "num opt" }, num(a.completed), " / ", el("span", { class: a.failed ? "bad" : "" }, num(a.failed))),
    el("td", { class: "nowrap" }, a.status === "online" ? rel(a.last_seen) : rel(a.disconnected_at)));
}

// Admins restart an online agent's sidecar; while it runs a task the hub defers the restart until the task ends.
function restartCell(a) {
  if (!canAct() || a.status !== "online") return null;
  const asked = restarts.get(a.agent_id);
  const pending = (a.flags || []).includes("restart_pending");
  if (asked === "deferred" && !pending && !a.current_task_id) restarts.delete(a.agent_id);
  const note = pending || (restarts.get(a.agent_id) === "deferred" && a.current_task_id)
    ? el("span", { class: "small warn", "data-restart": "deferred" }, "deferred ") : null;
  return el("div", { class: "restart nowrap" }, note, el("button", { class: "btn small", type: "button",
    "data-agent-action": "restart", "data-agent-id": a.agent_id, title: "Restart this agent's sidecar" }, "Restart"));
}

export function renderAgents() {
  const agents = agentsSorted();
  const online = agents.filter((a) => a.status === "online").length;
  $("agents-summary").textContent = agents.length ? `${online} online · ${agents.length - online} offline` : "";
  if (!agents.length) {
    fill($("agents"), empty("No agent has connected yet. Start a sidecar with an agent token to see it here."));
    return;
  }
  const headers = [el("th", {}, "Agent"), el("th", {}, "State"), el("th", {}, "Current task"),
    el("th", { class: "opt" }, "Capabilities · sandbox"), el("th", { class: "opt" }, "Resources"),
    el("th", { class: "opt", title: "tasks completed / failed" }, "Done"), el("th", {}, "Seen")];
  fill($("agents"), table(headers, agents.map(agentRow)));
}

function bar(value, total, status) {
  const width = total ? Math.max(value ? 2 : 0, Math.round((value / total) * 100)) : 0;
  return el("svg", { class: "bar", viewBox: "0 0 100 8", preserveAspectRatio: "none", "aria-hidden": "true" },
    el("rect", { class: "track", x: 0, y: 0, width: 100, height: 8, rx: 2 }),
    el("rect", { class: "fill", "data-status": status, x: 0, y: 0, width, height: 8, rx: 2 }));
}

export function renderQueue() {
  const q = state.queue;
  const s = q.by_status || {};
  const total = q.total || 0;
  $("queue-total").textContent = `${num(total)} tasks`;
  const statusRows = STATUSES.map((st) => el("tr", { "data-queue-status": st }, el("td", {}, pill(st)),
    el("td", { class: "num strong" }, num(s[st] ?? 0)), el("td", { class: "barcell" }, bar(s[st] ?? 0, total, st))));
  const p = q.by_priority || {};
  const lanes = PRIORITIES.map((name) => el("li", { "data-priority": name },
    el("span", { class: "prio", "data-priority": name }, name), " ", el("b", {}, num(p[name] ?? 0))));
  fill($("queue"), el("table", { class: "compact" }, statusRows),
    el("p", { class: "muted small label" }, "Queued by priority"), el("ul", { class: "lanes" }, lanes),
    q.oldest_queued_at ? el("p", { class: "muted small" }, "oldest queued ", rel(q.oldest_queued_at)) : null);
}

export function actionButton(action, taskId, label) {
  return el("button", { class: "btn small", type: "button", "data-action": action, "data-task-id": taskId }, label);
}

function taskActions(t) {
  if (!canAct()) return [];
  const out = [];
  if (["queued", "assigned", "working", "dead_letter"].includes(t.status)) out.push(actionButton("cancel", t.id, "Cancel"));
  if (t.status === "dead_letter" || t.status === "cancelled") out.push(actionButton("retry", t.id, "Retry"));
  return out.flatMap((b, i) => (i ? [" ", b] : [b]));
}

function outcome(t) {
  if (t.status === "completed") return pill(`outcome-${t.outcome || "unverified"}`, t.outcome || "unverified");
  if (t.status === "dead_letter") return el("span", { class: "bad small" }, t.dead_letter_reason || "failed");
  if (t.status === "queued" && t.waiting_reason) {
    const w = t.waiting_reason;
    return el("span", { class: "warn small", "data-waiting": w.code, title: w.code }, `waits: ${w.detail}`);
  }
  if (t.retry_count) return el("span", { class: "small warn" }, `attempt ${t.retry_count + 1}/${t.max_retries}`);
  return muted();
}

function progressCell(t) {
  const p = state.progress.get(t.id);
  if (!p) return muted();
  return el("div", { class: "small nowrap" }, `${num(p.tool_calls)} tools`, p.last_tool ? ` · ${p.last_tool}` : null,
    typeof p.tokens_so_far === "number" ? el("div", { class: "muted" }, `${num(p.tokens_so_far)} tokens`) : null);
}

const EMPTY_TASKS = {
  recent: "No tasks yet. Submit one with the form, POST /api/tasks, or the CLI.",
  in_flight: "Nothing in flight.",
  queued: "The queue is empty.",
};

function taskRow(t) {
  return el("tr", { "data-task-id": t.id, "data-status": t.status, "data-open-task": t.id, class: "clickable",
    tabindex: 0 },
    el("td", { class: "wide" }, el("code", {}, shortId(t.id)), ` ${t.description}`),
    el("td", {}, pill(t.status)),
    el("td", { class: "opt" }, el("span", { class: "prio", "data-priority": t.priority_name }, t.priority_name)),
    el("td", { class: "nowrap opt" }, t.assigned_to ? t.assigned_to : muted()),
    el("td", {}, outcome(t)),
    el("td", { class: "opt" }, progressCell(t)),
    el("td", { class: "nowrap" }, rel(t.updated_at)),
    el("td", { class: "actions" }, taskActions(t)));
}

export function renderTasks(tab) {
  const { tasks, page, pages, total } = pageOf(tab);
  $("task-page").textContent = `page ${page + 1} of ${pages} · ${num(total)} task${total === 1 ? "" : "s"}`;
  $("task-pager").querySelector('[data-page="prev"]').disabled = page === 0;
  $("task-pager").querySelector('[data-page="next"]').disabled = page >= pages - 1;
  $("task-pager").hidden = pages < 2;
  if (!tasks.length) {
    fill($("tasks"), empty(active() ? "No task matches the search and filters." : EMPTY_TASKS[tab] || "Nothing here."));
    return;
  }
  const headers = [el("th", {}, "Task"), el("th", {}, "Status"), el("th", { class: "opt" }, "Priority"),
    el("th", { class: "opt" }, "Agent"), el("th", {}, "Outcome"), el("th", { class: "opt" }, "Progress"),
    el("th", {}, "Updated"), el("th", {})];
  fill($("tasks"), table(headers, tasks.map(taskRow)));
}

function deadItem(t) {
  return el("li", { "data-task-id": t.id },
    el("div", {}, el("a", { href: "#", "data-open-task": t.id }, el("code", {}, shortId(t.id)), ` ${t.description}`)),
    el("div", { class: "small bad" }, t.last_error || t.dead_letter_reason || ""),
    el("div", { class: "row small muted" }, `${num(t.retry_count)} attempt${t.retry_count === 1 ? "" : "s"} · `,
      rel(t.updated_at), el("span", { class: "spacer" }), taskActions(t)));
}

export function renderDead() {
  const tasks = tasksFor("dead");
  const count = state.queue.dead_letter ?? tasks.length;
  $("dead-count").textContent = count ? `${num(count)} task${count === 1 ? "" : "s"}` : "";
  if (!tasks.length) {
    fill($("dead"), empty("Dead-letter is empty: no task has run out of retries."));
    return;
  }
  fill($("dead"), el("ul", { class: "dead" }, tasks.map(deadItem)));
}

let assignKey = null; // the online agent ids the <select> was last built from

export function renderAssignOptions() {
  const select = $("assign-to");
  const current = select.value;
  const ids = agentsSorted().filter((a) => a.status === "online").map((a) => a.agent_id);
  const key = JSON.stringify(ids);
  if (assignKey === key) return;
  assignKey = key;
  fill(select, el("option", { value: "" }, "any"), ids.map((id) => el("option", { value: id }, id)));
  select.value = ids.includes(current) ? current : "";
}

export function renderExtraPanels() {
  // The hub FSM and goals panels show once the snapshot carries them; the costs panel shows once costs.js read it.
  for (const [key, id] of [["hub_fsm", "hub-fsm-panel"], ["goals", "goals-panel"]]) {
    $(id).hidden = state.extra[key] === null;
  }
}
