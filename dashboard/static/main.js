// Entry point: token handling, the live socket, render scheduling and the page's event handlers.

import { acknowledgeAlert, cancelTask, restartAgent, retryTask, setToken, submitGoal, submitTask, toast }
  from "./actions.js";
import { absorb, watchAlerts } from "./alerts.js";
import { renderLatency, renderThroughput } from "./charts.js";
import { startCosts } from "./costs.js";
import * as detail from "./detail.js";
import { renderGoals } from "./goals.js";
import { refreshEndpoints, startEndpoints } from "./endpoints.js";
import { startHubFsm } from "./hubfsm.js";
import * as panels from "./panels.js";
import { startRepos } from "./repos.js";
import { HubSocket } from "./socket.js";
import { applyEvents, applyExecution, applyMetrics, applySnapshot, state } from "./store.js";
import { fetchMatching, filter, setFromForm } from "./tasklist.js";
import { refreshTimes, setServerTime } from "./util.js";

const TOKEN_KEY = "agentcom_token";
const $ = (id) => document.getElementById(id);
const MIN_RENDER_INTERVAL_MS = 150; // a busy fleet streams tool calls; the page redraws a few times a second
const dirty = new Set();
const localAlerts = [];
let socket = null;
let tab = "recent";
let frame = 0;
let lastFlush = 0;

// Exposed for tests and the bench: counters only, never the token.
const probe = { snapshots: 0, batches: 0, executionEvents: 0, lastRenderMs: 0, maxRenderMs: 0, firstRenderAt: null };
window.agentcom = { state, probe };

function mark(...names) {
  for (const name of names) dirty.add(name);
  if (frame) return;
  const wait = Math.max(0, lastFlush + MIN_RENDER_INTERVAL_MS - performance.now());
  frame = setTimeout(() => requestAnimationFrame(flush), wait);
}

function flush() {
  frame = 0;
  const started = performance.now();
  lastFlush = started;
  if (dirty.has("counts")) panels.renderCounts();
  if (dirty.has("health")) panels.renderHealth(localAlerts);
  if (dirty.has("agents")) {
    panels.renderAgents();
    panels.renderAssignOptions();
  }
  if (dirty.has("queue")) panels.renderQueue();
  if (dirty.has("tasks")) panels.renderTasks(tab);
  if (dirty.has("dead")) panels.renderDead();
  if (dirty.has("charts")) {
    renderThroughput($("chart-throughput"), $("throughput-note"), state.series);
    renderLatency($("chart-latency"), state.series);
  }
  if (dirty.has("extra")) panels.renderExtraPanels();
  if (dirty.has("extra")) renderGoals();
  dirty.clear();
  probe.lastRenderMs = performance.now() - started;
  probe.maxRenderMs = Math.max(probe.maxRenderMs, probe.lastRenderMs);
  if (probe.firstRenderAt === null && state.snapshots) probe.firstRenderAt = performance.now();
}

const ALL = ["counts", "health", "agents", "queue", "tasks", "dead", "charts", "extra"];

function onMessage(message) {
  switch (message.type) {
    case "snapshot":
      applySnapshot(message);
      setServerTime(message.data.timestamp);
      probe.snapshots += 1;
      document.body.dataset.role = message.role;
      $("role").hidden = false;
      $("role").textContent = message.role === "admin" ? "admin" : "viewer · read-only";
      $("submit-panel").hidden = message.role !== "admin";
      $("goal-panel").hidden = message.role !== "admin";
      $("dashboard").hidden = false;
      detail.requestDetail(socket);
      startHubFsm();
      mark(...ALL);
      startEndpoints();
      startCosts();
      startRepos();
      break;
    case "events": {
      probe.batches += 1;
      const touched = applyEvents(message);
      setServerTime(message.timestamp);
      if (detail.onTasksTouched(touched)) detail.requestDetail(socket);
      if ((message.data || []).some((e) => e.kind === "endpoint_event")) refreshEndpoints();
      mark(...ALL);
      break;
    }
    case "metrics":
      applyMetrics(message);
      setServerTime(message.timestamp);
      mark("counts", "health", "queue", "charts");
      break;
    case "execution_event":
      probe.executionEvents += 1;
      detail.onExecution(applyExecution(message));
      mark("agents", "tasks");
      break;
    case "task_detail":
      detail.onTaskDetail(message.data);
      break;
    case "error":
      detail.onDetailError(message);
      if (!message.task_id) toast("error", `Hub says: ${message.error}`);
      break;
    default:
      break;
  }
}

function setConnection(stateName, text) {
  const el = $("conn");
  el.dataset.state = stateName;
  el.textContent = text;
  const i = localAlerts.findIndex((a) => a.id === "connection");
  if (i >= 0) localAlerts.splice(i, 1);
  if (stateName === "offline") {
    localAlerts.push({ id: "connection", severity: "warning",
      message: `Lost the connection to the hub; ${text}. What you see may be out of date.` });
  }
  if (stateName === "refused") {
    localStorage.removeItem(TOKEN_KEY);
    showLogin(`The hub refused this token: ${text}`);
  }
  mark("health");
}

function connect(token) {
  setToken(token);
  $("login").hidden = true;
  $("signout").hidden = false;
  socket = new HubSocket({ token, onMessage, onState: setConnection });
  socket.start();
}

function showLogin(error = "") {
  if (socket) socket.stop();
  socket = null;
  $("dashboard").hidden = true;
  $("signout").hidden = true;
  $("role").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = error;
  $("conn").dataset.state = "signed-out";
  $("conn").textContent = "not connected";
  detail.closeDetail();
}

// A token may arrive as #token=... (never sent to the server); it is moved to localStorage and the URL cleaned.
function initialToken() {
  const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (match) {
    localStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem(TOKEN_KEY);
}

// Buttons that call the API once and re-enable when it answered; what the answer changes is redrawn.
function once(button, promise, ...redraw) {
  button.disabled = true;
  promise.finally(() => {
    button.disabled = false;
    mark(...redraw);
  });
  return promise;
}

document.addEventListener("click", (event) => {
  const restart = event.target.closest("[data-agent-action=restart]");
  if (restart) {
    event.preventDefault();
    once(restart, restartAgent(restart.dataset.agentId), "agents");
    return;
  }
  const ack = event.target.closest("[data-ack]");
  if (ack) {
    event.preventDefault();
    once(ack, acknowledgeAlert(ack.dataset.ack).then((current) => { if (current) absorb(current); }), "health");
    return;
  }
  const pager = event.target.closest("[data-page]");
  if (pager) {
    filter.page += pager.dataset.page === "next" ? 1 : -1;
    mark("tasks");
    return;
  }
  const action = event.target.closest("[data-action]");
  if (action) {
    event.preventDefault();
    event.stopPropagation();
    const id = action.dataset.taskId;
    action.disabled = true;
    const done = action.dataset.action === "cancel" ? cancelTask(id) : retryTask(id);
    done.finally(() => { action.disabled = false; });
    return;
  }
  const open = event.target.closest("[data-open-task]");
  if (open && socket) {
    event.preventDefault();
    detail.openDetail(open.dataset.openTask, socket);
    return;
  }
  const tabButton = event.target.closest("[data-tab]");
  if (tabButton) {
    tab = tabButton.dataset.tab;
    filter.page = 0;
    for (const b of document.querySelectorAll("[data-tab]")) b.setAttribute("aria-selected", String(b === tabButton));
    mark("tasks");
  }
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") detail.closeDetail();
  // A task row has focus (tabindex): Enter opens its drawer, as a click does.
  const row = event.key === "Enter" && event.target.matches?.("tr[data-open-task]") ? event.target : null;
  if (row && socket) {
    event.preventDefault();
    detail.openDetail(row.dataset.openTask, socket);
  }
});

watchAlerts(() => mark("health"));
$("task-filter").addEventListener("input", (event) => {
  setFromForm(event.currentTarget);
  mark("tasks");
  fetchMatching(() => mark("tasks"));
});
$("task-filter").addEventListener("submit", (event) => event.preventDefault());
$("goal-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.target.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await submitGoal(event.target);
  } finally {
    button.disabled = false;
  }
});

$("detail-close").addEventListener("click", () => detail.closeDetail());
$("signout").addEventListener("click", () => {
  localStorage.removeItem(TOKEN_KEY);
  showLogin();
});
$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = String(new FormData(event.target).get("token") || "").trim();
  if (!token) return;
  localStorage.setItem(TOKEN_KEY, token);
  event.target.reset();
  connect(token);
});
$("submit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.target.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await submitTask(event.target);
  } finally {
    button.disabled = false;
  }
});

setInterval(() => {
  refreshTimes();
  detail.tick();
}, 1000);

const token = initialToken();
if (token) connect(token);
else showLogin();
