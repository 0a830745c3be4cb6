// Talking to the gateway: JSON requests with the console's header (a signed-in session's
// requests that change something must carry it), errors as exceptions with the server's
// message, and server-sent events read from a streamed response.

/** Who the console is signed in as: operators see traces, the knowledge base and grants. */
export const viewer = { operator: false };

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** `method path` with an optional JSON `body`; the parsed JSON answer. */
export async function call(method, path, body) {
  const headers = { "x-databot-console": "1" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    // A refused sign-in is the form's own error; elsewhere a 401 means the session ended.
    if (response.status === 401 && path !== "/ui/session") {
      window.dispatchEvent(new CustomEvent("databot:unauthorized"));
    }
    const error = data && data.error ? data.error : {};
    throw new ApiError(response.status, error.code || "http_error",
      error.message || `${method} ${path} answered ${response.status}`);
  }
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body = {}) => call("POST", path, body);

/** POST `body` to an SSE endpoint; `onEvent(name, data)` for each event as it arrives.
 *  Resolves with the response's headers when the stream ends. */
export async function stream(path, body, onEvent, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", "x-databot-console": "1", accept: "text/event-stream" },
    body: JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("databot:unauthorized"));
    let error = {};
    try { error = (await response.json()).error || {}; } catch { /* not JSON */ }
    throw new ApiError(response.status, error.code || "http_error", error.message || `answered ${response.status}`);
  }
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
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
  return response.headers;
}
