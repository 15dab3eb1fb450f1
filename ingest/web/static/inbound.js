// Inbound health, for administrators: every input by status (received, processed, rejected,
// failed, held, unmatched) with its reason or error, re-processing of the failed, rejected
// and held ones, and "attach to card" for the unmatched ones.

import { get, post } from "./api.js";
import { flash, h, replace, when } from "./dom.js";

const STATUSES = ["received", "processed", "rejected", "failed", "held", "unmatched"];
const REPROCESSABLE = new Set(["failed", "rejected", "held"]);
const LIMIT = 100;

export async function showInbound(view) {
  let current = sessionStorage.getItem("inboundStatus") || "failed";
  const tabs = h("nav", { class: "types", id: "inbound-tabs" });
  const status = h("p", { class: "status", role: "alert" });
  const table = h("div", { id: "inbound-list" });
  replace(view, h("h1", {}, "Inbound health"), tabs, status, table);

  function row(item) {
    const actions = [];
    if (REPROCESSABLE.has(item.status)) {
      actions.push(h("button", { type: "button", onclick: async () => {
        flash(status, null);
        try {
          await post(`/api/inbound/${Number(item.id)}/reprocess`);
          await refresh();
        } catch (e) {
          flash(status, e);
        }
      } }, "Re-process"));
    }
    if (item.status === "unmatched") {
      const input = h("input", { type: "number", min: "1", placeholder: "card id", required: true,
        "aria-label": `card for input ${item.id}` });
      const form = h("form", { class: "attach" }, input, h("button", { type: "submit" },
        "Attach to card"));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        flash(status, null);
        try {
          await post(`/api/unmatched/${Number(item.id)}/attach`, { card_id: Number(input.value) });
          await refresh();
        } catch (e) {
          flash(status, e);
        }
      });
      actions.push(form);
    }
    return h("tr", { dataset: { inboundId: item.id, status: item.status } },
      h("td", {}, String(item.id)),
      h("td", {}, item.channel),
      h("td", {}, item.recipient),
      h("td", {}, when(item.received_at)),
      h("td", {}, item.status),
      h("td", {}, String(item.attempts)),
      h("td", { class: "reason" }, item.reason || item.error || ""),
      h("td", {}, item.card_id ? h("a", { href: `#/card/${Number(item.card_id)}` },
        `#${item.card_id}`) : ""),
      h("td", {}, actions));
  }

  async function refresh() {
    try {
      const lists = await Promise.all(
        STATUSES.map((s) => get(`/api/inbound?status=${s}&limit=${LIMIT}`)));
      replace(tabs, STATUSES.map((s, i) => {
        const n = lists[i].items.length;
        const link = h("a", { href: "#/inbound", class: s === current ? "current" : "",
          dataset: { status: s } }, s, " ",
        h("span", { class: `count${n && !["processed", "received"].includes(s) ? " on" : ""}` },
          n >= LIMIT ? `${LIMIT}+` : String(n)));
        link.addEventListener("click", (event) => {
          event.preventDefault();
          current = s;
          sessionStorage.setItem("inboundStatus", s);
          refresh();
        });
        return link;
      }));
      const items = lists[STATUSES.indexOf(current)].items;
      replace(table, items.length
        ? h("table", {},
          h("thead", {}, h("tr", {}, ["id", "channel", "recipient", "received", "status",
            "attempts", "reason / error", "card", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, items.map(row)))
        : h("p", { class: "muted" }, `No ${current} inputs.`));
    } catch (e) {
      flash(status, e);
    }
  }

  await refresh();
  return refresh;
}
