// The overview: every model with its task, latest metrics, predictions and learns per
// minute and a sparkline of its first metric, with a search box and filters.

import { get, hasRoute, modelPath } from "./api.js";
import { sparkline } from "./charts.js";
import { RateMeter, clear, count, h, metric, modelHref, rate, replace, throttle } from "./util.js";

const POLL_MS = 2000;
const SPARK_POINTS = 60;
const OPS = { ">": (a, b) => a > b, ">=": (a, b) => a >= b, "<": (a, b) => a < b, "<=": (a, b) => a <= b };

// Filters live in the URL (#/?q=...&task=...) so that a filtered view can be shared.
function readFilters(query) {
  return {
    q: query.get("q") || "",
    task: query.get("task") || "",
    tag: query.get("tag") || "",
    metric: query.get("metric") || "",
    op: OPS[query.get("op")] ? query.get("op") : ">=",
    value: query.get("value") || "",
  };
}

function writeFilters(filters) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) {
    if (value && !(key === "op" && value === ">=")) query.set(key, value);
  }
  const text = query.toString();
  history.replaceState(null, "", "#/" + (text ? "?" + text : ""));
}

export function matches(model, f) {
  const info = model.info;
  if (f.q) {
    const q = f.q.toLowerCase();
    const haystack = [info.name, info.description || "", ...Object.entries(info.tags || {}).map(([k, v]) => k + "=" + v)]
      .join(" ")
      .toLowerCase();
    if (!haystack.includes(q)) return false;
  }
  if (f.task && info.task !== f.task) return false;
  if (f.tag) {
    const [key, ...rest] = f.tag.split("=");
    const want = rest.join("=");
    const tags = info.tags || {};
    if (!(key in tags)) return false;
    if (rest.length && tags[key] !== want) return false;
  }
  if (f.metric && f.value !== "") {
    const threshold = Number(f.value);
    const value = model.metrics ? model.metrics.metrics[f.metric] : undefined;
    if (!Number.isFinite(threshold) || typeof value !== "number") return false;
    if (!OPS[f.op](value, threshold)) return false;
  }
  return true;
}

// The registry's filter language (see docs): a quoted text, a possibly quoted key.
function literal(text) {
  return "'" + text.replace(/[\\']/g, "\\$&") + "'";
}

function keyed(prefix, key) {
  return /^[A-Za-z_][A-Za-z0-9_.]*$/.test(key) ? `${prefix}.${key}` : `${prefix}."${key.replace(/["\\]/g, "\\$&")}"`;
}

// Search box text with an operator in it is a filter expression, passed as it is.
export function isExpression(text) {
  return /[=<>~]/.test(text);
}

// The filter for the registry's search, without the metric threshold.
export function registryFilter(f) {
  const clauses = [];
  if (f.q) clauses.push(isExpression(f.q) ? f.q : "name ~ " + literal(f.q));
  if (f.task) clauses.push("task = " + literal(f.task));
  if (f.tag) {
    const [key, ...rest] = f.tag.split("=");
    if (key) clauses.push(keyed("tags", key) + (rest.length ? " = " + literal(rest.join("=")) : " ~ ''"));
  }
  return clauses.join(" and ");
}

// The model's metric names: those its metrics report (a forecaster's are per step ahead,
// "+1 MAE"), else those it was created with.
function metricNames(model) {
  const live = model.metrics ? Object.keys(model.metrics.metrics) : [];
  return live.length ? live : model.info.metrics || [];
}

function hasThreshold(f) {
  return Boolean(f.metric) && f.value !== "" && Number.isFinite(Number(f.value));
}

function livePasses(model, f) {
  const value = model.metrics ? model.metrics.metrics[f.metric] : undefined;
  return typeof value === "number" && OPS[f.op](value, Number(f.value));
}

async function searchNames(filter) {
  const names = new Set();
  let token = null;
  do {
    const query = new URLSearchParams({ page_size: "1000" });
    if (filter) query.set("filter", filter);
    if (token) query.set("page_token", token);
    const page = await get("/v1/search/models?" + query);
    for (const m of page.models) names.add(m.name);
    token = page.next_page_token;
  } while (token);
  return names;
}

export function overview(main, query, ctx) {
  const filters = readFilters(query);
  const models = new Map(); // name -> {info, metrics, stats, predictions, learns, spark, card}
  let stopped = false;
  let timer = null;

  const search = h("input", {
    type: "search",
    id: "search",
    placeholder: "Search by name, or a filter: metrics.accuracy > 0.9 and tags.team = 'risk'",
    value: filters.q,
    "aria-label": "search models",
  });
  const task = h("select", { id: "task-filter", "aria-label": "task" }, h("option", { value: "" }, "any task"));
  const tag = h("input", { id: "tag-filter", placeholder: "tag key=value", value: filters.tag, "aria-label": "tag" });
  const metricName = h("select", { id: "metric-filter", "aria-label": "metric" }, h("option", { value: "" }, "any metric"));
  const op = h("select", { id: "metric-op", "aria-label": "comparison" }, Object.keys(OPS).map((o) => h("option", { value: o }, o)));
  op.value = filters.op;
  const threshold = h("input", { id: "metric-value", type: "number", step: "any", placeholder: "value", value: filters.value, "aria-label": "threshold" });
  const summary = h("p", { class: "muted", id: "model-count" });
  const searchError = h("p", { class: "error search-error", id: "search-error", hidden: true });
  // With the registry's search: the names its filter passes (`base`), and those whose logged
  // metrics pass the threshold (`logged`); live metrics are checked here. Without: null.
  let found = null;
  const grid = h("section", { class: "cards", id: "models" });
  const empty = h("div", { class: "empty-state", hidden: true });

  const onFilter = () => {
    Object.assign(filters, {
      q: search.value.trim(),
      task: task.value,
      tag: tag.value.trim(),
      metric: metricName.value,
      op: op.value,
      value: threshold.value.trim(),
    });
    writeFilters(filters);
    render();
    searchSoon();
  };
  for (const el of [search, tag, threshold]) el.addEventListener("input", onFilter);
  for (const el of [task, metricName, op]) el.addEventListener("change", onFilter);

  replace(main, 
    h("div", { class: "page-head" }, h("h1", {}, "Models"), summary),
    h(
      "form",
      { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      search,
      task,
      tag,
      h("span", { class: "threshold" }, metricName, op, threshold),
      searchError,
    ),
    empty,
    grid,
  );

  function options(select, values, current) {
    const have = [...select.options].map((o) => o.value).slice(1);
    const want = [...values].sort();
    if (current && !want.includes(current)) want.push(current);
    if (have.join("\u0000") === want.join("\u0000")) return;
    while (select.options.length > 1) select.remove(1);
    for (const v of want) select.append(h("option", { value: v }, v));
    select.value = current;
  }

  function card(name) {
    const el = h("article", { class: "card", dataset: { model: name } });
    return el;
  }

  function fill(model) {
    const { info, metrics, stats } = model;
    const values = metrics ? metrics.metrics : {};
    const names = metricNames(model);
    const first = names[0];
    replace(
      model.card,
      h(
        "header",
        {},
        h("a", { href: modelHref(info.name), class: "name" }, info.name),
        h("span", { class: "badge" }, info.task),
      ),
      info.description ? h("p", { class: "desc" }, info.description) : null,
      Object.keys(info.tags || {}).length
        ? h("div", { class: "tags" }, Object.entries(info.tags).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`)))
        : null,
      first
        ? h(
            "div",
            { class: "primary" },
            h("div", {}, h("span", { class: "label" }, first), h("span", { class: "value" }, metric(values[first]))),
            sparkline(model.spark, { label: `${first} of ${info.name}`, width: 140, height: 34 }),
          )
        : null,
      names.length > 1
        ? h("dl", { class: "mini" }, names.slice(1).map((n) => [h("dt", {}, n), h("dd", {}, metric(values[n]))]))
        : null,
      model.versionsOnly
        ? h("p", { class: "muted small versions-only" }, `served from its versions (${info.flavor}): no live metrics`)
        : h(
            "dl",
            { class: "rates" },
            h("dt", {}, "predictions/min"),
            h("dd", { class: "pred-rate" }, rate(model.predictions.perMinute())),
            h("dt", {}, "learns/min"),
            h("dd", { class: "learn-rate" }, rate(model.learns.perMinute())),
            h("dt", {}, "learned"),
            h("dd", {}, count(stats ? stats.n_learns : undefined)),
          ),
    );
  }

  function render() {
    const all = [...models.values()];
    options(task, new Set(all.map((m) => m.info.task)), filters.task);
    options(metricName, new Set(all.flatMap(metricNames)), filters.metric);
    const shown = all.filter((m) =>
      found === null
        ? matches(m, filters)
        : found.base.has(m.info.name) &&
          (!hasThreshold(filters) || found.logged.has(m.info.name) || livePasses(m, filters)),
    );
    for (const m of all) m.card.hidden = !shown.includes(m);
    summary.textContent =
      all.length === shown.length ? `${all.length} model${all.length === 1 ? "" : "s"}` : `${shown.length} of ${all.length} models`;
    empty.hidden = shown.length > 0;
    clear(empty);
    if (all.length === 0) {
      empty.append(
        h("h2", {}, "No models yet"),
        h("p", {}, "Create one from a spec, then predict and learn; it appears here."),
        h(
          "pre",
          {},
          'curl -X POST ' + location.origin + '/v1/models -H "content-type: application/json" \\\n' +
            '  -d \'{"name": "phishing", "spec": {"pipeline": [\n' +
            '       {"class": "river.preprocessing.StandardScaler"},\n' +
            '       {"class": "river.linear_model.LogisticRegression"}]}}\'',
        ),
      );
    } else if (shown.length === 0) {
      empty.append(h("p", {}, "No model matches these filters."));
    }
  }


  async function runSearch() {
    if (!(await hasRoute("GET", "/v1/search/models"))) return;
    const filter = registryFilter(filters);
    const threshold = hasThreshold(filters)
      ? [filter, `${keyed("metrics", filters.metric)} ${filters.op} ${Number(filters.value)}`].filter(Boolean).join(" and ")
      : null;
    try {
      const [base, logged] = await Promise.all([searchNames(filter), threshold ? searchNames(threshold) : new Set()]);
      found = { base, logged };
      searchError.hidden = true;
    } catch (error) {
      if (error.status !== 400) throw error;
      found = { base: new Set(), logged: new Set() };
      searchError.textContent = error.message;
      searchError.hidden = false;
    }
    render();
  }
  const searchSoon = throttle(() => {
    runSearch().catch(() => {});
  }, 300);

  // The sparkline starts from the stored history when the server keeps one.
  async function seed(model, first, nLearns) {
    model.seeded = true;
    const after = Math.max(0, nLearns - SPARK_POINTS * 100);
    const { points } = await get(modelPath(model.info.name, `/metrics/history?after=${after}&limit=1000`));
    const values = points.map((p) => p.metrics[first]).filter((v) => typeof v === "number");
    model.spark = values.slice(-SPARK_POINTS);
  }

  async function poll() {
    timer = null;
    const hasHistory = await hasRoute("GET", "/v1/models/{name}/metrics/history");
    try {
      const { models: list } = await get("/v1/models");
      const seen = new Set();
      await Promise.all(
        list.map(async (info) => {
          seen.add(info.name);
          let model = models.get(info.name);
          if (!model) {
            model = { info, spark: [], predictions: new RateMeter(), learns: new RateMeter(), card: card(info.name) };
            models.set(info.name, model);
          }
          model.info = info;
          if (info.flavor !== undefined && info.flavor !== "river") {
            // Served from its versions (scikit-learn, files): no live metrics or counters.
            model.versionsOnly = true;
            return;
          }
          try {
            const [metrics, stats] = await Promise.all([get(modelPath(info.name, "/metrics")), get(modelPath(info.name, "/stats"))]);
            const now = Date.now() / 1000;
            const changed = !model.stats || model.stats.n_learns !== stats.n_learns;
            model.metrics = metrics;
            model.stats = stats;
            model.predictions.add(now, stats.n_predictions);
            model.learns.add(now, stats.n_learns);
            const first = metricNames(model)[0];
            if (!model.seeded && hasHistory && first) await seed(model, first, stats.n_learns);
            const v = metrics.metrics[first];
            if ((changed || model.spark.length === 0) && typeof v === "number" && metrics.n > 0) {
              model.spark.push(v);
              if (model.spark.length > SPARK_POINTS) model.spark.shift();
            }
          } catch (error) {
            if (error.status !== 404) throw error;
          }
        }),
      );
      for (const name of [...models.keys()]) {
        if (!seen.has(name)) {
          models.get(name).card.remove();
          models.delete(name);
        }
      }
      const order = [...models.keys()].sort();
      for (const name of order) {
        const model = models.get(name);
        fill(model);
        grid.append(model.card); // append keeps them sorted, moving existing ones
      }
      await runSearch();
      render();
      ctx.setConn("live", "updated every " + POLL_MS / 1000 + " s");
    } catch (error) {
      ctx.setConn(error.status === 401 || error.status === 403 ? "auth" : "offline", error.message);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  poll();
  return () => {
    stopped = true;
    searchSoon.cancel();
    if (timer) clearTimeout(timer);
  };
}
