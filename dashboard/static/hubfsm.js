// The hub's state machine panel: its state (paused or not), a timeline of the last transitions with how long each
// state lasted, and the healing log. Read from /api/hub/state, /history and /healing-history when a "hub_fsm" event
// arrives (state.extra.hub_fsm changes) and every few seconds; panels.js shows the panel once the snapshot has it.

import { api } from "./actions.js";
import { state as pageState } from "./store.js";
import { ago, duration, el, fill, muted, pill } from "./util.js";

const POLL_MS = 5000;
const CHECK_MS = 500;
const SHOWN = 12;
let timer = null;
let seen = null;
let fetchedAt = 0;

function timeline(transitions) {
  if (!transitions.length) return muted("no transitions yet");
  return el("ol", { class: "fsm-timeline" }, transitions.slice(0, SHOWN).map((t) =>
    el("li", { "data-to": t.to },
      pill(t.to, t.to), " ",
      el("span", { class: "muted", title: t.reason }, t.from ? `after ${duration(t.duration_ms)} in ${t.from}` : "start"),
      " · ", el("span", {}, t.reason), " ",
      el("span", { class: "muted", "data-ts": t.ts }, ago(t.ts)))));
}

function healingLog(history) {
  if (!history.length) return muted("no healing yet");
  return el("ul", { class: "fsm-healing" }, history.slice(0, SHOWN).map((h) =>
    el("li", {}, el("b", {}, h.action), " ", h.target, " → ", h.result, " ",
      el("span", { class: "muted", "data-ts": h.ts }, ago(h.ts)))));
}

async function refresh(panel) {
  try {
    const [state, history, healing] = await Promise.all([
      api("GET", "/api/hub/state"),
      api("GET", `/api/hub/history?limit=${SHOWN}`),
      api("GET", `/api/hub/healing-history?limit=${SHOWN}`),
    ]);
    fill(panel,
      el("header", {}, el("h2", {}, "Hub"), pill(state.fsm_state, state.fsm_state),
        state.paused ? pill("paused", "paused") : null,
        el("span", { class: "muted" }, `for ${duration(state.in_state_ms)} · ${state.cycle_count} cycles`)),
      timeline(history.transitions),
      el("h3", {}, "Healing"),
      healingLog(healing.history));
  } catch (err) {
    fill(panel, el("header", {}, el("h2", {}, "Hub")), muted(`hub state unavailable: ${err.message || err}`));
  }
}

export function startHubFsm() {
  const panel = document.getElementById("hub-fsm-panel");
  if (timer !== null || !panel) return;
  timer = setInterval(() => {
    const current = pageState.extra.hub_fsm;
    if (current === null || (current === seen && Date.now() - fetchedAt < POLL_MS)) return;
    seen = current;
    fetchedAt = Date.now();
    refresh(panel);
  }, CHECK_MS);
}
