// The page's shell: sign-in, the header with the counters badge, the live-update stream
// (/api/events: each "change" event makes the current view and the counters fetch again,
// without a reload), and the views by URL hash: #/kanban/<type>, #/card/<id>, #/forwards,
// #/inbound.

import { actingUser, ApiError, call, get, setActingUser, userName } from "./api.js";
import { h, replace } from "./dom.js";
import { showCard } from "./card.js";
import { showForwards } from "./forwards.js";
import { showInbound } from "./inbound.js";
import { showKanban } from "./kanban.js";

const view = document.getElementById("view");
const state = { me: null, refresh: null, events: null, acting: null };

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  const error = document.getElementById("sign-in-error");
  error.textContent = "";
  try {
    const response = await fetch("/ui/session", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Requested-With": "crm-ui" },
      credentials: "same-origin",
      body: JSON.stringify({ token: form.token.value.trim() }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      error.textContent = typeof body.detail === "string" ? body.detail : "sign-in failed";
      return;
    }
    form.reset();
    await start();
  } catch (e) {
    error.textContent = String(e.message || e);
  }
}

function showSignIn() {
  state.me = null;
  state.acting = null;
  if (state.events) state.events.close();
  state.events = null;
  document.getElementById("top").hidden = true;
  const template = document.getElementById("sign-in-template");
  replace(view, template.content.cloneNode(true));
  document.getElementById("sign-in-form").addEventListener("submit", signIn);
  document.getElementById("token").focus();
}

async function signOut() {
  await call("DELETE", "/ui/session").catch(() => null);
  setActingUser(null);
  showSignIn();
}

/** Whose counters the badge shows: the signed-in user, or the user an admin acts for. */
function countersUser() {
  if (!state.me) return null;
  return state.me.user_id ?? actingUser();
}

async function refreshCounters() {
  const box = document.getElementById("counters");
  const userId = countersUser();
  const badges = [];
  if (userId != null) {
    try {
      const c = await get(`/api/users/${userId}/counters`);
      const badge = (id, label, value, title) =>
        h("span", { class: `badge ${value ? "on" : ""}`, title }, `${label} `,
          h("b", { id }, String(value)));
      badges.push(
        badge("counter-incoming", "Incoming", c.incoming, "unprocessed incoming activities"),
        badge("counter-planned", "Planned", c.planned, "overdue or due within N minutes"),
        badge("counter-today", "Today", c.today, "incoming and overdue due today"),
      );
      if (c.employees.incoming || c.employees.planned) {
        badges.push(h("span", { class: "badge team", title: "your employees' counters" },
          "Employees: incoming ", h("b", { id: "counter-team-incoming" },
            String(c.employees.incoming)),
          ", planned ", h("b", { id: "counter-team-planned" }, String(c.employees.planned))));
      }
    } catch (e) {
      badges.push(h("span", { class: "error" }, e.message));
    }
  }
  if (state.me && state.me.admin && state.me.user_id == null) {
    badges.push(h("label", { class: "acting" }, "Acting as ", await actingChoice()));
  }
  replace(box, badges);
}

const ACTING_TITLE = "show the counters and unread marks of this user";

/** The administrator's token belongs to no user: a list of the users, by name, to see the
 * counters and unread marks of one of them. One element per sign-in, its options fetched
 * again at each refresh (new users appear) unless it is in use. */
async function actingChoice() {
  const signedIn = state.me;
  if (!state.acting) {
    const created = h("select", { id: "acting-user", title: ACTING_TITLE },
      h("option", { value: "" }, "nobody"));
    created.addEventListener("change", () => {
      setActingUser(created.value);
      refreshAll();
    });
    state.acting = created;
  }
  const select = state.acting;
  if (document.activeElement === select) return select;
  let users;
  try {
    users = (await get("/api/users")).items;
    select.title = ACTING_TITLE;
  } catch (e) {
    select.title = `the users could not be listed: ${e.message}`;
    return select; // the options it has, until a refresh succeeds
  }
  if (state.me !== signedIn || document.activeElement === select) return select;
  const current = actingUser();
  const options = [h("option", { value: "" }, "nobody")];
  for (const user of users) {
    options.push(h("option", { value: String(user.id) }, `${user.name} <${user.email}>`));
  }
  if (current != null && !users.some((user) => user.id === current)) {
    options.push(h("option", { value: String(current) }, `user #${current}`));
  }
  replace(select, options);
  select.value = current == null ? "" : String(current);
  return select;
}

let pending = null;
let again = false;

/** Fetch the counters and the current view again; calls that come while one runs are
 * folded into one more run after it. */
function refreshAll() {
  if (pending) {
    again = true;
    return pending;
  }
  pending = (async () => {
    try {
      await Promise.all([refreshCounters(), state.refresh ? state.refresh() : null]);
    } finally {
      pending = null;
      if (again) {
        again = false;
        refreshAll();
      }
    }
  })();
  return pending;
}

function listen() {
  if (state.events) state.events.close();
  const live = document.getElementById("live");
  const events = new EventSource("/api/events");
  state.events = events;
  events.addEventListener("open", () => {
    live.textContent = "live";
    live.classList.add("on");
  });
  events.addEventListener("change", () => refreshAll());
  events.addEventListener("error", async () => {
    live.textContent = "reconnecting";
    live.classList.remove("on");
    if (events.readyState === EventSource.CLOSED) {
      // Not a network blip (the browser retries those): the session may have ended.
      try {
        await get("/ui/session");
        setTimeout(listen, 3000);
      } catch {
        /* crm:signed-out shows the sign-in */
      }
    }
  });
}

async function route() {
  if (!state.me) return;
  const [, page, arg] = (location.hash || "#/kanban").split("/");
  document.getElementById("nav-kanban").classList.toggle("current", page === "kanban");
  document.getElementById("nav-inbound").classList.toggle("current", page === "inbound");
  document.getElementById("nav-forwards").classList.toggle("current", page === "forwards");
  view.dataset.page = page || "kanban";
  if (page === "card" && /^[0-9]+$/.test(arg || "")) {
    state.refresh = await showCard(view, Number(arg), state.me);
  } else if (page === "forwards") {
    state.refresh = await showForwards(view, state.me);
  } else if (page === "inbound" && state.me.admin) {
    state.refresh = await showInbound(view);
  } else {
    state.refresh = await showKanban(view, arg || localStorage.getItem("entityType") || "deal");
  }
}

async function start() {
  try {
    state.me = await get("/ui/session");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return showSignIn();
    replace(view, h("p", { class: "error" }, `The server did not answer: ${e.message}`));
    return;
  }
  document.getElementById("top").hidden = false;
  document.getElementById("nav-inbound").hidden = !state.me.admin;
  const me = document.getElementById("me");
  if (state.me.user_id != null) {
    userName(state.me.user_id).then((name) => replace(me, name));
  } else {
    replace(me, "Administrator");
  }
  await route();
  await refreshCounters();
  listen();
}

window.addEventListener("hashchange", () => route().catch((e) => console.error(e)));
window.addEventListener("crm:signed-out", () => {
  if (state.me) showSignIn();
});
document.getElementById("sign-out").addEventListener("click", signOut);
start();
