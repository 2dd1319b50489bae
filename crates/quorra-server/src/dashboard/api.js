// Every call the dashboard makes to the node's API goes through here, so that the
// bearer token is sent on each one and errors are read one way: the API answers
// {"error": "..."} with a status that fits.

const TOKEN_KEY = "quorra-token";

/** An API call that failed: its HTTP status and the node's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A 401: no token, or the wrong one; `sent` is the token the call carried, or null. */
export class AuthError extends ApiError {
  constructor(message, sent) {
    super(401, message);
    this.sent = sent;
  }
}

// Kept in sessionStorage, not a cookie: it lives as long as the tab, and a request
// another site makes the browser send to the node carries nothing.
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

const authListeners = [];

/** `listener(error)` runs on every 401, so the app can ask for the token. */
export function onAuthRequired(listener) {
  authListeners.push(listener);
}

/**
 * Calls the API. `options.body` is sent as is (a string or bytes) or, when `json` is
 * given, as JSON. Returns the Response when `raw`, else its JSON (null for 204).
 */
export async function call(path, { method = "GET", body, json, raw = false } = {}) {
  const headers = {};
  const sent = token();
  if (sent) headers.Authorization = `Bearer ${sent}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, `the node did not answer (${error.message})`);
  }
  if (response.status === 401) {
    const message = await errorText(response);
    const error = new AuthError(
      sent ? `the node refused this token: ${message}` : message,
      sent,
    );
    for (const listener of authListeners) listener(error);
    throw error;
  }
  if (!response.ok) {
    throw new ApiError(response.status, `${method} ${path}: ${response.status} ${await errorText(response)}`);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

async function errorText(response) {
  const text = await response.text();
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed.error === "string") return parsed.error;
  } catch {
    // Not JSON: a proxy in front of the node, say. Its text is the best we have.
  }
  return text.trim() || response.statusText;
}

/**
 * A key's bytes as a URL path segment, every byte percent-encoded except the
 * unreserved ones, so that binary keys, `/`, `%`, `?` and `#` all survive.
 */
export function keyPath(bytes) {
  let out = "";
  for (const byte of bytes) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
