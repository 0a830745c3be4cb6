// The console's shell: who is signed in (or the sign-in form), the page list, the page
// chosen by the URL's fragment (#/chat, #/plugins, ...; `#/page/item` opens one item of a
// page), and the live activity stream that
// tells the open page to read its data again.

import { h, show } from "./dom.js";
import { get, call, ApiError, viewer } from "./api.js";
import overview from "./pages/overview.js";
import chat, { forget as forgetChat } from "./pages/chat.js";
import plugins from "./pages/plugins.js";
import connectors from "./pages/connectors.js";
import schedules from "./pages/schedules.js";
import conversations from "./pages/conversations.js";
import traces from "./pages/traces.js";
import knowledge from "./pages/knowledge.js";

/** Pages only an operator can read (their endpoints answer 403 to other keys). */
const OPERATOR_PAGES = new Set(["traces", "knowledge"]);

const PAGES = [
  ["overview", "Overview", overview],
  ["chat", "Chat", chat],
  ["conversations", "Conversations", conversations],
  ["traces", "Traces", traces],
  ["knowledge", "Knowledge", knowledge],
  ["plugins", "Plugins", plugins],
  ["connectors", "Connectors & channels", connectors],
  ["schedules", "Schedules", schedules],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const banner = document.getElementById("banner");

let current = null; // what the open page returned: { refresh(kind), stop() }
let live = null;
let routing = false;

function route() {
  const [, name, item] = location.hash.match(/^#\/([a-z]+)(?:\/(.+))?$/) || [];
  if (!PAGES.find(([key]) => key === name)) return ["overview", null];
  let decoded = null;
  try { decoded = item ? decodeURIComponent(item) : null; } catch { decoded = null; }
  return [name, decoded];
}

function render() {
  const [name, item] = route();
  for (const link of nav.querySelectorAll("a")) {
    link.classList.toggle("active", link.dataset.page === name);
  }
  if (current && current.stop) current.stop();
  const [, title, page] = PAGES.find(([key]) => key === name);
  document.title = `${title} · databot console`;
  main.replaceChildren();
  current = page(main, item) || {};
}

function notice(message) {
  if (!message) { banner.hidden = true; return; }
  show(banner, message);
  banner.hidden = false;
}

/** Follow `/api/v1/events`; changes make the open page read its data again, at most once
 *  per half second whatever their number. */
function follow() {
  if (live) live.close();
  const stream = new EventSource("/api/v1/events");
  live = stream;
  const pending = new Set();
  let timer = null;
  for (const kind of ["plugins", "connectors", "schedules", "resync"]) {
    stream.addEventListener(kind, () => {
      pending.add(kind);
      if (timer) return;
      timer = setTimeout(() => {
        timer = null;
        const kinds = [...pending];
        pending.clear();
        const refresh = current && current.refresh;
        if (!refresh) return;
        if (kinds.includes("resync")) refresh("resync");
        else for (const one of kinds) refresh(one);
      }, 500);
    });
  }
  stream.addEventListener("hello", () => notice(null));
  stream.onerror = async () => {
    if (stream !== live) return;
    notice("Live updates interrupted; reconnecting…");
    if (stream.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    // Refused (a session that ended, too many streams): find out which before retrying.
    try {
      const session = await get("/ui/session");
      if (!session.signed_in) { window.dispatchEvent(new CustomEvent("databot:unauthorized")); return; }
    } catch { /* the gateway is away: retry */ }
    setTimeout(() => { if (stream === live) follow(); }, 5000);
  };
}

/** Leave the signed-in views: stop the live stream and the page, forget the chat. */
function leave() {
  if (live) live.close();
  live = null;
  if (current && current.stop) current.stop();
  current = null;
  forgetChat();
}

function signInForm(failure) {
  notice(null);
  nav.replaceChildren();
  who.replaceChildren();
  const key = h("input", { type: "password", name: "key", placeholder: "API key", autocomplete: "current-password", "aria-label": "API key" });
  const error = h("p", { class: "error", role: "alert", "data-test": "signin-error" }, failure || "");
  const submit = h("button", { class: "primary", type: "submit" }, "Sign in");
  const form = h("form", { class: "card signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Use an API key of this gateway. The console keeps a session cookie, not the key."),
    key, h("p", {}, submit), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      await call("POST", "/ui/session", { key: key.value });
      key.value = "";
      await start();
    } catch (failed) {
      show(error, failed instanceof ApiError ? failed.message : String(failed));
      submit.disabled = false;
    }
  });
  show(main, form);
  key.focus();
}

async function start() {
  let session;
  try {
    session = await get("/ui/session");
  } catch (failed) {
    show(main, h("p", { class: "error" }, `The gateway did not answer: ${failed.message}`));
    return;
  }
  if (!session.signed_in) { signInForm(); return; }
  viewer.operator = Boolean(session.admin);
  show(nav, PAGES.filter(([key]) => viewer.operator || !OPERATOR_PAGES.has(key))
    .map(([key, title]) => h("a", { href: `#/${key}`, "data-page": key }, title)));
  if (session.open) {
    show(who, "open to loopback (no API keys)");
  } else {
    const out = h("button", { type: "button" }, "Sign out");
    out.addEventListener("click", async () => {
      try {
        await call("DELETE", "/ui/session");
      } catch (failed) {
        notice(`Signing out failed: ${failed.message}`);
        return;
      }
      leave();
      signInForm();
    });
    show(who, h("span", { class: "mono" }, session.principal), session.admin ? " (operator)" : "", out);
  }
  if (!routing) {
    routing = true;
    window.addEventListener("hashchange", () => { if (nav.childElementCount) render(); });
  }
  render();
  follow();
}

// A session that ended (expired, signed out elsewhere, key removed) asks to sign in again.
window.addEventListener("databot:unauthorized", () => {
  leave();
  signInForm("Your session ended; sign in again.");
});

start();
