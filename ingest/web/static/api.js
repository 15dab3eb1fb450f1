// The JSON API as the page calls it: the session cookie authenticates (HttpOnly, so this
// code never sees the token); changes carry X-Requested-With, which the server demands.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let acting = sessionStorage.getItem("actingUser") || "";

/** For an administrator's session: the user whose counters (and unread marks) are shown. */
export function setActingUser(id) {
  acting = id ? String(id) : "";
  if (acting) sessionStorage.setItem("actingUser", acting);
  else sessionStorage.removeItem("actingUser");
}

export function actingUser() {
  return acting ? Number(acting) : null;
}

function message(status, body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  return `HTTP ${status}`;
}

export async function call(method, path, body) {
  const headers = { "X-Requested-With": "crm-ui", Accept: "application/json" };
  if (acting) headers["X-Acting-User"] = acting;
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("crm:signed-out"));
    throw new ApiError(response.status, message(response.status, data));
  }
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body === undefined ? {} : body);
export const del = (path) => call("DELETE", path);

const names = new Map();

/** A user's name, fetched once per page load ("#id" while unknown or not readable). */
export async function userName(id) {
  if (id == null) return "";
  if (!names.has(id)) {
    names.set(
      id,
      get(`/api/users/${id}`).then(
        (u) => u.name,
        () => `#${id}`,
      ),
    );
  }
  return names.get(id);
}
