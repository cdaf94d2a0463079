// The Costs panel: each budget in force with its spend against its limit (a bar, USD or tokens), and the spend per
// hub state. Read from /api/costs/budgets and /api/costs?group_by=hub_state on load and every REFRESH_MS.

import { api } from "./actions.js";
import { el, fill, muted, num, pill } from "./util.js";

const REFRESH_MS = 10000;
const $ = (id) => document.getElementById(id);
let timer = 0;
let inFlight = false;

export function startCosts() {
  if (timer) return;
  refreshCosts();
  timer = setInterval(refreshCosts, REFRESH_MS);
}

export async function refreshCosts() {
  if (inFlight) return;
  inFlight = true;
  try {
    const [budgets, spend] = await Promise.all([api("GET", "/api/costs/budgets"),
      api("GET", "/api/costs?group_by=hub_state")]);
    renderCosts(budgets, spend);
  } catch (err) {
    fill($("costs"), el("p", { class: "muted small" }, `not available: ${err.message}`));
  } finally {
    inFlight = false;
    $("costs-panel").hidden = false;
  }
}

function usd(v) {
  return typeof v === "number" ? `$${v < 1 ? v.toFixed(4) : v.toFixed(2)}` : "—";
}

// The spend of one budget against its tighter limit (the one nearer to being reached).
function measure(b) {
  const parts = [];
  if (typeof b.limit_usd === "number") {
    parts.push({ used: b.spent_usd + (b.reserved_usd || 0), limit: b.limit_usd, text: `${usd(b.spent_usd)} of ${usd(b.limit_usd)}` });
  }
  if (typeof b.limit_tokens === "number") {
    parts.push({ used: b.spent_tokens + (b.reserved_tokens || 0), limit: b.limit_tokens,
      text: `${num(b.spent_tokens)} of ${num(b.limit_tokens)} tokens` });
  }
  parts.sort((x, y) => y.used / (y.limit || 1) - x.used / (x.limit || 1));
  return parts;
}

function budgetRow(b) {
  const parts = measure(b);
  const fraction = parts.length && parts[0].limit ? Math.min(1, parts[0].used / parts[0].limit) : 0;
  const status = b.state === "exhausted" ? "dead_letter" : fraction >= 0.8 ? "assigned" : "completed";
  return el("li", { class: "budget", "data-budget": b.budget, "data-state": b.state },
    el("div", { class: "row" }, el("code", {}, b.budget), el("span", { class: "spacer" }),
      pill(b.state === "exhausted" ? "critical" : "ok", b.state), " ", el("span", { class: "muted small" }, b.action)),
    el("svg", { class: "bar", viewBox: "0 0 100 8", preserveAspectRatio: "none", role: "img",
      "aria-label": `${Math.round(fraction * 100)}% of the limit`, "data-fraction": fraction.toFixed(3) },
    el("rect", { class: "track", x: 0, y: 0, width: 100, height: 8, rx: 2 }),
    el("rect", { class: "fill", "data-status": status, x: 0, y: 0, width: Math.round(fraction * 100), height: 8, rx: 2 })),
    el("div", { class: "small muted" }, parts.map((p) => p.text).join(" · ")));
}

export function renderCosts(budgets, spend) {
  const rows = Array.isArray(budgets.budgets) ? budgets.budgets : [];
  const groups = Array.isArray(spend.groups) ? spend.groups : [];
  $("costs-summary").textContent = `${usd(spend.total?.usd ?? 0)} spent · hub ${budgets.hub_state ?? "?"}`;
  fill($("costs"),
    rows.length ? el("ul", { class: "budgets" }, rows.map(budgetRow))
      : el("p", { class: "empty" }, "No budget set (PUT /api/costs/budgets)."),
    el("p", { class: "muted small label" }, "Spend by hub state"),
    groups.length ? el("table", { class: "compact" }, groups.map((g) => el("tr", { "data-hub-state": g.key },
      el("td", {}, g.key || muted("none")), el("td", { class: "num" }, usd(g.usd)),
      el("td", { class: "num muted small" }, `${num((g.tokens_in || 0) + (g.tokens_out || 0))} tok`))))
      : muted("nothing spent yet"));
}
