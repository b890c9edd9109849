// The dashboard's entry point: a hash router (#/, #/models/NAME, #/events, #/cluster), the connection
// indicator and the token prompt shown when the server requires authentication.

import { get, hasRoute, onAuthNeeded, setToken, token } from "./api.js";
import { clusterPage } from "./cluster.js";
import { eventsPage } from "./events.js";
import { modelPage } from "./model.js";
import { overview } from "./overview.js";

const main = document.getElementById("app");
const conn = document.getElementById("conn");
const dialog = document.getElementById("token-dialog");
const signout = document.getElementById("signout");
let cleanup = null;

const LABELS = { live: "live", reconnecting: "reconnecting…", offline: "offline", auth: "token needed", closed: "stopped" };

const ctx = {
  setConn(state, detail = "") {
    conn.textContent = LABELS[state] || state;
    conn.className = "conn " + state;
    conn.title = detail;
  },
};

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const hash = location.hash || "#/";
  const [path, search] = hash.slice(1).split("?");
  const query = new URLSearchParams(search || "");
  let page = "overview";
  const model = path.match(/^\/models\/(.+)$/);
  if (model) {
    page = "model";
    cleanup = modelPage(main, decodeURIComponent(model[1]), ctx);
    document.title = decodeURIComponent(model[1]) + " · riverbed";
  } else if (path === "/cluster") {
    page = "cluster";
    cleanup = clusterPage(main, ctx);
    document.title = "Cluster · riverbed";
  } else if (path === "/events") {
    page = "events";
    cleanup = eventsPage(main, query, ctx);
    document.title = "Events · riverbed";
  } else {
    cleanup = overview(main, query, ctx);
    document.title = "Models · riverbed";
  }
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === page || (page === "model" && a.dataset.nav === "overview"));
  }
  window.scrollTo(0, 0);
}

function askForToken(message) {
  const error = document.getElementById("token-error");
  error.hidden = !message;
  error.textContent = message || "";
  if (!dialog.open) dialog.showModal();
}

onAuthNeeded((error) => {
  ctx.setConn("auth", error.message);
  askForToken(token() ? "The server refused this token: " + error.message : "");
});

// Where the server has GET /v1/auth (public, never a 401), ask it whether a token is needed
// and whether the one at hand is good, before any data request is made.
async function checkToken() {
  if (!(await hasRoute("GET", "/v1/auth"))) return true;
  const status = await get("/v1/auth");
  if (!status.auth || status.token) return true;
  ctx.setConn("auth", "this server needs a token");
  askForToken(token() && status.error ? "The server refused this token: " + status.error.message : "");
  return false;
}

async function start() {
  if (await checkToken().catch(() => true)) {
    route();
    return;
  }
  if (cleanup) cleanup(); // no data on screen, no stream left running without a token
  cleanup = null;
  main.textContent = "";
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  const input = document.getElementById("token-input");
  setToken(input.value.trim());
  input.value = "";
  signout.hidden = !token();
  if (dialog.open) dialog.close();
  event.preventDefault();
  start();
});

signout.hidden = !token();
signout.addEventListener("click", () => {
  setToken("");
  signout.hidden = true;
  start();
});

window.addEventListener("hashchange", route);
start();

get("/health")
  .then((health) => {
    document.getElementById("version").textContent = "riverbed " + health.version;
    // A scale-out replica has a cluster page (docs/scale-out.md).
    document.getElementById("cluster-nav").hidden = !health.cluster;
  })
  .catch(() => {});
