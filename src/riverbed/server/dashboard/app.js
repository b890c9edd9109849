// The dashboard's entry point: a hash router (#/, #/models/NAME, #/events), the connection
// indicator and the token prompt shown when the server requires authentication.

import { get, onAuthNeeded, setToken, token } from "./api.js";
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

onAuthNeeded((error) => {
  ctx.setConn("auth", error.message);
  const message = document.getElementById("token-error");
  message.hidden = !token();
  message.textContent = token() ? "The server refused this token: " + error.message : "";
  if (!dialog.open) dialog.showModal();
});

document.getElementById("token-form").addEventListener("submit", () => {
  const input = document.getElementById("token-input");
  setToken(input.value.trim());
  input.value = "";
  signout.hidden = !token();
  route();
});

signout.hidden = !token();
signout.addEventListener("click", () => {
  setToken("");
  signout.hidden = true;
  route();
});

window.addEventListener("hashchange", route);
route();

get("/health")
  .then((health) => {
    document.getElementById("version").textContent = "riverbed " + health.version;
  })
  .catch(() => {});
