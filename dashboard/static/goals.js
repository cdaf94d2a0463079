// The Goals panel: the latest goals with status, progress and reason, each with its task DAG as an indented list
// (a task one level deeper than its deepest dependency). Task statuses come from the page's live task store when
// it has the task, so the DAG moves with the fleet between goal updates.

import { state } from "./store.js";
import { el, fill, pill, shortId } from "./util.js";

const $ = (id) => document.getElementById(id);
const MAX_LEVEL = 8;

function taskRow(row) {
  const live = state.tasks.get(row.task_id);
  const status = live ? live.status : row.status;
  const level = Math.min(Number(row.level) || 0, MAX_LEVEL);
  return el("li", { class: "goal-task", "data-level": level, "data-task-id": row.task_id },
    "\u00a0\u00a0".repeat(level), level ? "\u21b3 " : "", pill(status), " ",
    el("a", { href: "#", "data-open-task": row.task_id }, el("code", {}, shortId(row.task_id))), ` ${row.description}`);
}

function goalItem(goal, rows) {
  const done = Number(goal.completed) || 0;
  const total = Number(goal.total) || 0;
  return el("li", { class: "goal", "data-goal-id": goal.id },
    el("div", {}, pill(goal.status), " ", el("b", {}, goal.description)),
    el("div", { class: "muted small" }, `${done}/${total} tasks`, goal.rounds ? ` \u00b7 round ${goal.rounds}` : "",
      goal.reason ? ` \u00b7 ${goal.reason}` : ""),
    rows.length ? el("ul", { class: "goal-dag" }, rows.map(taskRow)) : null);
}

export function renderGoals() {
  const view = state.extra.goals;
  const panel = $("goals-panel");
  if (!panel || !view) return;
  const goals = Array.isArray(view.goals) ? view.goals : [];
  const tasks = Array.isArray(view.tasks) ? view.tasks : [];
  const header = el("header", {}, el("h2", {}, "Goals"), el("span", { class: "muted" }, `${Number(view.count) || 0}`));
  const body = goals.length
    ? el("ul", { class: "goals" }, goals.map((g) => goalItem(g, tasks.filter((t) => t.goal_id === g.id))))
    : el("p", { class: "empty" }, "No goals yet");
  fill(panel, header, el("div", { class: "scroll" }, body));
}
