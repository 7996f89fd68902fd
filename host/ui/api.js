// The public HTTP APIs, as the UI uses them: JSON requests, errors in the OpenAI shape, and
// server-sent events read from a POST (EventSource only does GET).

/** An error the server answered with, its message as the API gave it. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = body && body.error;
    const message = typeof error === "string" ? error : (error && error.message) || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** The API key the page sends (kept in this browser's storage), if the server asks for one. */
let apiKey = stored();

function stored() {
  try {
    return localStorage.getItem("plugboard.key") || "";
  } catch {
    return ""; // storage is off: the key lasts as long as the page
  }
}

export function setApiKey(key) {
  apiKey = key;
  try {
    if (key) localStorage.setItem("plugboard.key", key);
    else localStorage.removeItem("plugboard.key");
  } catch {
    // as above
  }
}

export function hasApiKey() {
  return Boolean(apiKey);
}

function headers(extra = {}) {
  return apiKey ? { ...extra, authorization: `Bearer ${apiKey}` } : extra;
}

export async function failure(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: the status says enough */ }
  return new ApiError(response.status, body);
}

export async function getJson(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** POSTs `body` and yields each `data:` payload of the SSE answer, parsed, until `[DONE]`. */
export async function* postStream(path, body, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({ "content-type": "application/json" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  for await (const { data } of frames(response)) {
    if (data === "[DONE]") return;
    yield JSON.parse(data);
  }
}

/** Opens an SSE stream by GET (with the key, which EventSource cannot send); resolves once the
 * server answered, to the stream's events: `{event, data}`, data parsed. */
export async function openStream(path) {
  const response = await fetch(path, { headers: headers({ accept: "text/event-stream" }) });
  if (!response.ok) throw await failure(response);
  return (async function* events() {
    for await (const { event, data } of frames(response)) {
      if (data === "[DONE]") return; // the server ended the stream (it is stopping)
      yield { event, data: JSON.parse(data) };
    }
  })();
}

/** The events of an SSE body: `{event, data}`, data lines joined; comments and empty frames
 * (keep-alives) skipped. */
async function* frames(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      // Line ends of any kind (CRLF, LF, CR); at the end, a last frame with no blank line. A
      // CR that ends a piece waits for the next: it may be half of a CRLF.
      buffer += value || "";
      const held = !done && buffer.endsWith("\r") ? "\r" : "";
      buffer = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0 || (done && buffer)) {
        if (end < 0) end = buffer.length;
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const parsed = parseFrame(frame);
        if (parsed) yield parsed;
      }
      if (done) return;
      buffer += held;
    }
  } finally {
    // The caller may stop early (an error chunk, [DONE]): the connection is let go.
    reader.cancel().catch(() => {});
  }
}

function parseFrame(frame) {
  let event = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    else if (line.startsWith("event:")) event = line.slice(6).trim();
  }
  return data.length ? { event, data: data.join("\n") } : null;
}

/** A tiny element builder: `el("li", {class: "x", dataset: {id}}, child, "text")`. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && key !== "list" && key !== "form") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i++; }
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}
