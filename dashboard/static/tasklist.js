// The task list's search, filters (status, priority) and paging, over the tasks the page holds (every live and
// dead-letter task, and the most recent finished ones). The tab picks the set; the filters narrow it; pages of
// PAGE_SIZE rows, newest (or next to run) first.

import { state } from "./store.js";

export const PAGE_SIZE = 100;
export const filter = { q: "", status: "", priority: "", page: 0 };

function ordered(tab) {
  const all = [...state.tasks.values()];
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
