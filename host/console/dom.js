// Building the page from data, safely: every value goes in as text (`textContent`) or as an
// attribute from a fixed list; nothing is parsed as HTML (the page's Trusted Types policy
// would refuse it anyway), and links only ever point inside the console.

const ATTRIBUTES = new Set([
  "class", "id", "type", "placeholder", "name", "value", "title", "rows", "autocomplete",
  "aria-label", "role", "disabled", "hidden", "for", "colspan", "data-page", "data-test",
]);

/** An element `tag` with `attrs` (a fixed set, plus `href` to a console route "#/...") and
 *  `children` (nodes, or any other value shown as text; null/undefined/false skipped). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "href") {
      const target = String(value);
      if (!target.startsWith("#/")) throw new Error("console links stay inside the console");
      element.setAttribute("href", target);
    } else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (ATTRIBUTES.has(name)) {
      element.setAttribute(name, value === true ? "" : String(value));
    } else {
      throw new Error(`attribute ${name} is not one the console sets`);
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace what `element` shows with `children`. */
export function show(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/** A table of `rows` with `columns`: [heading, (row) => cell content]. */
export function table(columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map(([heading]) => h("th", {}, heading)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row)))))));
}

/** A coloured state label: good, warning or bad by `state`. */
export function pill(state) {
  const text = String(state ?? "unknown");
  const tone = /^(ready|healthy|ok|closed|succeeded|enabled|running)$/.test(text) ? "ok"
    : /^(degraded|half_open|retrying|paused|not_configured|skipped|pending)$/.test(text) ? "warn" : "bad";
  return h("span", { class: `pill ${tone}` }, text);
}

/** Milliseconds since the epoch as local time, or a dash. */
export function when(ms) {
  if (ms === null || ms === undefined) return "–";
  const date = new Date(typeof ms === "number" ? ms : String(ms));
  return Number.isNaN(date.getTime()) ? String(ms) : date.toLocaleString();
}

/** A card with a `title`, a large `value` and a line of `detail`. */
export function statCard(title, value, detail) {
  return h("div", { class: "card" }, h("div", { class: "muted" }, title), h("div", { class: "stat" }, value), h("div", { class: "meta" }, detail));
}
