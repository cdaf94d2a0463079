// The task list's search, filters (status, priority) and paging. Without a filter the list is the tasks the page
// holds (the snapshot's bounded lists kept current by events). With one, the hub is asked too: GET /api/tasks with
// the status and priority (at most FETCH_LIMIT tasks, newest first), merged with the page's live copies; the search
// words then match description, id, agent and repository. The tab picks the set; pages of PAGE_SIZE rows.

import { api } from "./actions.js";
import { state } from "./store.js";

export const PAGE_SIZE = 100;
const FETCH_LIMIT = 1000;
const PRIORITY_NAMES = ["urgent", "high", "normal", "low"];
export const filter = { q: "", status: "", priority: "", page: 0 };
let fetched = new Map(); // task id -> summary, from the hub's answer for the current status and priority
let fetchedKey = null;
let asked = 0;

function summary(t) {
  return { id: t.id, description: String(t.description ?? ""), status: t.status, priority: t.priority,
    priority_name: PRIORITY_NAMES[t.priority] ?? String(t.priority), outcome: t.outcome ?? null,
    assigned_to: t.assigned_to ?? null, repo: t.repo ?? null, created_at: t.created_at, updated_at: t.updated_at,
    assigned_at: t.assigned_at ?? null, retry_count: t.retry_count ?? 0, max_retries: t.max_retries,
    dead_letter_reason: t.dead_letter_reason ?? null, waiting_reason: t.waiting_reason ?? null };
}

// Asks the hub for the tasks matching the status and priority; ``redraw`` is called when they are in.
export async function fetchMatching(redraw) {
  const key = active() ? JSON.stringify([filter.status, filter.priority]) : null;
  if (key === fetchedKey) return;
  fetchedKey = key;
  const mine = ++asked;
  if (key === null) {
    fetched = new Map();
    return;
  }
  const params = new URLSearchParams({ limit: String(FETCH_LIMIT) });
  if (filter.status) params.set("status", filter.status);
  if (filter.priority) params.set("priority", filter.priority);
  try {
    const answer = await api("GET", `/api/tasks?${params}`);
    if (mine !== asked) return; // a newer filter was asked meanwhile
    fetched = new Map((answer.tasks || []).filter((t) => t && typeof t.id === "string").map((t) => [t.id, summary(t)]));
  } catch {
    if (mine === asked) fetchedKey = null; // the page's own tasks still show; the next change asks again
    return;
  }
  redraw();
}

function ordered(tab) {
  const merged = new Map(fetched);
  for (const t of state.tasks.values()) {
    const other = merged.get(t.id);
    if (!other || (t.updated_at ?? 0) >= (other.updated_at ?? 0)) merged.set(t.id, t);
  }
  const all = [...merged.values()];
  if (tab === "queued") {
    return all.filter((t) => t.status === "queued").sort((a, b) => a.priority - b.priority || a.created_at - b.created_at);
  }
  if (tab === "in_flight") {
    return all.filter((t) => t.status === "assigned" || t.status === "working")
      .sort((a, b) => (a.assigned_at ?? 0) - (b.assigned_at ?? 0));
  }
  return all.sort((a, b) => b.updated_at - a.updated_at);
}

function matches(t) {
  if (filter.status && t.status !== filter.status) return false;
  if (filter.priority && t.priority_name !== filter.priority) return false;
  if (!filter.q) return true;
  const q = filter.q.toLowerCase();
  return [t.description, t.id, t.assigned_to, t.repo].some((v) => typeof v === "string" && v.toLowerCase().includes(q));
}

export function active() {
  return Boolean(filter.q || filter.status || filter.priority);
}

// {tasks, page, pages, total} for the tab under the current filters; the page is clamped to the last one.
export function pageOf(tab) {
  const found = ordered(tab).filter(matches);
  const pages = Math.max(1, Math.ceil(found.length / PAGE_SIZE));
  filter.page = Math.min(Math.max(0, filter.page), pages - 1);
  const start = filter.page * PAGE_SIZE;
  return { tasks: found.slice(start, start + PAGE_SIZE), page: filter.page, pages, total: found.length };
}

export function setFromForm(form) {
  const data = new FormData(form);
  filter.q = String(data.get("q") || "").trim().slice(0, 200);
  filter.status = String(data.get("status") || "");
  filter.priority = String(data.get("priority") || "");
  filter.page = 0;
}
