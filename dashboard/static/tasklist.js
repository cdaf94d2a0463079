// The task list's search, filters (status, priority) and paging. Without a filter the list is the tasks the page
// holds (the snapshot's bounded lists kept current by events). With one, the hub is asked: GET /api/tasks with the
// status, priority and search words (q: matched by the hub over every stored task, in its id, description,
// repository, agent and goal), at most FETCH_LIMIT tasks, merged with the page's live copies. Typing asks once the
// words settle (DEBOUNCE_MS) and a newer question aborts the one under way. Live updates keep applying to the rows,
// through the same match here: a new task the words do not match is not shown. The tab picks the set; pages of
// PAGE_SIZE rows.

import { api } from "./actions.js";
import { state } from "./store.js";

export const PAGE_SIZE = 100;
const FETCH_LIMIT = 1000;
const DEBOUNCE_MS = 250;
const PRIORITY_NAMES = ["urgent", "high", "normal", "low"];
export const filter = { q: "", status: "", priority: "", page: 0 };
let fetched = new Map(); // task id -> summary, from the hub's answer for the current filter
let fetchedKey = null; // the filter the hub was asked for last
let fetchedFor = null; // the filter ``fetched`` answers
let askedQ = "";
let timer = null; // the debounced question, until it is sent
let inflight = null; // the AbortController of the question under way

function summary(t) {
  return { id: t.id, description: String(t.description ?? ""), status: t.status, priority: t.priority,
    priority_name: PRIORITY_NAMES[t.priority] ?? String(t.priority), outcome: t.outcome ?? null,
    assigned_to: t.assigned_to ?? null, repo: t.repo ?? null, goal_id: t.goal_id ?? null, created_at: t.created_at,
    updated_at: t.updated_at, assigned_at: t.assigned_at ?? null, retry_count: t.retry_count ?? 0,
    max_retries: t.max_retries, dead_letter_reason: t.dead_letter_reason ?? null,
    waiting_reason: t.waiting_reason ?? null };
}

// Asks the hub for the tasks matching the filter (new search words after DEBOUNCE_MS); ``redraw`` is called when
// they are in. The question under way, if any, is aborted.
export function fetchMatching(redraw) {
  const key = active() ? JSON.stringify([filter.status, filter.priority, filter.q]) : null;
  if (key === fetchedKey) return;
  fetchedKey = key;
  clearTimeout(timer);
  inflight?.abort();
  inflight = null;
  if (key === null) {
    fetched = new Map();
    fetchedFor = null;
    askedQ = "";
    return;
  }
  const wait = filter.q !== askedQ ? DEBOUNCE_MS : 0; // words being typed: ask once they settle
  askedQ = filter.q;
  const params = new URLSearchParams({ limit: String(FETCH_LIMIT) });
  if (filter.status) params.set("status", filter.status);
  if (filter.priority) params.set("priority", filter.priority);
  if (filter.q) params.set("q", filter.q);
  timer = setTimeout(() => ask(key, params, redraw), wait);
}

async function ask(key, params, redraw) {
  const control = new AbortController();
  inflight = control;
  try {
    const answer = await api("GET", `/api/tasks?${params}`, undefined, control.signal);
    if (control.signal.aborted) return; // a newer filter was asked meanwhile
    fetched = new Map((answer.tasks || []).filter((t) => t && typeof t.id === "string").map((t) => [t.id, summary(t)]));
    fetchedFor = key;
  } catch {
    if (!control.signal.aborted && fetchedKey === key) fetchedKey = null; // the page's own tasks still show
    return;
  } finally {
    if (inflight === control) inflight = null;
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
  // The hub matched it over fields the live copies lack or clip (repository, full description).
  if (fetchedFor === fetchedKey && fetched.has(t.id)) return true;
  const q = filter.q.toLowerCase();
  return [t.description, t.id, t.assigned_to, t.repo, t.goal_id]
    .some((v) => typeof v === "string" && v.toLowerCase().includes(q));
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
