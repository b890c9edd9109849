// One model: live charts of each metric, latency and throughput, the last events, its
// versions and its spec. The event stream of the model drives the refreshes; a slow poll
// keeps latency and throughput moving when the stream is quiet.

import { ApiError, follow, get, modelPath } from "./api.js";
import { LineChart } from "./charts.js";
import { brief, clear, clock, count, dateTime, h, metric, replace, seconds, throttle } from "./util.js";

const STATS_MS = 2000;
const EVENTS_KEPT = 50;
const RATE_WINDOW_S = 10;

export function modelPage(main, name, ctx) {
  let stopped = false;
  let stopStream = null;
  let timer = null;
  const charts = [];
  replace(main, h("p", { class: "muted" }, "Loading ", name, "…"));

  const cleanup = () => {
    stopped = true;
    if (stopStream) stopStream();
    if (timer) clearTimeout(timer);
    for (const c of charts) c.destroy();
  };

  start().catch((error) => {
    if (stopped) return;
    if (error instanceof ApiError && error.status === 404) {
      replace(main, 
        h("h1", {}, "No such model"),
        h("p", {}, `There is no model named “${name}”. `, h("a", { href: "#/" }, "See every model.")),
      );
      ctx.setConn("live", "");
    } else {
      replace(main, h("h1", {}, name), h("p", { class: "error" }, "Could not load this model: ", error.message));
      ctx.setConn(error.status === 401 || error.status === 403 ? "auth" : "offline", error.message);
    }
  });
  return cleanup;

  async function start() {
    // Ask the list first: a request for a missing model would log a 404 in the console.
    const { models } = await get("/v1/models");
    if (!models.some((m) => m.name === name)) throw new ApiError(404, "model_not_found", "no such model");
    const info = await get(modelPath(name));
    if (stopped) return;
    const counters = {
      predictions: h("dd", { id: "n-predictions" }, count(info.n_predictions)),
      learns: h("dd", { id: "n-learns" }, count(info.n_learns)),
      scored: h("dd", { id: "n-scored" }, "—"),
      predictLatency: h("dd", {}, "—"),
      learnLatency: h("dd", {}, "—"),
    };
    const metricsGrid = h("div", { class: "chart-grid", id: "metric-charts" });
    const perfGrid = h("div", { class: "chart-grid", id: "perf-charts" });
    const eventsBody = h("tbody", { id: "model-events" });
    const versions = h("div", { id: "versions" });

    replace(main, 
      h(
        "div",
        { class: "page-head" },
        h("h1", {}, info.name, " ", h("span", { class: "badge" }, info.task)),
        h("a", { href: "#/events?model=" + encodeURIComponent(info.name), class: "muted" }, "events of this model →"),
      ),
      info.description ? h("p", { class: "desc" }, info.description) : null,
      Object.keys(info.tags || {}).length
        ? h("div", { class: "tags" }, Object.entries(info.tags).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`)))
        : null,
      h(
        "dl",
        { class: "facts" },
        fact("predictions", counters.predictions),
        fact("learns", counters.learns),
        fact("scored", counters.scored),
        fact("predict latency", counters.predictLatency),
        fact("learn latency", counters.learnLatency),
        fact("version", h("dd", {}, "v" + info.version)),
      ),
      h("h2", {}, "Metrics"),
      h("p", { class: "muted small" }, "Progressive validation: each prediction is scored before the model learns from its ground truth."),
      metricsGrid,
      h("h2", {}, "Latency and throughput"),
      perfGrid,
      h("h2", {}, "Last events"),
      h(
        "div",
        { class: "table-wrap scroll" },
        h("table", { class: "events model-events" }, h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "event"), h("th", {}, "prediction id"), h("th", {}, "prediction"), h("th", {}, "ground truth"))), eventsBody),
      ),
      h("h2", {}, "Versions"),
      versions,
      h("h2", {}, "Spec"),
      h("pre", { class: "spec", id: "spec" }, info.spec === null || info.spec === undefined ? "(this model was created from an object that has no declarative spec)" : JSON.stringify(info.spec, null, 2)),
    );

    // One chart per metric; "running" is the value over every scored sample.
    const metricCharts = new Map();
    for (const m of info.metrics || []) {
      const chart = new LineChart(metricsGrid, {
        id: m,
        title: m,
        label: `${m} of ${info.name}`,
        series: [{ key: "running", label: "running" }],
        yFormat: metric,
        empty: "no scored sample yet",
      });
      charts.push(chart);
      metricCharts.set(m, chart);
    }
    const latency = new LineChart(perfGrid, {
      id: "latency",
      title: "Latency (model call)",
      series: [
        { key: "predict", label: "predict" },
        { key: "learn", label: "learn" },
      ],
      yFormat: (v) => (v === 0 ? "0" : seconds(v)),
      yMin: 0,
    });
    const throughput = new LineChart(perfGrid, {
      id: "throughput",
      title: "Throughput (per second)",
      series: [
        { key: "predictions", label: "predictions/s" },
        { key: "learns", label: "learns/s" },
      ],
      yMin: 0,
    });
    charts.push(latency, throughput);
    renderVersions(versions, info);

    const window = [];
    let lastScored = -1;
    const refresh = async () => {
      if (stopped) return;
      try {
        const [m, s] = await Promise.all([get(modelPath(name, "/metrics")), get(modelPath(name, "/stats"))]);
        if (stopped) return;
        const now = Date.now() / 1000;
        if (m.n > 0 && m.n !== lastScored) {
          for (const [key, value] of Object.entries(m.metrics)) {
            const chart = metricCharts.get(key);
            if (chart && typeof value === "number") chart.push("running", now, value);
          }
          lastScored = m.n;
        }
        counters.scored.textContent = count(m.n);
        counters.predictions.textContent = count(s.n_predictions);
        counters.learns.textContent = count(s.n_learns);
        counters.predictLatency.textContent = seconds(s.predict.ewm_duration);
        counters.learnLatency.textContent = seconds(s.learn.ewm_duration);
        if (s.predict.n_calls) latency.push("predict", now, s.predict.ewm_duration);
        if (s.learn.n_calls) latency.push("learn", now, s.learn.ewm_duration);
        // Throughput over the last few seconds, so that bursts read as rates, not spikes.
        window.push({ t: now, p: s.n_predictions, l: s.n_learns });
        while (window.length > 2 && window[1].t < now - RATE_WINDOW_S) window.shift();
        const first = window[0];
        if (now - first.t >= 1) {
          const dt = now - first.t;
          throughput.push("predictions", now, Math.max(0, s.n_predictions - first.p) / dt);
          throughput.push("learns", now, Math.max(0, s.n_learns - first.l) / dt);
        }
      } catch (error) {
        if (error.status === 404) ctx.setConn("offline", "this model was deleted");
      }
    };
    const refreshSoon = throttle(refresh, 500);
    const tick = async () => {
      await refresh();
      if (!stopped) timer = setTimeout(tick, STATS_MS);
    };
    tick();

    stopStream = follow("/v1/events?model=" + encodeURIComponent(name), {
      onState: (state) => ctx.setConn(state, "events of " + name),
      onEvent: (type, event) => {
        if (!event || typeof event !== "object") return;
        addEvent(eventsBody, event);
        if (type === "learn" || type === "predict") refreshSoon();
      },
    });
  }
}

function fact(label, dd) {
  return h("div", {}, h("dt", {}, label), dd);
}

function addEvent(body, event) {
  const data = event.data || {};
  const row = h(
    "tr",
    { class: "ev-" + event.type.replace(/\W/g, "-") },
    h("td", {}, clock(event.time)),
    h("td", {}, h("span", { class: "badge ev" }, event.type)),
    h("td", { class: "mono pid" }, brief(data.id ?? data.prediction_id ?? "", 24)),
    h("td", {}, "prediction" in data ? brief(data.prediction) : ""),
    h("td", {}, "ground_truth" in data ? brief(data.ground_truth) : ""),
  );
  body.prepend(row);
  while (body.rows.length > EVENTS_KEPT) body.deleteRow(body.rows.length - 1);
}

function renderVersions(el, info) {
  replace(el, 
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "versions" },
        h("thead", {}, h("tr", {}, h("th", {}, "version"), h("th", {}, "source"), h("th", {}, "created"))),
        h("tbody", {}, h("tr", {}, h("td", {}, "v" + info.version), h("td", {}, info.source || "—"), h("td", {}, dateTime(info.created_at)))),
      ),
    ),
  );
}
