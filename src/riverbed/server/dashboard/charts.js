// Small SVG charts written for riverbed: a line chart with several series, axes, a legend
// and a hover read-out, and a sparkline. No dependencies; they redraw at most every 100 ms
// and follow their container's width.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  return el;
}

// About `count` round tick values covering [lo, hi].
export function ticks(lo, hi, count = 4) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  }
  return out;
}

function timeTick(t) {
  return new Date(t * 1000).toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

// About `count` ticks on round clock times (every 15 s, 5 min, 1 h, ...) over [lo, hi].
export function timeTicks(lo, hi, count = 4) {
  if (!(hi > lo)) return { values: [lo], step: 1 };
  const raw = (hi - lo) / count;
  const step = TIME_STEPS.find((s) => s >= raw) || Math.ceil(raw / 86400) * 86400;
  // Round in local time, so that hours and days fall on the local clock.
  const offset = -new Date(lo * 1000).getTimezoneOffset() * 60;
  const values = [];
  for (let v = Math.ceil((lo + offset) / step) * step - offset; v <= hi; v += step) values.push(v);
  return { values, step };
}

function timeLabel(t, step) {
  const d = new Date(t * 1000);
  if (step >= 86400) return d.toLocaleDateString([], { month: "short", day: "numeric" });
  if (step >= 60) return d.toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit" });
  return timeTick(t);
}

function defaultFormat(v) {
  const abs = Math.abs(v);
  if (abs !== 0 && (abs >= 1e5 || abs < 1e-3)) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

export const PALETTE = ["#1f6feb", "#e5534b", "#2da44e", "#bf8700", "#8250df", "#1b7c83"];

// new LineChart(parent, {label, series: [{key, label, color}], yFormat, xFormat})
// chart.set(key, [[x, y], ...]) replaces a series, chart.push(key, x, y) appends a point.
export class LineChart {
  constructor(parent, options = {}) {
    this.options = options;
    this.series = (options.series || []).map((s, i) => ({
      key: s.key,
      label: s.label || s.key,
      color: s.color || PALETTE[i % PALETTE.length],
      dash: s.dash || null,
      points: [],
    }));
    this.markers = []; // vertical lines at an x: [{key, x, label}], drawn under the series
    this.maxPoints = options.maxPoints || 2000;
    this.height = options.height || 170;
    this.yFormat = options.yFormat || defaultFormat;
    this.xFormat = options.xFormat || timeTick;
    this.el = document.createElement("figure");
    this.el.className = "chart";
    if (options.id) this.el.dataset.chart = options.id;
    this.legend = document.createElement("figcaption");
    this.legend.className = "legend";
    this.svg = svg("svg", { role: "img", "aria-label": options.label || "chart" });
    this.tip = document.createElement("div");
    this.tip.className = "tip";
    this.tip.hidden = true;
    this.el.append(this.legend, this.svg, this.tip);
    parent.append(this.el);
    this.timer = null;
    this.hover = null;
    this.svg.addEventListener("pointermove", (e) => this.onHover(e));
    this.svg.addEventListener("pointerleave", () => {
      this.hover = null;
      this.tip.hidden = true;
      this.schedule();
    });
    if (typeof ResizeObserver !== "undefined") {
      this.observer = new ResizeObserver(() => this.schedule());
      this.observer.observe(this.el);
    }
    this.drawLegend();
    this.schedule();
  }

  // The series `key`, added (with `label`) if it is new.
  find(key, label = key) {
    let s = this.series.find((x) => x.key === key);
    if (!s) {
      const i = this.series.length;
      s = { key, label, color: PALETTE[i % PALETTE.length], dash: null, points: [] };
      this.series.push(s);
      this.drawLegend();
    }
    return s;
  }

  set(key, points) {
    const s = this.find(key);
    s.points = points.filter((p) => Number.isFinite(p[0])).sort((a, b) => a[0] - b[0]);
    this.trim(s);
    this.schedule();
  }

  push(key, x, y, label = key) {
    const s = this.find(key, label);
    const last = s.points[s.points.length - 1];
    if (last && x < last[0]) return; // out of order: ignore
    if (last && x === last[0]) last[1] = y;
    else s.points.push([x, y]);
    this.trim(s);
    this.schedule();
  }

  // A vertical marker at `x` (a drift alarm, say), drawn with `label` as its tooltip; a
  // second marker with the same `key` is ignored.
  mark(key, x, label) {
    if (!Number.isFinite(x) || this.markers.some((m) => m.key === key)) return;
    this.markers.push({ key, x, label });
    this.markers.sort((a, b) => a.x - b.x);
    this.schedule();
  }

  trim(s) {
    // Past the limit, keep every other old point: the shape stays, the cost stays bounded.
    if (s.points.length <= this.maxPoints) return;
    const half = Math.floor(s.points.length / 2);
    const old = s.points.slice(0, half).filter((_, i) => i % 2 === 0);
    s.points = old.concat(s.points.slice(half));
  }

  get pointCount() {
    return this.series.reduce((n, s) => n + s.points.length, 0);
  }

  destroy() {
    if (this.observer) this.observer.disconnect();
    if (this.timer) clearTimeout(this.timer);
    this.el.remove();
  }

  schedule() {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.draw();
    }, 100);
  }

  drawLegend() {
    this.legend.textContent = "";
    if (this.options.title) {
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = this.options.title;
      this.legend.append(title);
    }
    for (const s of this.series) {
      const item = document.createElement("span");
      item.className = "key";
      const swatch = document.createElement("i");
      swatch.style.background = s.color;
      item.append(swatch, document.createTextNode(s.label));
      this.legend.append(item);
    }
  }

  domain() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of this.series) {
      for (const [x, y] of s.points) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (Number.isFinite(y)) {
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
    }
    if (!Number.isFinite(x0)) return null;
    for (const mk of this.markers) {
      if (mk.x < x0) x0 = mk.x;
      if (mk.x > x1) x1 = mk.x;
    }
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
    if (this.options.yMin !== undefined) y0 = Math.min(y0, this.options.yMin);
    if (y1 === y0) { const pad = Math.abs(y0) * 0.1 || 1; y0 -= pad; y1 += pad; }
    else { const pad = (y1 - y0) * 0.08; y1 += pad; if (this.options.yMin === undefined) y0 -= pad; }
    return { x0, x1, y0, y1 };
  }

  draw() {
    const width = Math.max(200, Math.round(this.el.clientWidth || 480));
    const height = this.height;
    const m = { left: 50, right: 12, top: 8, bottom: 22 };
    const root = this.svg;
    root.setAttribute("viewBox", `0 0 ${width} ${height}`);
    root.setAttribute("width", width);
    root.setAttribute("height", height);
    root.dataset.points = String(this.pointCount);
    root.dataset.markers = "0";
    root.textContent = "";
    const d = this.domain();
    if (!d) {
      const empty = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" });
      empty.textContent = this.options.empty || "waiting for data…";
      root.append(empty);
      this.scale = null;
      return;
    }
    const sx = (x) => m.left + ((x - d.x0) / (d.x1 - d.x0)) * (width - m.left - m.right);
    const sy = (y) => height - m.bottom - ((y - d.y0) / (d.y1 - d.y0)) * (height - m.top - m.bottom);
    this.scale = { sx, sy, d, m, width, height };
    const axes = svg("g", { class: "axis" });
    for (const v of ticks(d.y0, d.y1, 4)) {
      const y = sy(v);
      axes.append(svg("line", { x1: m.left, x2: width - m.right, y1: y, y2: y, class: "grid" }));
      const label = svg("text", { x: m.left - 6, y: y + 4, "text-anchor": "end" });
      label.textContent = this.yFormat(v);
      axes.append(label);
    }
    const xcount = Math.max(2, Math.floor((width - m.left) / 110));
    const timed = !this.options.xFormat;
    const xt = timed ? timeTicks(d.x0, d.x1, xcount) : { values: ticks(d.x0, d.x1, xcount), step: 0 };
    for (const v of xt.values) {
      if (sx(v) < m.left + 16 || sx(v) > width - 26) continue; // a label there would be cut
      const label = svg("text", { x: sx(v), y: height - 6, "text-anchor": "middle" });
      label.textContent = timed ? timeLabel(v, xt.step) : this.xFormat(v);
      axes.append(label);
    }
    root.append(axes);
    if (this.markers.length) {
      const marks = svg("g", { class: "markers" });
      for (const mk of this.markers) {
        const x = sx(mk.x);
        const mark = svg("g", { class: "marker", "data-marker": mk.key });
        mark.append(
          svg("line", { x1: x, x2: x, y1: m.top, y2: height - m.bottom }),
          svg("path", { d: `M${(x - 4).toFixed(1)} ${m.top} h8 l-4 6 z` }),
        );
        const title = svg("title");
        title.textContent = mk.label;
        mark.append(title);
        marks.append(mark);
      }
      root.append(marks);
      root.dataset.markers = String(this.markers.length);
    }
    for (const s of this.series) {
      if (!s.points.length) continue;
      let path = "";
      let pen = false;
      for (const [x, y] of s.points) {
        if (!Number.isFinite(y)) { pen = false; continue; }
        path += (pen ? "L" : "M") + sx(x).toFixed(1) + " " + sy(y).toFixed(1);
        pen = true;
      }
      const line = svg("path", { d: path, fill: "none", stroke: s.color, "stroke-width": 2, class: "line" });
      if (s.dash) line.setAttribute("stroke-dasharray", s.dash);
      root.append(line);
      const last = s.points[s.points.length - 1];
      if (Number.isFinite(last[1])) {
        root.append(svg("circle", { cx: sx(last[0]), cy: sy(last[1]), r: 3, fill: s.color }));
      }
    }
    if (this.hover !== null) this.drawHover();
  }

  onHover(event) {
    if (!this.scale) return;
    const box = this.svg.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * this.scale.width;
    const { d, m, width } = this.scale;
    this.hover = d.x0 + ((px - m.left) / (width - m.left - m.right)) * (d.x1 - d.x0);
    this.draw();
  }

  drawHover() {
    const { sx, sy, m, height } = this.scale;
    const rows = [];
    let at = null;
    for (const s of this.series) {
      let best = null;
      for (const p of s.points) {
        if (!Number.isFinite(p[1])) continue;
        if (!best || Math.abs(p[0] - this.hover) < Math.abs(best[0] - this.hover)) best = p;
      }
      if (!best) continue;
      at = at === null ? best[0] : at;
      rows.push([s, best]);
      this.svg.append(svg("circle", { cx: sx(best[0]), cy: sy(best[1]), r: 4, fill: "none", stroke: s.color, "stroke-width": 2 }));
    }
    if (at === null) return;
    this.svg.append(svg("line", { x1: sx(at), x2: sx(at), y1: m.top, y2: height - m.bottom, class: "cursor" }));
    const near = this.markers.filter((mk) => Math.abs(sx(mk.x) - sx(at)) <= 6);
    this.tip.textContent = "";
    const head = document.createElement("div");
    head.textContent = this.xFormat(at);
    this.tip.append(head);
    for (const [s, p] of rows) {
      const row = document.createElement("div");
      const swatch = document.createElement("i");
      swatch.style.background = s.color;
      row.append(swatch, document.createTextNode(`${s.label}: ${this.yFormat(p[1])}`));
      this.tip.append(row);
    }
    for (const mk of near) {
      const row = document.createElement("div");
      row.className = "tip-marker";
      row.textContent = mk.label;
      this.tip.append(row);
    }
    const left = (sx(at) / this.scale.width) * 100;
    this.tip.style.left = left < 60 ? `calc(${left}% + 8px)` : "";
    this.tip.style.right = left >= 60 ? `calc(${100 - left}% + 8px)` : "";
    this.tip.hidden = false;
  }
}

// A small trend line for lists: values in order, drawn in a width x height box.
export function sparkline(values, { width = 120, height = 30, color = PALETTE[0], label = "trend" } = {}) {
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "spark", role: "img", "aria-label": label });
  const ys = values.filter(Number.isFinite);
  root.dataset.points = String(ys.length);
  if (ys.length === 0) {
    root.append(svg("line", { x1: 0, x2: width, y1: height / 2, y2: height / 2, class: "spark-empty" }));
    return root;
  }
  let lo = Math.min(...ys);
  let hi = Math.max(...ys);
  if (hi === lo) { lo -= 1; hi += 1; }
  const n = ys.length;
  const x = (i) => (n === 1 ? width - 2 : 2 + (i / (n - 1)) * (width - 4));
  const y = (v) => height - 3 - ((v - lo) / (hi - lo)) * (height - 6);
  const points = ys.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  root.append(svg("polyline", { points, fill: "none", stroke: color, "stroke-width": 1.5 }));
  root.append(svg("circle", { cx: x(n - 1), cy: y(ys[n - 1]), r: 2.5, fill: color }));
  return root;
}
