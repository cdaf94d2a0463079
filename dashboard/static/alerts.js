// Acknowledgement of the hub's alert conditions. The live health (snapshot and metrics) lists the conditions;
// which are acknowledged, and by whom, comes from GET /api/alerts, read when the set of conditions changes and
// from the answer to POST /api/alerts/{id}/ack. An acknowledged condition stays listed, marked, with no button.

import { api } from "./actions.js";

export const acked = new Map(); // condition id -> who acknowledged it
let seenKey = null;
let onChange = () => {};

export function watchAlerts(callback) {
  onChange = callback;
}

export function absorb(current) {
  acked.clear();
  for (const c of current?.conditions || []) if (c.acknowledged) acked.set(c.id, c.acknowledged_by || "");
  onChange();
}

// Called on every health update: fetches the acknowledgements when the conditions' ids changed.
export async function conditionsSeen(conditions) {
  const key = JSON.stringify((conditions || []).map((c) => c.id).sort());
  if (key === seenKey) return;
  seenKey = key;
  try {
    absorb(await api("GET", "/api/alerts"));
  } catch {
    // the conditions still show; only their acknowledgement is unknown
  }
}
