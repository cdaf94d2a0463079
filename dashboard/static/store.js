// The page's copy of the hub state: filled by snapshots, kept current by event batches and tool calls.

export const state = {
  role: null,
  snapshots: 0,
  timestamp: 0,
  startedAt: 0,
  agents: new Map(),
  tasks: new Map(),
  progress: new Map(),
  queue: { by_status: {}, by_priority: {}, dead_letter: 0, total: 0 },
  health: { status: "unknown", conditions: [] },
  series: null,
  extra: { hub_fsm: null, goals: null, costs: null },
};

const LIVE = new Set(["queued", "assigned", "working"]);
const KEEP_FINISHED = 150;

function newer(old, next, key) {
  return !old || (next[key] ?? 0) >= (old[key] ?? 0);
}

function putTask(task) {
  if (task && newer(state.tasks.get(task.id), task, "updated_at")) state.tasks.set(task.id, task);
}

function putAgent(agent) {
  const old = state.agents.get(agent.agent_id);
  if (newer(old, agent, "last_state_change")) {
    state.agents.set(agent.agent_id, { ...agent, last_event: agent.last_event ?? old?.last_event ?? null });
  }
}

// Keep every live and dead-letter task the page knows of, and the most recent finished ones.
function prune() {
  if (state.tasks.size < 800) return;
  const finished = [...state.tasks.values()].filter((t) => !LIVE.has(t.status) && t.status !== "dead_letter");
  finished.sort((a, b) => b.updated_at - a.updated_at);
  for (const task of finished.slice(KEEP_FINISHED)) {
    state.tasks.delete(task.id);
    state.progress.delete(task.id);
  }
}

export function applySnapshot(message) {
  const data = message.data;
  state.role = message.role;
  state.snapshots += 1;
  state.timestamp = data.timestamp;
  state.startedAt = data.started_at;
  state.agents = new Map(data.agents.map((a) => [a.agent_id, a]));
  state.tasks = new Map();
  for (const list of [data.recent_tasks, data.queued_tasks, data.in_flight_tasks, data.dead_letter_tasks]) {
    for (const task of list) putTask(task);
  }
  state.progress = new Map(Object.entries(data.progress || {}));
  state.queue = data.queue;
  state.health = data.health;
  state.series = data.series;
  for (const key of Object.keys(state.extra)) state.extra[key] = data[key] ?? null;
}

export function applyMetrics(message) {
  if (message.timestamp) state.timestamp = message.timestamp;
  if (message.queue) state.queue = message.queue;
  if (message.health) state.health = message.health;
  if (message.series) state.series = message.series;
}

// Returns the ids of tasks the batch touched (the detail view refreshes when its task is among them).
export function applyEvents(message) {
  const touched = new Set();
  for (const event of message.data) {
    if (event.kind === "task_event") {
      putTask(event.task);
      touched.add(event.task_id);
    } else if (event.kind in state.extra) {
      state.extra[event.kind] = event;
    }
  }
  for (const agent of message.agents || []) putAgent(agent);
  applyMetrics(message);
  prune();
  return touched;
}

export function applyExecution(message) {
  const event = message.data;
  if (message.progress) state.progress.set(event.task_id, message.progress);
  const agent = state.agents.get(event.agent_id);
  if (agent) {
    agent.last_event = { task_id: event.task_id, event_type: event.event_type, tool_name: event.tool_name,
      timestamp: event.timestamp };
  }
  return event;
}

const PRIORITY_ORDER = { urgent: 0, high: 1, normal: 2, low: 3 };

export function tasksFor(tab) {
  const all = [...state.tasks.values()];
  if (tab === "queued") {
    return all.filter((t) => t.status === "queued")
      .sort((a, b) => a.priority - b.priority || a.created_at - b.created_at).slice(0, 100);
  }
  if (tab === "in_flight") {
    return all.filter((t) => t.status === "assigned" || t.status === "working")
      .sort((a, b) => (a.assigned_at ?? 0) - (b.assigned_at ?? 0));
  }
  if (tab === "dead") {
    return all.filter((t) => t.status === "dead_letter").sort((a, b) => b.updated_at - a.updated_at).slice(0, 100);
  }
  return all.sort((a, b) => b.updated_at - a.updated_at).slice(0, 100);
}

export function agentsSorted() {
  const rank = { working: 0, blocked: 1, assigned: 2, idle: 3, offline: 4 };
  return [...state.agents.values()].sort((a, b) =>
    (rank[a.fsm_state] ?? 5) - (rank[b.fsm_state] ?? 5) || String(a.agent_id).localeCompare(String(b.agent_id)));
}

export { PRIORITY_ORDER };
