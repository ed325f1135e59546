// Calls to the claude-mem API with the signed-in key.
//
// The key lives in this tab's sessionStorage only and travels in the Authorization header
// of same-origin fetch calls: never in a URL, a cookie or the page.

const KEY_SLOT = "claude-mem.viewer.key";

export class ApiError extends Error {
  constructor(status, error, message) {
    super(message || error || `HTTP ${status}`);
    this.status = status;
    this.error = error;
  }

  // What to show a person: the server's own words, with the status.
  describe() {
    if (this.status === 0) return this.message;
    return `${this.status} ${this.error || "Error"}: ${this.message}`;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_SLOT);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_SLOT, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_SLOT);
}

export function authHeaders(extra = {}) {
  const key = storedKey();
  const headers = { ...extra };
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

async function failure(response) {
  let error = response.statusText;
  let message = "";
  try {
    const body = await response.json();
    error = body.error || error;
    message = body.message || "";
    if (!message && Array.isArray(body.issues)) {
      message = body.issues.map((i) => `${(i.path || []).join(".")}: ${i.message}`).join("; ");
    }
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, error, message);
}

export async function request(method, path, body) {
  const init = { method, headers: authHeaders(), cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, "NetworkError", `The server could not be reached (${exc.message}).`);
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Run `work` over `items` with at most `limit` calls in flight.
export async function mapLimited(items, limit, work) {
  const results = new Array(items.length);
  let next = 0;
  async function lane() {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index], index);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}
