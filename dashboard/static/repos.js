// Fills every repository <select class="repo-select"> (task and goal forms) from GET /api/repos, keeping the
// current choice when the repository is still registered.

import { api } from "./actions.js";
import { el, fill } from "./util.js";

const REFRESH_MS = 30000;
let timer = 0;
let shown = null;

export function startRepos() {
  if (timer) return;
  refreshRepos();
  timer = setInterval(refreshRepos, REFRESH_MS);
}

export async function refreshRepos() {
  let names;
  try {
    names = ((await api("GET", "/api/repos")).repos || []).map((r) => r.name).filter((n) => typeof n === "string");
  } catch {
    return; // the forms still work with the default repository
  }
  const key = JSON.stringify(names);
  if (key === shown) return;
  shown = key;
  for (const select of document.querySelectorAll("select.repo-select")) {
    const current = select.value;
    fill(select, el("option", { value: "" }, names.length ? `default (${names[0]})` : "default"),
      names.map((n) => el("option", { value: n }, n)));
    select.value = names.includes(current) ? current : "";
  }
}
