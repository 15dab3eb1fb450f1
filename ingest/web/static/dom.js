// Building the page: every piece of data goes in as text (textContent / text nodes), never
// as HTML: mail subjects and bodies are hostile input.

/** h("a", {href: "#/x", class: "c", onclick: fn}, "text", child, ...) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A name filled in when it arrives (names are fetched once and cached). */
export function later(promise, tag = "span", props = {}) {
  const el = h(tag, props, "…");
  promise.then(
    (text) => replace(el, text),
    () => replace(el, "?"),
  );
  return el;
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function party(p) {
  if (!p) return "";
  const address = p.address || p.email || p.phone || "";
  if (p.name && address) return `${p.name} <${address}>`;
  return p.name || address;
}

/** A status line that shows errors from the API. */
export function flash(el, error) {
  replace(el, error ? String(error.message || error) : "");
  el.classList.toggle("error", Boolean(error));
}
