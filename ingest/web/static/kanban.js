// The Kanban (seed 001, focus mode): the columns of one entity type's pipeline, each card
// ordered by its latest focus, with its unread mark, why and when it was focused, and its
// responsible. The columns are the stages the cards are in (the API has no stage list).

import { get, userName } from "./api.js";
import { h, later, replace, when } from "./dom.js";

export const ENTITY_TYPES = [
  ["deal", "Deals"],
  ["lead", "Leads"],
  ["invoice", "Invoices"],
  ["smart_process", "Smart processes"],
];
// The API's ceiling for one Kanban read: the latest-focused cards of the type.
const LIMIT = 500;

function cardTile(card) {
  return h(
    "article",
    {
      class: `card${card.unread ? " unread" : ""}`,
      dataset: { cardId: card.id, unread: card.unread ? "true" : "false" },
    },
    h("a", { class: "title", href: `#/card/${card.id}` }, card.title),
    card.unread ? h("span", { class: "unread-mark", title: "unread" }, "Unread") : null,
    card.focus_reason
      ? h("p", { class: "focus" }, h("span", { class: "reason" }, card.focus_reason), " · ",
        h("time", { datetime: card.focus_at }, when(card.focus_at)))
      : null,
    h("p", { class: "responsible" }, "Responsible: ", later(userName(card.responsible_id))),
  );
}

export async function showKanban(view, entityType) {
  if (!ENTITY_TYPES.some(([t]) => t === entityType)) entityType = "deal";
  localStorage.setItem("entityType", entityType);
  const board = h("div", { class: "board", id: "board" });
  const status = h("p", { class: "status" });
  replace(
    view,
    h("nav", { class: "types" },
      ENTITY_TYPES.map(([type, label]) =>
        h("a", { href: `#/kanban/${type}`, class: type === entityType ? "current" : "" },
          label))),
    status,
    board,
  );

  async function refresh() {
    let cards;
    try {
      ({ cards } = await get(`/api/kanban?entity_type=${entityType}&limit=${LIMIT}`));
    } catch (e) {
      replace(status, e.message);
      status.classList.add("error");
      return;
    }
    status.classList.remove("error");
    replace(status, cards.length ? "" : "No cards of this type yet.");
    const stages = new Map();
    for (const card of cards) {
      if (!stages.has(card.stage)) stages.set(card.stage, []);
      stages.get(card.stage).push(card); // already in focus order
    }
    const names = [...stages.keys()].sort((a, b) => a.localeCompare(b));
    replace(
      board,
      names.map((stage) =>
        h("section", { class: "column", dataset: { stage } },
          h("h2", {}, stage, " ", h("span", { class: "count" }, String(stages.get(stage).length))),
          stages.get(stage).map(cardTile))),
    );
  }

  await refresh();
  return refresh;
}
