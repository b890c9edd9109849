// The live feed across models: every event as it happens, filterable by model, type and
// text, with a pause button. The server replays the events it still holds first.

import { follow, get } from "./api.js";
import { brief, clear, clock, h, modelHref, replace } from "./util.js";

const KEPT = 500;
// More boxes appear as other kinds of events show up.
const TYPES = ["predict", "learn", "label", "model", "alias"];

function summary(event) {
  const d = event.data || {};
  if (event.type === "gap") {
    const what = d.missed == null ? "Some events" : `${d.missed} events`;
    return `${what} could not be replayed (${d.reason === "restart" ? "the server restarted" : "the server no longer holds them"})`;
  }
  const parts = [];
  const id = d.id ?? d.prediction_id;
  if (id) parts.push("id " + brief(id, 24));
  if ("prediction" in d) parts.push("predicted " + brief(d.prediction, 30));
  if ("ground_truth" in d) parts.push("truth " + brief(d.ground_truth, 30));
  if (d.features) parts.push(brief(d.features, 90));
  for (const [k, v] of Object.entries(d)) {
    if (!["id", "prediction_id", "prediction", "ground_truth", "features", "probabilities", "model"].includes(k)) {
      parts.push(`${k} ${brief(v, 40)}`);
    }
  }
  return parts.join(" · ");
}

function family(type) {
  return type.split(".")[0];
}

export function eventsPage(main, query, ctx) {
  const state = {
    model: query.get("model") || "",
    text: query.get("q") || "",
    hidden: new Set((query.get("hide") || "").split(",").filter(Boolean)),
    paused: false,
  };
  let stopStream = null;
  let rate = [];
  const held = [];

  const model = h("select", { id: "event-model", "aria-label": "model" }, h("option", { value: "" }, "all models"));
  if (state.model) model.append(h("option", { value: state.model }, state.model));
  model.value = state.model;
  const text = h("input", { id: "event-text", type: "search", placeholder: "Filter by text (id, feature, value)", value: state.text, "aria-label": "text filter" });
  const checks = h("span", { class: "checks" });
  const families = new Set();
  const ensureBox = (name) => {
    if (families.has(name)) return;
    families.add(name);
    const box = h("input", { type: "checkbox", value: name, checked: !state.hidden.has(name) });
    box.addEventListener("change", () => {
      if (box.checked) state.hidden.delete(name);
      else state.hidden.add(name);
      refilter();
    });
    checks.append(h("label", { class: "check" }, box, name));
  };
  for (const t of TYPES) ensureBox(t);
  for (const t of state.hidden) ensureBox(t);
  const pause = h("button", { type: "button", id: "pause" }, "Pause");
  const counter = h("span", { class: "muted", id: "event-rate" }, "");
  const body = h("tbody", { id: "event-rows" });
  const hint = h("p", { class: "muted", id: "events-empty" }, "Waiting for events… predict or learn with any model and they show up here.");

  replace(main, 
    h("div", { class: "page-head" }, h("h1", {}, "Events"), counter),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, model, text, checks, pause),
    hint,
    h(
      "div",
      { class: "table-wrap" },
      h("table", { class: "events" }, h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "event"), h("th", {}, "model"), h("th", {}, "details"))), body),
    ),
  );

  const visible = (event) =>
    !state.hidden.has(family(event.type)) &&
    (!state.text || JSON.stringify(event).toLowerCase().includes(state.text.toLowerCase()));

  const row = (event) => {
    const tr = h(
      "tr",
      { class: "ev-" + family(event.type), dataset: { type: event.type, model: event.model || "" } },
      h("td", { class: "mono" }, clock(event.time)),
      h("td", {}, h("span", { class: "badge ev" }, event.type)),
      h("td", {}, event.model ? h("a", { href: modelHref(event.model) }, event.model) : "—"),
      h("td", { class: "details" }, summary(event)),
    );
    tr.event = event;
    tr.hidden = !visible(event);
    return tr;
  };

  const show = (event) => {
    body.prepend(row(event));
    while (body.rows.length > KEPT) body.deleteRow(body.rows.length - 1);
    hint.hidden = true;
  };

  const refilter = () => {
    for (const tr of body.rows) tr.hidden = !visible(tr.event);
    const query = new URLSearchParams();
    if (state.model) query.set("model", state.model);
    if (state.text) query.set("q", state.text);
    if (state.hidden.size) query.set("hide", [...state.hidden].join(","));
    const q = query.toString();
    history.replaceState(null, "", "#/events" + (q ? "?" + q : ""));
  };

  const connect = () => {
    if (stopStream) stopStream();
    clear(body);
    const path = "/v1/events" + (state.model ? "?model=" + encodeURIComponent(state.model) : "");
    stopStream = follow(path, {
      onState: (s) => ctx.setConn(s, state.model ? "events of " + state.model : "all events"),
      onEvent: (type, event) => {
        if (!event || typeof event !== "object" || !event.type) return;
        rate.push(Date.now());
        ensureBox(family(event.type));
        if (!state.paused) show(event);
        else if (held.push(event) > KEPT) held.shift();
      },
    });
  };

  model.addEventListener("change", () => {
    state.model = model.value;
    refilter();
    connect();
  });
  text.addEventListener("input", () => {
    state.text = text.value.trim();
    refilter();
  });
  pause.addEventListener("click", () => {
    state.paused = !state.paused;
    pause.textContent = state.paused ? "Resume" : "Pause";
    pause.classList.toggle("primary", state.paused);
    if (!state.paused) for (const event of held.splice(0)) show(event);
  });

  const tick = setInterval(() => {
    const now = Date.now();
    rate = rate.filter((t) => t > now - 10000);
    counter.textContent = `${(rate.length / 10).toFixed(1)} events/s` + (state.paused ? ` · paused, ${held.length} held` : "");
  }, 1000);

  get("/v1/models")
    .then(({ models }) => {
      for (const m of models) {
        if (m.name !== state.model) model.append(h("option", { value: m.name }, m.name));
      }
    })
    .catch(() => {});

  connect();
  return () => {
    clearInterval(tick);
    if (stopStream) stopStream();
  };
}
