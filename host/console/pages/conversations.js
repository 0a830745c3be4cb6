// Conversations: search and browse saved conversations (an operator sees every one, other keys
// their own); one conversation turn by turn: when, how long, who answered, tokens, each tool
// call with its arguments and its result or error, and a link to the turn's trace.

import { h, show, table, when } from "../dom.js";
import { get, viewer } from "../api.js";

export default function conversations(main, key) {
  return key ? conversation(main, key) : list(main);
}

function list(main) {
  const search = h("input", { type: "search", name: "search", placeholder: "Search conversations (key or any message)", "aria-label": "Search conversations" });
  const results = h("div", { "data-test": "conversations" });
  const more = h("div", {});
  show(main, h("h1", {}, "Conversations"), h("form", { class: "row" }, search), results, more);
  let timer = null;
  let shown = [];

  async function load(after) {
    const query = new URLSearchParams({ limit: "50" });
    if (search.value.trim()) query.set("search", search.value.trim());
    if (after) query.set("after", after);
    let page;
    try {
      page = await get(`/api/v1/conversations?${query}`);
    } catch (failed) {
      show(results, h("p", { class: "error" }, failed.message));
      return;
    }
    shown = after ? shown.concat(page.conversations) : page.conversations;
    show(results, table([
      ["Conversation", (c) => h("a", { href: `#/conversations/${encodeURIComponent(c.session_key)}`, class: "mono" }, c.session_key)],
      ["Owner", (c) => h("span", { class: "mono" }, c.owner || "channel")],
      ["Turns", (c) => c.turns],
      ["Tool calls", (c) => c.tool_calls],
      ["Tokens", (c) => c.prompt_tokens + c.completion_tokens],
      ["Last active", (c) => when(c.last_active_ms)],
    ], shown, search.value.trim() ? "No conversation matches." : "No conversations yet."));
    show(more, page.next
      ? h("button", { type: "button", onclick: () => load(page.next) }, "More")
      : null);
  }

  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => load(), 250);
  });
  search.form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  load();
  return { stop: () => clearTimeout(timer) };
}

function conversation(main, key) {
  const body = h("div", { "data-test": "conversation" }, h("p", { class: "muted" }, "Loading…"));
  show(main, h("p", {}, h("a", { href: "#/conversations" }, "← Conversations")),
    h("h1", { class: "mono" }, key), body);

  async function load() {
    let data;
    try {
      data = await get(`/api/v1/conversations/${encodeURIComponent(key)}`);
    } catch (failed) {
      show(body, h("p", { class: "error" }, failed.message));
      return;
    }
    show(body,
      h("p", { class: "meta" }, "Owner ", h("span", { class: "mono" }, data.owner || "channel"),
        ` · ${data.turns.length} turn${data.turns.length === 1 ? "" : "s"} shown`),
      data.turns.map(({ turn, messages }) => turnCard(turn, messages)));
  }

  load();
  return { stop: () => {} };
}

function turnCard(turn, messages) {
  const results = new Map(messages.filter((m) => m.role === "tool").map((m) => [m.tool_call_id, m]));
  const parts = [];
  for (const message of messages) {
    if (message.role === "user") {
      parts.push(h("div", { class: "msg user" }, message.content || ""));
    } else if (message.role === "assistant") {
      for (const call of message.tool_calls || []) parts.push(toolCall(call, results.get(call.id)));
      if (message.content) parts.push(h("div", { class: "msg assistant" }, message.content));
    }
  }
  const tokens = turn.prompt_tokens + turn.completion_tokens;
  return h("div", { class: "card turn", "data-test": "turn" },
    h("div", { class: "meta" },
      when(turn.started_at_ms), ` · ${turn.duration_ms} ms`,
      turn.specialist ? [" · ", h("strong", {}, turn.specialist)] : null,
      ` · ${tokens} tokens (${turn.prompt_tokens} in, ${turn.completion_tokens} out)`,
      ` · ${turn.tool_calls} tool call${turn.tool_calls === 1 ? "" : "s"}`,
      turn.trace_id && viewer.operator ? [" · ", h("a", { href: `#/traces/${encodeURIComponent(turn.trace_id)}`, class: "mono" }, "trace")] : null),
    h("div", { class: "chat-log" }, parts));
}

function toolCall(call, result) {
  const output = result ? result.content || "" : "(no result saved)";
  const failed = output.startsWith("error:");
  return h("div", { class: "tool", "data-test": "tool-call" },
    h("strong", {}, call.name), " ", h("span", { class: "mono" }, JSON.stringify(call.arguments)),
    h("pre", { class: failed ? "mono error" : "mono" }, output));
}
