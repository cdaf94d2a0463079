// Actions from the page go through the HTTP API with the page's token; every failure is shown to the user.

import { el } from "./util.js";

let token = null;

export function setToken(value) {
  token = value;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.body = body;
  }
}

function describe(status, body) {
  if (!body || typeof body !== "object") return `HTTP ${status}`;
  let text = `${status} ${body.error || "error"}`;
  if (body.detail) text += `: ${body.detail}`;
  if (Array.isArray(body.errors)) {
    text += ` (${body.errors.map((e) => `${e.field}: ${e.error}${e.detail ? ` - ${e.detail}` : ""}`).join("; ")})`;
  }
  if (body.hint) text += ` (${body.hint})`;
  return text;
}

export async function api(method, path, body, signal) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal, // an AbortSignal: a newer request makes this one moot
    });
  } catch (err) {
    throw new ApiError(0, { error: "network_error", detail: String(err.message || err) });
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export function toast(kind, text, { sticky = kind === "error" } = {}) {
  const dismiss = el("button", { type: "button", class: "btn ghost small", "aria-label": "Dismiss" }, "✕");
  const node = el("div", { class: "toast", "data-kind": kind, role: kind === "error" ? "alert" : "status" },
    el("span", {}, text), dismiss);
  dismiss.addEventListener("click", () => node.remove());
  document.getElementById("toasts").append(node);
  if (!sticky) setTimeout(() => node.remove(), 6000);
  if (kind === "error") console.warn("dashboard:", text);
  return node;
}

async function run(label, fn) {
  try {
    const result = await fn();
    return result;
  } catch (err) {
    toast("error", `${label} failed: ${err.message}`);
    return null;
  }
}

export function cancelTask(taskId) {
  return run(`Cancel ${taskId}`, async () => {
    const r = await api("POST", `/api/tasks/${encodeURIComponent(taskId)}/cancel`);
    toast("ok", `Cancelled ${taskId} (was ${r.previous_status})`);
    return r;
  });
}

export function retryTask(taskId) {
  return run(`Retry ${taskId}`, async () => {
    const r = await api("POST", `/api/tasks/${encodeURIComponent(taskId)}/retry`);
    toast("ok", `Requeued ${taskId}`);
    return r;
  });
}

// The description may start with a priority prefix, as in the original dashboard: "urgent: fix the build".
export function submitTask(form) {
  const data = new FormData(form);
  let description = String(data.get("description") || "").trim();
  let priority = String(data.get("priority") || "normal");
  const prefix = description.match(/^(urgent|high|normal|low):\s*/i);
  if (prefix) {
    priority = prefix[1].toLowerCase();
    description = description.slice(prefix[0].length);
  }
  const body = { description, priority };
  const assignTo = String(data.get("assign_to") || "");
  if (assignTo) body.assign_to = assignTo;
  const caps = String(data.get("capabilities") || "").split(",").map((c) => c.trim()).filter(Boolean);
  if (caps.length) body.needed_capabilities = caps;
  const executor = String(data.get("executor") || "");
  if (executor) body.executor = executor;
  const repo = String(data.get("repo") || "");
  if (repo) body.repo = repo;
  const checks = String(data.get("checks") || "").split("\n").map((c) => c.trim()).filter(Boolean);
  if (checks.length) body.verification_steps = checks.map((target) => ({ type: "command_succeeds", target }));
  return run("Submit", async () => {
    const r = await api("POST", "/api/tasks", body);
    toast("ok", `Submitted ${r.task_id} (${r.status})`);
    for (const warning of r.warnings || []) toast("warn", warning);
    form.reset();
    return r;
  });
}

// What the hub answered to each agent's last restart request ("restarting" or "deferred"), shown in its row.
export const restarts = new Map();

export function restartAgent(agentId) {
  return run(`Restart ${agentId}`, async () => {
    const r = await api("POST", `/api/agents/${encodeURIComponent(agentId)}/restart`);
    restarts.set(agentId, r.status);
    toast("ok", r.status === "deferred" ? `Restart of ${agentId} deferred until its task ${r.task_id} ends`
      : `Restarting ${agentId}`);
    return r;
  });
}

export function acknowledgeAlert(conditionId) {
  return run(`Acknowledge ${conditionId}`, async () => {
    const r = await api("POST", `/api/alerts/${encodeURIComponent(conditionId)}/ack`);
    toast("ok", `Acknowledged ${conditionId}`);
    return r;
  });
}

export function submitGoal(form) {
  const data = new FormData(form);
  const body = { description: String(data.get("description") || "").trim(), source: "dashboard" };
  const repo = String(data.get("repo") || "");
  if (repo) body.repo = repo;
  return run("Submit goal", async () => {
    const r = await api("POST", "/api/goals", body);
    toast("ok", `Submitted goal ${r.id} (${r.status})`);
    form.reset();
    return r;
  });
}
