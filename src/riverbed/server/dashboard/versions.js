// A model's versions: number, aliases, where it came from, its metadata (hyperparameters,
// dataset, git commit, logged metrics) and a permanent download link; then the aliases and
// their moves. A server without the registry's routes shows the model's one version.

import { download as save, get, hasRoute, hasToken, modelPath } from "./api.js";
import { brief, dateTime, h, metric, replace } from "./util.js";

function table(head, rows, attrs = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h("table", attrs, h("thead", {}, h("tr", {}, head.map((x) => h("th", {}, x)))), h("tbody", {}, rows)),
  );
}

function pairs(object, format = brief) {
  const entries = Object.entries(object || {});
  if (!entries.length) return null;
  return h("dl", { class: "kv" }, entries.map(([k, v]) => [h("dt", {}, k), h("dd", {}, format(v))]));
}

function provenance(v) {
  const bits = [];
  const dataset = v.dataset || {};
  if (dataset.name) bits.push(h("div", {}, "dataset ", h("strong", {}, dataset.name), dataset.description ? " — " + dataset.description : ""));
  const git = v.git || {};
  if (git.commit) {
    bits.push(
      h(
        "div",
        { class: "git" },
        "git ",
        h("code", { title: git.commit }, git.commit.slice(0, 10)),
        git.branch ? " on " + git.branch : "",
        git.remote ? h("span", { class: "muted" }, " (" + git.remote + ")") : "",
      ),
    );
  }
  if (v.created_by) bits.push(h("div", {}, "by " + v.created_by));
  if (v.parent !== null && v.parent !== undefined) bits.push(h("div", {}, "from v" + v.parent));
  if (typeof v.n_learns === "number") bits.push(h("div", {}, "snapshot after " + v.n_learns + " learns"));
  return bits.length ? bits : "—";
}

function details(v) {
  const sections = [];
  const hyper = pairs(v.hyperparameters);
  if (hyper) sections.push(h("details", {}, h("summary", {}, "hyperparameters"), hyper));
  const params = pairs(v.params);
  if (params) sections.push(h("details", {}, h("summary", {}, "parameters"), params));
  if (v.description) sections.unshift(h("div", { class: "muted" }, v.description));
  const tags = Object.entries(v.tags || {});
  if (tags.length) sections.unshift(h("div", { class: "tags" }, tags.map(([k, val]) => h("span", { class: "tag" }, `${k}=${val}`))));
  return sections.length ? sections : "—";
}

function download(v) {
  if (!v.url) return "—";
  const size = typeof v.size === "number" ? ` (${(v.size / 1024).toFixed(v.size < 10240 ? 1 : 0)} KiB)` : "";
  const onclick = (event) => {
    if (!hasToken()) return; // the plain link works
    event.preventDefault();
    save(v.url).catch(() => {});
  };
  return h("a", { href: v.url, download: "", class: "download", title: "permanent link to this version's artifact", onclick }, "download" + size);
}

export async function renderVersions(el, info) {
  if (!(await hasRoute("GET", "/v1/models/{name}/versions"))) {
    replace(
      el,
      table(
        ["version", "source", "created"],
        [h("tr", {}, h("td", {}, "v" + info.version), h("td", {}, info.source || "—"), h("td", {}, dateTime(info.created_at)))],
      ),
    );
    return;
  }
  const [{ versions }, aliases] = await Promise.all([
    get(modelPath(info.name, "/versions")),
    (await hasRoute("GET", "/v1/models/{name}/aliases")) ? get(modelPath(info.name, "/aliases")) : { aliases: {}, history: [] },
  ]);
  const cell = (label, attrs, ...children) => h("td", { ...attrs, "data-label": label }, ...children);
  const rows = [...versions].reverse().map((v) =>
    h(
      "tr",
      { dataset: { version: String(v.version) } },
      cell("version", {}, h("strong", {}, "v" + v.version), " ", (v.aliases || []).map((a) => h("span", { class: "badge alias" }, "@" + a))),
      cell("created", {}, dateTime(v.created_at), h("div", { class: "muted small" }, [v.source, v.format].filter(Boolean).join(" · "))),
      cell("provenance", { class: "small" }, provenance(v)),
      cell("logged metrics", { class: "small" }, pairs(v.metrics, metric) || "—"),
      cell("metadata", { class: "small" }, details(v)),
      cell("artifact", {}, download(v)),
    ),
  );
  const moves = (aliases.history || []).slice(-10).reverse();
  replace(
    el,
    table(["version", "created", "provenance", "logged metrics", "metadata", "artifact"], rows, { class: "versions" }),
    Object.keys(aliases.aliases || {}).length
      ? h(
          "p",
          { class: "aliases" },
          "Aliases: ",
          Object.entries(aliases.aliases).map(([a, v]) => h("span", { class: "badge alias" }, `@${a} → v${v}`)),
        )
      : null,
    moves.length
      ? h(
          "details",
          { class: "alias-history" },
          h("summary", {}, "alias moves"),
          h(
            "ul",
            {},
            moves.map((m) =>
              h(
                "li",
                {},
                dateTime(m.at),
                " ",
                h("strong", {}, "@" + m.alias),
                m.previous === null || m.previous === undefined ? " set to " : ` moved from v${m.previous} to `,
                m.version === null || m.version === undefined ? "nothing (removed)" : "v" + m.version,
                m.by ? " by " + m.by : "",
              ),
            ),
          ),
        )
      : null,
  );
}
