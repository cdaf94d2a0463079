// Small helpers shared by the panels: the one way to build DOM, times, sizes.
//
// Every element the page makes from hub data is built by el(): text goes in as text nodes (never parsed as HTML)
// and attributes only by name from the list below, set with setAttribute. No script assigns innerHTML,
// outerHTML or insertAdjacentHTML; a test loads the page with hostile task and agent fields to hold that.

const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_TAGS = new Set(["svg", "rect", "line", "text", "path", "circle", "title"]);
const ATTRS = new Set([
  "class", "title", "role", "type", "value", "href", "hidden", "disabled", "selected",
  "aria-hidden", "aria-label", "viewBox", "preserveAspectRatio", "text-anchor",
  "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "width", "height", "d",
  "tabindex",
]);
const DATA_ATTR = /^data-[a-z][a-z0-9-]*$/;

// setAttribute never parses markup, but a link's target is still a URL: only in-page anchors are built.
function safeValue(name, value) {
  if (name === "href" && !String(value).startsWith("#")) return "#";
  return String(value);
}

function appendChildren(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false || child === "") continue;
    if (Array.isArray(child)) appendChildren(node, child);
    else if (child instanceof Node) node.append(child);
    else node.append(document.createTextNode(String(child)));
  }
}

// el("td", { class: "wide", "data-task-id": id }, "text", otherNode, [more, nodes]): attribute values false, null
// or undefined are left out, true sets an empty (boolean) attribute; a name not on the list throws.
export function el(tag, attrs = {}, ...children) {
  const node = SVG_TAGS.has(tag) ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (!ATTRS.has(name) && !DATA_ATTR.test(name)) throw new Error(`el: attribute ${name} is not allowed`);
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : safeValue(name, value));
  }
  appendChildren(node, children);
  return node;
}

// Replace everything inside ``target`` with ``children`` (nodes, strings, arrays of them).
export function fill(target, ...children) {
  const frag = document.createDocumentFragment();
  appendChildren(frag, children);
  target.replaceChildren(frag);
  return target;
}

export function muted(text = "—") {
  return el("span", { class: "muted" }, text);
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
  if (!ts || typeof ts !== "number") return muted();
  return el("time", { "data-ts": ts, title: new Date(ts).toLocaleString() }, ago(ts));
}

export function refreshTimes(root = document) {
  for (const node of root.querySelectorAll("time[data-ts]")) {
    const text = ago(Number(node.dataset.ts));
    if (node.textContent !== text) node.textContent = text;
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
  return el("span", { class: "pill", "data-status": status }, text ?? String(status).replace("_", " "));
}

export function shortId(id) {
  return id ? String(id).replace(/^task-/, "").slice(0, 8) : "";
}
