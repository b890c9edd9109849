// A scale-out cluster (docs/scale-out.md), from GET /v1/cluster every 2 s: per model its
// learner and the learns acknowledged and not applied yet, the replicas with how far behind
// each one is, the learners and the leases. Only a replica's dashboard links here (its
// /health says `cluster: true`).

import { get } from "./api.js";
import { count, h, modelHref, replace } from "./util.js";

const POLL_MS = 2000;

function secs(s) {
  if (typeof s !== "number" || !Number.isFinite(s)) return "—";
  if (s < 1) return (s * 1000).toFixed(0) + " ms";
  return s.toFixed(s < 10 ? 2 : 0) + " s";
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function table(cls, head, rows, empty) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: cls },
      // A heading ending in "#" is a number's column, set right like its cells.
      h("thead", {}, h("tr", {}, head.map((name) => (name.endsWith("#") ? h("th", { class: "num" }, name.slice(0, -1)) : h("th", {}, name))))),
      h(
        "tbody",
        {},
        rows.length ? rows : h("tr", {}, h("td", { colspan: head.length, class: "muted" }, empty)),
      ),
    ),
  );
}

function state(alive) {
  return h("span", { class: "badge " + (alive ? "up" : "down") }, alive ? "up" : "gone");
}

// A replica's worst staleness and lag over its models, with the per-model numbers in a list.
function replicaModels(replica) {
  const models = Object.entries(replica.models || {}).sort(([a], [b]) => (a < b ? -1 : 1));
  if (!models.length) return h("span", { class: "muted" }, "no model");
  return h(
    "ul",
    { class: "plain" },
    models.map(([name, m]) =>
      h(
        "li",
        { dataset: { model: name } },
        h("a", { href: modelHref(name) }, name),
        ` ${count(m.n_learns)} learned · ${count(m.lag_learns)} behind · stale ${secs(m.staleness_seconds)}`,
      ),
    ),
  );
}

function render(main, status) {
  const models = status.models.map((m) =>
    h(
      "tr",
      { dataset: { model: m.model } },
      h("td", {}, h("a", { href: modelHref(m.model) }, m.model)),
      h("td", { class: "learner" }, m.learner || h("span", { class: "warn" }, "none")),
      h("td", { class: "num n-learns" }, count(m.n_learns)),
      h("td", { class: "num lag" }, count(m.lag_learns)),
      h("td", { class: "num" }, m.oldest_waiting_seconds == null ? "—" : secs(m.oldest_waiting_seconds)),
      h("td", { class: "num" }, count(m.refused)),
    ),
  );
  const replicas = status.replicas.map((r) =>
    h(
      "tr",
      { dataset: { member: r.id } },
      h("td", {}, r.id),
      h("td", {}, r.address || "—", r.host ? h("div", { class: "muted small" }, `${r.host} pid ${r.pid}`) : null),
      h("td", {}, state(r.alive), r.broker_ok === false ? h("div", { class: "warn small" }, "broker lost") : null),
      h("td", { class: "num" }, secs(r.seen_seconds_ago) + " ago"),
      h("td", {}, replicaModels(r)),
    ),
  );
  const learners = status.learners.map((l) =>
    h(
      "tr",
      { dataset: { member: l.id } },
      h("td", {}, l.id),
      h("td", {}, state(l.alive)),
      h("td", { class: "num" }, secs(l.seen_seconds_ago) + " ago"),
      h("td", {}, (l.models || []).length ? l.models.join(", ") : h("span", { class: "muted" }, "none")),
      h("td", { class: "num" }, count(l.applied)),
    ),
  );
  const leases = status.leases.map((l) =>
    h(
      "tr",
      { dataset: { model: l.model } },
      h("td", {}, l.model),
      h("td", {}, l.holder || "—"),
      h("td", { class: "num" }, count(l.epoch)),
      h("td", { class: "num" }, l.expires_in_seconds > 0 ? secs(l.expires_in_seconds) : h("span", { class: "warn" }, "expired")),
      h("td", { class: "mono" }, l.position),
      h("td", { class: "num" }, count(l.n_learns)),
    ),
  );
  replace(
    main,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Cluster"),
      h(
        "span",
        { class: "muted", id: "cluster-summary" },
        `${plural(status.replicas.filter((r) => r.alive).length, "replica")} · ${plural(status.learners.filter((l) => l.alive).length, "learner")} · broker ${status.broker}` +
          (status.replica ? ` · this page from ${status.replica}` : ""),
      ),
    ),
    status.broker_error ? h("p", { class: "error", id: "broker-error" }, "The broker does not answer: " + status.broker_error) : null,
    h("h2", {}, "Models"),
    table("cluster-models", ["model", "learner", "learned#", "waiting#", "oldest waiting#", "refused#"], models, "No model yet."),
    h("h2", {}, "Replicas"),
    table("cluster-replicas", ["replica", "address", "state", "seen#", "models (learned · behind · staleness)"], replicas, "No replica has reported yet."),
    h("h2", {}, "Learners"),
    table(
      "cluster-learners",
      ["learner", "state", "seen#", "models", "applied#"],
      learners,
      "No learner is running: learns wait on the broker. Start one with riverbed learner --database … --broker ….",
    ),
    h("h2", {}, "Leases"),
    table("cluster-leases", ["model", "holder", "epoch#", "expires in#", "stream position", "learned#"], leases, "No lease yet."),
    h(
      "p",
      { class: "muted small" },
      "Refreshed every 2 s. Move a lease with riverbed cluster move MODEL LEARNER or POST /v1/cluster/leases/{model}.",
    ),
  );
}

export function clusterPage(main, ctx) {
  let stopped = false;
  let timer = null;
  replace(main, h("div", { class: "page-head" }, h("h1", {}, "Cluster")), h("p", { class: "muted" }, "Loading…"));

  async function poll() {
    timer = null;
    try {
      const status = await get("/v1/cluster");
      if (stopped) return;
      render(main, status);
      ctx.setConn("live", "updated every " + POLL_MS / 1000 + " s");
    } catch (error) {
      if (stopped) return;
      if (error.status === 404) {
        replace(main, h("div", { class: "page-head" }, h("h1", {}, "Cluster")), h("p", {}, "This server is not a scale-out replica (it was started without --broker)."));
        return;
      }
      ctx.setConn(error.status === 401 || error.status === 403 ? "auth" : "offline", error.message);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  poll();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
