// Small helpers shared by the panels: escaping, times, sizes.

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function esc(value) {
  return value === null || value === undefined ? "" : String(value).replace(/[&<>"']/g, (c) => ESC[c]);
}

let clockOffsetMs = 0; // hub clock minus browser clock, set from each snapshot

export function setServerTime(serverMs) {
  if (typeof serverMs === "number") clockOffsetMs = serverMs - Date.now();
}

export function serverNow() {
  return Date.now() + clockOffsetMs;
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = s / 60;
  if (m < 60) return `${Math.floor(m)}m ${Math.round(s % 60)}s`;
  const h = m / 60;
  if (h < 48) return `${Math.floor(h)}h ${Math.round(m % 60)}m`;
  return `${Math.round(h / 24)}d`;
}

export function ago(ts) {
  if (!ts) return "—";
  const ms = serverNow() - ts;
  if (ms < 2000) return "just now";
  return `${duration(ms).replace(/\.\d/, "")} ago`;
}

// A <time> whose text the page refreshes every second.
export function rel(ts) {
  if (!ts) return '<span class="muted">—</span>';
  return `<time data-ts="${ts}" title="${esc(new Date(ts).toLocaleString())}">${esc(ago(ts))}</time>`;
}

export function refreshTimes(root = document) {
  for (const el of root.querySelectorAll("time[data-ts]")) {
    const text = ago(Number(el.dataset.ts));
    if (el.textContent !== text) el.textContent = text;
  }
}

export function bytes(n) {
  if (typeof n !== "number") return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

export function num(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "—";
}

export function pill(status, text) {
  return `<span class="pill" data-status="${esc(status)}">${esc(text ?? String(status).replace("_", " "))}</span>`;
}

export function shortId(id) {
  return id ? String(id).replace(/^task-/, "").slice(0, 8) : "";
}
