// Hand-written SVG charts: completions and failures per bucket, and submit-to-done latency (p50, p95).

import { duration, el, fill, num } from "./util.js";

const W = 300;
const H = 96;
const PAD = { left: 42, right: 6, top: 8, bottom: 14 }; // wide enough for "59m 59s" at the tick font size

const COMPACT = new Intl.NumberFormat("en-US", { notation: "compact" }); // 50000 -> "50K": the label fits

// The minutes the chart's axis spans: the buckets shown, not the hub's longer window.
export function shownMinutes(series) {
  return Math.round((series.bucket_ms * (series.completed?.length ?? 0)) / 60000);
}

function frame(series, maxLabel, body, legend) {
  const minutes = shownMinutes(series);
  const tick = (x, y, text, anchor) => el("text", { class: "tick", x, y, "text-anchor": anchor }, text);
  return el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": legend },
    el("line", { class: "axis", x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }),
    el("line", { class: "grid", x1: PAD.left, y1: PAD.top, x2: W - PAD.right, y2: PAD.top }),
    tick(PAD.left - 3, PAD.top + 3, maxLabel, "end"),
    tick(PAD.left - 3, H - PAD.bottom, "0", "end"),
    tick(PAD.left, H - 2, `−${minutes} min`),
    tick(W - PAD.right, H - 2, "now", "end"),
    body);
}

function niceMax(value) {
  if (value <= 0) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * exp) return step * exp;
  return 10 * exp;
}

function numbers(values) {
  return Array.isArray(values) ? values.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : 0)) : [];
}

export function renderThroughput(target, note, series) {
  if (!series) {
    fill(target);
    return;
  }
  const completed = numbers(series.completed);
  const failed = numbers(series.failed);
  const n = completed.length;
  const totals = completed.map((c, i) => c + (failed[i] ?? 0));
  const max = niceMax(Math.max(...totals, 0));
  const plotH = H - PAD.top - PAD.bottom;
  const slot = (W - PAD.left - PAD.right) / n;
  const bars = [];
  for (let i = 0; i < n; i += 1) {
    const x = (PAD.left + i * slot + 0.5).toFixed(1);
    const okH = (completed[i] / max) * plotH;
    const badH = ((failed[i] ?? 0) / max) * plotH;
    const base = H - PAD.bottom;
    const width = (slot - 1).toFixed(1);
    if (okH) {
      bars.push(el("rect", { class: "ok", x, y: (base - okH).toFixed(1), width, height: okH.toFixed(1) },
        el("title", {}, `${completed[i]} completed`)));
    }
    if (badH) {
      bars.push(el("rect", { class: "bad", x, y: (base - okH - badH).toFixed(1), width, height: badH.toFixed(1) },
        el("title", {}, `${failed[i]} failed`)));
    }
  }
  const recent = totals.reduce((a, b) => a + b, 0);
  const minutes = shownMinutes(series);
  fill(target, recent ? frame(series, COMPACT.format(max), bars, "throughput per bucket")
    : el("p", { class: "empty" }, `No task has finished in the last ${minutes} minutes.`));
  target.dataset.total = String(recent);
  const per = Math.round(series.bucket_ms / 1000);
  // The note counts what the axis shows (the same buckets), so label and chart agree.
  const done = completed.reduce((a, b) => a + b, 0);
  const failedShown = failed.reduce((a, b) => a + b, 0);
  note.textContent = `per ${per} s · last ${minutes} min: ${num(done)} done, ${num(failedShown)} failed`;
}

function line(values, max, cls) {
  const n = values.length;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = (W - PAD.left - PAD.right) / n;
  let d = "";
  let pen = false;
  const dots = [];
  values.forEach((v, i) => {
    if (typeof v !== "number" || !Number.isFinite(v)) {
      pen = false;
      return;
    }
    const x = (PAD.left + (i + 0.5) * slot).toFixed(1);
    const y = (H - PAD.bottom - (v / max) * plotH).toFixed(1);
    d += `${pen ? "L" : "M"}${x},${y} `;
    pen = true;
    dots.push(el("circle", { class: cls, cx: x, cy: y, r: 1.6 }, el("title", {}, duration(v))));
  });
  return [el("path", { class: cls, d: d.trim() }), dots];
}

export function renderLatency(target, series) {
  if (!series) {
    fill(target);
    return;
  }
  const p50 = Array.isArray(series.p50_ms) ? series.p50_ms : [];
  const p95 = Array.isArray(series.p95_ms) ? series.p95_ms : [];
  const values = [...p50, ...p95].filter((v) => typeof v === "number" && Number.isFinite(v));
  if (!values.length) {
    fill(target, el("p", { class: "empty" }, "No completions to measure yet."));
    return;
  }
  const max = niceMax(Math.max(...values));
  const legend = el("p", { class: "legend small" }, el("span", { class: "key p50" }), "p50 ",
    el("span", { class: "key p95" }), "p95");
  fill(target, frame(series, duration(max), [line(p95, max, "p95"), line(p50, max, "p50")], "latency p50 and p95"),
    legend);
}
