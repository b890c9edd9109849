// One model: live charts of each metric (running and rolling windows), latency and
// throughput, the last events, its versions and its spec.
//
// Metrics: the stored history is drawn first (so a reload shows the past), then the server's
// metrics stream adds a point whenever the model learns. A server without those routes is
// followed through its event stream instead: each learn triggers a (throttled) read of the
// metrics. Latency and throughput come from a poll of the model's stats.

import { ApiError, follow, get, hasRoute, modelPath } from "./api.js";
import { LineChart } from "./charts.js";
import { brief, clock, count, h, metric, replace, seconds, throttle } from "./util.js";
import { renderVersions } from "./versions.js";

const STATS_MS = 2000;
const EVENTS_KEPT = 50;
const RATE_WINDOW_S = 10;
const HISTORY_SECONDS = 6 * 3600;
const HISTORY_PAGES = 5;
const ALARMS_SHOWN = 50;
const ALARM_PAGES = 10;

// What a drift alarm's marker and table row say of it.
export function alarmLabel(a) {
  const value = typeof a.value === "number" ? metric(a.value) : String(a.value);
  return `drift: ${a.name} on ${a.on} at learn ${count(a.position)} (value ${value})`;
}

export function windowLabel(w) {
  if (w.seconds) return `last ${w.seconds} s`;
  if (w.size) return `last ${count(w.size)}`;
  return "window " + w.window;
}

export function modelPage(main, name, ctx) {
  let stopped = false;
  const stops = [];
  let timer = null;
  const charts = [];
  replace(main, h("p", { class: "muted" }, "Loading ", name, "…"));

  const cleanup = () => {
    stopped = true;
    for (const stop of stops) stop();
    if (timer) clearTimeout(timer);
    for (const c of charts) c.destroy();
  };

  start().catch((error) => {
    if (stopped) return;
    if (error instanceof ApiError && error.status === 404) {
      replace(
        main,
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
    const [info, hasHistory, hasMetricStream, hasDrift] = await Promise.all([
      get(modelPath(name)),
      hasRoute("GET", "/v1/models/{name}/metrics/history"),
      hasRoute("GET", "/v1/models/{name}/metrics/stream"),
      hasRoute("GET", "/v1/models/{name}/drift/alarms"),
    ]);
    if (stopped) return;
    const counters = {
      predictions: h("dd", { id: "n-predictions" }, count(info.n_predictions)),
      learns: h("dd", { id: "n-learns" }, count(info.n_learns)),
      scored: h("dd", { id: "n-scored" }, "—"),
      predictLatency: h("dd", {}, "—"),
      learnLatency: h("dd", {}, "—"),
    };
    const metricsGrid = h("div", { class: "chart-grid", id: "metric-charts" });
    const metricsNote = h("p", { class: "muted small", id: "metrics-note" }, "Progressive validation: each prediction is scored before the model learns from its ground truth.");
    const perfGrid = h("div", { class: "chart-grid", id: "perf-charts" });
    const arenaSection = h("section", { id: "arena", hidden: true });
    const eventsBody = h("tbody", { id: "model-events" });
    const driftNote = h("p", { class: "muted small", id: "drift-note" }, "Loading the drift detectors…");
    const alarmsBody = h("tbody", { id: "drift-alarms" });
    const versions = h("div", { id: "versions" });

    replace(
      main,
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
        fact("version", h("dd", {}, info.version === undefined ? "—" : "v" + info.version)),
      ),
      h("h2", {}, "Metrics"),
      metricsNote,
      metricsGrid,
      arenaSection,
      hasDrift && (info.flavor === undefined || info.flavor === "river")
        ? h(
            "section",
            { id: "drift" },
            h("h2", {}, "Drift alarms"),
            driftNote,
            h(
              "div",
              { class: "table-wrap scroll" },
              h(
                "table",
                { class: "events drift-alarms" },
                h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "detector"), h("th", {}, "watches"), h("th", {}, "learn"), h("th", {}, "value"), h("th", {}, "action"))),
                alarmsBody,
              ),
            ),
          )
        : null,
      h("h2", {}, "Latency and throughput"),
      perfGrid,
      h("h2", {}, "Last events"),
      h(
        "div",
        { class: "table-wrap scroll" },
        h(
          "table",
          { class: "events model-events" },
          h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "event"), h("th", {}, "prediction id"), h("th", {}, "prediction"), h("th", {}, "ground truth"))),
          eventsBody,
        ),
      ),
      h("h2", {}, "Versions"),
      versions,
      h("h2", {}, "Spec"),
      h(
        "pre",
        { class: "spec", id: "spec" },
        info.spec === null || info.spec === undefined ? "(this model was made from an object that has no declarative spec)" : JSON.stringify(info.spec, null, 2),
      ),
    );

    // One chart per metric, created as the metric first shows up (a forecaster's metrics
    // are per step ahead: "+1 MAE", "+2 MAE", ...). Series: running, then each window.
    const metricCharts = new Map();
    // Drift alarms by detector and learn: a marker on every metric chart and a table row.
    const alarms = new Map();
    const alarmKey = (a) => `${a.name}@${a.position}`;
    const addAlarm = (a) => {
      if (!a || typeof a.position !== "number" || alarms.has(alarmKey(a))) return;
      alarms.set(alarmKey(a), a);
      for (const chart of metricCharts.values()) chart.mark(alarmKey(a), a.time, alarmLabel(a));
      const row = h(
        "tr",
        { class: "ev-model", "data-alarm": alarmKey(a) },
        h("td", {}, clock(a.time)),
        h("td", {}, h("span", { class: "badge ev" }, a.name)),
        h("td", {}, a.on),
        h("td", {}, count(a.position)),
        h("td", {}, typeof a.value === "number" ? metric(a.value) : String(a.value)),
        h("td", {}, a.action || "—"),
      );
      // newest first: an alarm older than the top row goes below the rows newer than it
      const after = [...alarmsBody.rows].find((r) => alarms.get(r.dataset.alarm).position < a.position);
      alarmsBody.insertBefore(row, after || null);
      while (alarmsBody.rows.length > ALARMS_SHOWN) alarmsBody.deleteRow(alarmsBody.rows.length - 1);
      driftNoteText();
    };
    let detectors = [];
    const driftNoteText = () => {
      const names = detectors
        .map((d) => (d.name === d.detector ? d.name : `${d.name} (${d.detector})`) + " on " + d.on)
        .join(", ");
      driftNote.textContent = detectors.length
        ? `Watching with ${names}: ${count(alarms.size)} alarm${alarms.size === 1 ? "" : "s"}, drawn as red marks on the metric charts.`
        : alarms.size
          ? `No detector now; ${count(alarms.size)} earlier alarm${alarms.size === 1 ? "" : "s"}, drawn as red marks on the metric charts.`
          : "No drift detector on this model (riverbed drift set, see docs/drift.md).";
    };
    const chartFor = (key) => {
      let chart = metricCharts.get(key);
      if (!chart) {
        chart = new LineChart(metricsGrid, {
          id: key,
          title: key,
          label: `${key} of ${info.name}`,
          series: [{ key: "running", label: "running" }],
          yFormat: metric,
          empty: "no scored sample yet",
        });
        charts.push(chart);
        metricCharts.set(key, chart);
        for (const a of alarms.values()) chart.mark(alarmKey(a), a.time, alarmLabel(a));
      }
      return chart;
    };
    for (const key of info.metrics || []) chartFor(key);
    let lastScored = -1;
    const addPoint = (t, body) => {
      if (!body || !body.metrics || !(body.n > 0)) return;
      for (const [key, value] of Object.entries(body.metrics)) {
        if (typeof value === "number") chartFor(key).push("running", t, value);
      }
      for (const w of body.windows || []) {
        for (const [key, value] of Object.entries(w.metrics || {})) {
          if (typeof value === "number") {
            chartFor(key).push("w:" + w.window, t, value, windowLabel(w));
          }
        }
      }
      counters.scored.textContent = count(body.n);
      lastScored = body.n;
    };
    if (Array.isArray(info.metrics) && info.metrics.length === 0) {
      metricsNote.textContent = "Metrics are turned off for this model.";
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
    renderVersions(versions, info).catch((error) => {
      replace(versions, h("p", { class: "error" }, "Could not load the versions: ", error.message));
    });
    if (info.flavor !== undefined && info.flavor !== "river") {
      // A scikit-learn model or a file is served from its versions: it has no live learning
      // state, so no live metrics or latency to poll; its versions are the page.
      metricsNote.textContent = `This ${info.flavor} model is served from its versions: it does not learn online, so there are no live metrics.`;
      perfGrid.replaceChildren(h("p", { class: "muted small" }, "No live counters for a model served from its versions."));
      ctx.setConn("live", "");
      return;
    }

    if (hasHistory) {
      let after = null;
      const since = Date.now() / 1000 - HISTORY_SECONDS;
      for (let page = 0; page < HISTORY_PAGES && !stopped; page++) {
        const query = after === null ? `since=${since}&limit=10000` : `after=${after}&limit=10000`;
        const { points } = await get(modelPath(name, "/metrics/history?" + query));
        for (const p of points) addPoint(p.time, p);
        if (points.length < 10000) break;
        after = points[points.length - 1].seq;
      }
      if (stopped) return;
    }

    if (hasDrift) {
      try {
        detectors = (await get(modelPath(name, "/drift"))).detectors || [];
        let after = 0;
        for (let page = 0; page < ALARM_PAGES && !stopped; page++) {
          const { alarms: got } = await get(modelPath(name, `/drift/alarms?after=${after}&limit=1000`));
          for (const a of got) addAlarm(a);
          if (got.length < 1000) break;
          after = got[got.length - 1].position;
        }
        driftNoteText();
      } catch (error) {
        driftNote.textContent = "Could not load the drift alarms: " + error.message;
        driftNote.className = "error";
      }
      if (stopped) return;
    }

    // Champion and challengers: one chart of the rule's metric (else the first metric),
    // by label count, from the champion's stored history and each challenger's own.
    let arenaChart = null;
    const hasArena = await hasRoute("GET", "/v1/models/{name}/challengers");
    const arenaNote = h("p", { class: "muted small", id: "arena-note" });
    const arenaGrid = h("div", { class: "chart-grid" });
    const drawArena = async () => {
      const arena = await get(modelPath(name, "/challengers"));
      if (stopped || !arena.challengers.length) return;
      const key = arena.rule ? arena.rule.metric : Object.keys(arena.champion.metrics || {})[0];
      if (!key) return;
      if (!arenaChart) {
        replace(arenaSection, h("h2", {}, "Champion and challengers"), arenaNote, arenaGrid);
        arenaSection.hidden = false;
        arenaChart = new LineChart(arenaGrid, {
          id: "arena",
          title: `${key}: champion and challengers`,
          label: `${key} of ${info.name}'s champion and challengers, by label`,
          series: [{ key: "champion", label: "champion" }],
          yFormat: metric,
          xFormat: (v) => count(Math.round(v)),
          empty: "no scored sample yet",
        });
        charts.push(arenaChart);
      }
      const { points } = await get(modelPath(name, "/metrics/history?limit=10000"));
      const series = (ps) => ps.filter((p) => typeof p.metrics[key] === "number").map((p) => [p.seq, p.metrics[key]]);
      arenaChart.set("champion", series(points));
      for (const c of arena.challengers) {
        const one = await get(modelPath(name, "/challengers/" + encodeURIComponent(c.name) + "?history=1000"));
        if (stopped) return;
        arenaChart.find("c:" + c.name, c.name);
        arenaChart.set("c:" + c.name, series(one.history));
      }
      const last = arena.promotions[arena.promotions.length - 1];
      arenaNote.textContent =
        `Each challenger predicts what the champion predicts and learns the same labels; ${count(arena.challengers.length)} challenger(s).` +
        (last ? ` Last promotion: ${last.challenger} at label ${count(last.n_learns)} (${last.reason}).` : "");
    };
    const arenaTick = async () => {
      try {
        await drawArena();
      } catch (error) {
        if (error.status === 404) return; // the model was deleted: the stats poll says so
      }
      if (!stopped) arenaTimer = setTimeout(arenaTick, STATS_MS);
    };
    let arenaTimer = null;
    stops.push(() => clearTimeout(arenaTimer));
    if (hasArena) arenaTick();

    const stats = async () => {
      const s = await get(modelPath(name, "/stats"));
      if (stopped) return;
      const now = Date.now() / 1000;
      counters.predictions.textContent = count(s.n_predictions);
      counters.learns.textContent = count(s.n_learns);
      counters.predictLatency.textContent = seconds(s.predict.ewm_duration);
      counters.learnLatency.textContent = seconds(s.learn.ewm_duration);
      if (s.predict.n_calls) latency.push("predict", now, s.predict.ewm_duration);
      if (s.learn.n_calls) latency.push("learn", now, s.learn.ewm_duration);
      // Throughput over the last few seconds, so that bursts read as rates, not spikes.
      rates.push({ t: now, p: s.n_predictions, l: s.n_learns });
      while (rates.length > 2 && rates[1].t < now - RATE_WINDOW_S) rates.shift();
      const first = rates[0];
      if (now - first.t >= 1) {
        const dt = now - first.t;
        throughput.push("predictions", now, Math.max(0, s.n_predictions - first.p) / dt);
        throughput.push("learns", now, Math.max(0, s.n_learns - first.l) / dt);
      }
    };
    const rates = [];
    const readMetrics = async () => {
      const m = await get(modelPath(name, "/metrics"));
      if (!stopped && m.n !== lastScored) addPoint(Date.now() / 1000, m);
    };
    const refreshSoon = throttle(() => readMetrics().catch(() => {}), 500);
    const tick = async () => {
      try {
        await stats();
      } catch (error) {
        if (error.status === 404) {
          // Deleted while on screen: say so and stop asking (each 404 is a console error).
          metricsNote.textContent = "This model was deleted.";
          metricsNote.className = "error";
          for (const stop of stops) stop();
          return;
        }
      }
      if (!stopped) timer = setTimeout(tick, STATS_MS);
    };
    tick();

    if (hasMetricStream) {
      stops.push(
        follow(modelPath(name, "/metrics/stream?interval=0.5"), {
          onEvent: (type, data) => {
            if (type === "metrics") addPoint(Date.now() / 1000, data);
            else if (type === "point") addPoint(data.time, data);
            else if (type === "deleted") {
              metricsNote.textContent = "This model was deleted.";
              metricsNote.className = "error";
            }
          },
        }),
      );
    } else {
      await readMetrics();
    }
    stops.push(
      follow("/v1/events?model=" + encodeURIComponent(name), {
        onState: (state) => ctx.setConn(state, "events of " + name),
        onEvent: (type, event) => {
          if (!event || typeof event !== "object" || !event.type) return;
          addEvent(eventsBody, event);
          if (event.type === "model.drift") addAlarm(event.data);
          // a gap: events were missed, so what the page shows is read again
          if (type === "gap" || (!hasMetricStream && type !== "predict")) refreshSoon();
        },
      }),
    );
  }
}

function fact(label, dd) {
  return h("div", {}, h("dt", {}, label), dd);
}

function addEvent(body, event) {
  const data = event.data || {};
  const row = h(
    "tr",
    { class: "ev-" + event.type.split(".")[0] },
    h("td", {}, clock(event.time)),
    h("td", {}, h("span", { class: "badge ev" }, event.type)),
    h("td", { class: "mono pid" }, brief(data.id ?? data.prediction_id ?? "", 24)),
    h("td", {}, "prediction" in data ? brief(data.prediction) : ""),
    h("td", {}, "ground_truth" in data ? brief(data.ground_truth) : ""),
  );
  body.prepend(row);
  while (body.rows.length > EVENTS_KEPT) body.deleteRow(body.rows.length - 1);
}
