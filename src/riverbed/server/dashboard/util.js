// Small DOM and formatting helpers shared by the pages. Every piece of user data (model
// names, tags, features) goes through text nodes, never innerHTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// Replace the children of `el` (null, false and undefined children are skipped).
export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

export function modelHref(name) {
  return "#/models/" + encodeURIComponent(name);
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export function count(n) {
  return typeof n === "number" && Number.isFinite(n) ? integer.format(n) : "—";
}

// A metric's value; "–" for null, a metric that has nothing to measure yet (no label).
export function metric(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(2);
  if (abs >= 1000) return integer.format(value);
  return Number(value.toPrecision(4)).toString();
}

export function rate(perMinute) {
  if (typeof perMinute !== "number" || !Number.isFinite(perMinute)) return "—";
  if (perMinute >= 100) return integer.format(perMinute);
  return Number(perMinute.toPrecision(2)).toString();
}

export function seconds(s) {
  if (typeof s !== "number" || !Number.isFinite(s) || s <= 0) return "—";
  if (s < 1e-3) return (s * 1e6).toPrecision(3) + " µs";
  if (s < 1) return (s * 1e3).toPrecision(3) + " ms";
  return s.toPrecision(3) + " s";
}

export function clock(t) {
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], { hour12: false });
}

export function dateTime(t) {
  if (typeof t !== "number") return "—";
  const d = new Date(t * 1000);
  return d.toLocaleString([], { hour12: false });
}

export function ago(t) {
  if (typeof t !== "number") return "—";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

// A short, readable rendering of a JSON value for tables (features, predictions).
export function brief(value, limit = 80) {
  let text;
  if (typeof value === "number") text = metric(value);
  else if (typeof value === "string") text = value;
  else text = JSON.stringify(value);
  if (text === undefined) text = "";
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

// Calls `fn` at most once every `ms` milliseconds; the last call is never lost.
export function throttle(fn, ms) {
  let timer = null;
  let pending = false;
  let last = 0;
  const run = () => {
    timer = null;
    pending = false;
    last = Date.now();
    fn();
  };
  const throttled = () => {
    if (pending) return;
    pending = true;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(run, wait);
  };
  throttled.cancel = () => {
    if (timer) clearTimeout(timer);
    timer = null;
    pending = false;
  };
  return throttled;
}

// Counts over time -> a per-minute rate over the last `window` seconds.
export class RateMeter {
  constructor(window = 60) {
    this.window = window;
    this.samples = [];
  }
  add(t, n) {
    this.samples.push([t, n]);
    while (this.samples.length > 2 && this.samples[1][0] < t - this.window) this.samples.shift();
  }
  perMinute() {
    if (this.samples.length < 2) return null;
    const [t0, n0] = this.samples[0];
    const [t1, n1] = this.samples[this.samples.length - 1];
    if (t1 <= t0) return null;
    return (Math.max(0, n1 - n0) / (t1 - t0)) * 60;
  }
}
