// The JSON API and the event streams, with the visitor's token when the server wants one.
// Streams are read with fetch (not EventSource) so that they can carry the Authorization
// header, and they reconnect with Last-Event-ID so that a dropped connection misses nothing
// the server still holds.

const TOKEN_KEY = "riverbed.token";
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export function token() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(value) {
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lasts for this page only */
  }
  memoryToken = value || "";
}

let memoryToken = "";

// Called with the ApiError whenever the server asks for (another) token.
export function onAuthNeeded(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function authFailed(error) {
  for (const fn of listeners) fn(error);
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  const t = token() || memoryToken;
  if (t) out.Authorization = "Bearer " + t;
  return out;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  const err = body && body.error ? body.error : {};
  const error = new ApiError(
    response.status,
    err.code || "http_" + response.status,
    err.message || response.statusText || "request failed",
    err.detail,
  );
  if (response.status === 401 || response.status === 403) authFailed(error);
  return error;
}

// GET a JSON document; `optional: true` turns a 404 into `null` (for routes a server may
// not have, such as those of a newer version).
export async function get(path, { optional = false, signal } = {}) {
  const response = await fetch(path, { headers: headers(), cache: "no-store", signal });
  if (optional && (response.status === 404 || response.status === 405)) {
    const body = await response.json().catch(() => null);
    if (!body || !body.error || body.error.code === "route_not_found") return null;
    if (response.status === 405) return null;
    throw new ApiError(404, body.error.code, body.error.message, body.error.detail);
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

// The server's route table (from its OpenAPI document), to use newer routes only where the
// server has them, without requesting a missing route (which the console would report).
let routes = null;
export async function hasRoute(method, path) {
  if (!routes) {
    routes = get("/openapi.json").then((doc) => doc.paths || {}).catch(() => ({}));
  }
  const paths = await routes;
  return Boolean(paths[path] && paths[path][method.toLowerCase()]);
}

export async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// Save the file at `path`. A plain link cannot carry the token, so with a token the file is
// fetched with it and handed to the browser as a blob under the server's file name.
export async function download(path) {
  const response = await fetch(path, { headers: headers({ Accept: "*/*" }), cache: "no-store" });
  if (!response.ok) throw await failure(response);
  const disposition = response.headers.get("content-disposition") || "";
  const match = disposition.match(/filename="([^"]+)"/);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = match ? match[1] : path.split("/").slice(-3).join("-");
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function hasToken() {
  return Boolean(token() || memoryToken);
}

export function modelPath(name, rest = "") {
  return "/v1/models/" + encodeURIComponent(name) + rest;
}

// Follow a server-sent event stream. `onEvent(type, data, id)` gets each message,
// `onState("live" | "reconnecting" | "auth" | "closed")` the connection's state.
// Returns a function that stops following.
export function follow(path, { onEvent, onState = () => {} }) {
  let stopped = false;
  let controller = null;
  let lastId = null;

  const dispatch = (block) => {
    let type = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (id !== null) lastId = id;
    if (!data.length) return;
    let parsed;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch {
      parsed = data.join("\n");
    }
    onEvent(type, parsed, id);
  };

  const run = async () => {
    let delay = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        const extra = { Accept: "text/event-stream" };
        if (lastId !== null) extra["Last-Event-ID"] = lastId;
        const response = await fetch(path, {
          headers: headers(extra),
          cache: "no-store",
          signal: controller.signal,
        });
        if (response.status === 401 || response.status === 403) {
          await failure(response);
          onState("auth");
          return;
        }
        if (!response.ok) throw await failure(response);
        onState("live");
        delay = 500;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (!stopped) dispatch(block);
          }
        }
      } catch (error) {
        if (stopped) break;
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
          onState("closed");
          return;
        }
      }
      if (stopped) break;
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
    onState("closed");
  };
  run();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}
