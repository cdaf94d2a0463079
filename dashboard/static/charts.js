// Hand-written SVG charts: completions and failures per bucket, and submit-to-done latency (p50, p95).

import { duration, esc, num } from "./util.js";

const W = 300;
const H = 96;
const PAD = { left: 30, right: 4, top: 8, bottom: 14 };

function frame(series, maxLabel, body, legend) {
  const minutes = Math.round((series.bucket_ms * series.completed.length) / 60000);
  return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(legend)}">
    <line class="axis" x1="${PAD.left}" y1="${H - PAD.bottom}" x2="${W - PAD.right}" y2="${H - PAD.bottom}"></line>
    <line class="grid" x1="${PAD.left}" y1="${PAD.top}" x2="${W - PAD.right}" y2="${PAD.top}"></line>
    <text class="tick" x="${PAD.left - 3}" y="${PAD.top + 3}" text-anchor="end">${esc(maxLabel)}</text>
    <text class="tick" x="${PAD.left - 3}" y="${H - PAD.bottom}" text-anchor="end">0</text>
    <text class="tick" x="${PAD.left}" y="${H - 2}">−${minutes} min</text>
    <text class="tick" x="${W - PAD.right}" y="${H - 2}" text-anchor="end">now</text>
    ${body}</svg>`;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * exp) return step * exp;
  return 10 * exp;
}

export function renderThroughput(el, note, series) {
  if (!series) {
    el.innerHTML = "";
    return;
  }
  const n = series.completed.length;
  const totals = series.completed.map((c, i) => c + series.failed[i]);
  const max = niceMax(Math.max(...totals, 0));
  const plotH = H - PAD.top - PAD.bottom;
  const slot = (W - PAD.left - PAD.right) / n;
  const bars = [];
  for (let i = 0; i < n; i += 1) {
    const x = PAD.left + i * slot + 0.5;
    const okH = (series.completed[i] / max) * plotH;
    const badH = (series.failed[i] / max) * plotH;
    const base = H - PAD.bottom;
    if (okH) bars.push(`<rect class="ok" x="${x.toFixed(1)}" y="${(base - okH).toFixed(1)}" width="${(slot - 1).toFixed(1)}" height="${okH.toFixed(1)}"><title>${series.completed[i]} completed</title></rect>`);
    if (badH) bars.push(`<rect class="bad" x="${x.toFixed(1)}" y="${(base - okH - badH).toFixed(1)}" width="${(slot - 1).toFixed(1)}" height="${badH.toFixed(1)}"><title>${series.failed[i]} failed</title></rect>`);
  }
  const recent = totals.reduce((a, b) => a + b, 0);
  el.innerHTML = recent ? frame(series, String(max), bars.join(""), "throughput per bucket")
    : '<p class="empty">No task has finished in the last 10 minutes.</p>';
  el.dataset.total = String(recent);
  const per = Math.round(series.bucket_ms / 1000);
  note.textContent = `per ${per} s · last hour ${num(series.window_completed)} done, ${num(series.window_failed)} failed`;
}

function line(values, max, cls) {
  const n = values.length;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = (W - PAD.left - PAD.right) / n;
  let d = "";
  let pen = false;
  const dots = [];
  values.forEach((v, i) => {
    if (v === null || v === undefined) {
      pen = false;
      return;
    }
    const x = PAD.left + (i + 0.5) * slot;
    const y = H - PAD.bottom - (v / max) * plotH;
    d += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
    pen = true;
    dots.push(`<circle class="${cls}" cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="1.6"><title>${esc(duration(v))}</title></circle>`);
  });
  return `<path class="${cls}" d="${d.trim()}"></path>${dots.join("")}`;
}

export function renderLatency(el, series) {
  if (!series) {
    el.innerHTML = "";
    return;
  }
  const values = [...series.p50_ms, ...series.p95_ms].filter((v) => typeof v === "number");
  if (!values.length) {
    el.innerHTML = '<p class="empty">No completions to measure yet.</p>';
    return;
  }
  const max = niceMax(Math.max(...values));
  const legend = '<p class="legend small"><span class="key p50"></span>p50 <span class="key p95"></span>p95</p>';
  el.innerHTML = frame(series, duration(max), line(series.p95_ms, max, "p95") + line(series.p50_ms, max, "p50"),
    "latency p50 and p95") + legend;
}
