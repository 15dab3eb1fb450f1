// A card (seed 002): its history with the type filter and the entries new to the viewer
// marked, the original sender and "logged by" of forwarded mail, documents (download,
// delete where allowed), activities (close, reopen), notes, and the "Archive" button that
// shows and copies the card's archive address.

import { ApiError, del, get, post, userName } from "./api.js";
import { flash, h, later, party, replace, when } from "./dom.js";

// Labels of the CRM's own history entries; the channels' entries and every history filter
// come from the server's registry (GET /api/channels, ingest.registry), read once.
const OWN_LABELS = {
  note: "Note",
  status_change: "Status change",
  field_change: "Field change",
  task_closed: "Task closed",
  task_reopened: "Task reopened",
  document: "Document",
  document_deleted: "Document deleted",
};
let channels = null;

async function channelLabels() {
  if (channels === null) channels = await get("/api/channels");
  return channels;
}

function messageDetails(e) {
  return [
    h("p", { class: "from" }, e.direction === "outgoing" ? "To: " : "From: ", party(e.from)),
    e.employee ? h("p", { class: "by" }, "Employee: ", party(e.employee)) : null,
    body(e.text),
    e.status ? h("p", { class: "muted" }, "Status: ", e.status) : null,
  ];
}

function byLine(entry) {
  const by = entry.by || entry.logged_by;
  return by && by.name ? h("p", { class: "by" }, "By ", by.name) : null;
}

function body(text) {
  if (!text) return null;
  const short = text.length <= 600;
  return short
    ? h("pre", { class: "body" }, text)
    : h("details", {}, h("summary", {}, `${text.slice(0, 200)}…`), h("pre", { class: "body" }, text));
}

function emailDetails(e) {
  const logged = e.logged_by || {};
  return [
    h("p", { class: "subject" }, e.subject || "(no subject)"),
    h("p", { class: "from" }, "From: ", party(e.from)),
    h("p", { class: "logged-by" },
      e.forwarded ? "Forwarded and logged by: " : "Logged by: ", party(logged)),
    e.note ? h("p", { class: "note" }, "Note: ", e.note) : null,
    e.date_known === false
      ? h("p", { class: "muted date-unknown" },
        "The original's date could not be read: shown at the time it was forwarded.")
      : null,
    body(e.text),
    (e.attachments || []).filter((a) => !a.inline).length
      ? h("ul", { class: "attachments" },
        e.attachments.filter((a) => !a.inline).map((a) =>
          h("li", {}, h("a", { href: `/api/documents/${Number(a.document_id)}/content` },
            a.file_name))))
      : null,
    (e.skipped_attachments || []).map((s) =>
      h("p", { class: "muted" }, "Not kept: ", s.file_name || s.name || "", " ", s.reason || "")),
  ];
}

function entryDetails(e) {
  switch (e.type) {
    case "email":
      return emailDetails(e);
    case "bounce":
      return [h("p", { class: "subject" }, e.subject || ""), body(e.text)];
    case "call":
      return [
        h("p", {}, `${e.direction || ""} call, ${e.outcome || ""}`, " · ", e.number || "",
          e.duration_seconds ? ` · ${e.duration_seconds} s` : ""),
        e.employee ? h("p", { class: "by" }, "Employee: ", party(e.employee)) : null,
      ];
    case "note":
      return [body(e.text), byLine(e)];
    case "status_change":
    case "field_change":
      return [
        h("p", {}, e.field || "", ": ", String(e.old ?? "—"), " → ", String(e.new ?? "—")),
        byLine(e),
      ];
    case "task_closed":
    case "task_reopened":
      return [
        h("p", { class: "subject" }, e.subject || ""),
        h("p", {}, e.activity_type || "", e.status ? ` · ${e.status}` : ""),
        byLine(e),
      ];
    case "document":
    case "document_deleted":
      return [h("p", {}, e.file_name || ""), byLine(e)];
    case "payment": {
      const link = /^https?:\/\//.test(e.url || "")
        ? h("a", { href: e.url, target: "_blank", rel: "noopener noreferrer" }, e.payment_id || "")
        : h("span", {}, e.payment_id || "");
      return [
        h("p", { class: "subject" }, e.amount_text || "", " · ", e.status || ""),
        e.reason ? h("p", {}, "Reason: ", e.reason) : null,
        e.payment_status && e.payment_status !== e.status
          ? h("p", { class: "muted" }, "Now: ", e.payment_status)
          : null,
        h("p", { class: "muted" }, e.provider || "", " ", link),
      ];
    }
    default:
      // A message of any chat provider (chat, WhatsApp, SMS, Telegram...): its shape says so.
      if ("from" in e && "direction" in e) return messageDetails(e);
      return [h("pre", { class: "body" }, JSON.stringify(e, null, 2))];
  }
}

/** Whether the viewer may probably do what the history setting allows (the server decides). */
function allowed(setting, me, card) {
  if (me.admin) return true;
  if (setting === "admins") return false;
  if (setting === "responsible") return me.user_id === card.responsible_id;
  return true; // editors: the server checks the edit right
}

export async function showCard(view, cardId, me) {
  const status = h("p", { class: "status", role: "alert" });
  let card;
  let settings = { delete_documents: "admins", reopen_tasks: "admins" };
  try {
    card = await get(`/api/cards/${cardId}`);
    settings = await get("/api/settings").catch(() => settings);
  } catch (e) {
    replace(view, h("p", { class: "error" },
      e instanceof ApiError && e.status === 404 ? "No such card (or not yours to see)." : e.message));
    return null;
  }
  // Entries new to the viewer: logged since the card became unread for them (opening it just
  // marked it read), and any that arrive while the page is open.
  let unreadSince = card.unread_since ? new Date(card.unread_since) : null;
  const fresh = new Set();
  let seen = null;

  const head = h("div", { class: "card-head" });
  const archiveBox = h("div", { class: "archive" });
  const filterBox = h("fieldset", { class: "filters" }, h("legend", {}, "Show"));
  const historyList = h("ol", { class: "history", id: "history" });
  const documentsList = h("ul", { class: "documents", id: "documents" });
  const openList = h("ul", { class: "activities", id: "open-activities" });
  const closedList = h("ul", { class: "activities closed", id: "closed-activities" });
  const noteText = h("textarea", { id: "note-text", rows: "3", maxlength: "20000", required: true });
  const noteForm = h("form", { class: "note-form" },
    h("label", { for: "note-text" }, "New history"), noteText,
    h("button", { type: "submit" }, "Add to history"));

  function renderHead() {
    replace(head,
      h("p", {}, h("a", { href: `#/kanban/${card.entity_type}` }, "← Kanban")),
      h("h1", { id: "card-title" }, card.title),
      h("p", { class: "meta" },
        `${card.entity_type} · stage `, h("b", {}, card.stage),
        card.outcome ? ` · ${card.outcome}` : "",
        " · Responsible: ", later(userName(card.responsible_id))),
      card.focus_reason
        ? h("p", { class: "focus" }, "Focus: ", card.focus_reason, " · ", when(card.focus_at))
        : null,
      card.contacts.length
        ? h("ul", { class: "contacts" }, card.contacts.map((c) =>
          h("li", {}, [...new Set([c.name, ...c.emails, ...c.phones].filter(Boolean))].join(", "))))
        : null);
  }

  const archiveButton = h("button", { type: "button", id: "archive-button" }, "Archive");
  archiveButton.addEventListener("click", async () => {
    flash(status, null);
    try {
      const { address } = await post(`/api/cards/${cardId}/archive-address`);
      const field = h("input", { id: "archive-address", readonly: true, value: address, size: "48" });
      const copied = h("span", { class: "muted", id: "archive-copied" });
      const copy = async () => {
        try {
          await navigator.clipboard.writeText(address);
          replace(copied, "Copied to the clipboard.");
        } catch {
          field.select();
          replace(copied, "Selected: press Ctrl+C (or ⌘C) to copy.");
        }
      };
      replace(archiveBox,
        h("p", {}, "Forward mail to this address to put it in this card's history:"),
        field, h("button", { type: "button", onclick: copy }, "Copy"), copied);
      await copy();
    } catch (e) {
      flash(status, e);
    }
  });
  replace(archiveBox, archiveButton);

  const { filters, types } = await channelLabels();
  const labels = { ...OWN_LABELS, ...types };
  const checks = filters.map(({ name, label }) => {
    const box = h("input", { type: "checkbox", value: name, id: `filter-${name}` });
    box.addEventListener("change", () => refreshHistory());
    filterBox.append(h("label", { for: `filter-${name}` }, box, label));
    return box;
  });

  async function refreshHistory() {
    const wanted = checks.filter((c) => c.checked).map((c) => `type=${c.value}`);
    const { items } = await get(`/api/cards/${cardId}/history?${wanted.join("&")}`);
    if (seen === null) seen = new Set();
    else for (const e of items) if (!seen.has(e.id) && wanted.length === 0) fresh.add(e.id);
    if (wanted.length === 0) for (const e of items) seen.add(e.id);
    replace(historyList, items.length ? items.map((e) => {
      const isNew = fresh.has(e.id) || (unreadSince && new Date(e.logged_at) >= unreadSince);
      return h("li", { class: `entry ${e.type}${isNew ? " unread" : ""}`,
        dataset: { entryId: e.id, type: e.type } },
      h("header", {},
        h("span", { class: "type" }, labels[e.type] || e.type),
        isNew ? h("span", { class: "unread-mark" }, "New") : null,
        h("time", { datetime: e.occurred_at }, when(e.occurred_at))),
      entryDetails(e));
    }) : h("li", { class: "muted" }, "Nothing in the history yet."));
  }

  async function refreshDocuments() {
    const { items } = await get(`/api/cards/${cardId}/documents`);
    const mayDelete = allowed(settings.delete_documents, me, card);
    replace(documentsList, items.length ? items.map((d) =>
      h("li", { dataset: { documentId: d.id } },
        h("a", { href: `/api/documents/${Number(d.id)}/content` }, d.file_name),
        h("span", { class: "muted" }, ` ${d.media_type}, ${d.size} bytes, ${when(d.created_at)}`),
        mayDelete
          ? h("button", { type: "button", class: "danger", onclick: async () => {
            if (!window.confirm(`Delete ${d.file_name} for good?`)) return;
            try {
              await del(`/api/documents/${Number(d.id)}`);
              await refresh();
            } catch (e) {
              flash(status, e);
            }
          } }, "Delete")
          : null)) : h("li", { class: "muted" }, "No documents."));
  }

  function activityItem(a, action) {
    const run = async () => {
      flash(status, null);
      try {
        await post(`/api/activities/${Number(a.id)}/${action}`);
        await refresh();
      } catch (e) {
        flash(status, e);
      }
    };
    return h("li", { dataset: { activityId: a.id } },
      h("span", { class: "type" }, a.type, a.incoming ? " (incoming)" : ""), " ",
      h("span", { class: "subject" }, a.subject), " ",
      a.deadline ? h("span", { class: "muted" }, `due ${when(a.deadline)} `) : null,
      !a.is_open ? h("span", { class: "muted" }, `${a.status}, ${when(a.closed_at)} `) : null,
      action
        ? h("button", { type: "button", onclick: run }, action === "close" ? "Close" : "Reopen")
        : null);
  }

  async function refreshActivities() {
    const base = `/api/activities?card_id=${cardId}`;
    const [open, closed] = await Promise.all([
      get(`${base}&is_open=true&limit=100`),
      get(`${base}&is_open=false&limit=20`),
    ]);
    replace(openList, open.items.length ? open.items.map((a) => activityItem(a, "close"))
      : h("li", { class: "muted" }, "No open activities."));
    const mayReopen = allowed(settings.reopen_tasks, me, card);
    replace(closedList, closed.items.length
      ? closed.items.map((a) => activityItem(a, mayReopen ? "reopen" : null))
      : h("li", { class: "muted" }, "None."));
  }

  noteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    flash(status, null);
    try {
      await post(`/api/cards/${cardId}/notes`, { text: noteText.value });
      noteText.value = "";
      await refresh();
    } catch (e) {
      flash(status, e);
    }
  });

  async function refresh() {
    try {
      // Looking at the card reads it: the API clears its unread mark for its responsible.
      card = await get(`/api/cards/${cardId}`);
      if (card.unread_since && !unreadSince) unreadSince = new Date(card.unread_since);
      renderHead();
      await Promise.all([refreshHistory(), refreshDocuments(), refreshActivities()]);
    } catch (e) {
      flash(status, e);
    }
  }

  renderHead();
  replace(view,
    h("article", { class: "card-page", dataset: { cardId } },
      head,
      h("div", { class: "actions" }, archiveBox),
      status,
      h("div", { class: "columns" },
        h("section", { class: "history-section" },
          h("h2", {}, "History"), filterBox, noteForm, historyList),
        h("aside", {},
          h("h2", {}, "Open activities"), openList,
          h("h2", {}, "Recently closed"), closedList,
          h("h2", {}, "Documents"), documentsList))));
  await Promise.all([refreshHistory(), refreshDocuments(), refreshActivities()]).catch((e) =>
    flash(status, e));
  return refresh;
}
