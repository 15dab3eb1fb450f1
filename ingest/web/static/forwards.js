// My forwards, for every user: the mail they sent to an archive address that did not simply
// land on its card (refused, held or failed after the server took it, or kept with a
// notice), newest first, with the reason in plain words (GET /api/me/inbound). An
// administrator's token shows the user it acts as.

import { actingUser, get } from "./api.js";
import { flash, h, replace, when } from "./dom.js";

const FILTERS = [
  ["", "All"],
  ["rejected", "Refused"],
  ["held", "Held"],
  ["failed", "Failed"],
];
const LABELS = { rejected: "Refused", held: "Held", failed: "Failed", processed: "On its card" };
const EMPTY = {
  "": "Nothing to report: everything you sent to an archive address went onto its card.",
  rejected: "No refused mail.",
  held: "No held mail.",
  failed: "No failed mail.",
};
const LIMIT = 100;

function entry(item) {
  const stored = item.reason && item.reason !== item.reason_text;
  return h("li", { class: `entry forward ${item.status}`,
    dataset: { inboundId: item.id, status: item.status } },
  h("header", {},
    h("span", { class: "type" }, LABELS[item.status] || item.status),
    h("time", { datetime: item.received_at, title: "received" }, when(item.received_at))),
  h("p", { class: "reason-text" }, item.reason_text),
  h("p", { class: "subject" }, h("span", { class: "muted" }, "Subject: "),
    item.subject || "(no subject)"),
  h("p", { class: "to" }, "To ", h("code", { class: "address" }, item.recipient)),
  stored ? h("details", { class: "stored-reason" }, h("summary", {}, "Details"),
    h("p", {}, item.reason)) : null);
}

export async function showForwards(view, me) {
  let current = sessionStorage.getItem("forwardsStatus") || "";
  if (!FILTERS.some(([s]) => s === current)) current = "";
  const tabs = h("nav", { class: "types", id: "forwards-tabs" });
  const status = h("p", { class: "status", role: "alert" });
  const list = h("div", { id: "forwards-list" });
  replace(view,
    h("h1", {}, "My forwards"),
    h("p", { class: "muted" }, "Mail you sent to a card's archive address that was refused, ",
      "held or could not be processed, and mail kept with a note, with the reason."),
    tabs, status, list);

  function showTabs() {
    replace(tabs, FILTERS.map(([s, label]) => h("a", {
      href: "#/forwards",
      class: s === current ? "current" : "",
      dataset: { status: s || "all" },
      onclick: (event) => {
        event.preventDefault();
        current = s;
        sessionStorage.setItem("forwardsStatus", s);
        refresh();
      },
    }, label)));
  }

  async function refresh() {
    showTabs();
    if (me.user_id == null && actingUser() == null) {
      flash(status, null);
      replace(list, h("p", { class: "muted", id: "forwards-empty" },
        "The administrator token is no user's: choose a user under \u201cActing as\u201d ",
        "to see the mail they sent."));
      return;
    }
    const query = new URLSearchParams({ limit: String(LIMIT) });
    if (current) query.set("status", current);
    let items;
    try {
      ({ items } = await get(`/api/me/inbound?${query}`));
    } catch (e) {
      flash(status, e);
      return;
    }
    flash(status, null);
    replace(list, items.length
      ? h("ul", { class: "history forwards" }, items.map(entry))
      : h("p", { class: "muted", id: "forwards-empty" }, EMPTY[current]));
  }

  await refresh();
  return refresh;
}
