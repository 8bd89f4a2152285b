// The API key, JSON and multipart calls, and server-sent event streams. Every call goes to
// this server (same origin) with the key the user gave; nothing else is contacted.

const KEY_ITEM = "modelserve.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

function headers(extra = {}) {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

// The API's own error message (OpenAI's envelope), or the status line.
async function failure(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    const err = body.error;
    if (err && typeof err === "object" && err.message) message = err.message;
    else if (typeof err === "string") message = err;
    else if (body.detail) message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(resp.status, message);
}

// A request to this server; JSON bodies for `json`, multipart for `form`. Resolves to the
// Response (callers choose json/blob), rejects with ApiError carrying the API's message.
export async function request(path, { method, json, form, signal } = {}) {
  const init = { method: method || (json || form ? "POST" : "GET"), signal };
  if (json !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(json);
  } else {
    init.headers = headers();
    if (form) init.body = form;
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `The server could not be reached (${err.message}).`);
  }
  if (!resp.ok) throw await failure(resp);
  return resp;
}

export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

// POST `body` and call onEvent(parsed) for each `data:` event until `[DONE]` or the end.
// Aborting `signal` closes the connection, which makes the server cancel the request.
export async function streamEvents(path, body, signal, onEvent) {
  const resp = await request(path, { json: body, signal });
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer[end] === "\r" ? 4 : 2));
      const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      onEvent(JSON.parse(data));
    }
  }
}

let modelsCache = null;

// GET /v1/models (kind, state and, for chat models, vision are modelserve extras).
export async function listModels(refresh = false) {
  if (!modelsCache || refresh) modelsCache = getJSON("/v1/models").then((r) => r.data);
  try {
    return await modelsCache;
  } catch (err) {
    modelsCache = null;
    throw err;
  }
}

export function forgetModels() {
  modelsCache = null;
}

// Fill a <select> with the models of `kind` (keeping the current choice when still there).
export async function fillModelSelect(select, kind, filter = () => true) {
  const models = (await listModels()).filter((m) => m.kind === kind && filter(m));
  const current = select.value;
  select.replaceChildren(...models.map((m) => {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.state === "ready" ? m.id : `${m.id} (${m.state})`;
    return option;
  }));
  if (models.some((m) => m.id === current)) select.value = current;
  select.disabled = models.length === 0;
  return models;
}

// A file (or Blob) as a data: URL.
export function dataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// Show `message` in an element made for status lines (role=status or alert).
export function say(element, message, isError = false) {
  element.textContent = message;
  element.classList.toggle("error", isError);
}
