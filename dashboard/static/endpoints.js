// The Endpoints panel (health, models, warm models, probe score and path of each model server) and the routing
// line of the task drawer. The panel reads GET /api/endpoints: on load, on every endpoint event, and every 15 s.

import { api } from "./actions.js";
import { bytes, el, fill, muted, pill, rel } from "./util.js";

const REFRESH_MS = 15000;
let timer = 0;
let inFlight = false;
let again = false;

export function startEndpoints() {
  if (timer) return;
  refreshEndpoints();
  timer = setInterval(refreshEndpoints, REFRESH_MS);
}

export async function refreshEndpoints() {
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = true;
  try {
    renderEndpoints((await api("GET", "/api/endpoints")).endpoints || []);
  } catch (err) {
    fill(document.getElementById("endpoints"), el("p", { class: "muted small" }, `not available: ${err.message}`));
  } finally {
    inFlight = false;
    if (again) {
      again = false;
      refreshEndpoints();
    }
  }
}

const HEALTH = { healthy: "ok", unhealthy: "critical", unknown: "queued" };

function modelRow(ep, m) {
  const probe = ep.probes?.[m.name];
  const warm = ep.warm.some((w) => w.name === m.name);
  const caps = (m.capabilities || []).filter((c) => c !== "completion").join(", ");
  return el("li", { "data-model": m.name },
    el("code", {}, m.name), warm ? el("span", { class: "chip", title: "loaded in memory" }, "warm") : null,
    caps ? el("span", { class: "muted small" }, ` ${caps}`) : null,
    m.context_length ? el("span", { class: "muted small" }, ` ctx ${m.context_length}`) : null,
    probe ? el("span", { class: "small", "data-probe": probe.path },
      ` probe ${Number(probe.score).toFixed(2)} (${probe.path}`,
      probe.tokens_per_s ? `, ${probe.tokens_per_s} tok/s` : "", ")") : el("span", { class: "muted small" }, " not probed"));
}

export function renderEndpoints(endpoints) {
  const target = document.getElementById("endpoints");
  if (!target) return;
  const summary = document.getElementById("endpoints-summary");
  if (summary) summary.textContent = `${endpoints.filter((e) => e.health === "healthy").length}/${endpoints.length} healthy`;
  if (!endpoints.length) {
    fill(target, el("p", { class: "muted small" }, "No endpoints yet: sidecars report theirs, admins add more."));
    return;
  }
  fill(target, endpoints.map((ep) => el("div", { class: "endpoint", "data-endpoint": ep.id },
    el("div", { class: "row" }, pill(HEALTH[ep.health] || "queued", ep.health), " ",
      el("b", {}, ep.name || ep.url), ep.name ? el("span", { class: "muted small" }, ` ${ep.url}`) : null,
      el("span", { class: "spacer" }),
      ep.vram_bytes ? el("span", { class: "muted small" }, `VRAM ${bytes(ep.vram_bytes)} `) : null,
      el("span", { class: "muted small" }, ep.owners_connected.length ? `${ep.owners_connected.length} agents` : ""),
      ep.last_error ? el("span", { class: "bad small", title: ep.last_error }, " ", ep.last_error) : null),
    el("ul", { class: "models small" }, ep.models.length ? ep.models.map((m) => modelRow(ep, m)) : el("li", {}, muted())),
    ep.last_check_at ? el("div", { class: "muted small" }, "checked ", rel(ep.last_check_at)) : null)));
}

// "ollama/coder via ep-… · score 1.50 (probe +1.00 warm +0.50)" with the whole explanation as its tooltip.
export function routingLine(d) {
  if (!d || typeof d !== "object") return null;
  const target = [d.target_type, d.selected_model].filter(Boolean).join("/");
  const parts = d.score_parts && typeof d.score_parts === "object"
    ? Object.entries(d.score_parts).filter(([, v]) => v).map(([k, v]) => `${k} ${v > 0 ? "+" : ""}${v}`).join(" ") : "";
  return el("span", { class: "routing", title: d.explanation || d.classification_reason || "" },
    target || "—", d.endpoint_id ? ` via ${d.endpoint_id}` : "",
    typeof d.score === "number" ? ` · score ${d.score.toFixed(2)}${parts ? ` (${parts})` : ""}` : "",
    d.fallback_used ? ` · fell back from ${d.preferred_target}` : "",
    d.explanation ? el("div", { class: "muted small" }, d.explanation) : null);
}
