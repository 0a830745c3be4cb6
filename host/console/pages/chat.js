// Chat: a conversation with the agent, streamed. Tool calls appear as they start (with their
// arguments) and are completed when they finish (with their output or error).

import { h, show } from "../dom.js";
import { stream, viewer } from "../api.js";

let conversation = null; // kept while the console is open, so switching pages keeps the chat
let inFlight = null; // the answer being streamed, if any

/** Forget the conversation and stop its answer (signing out, a session that ended). */
export function forget() {
  if (inFlight) inFlight.abort();
  inFlight = null;
  conversation = null;
}

export default function chat(main) {
  conversation = conversation || { id: `console-${crypto.randomUUID()}`, log: [] };
  const log = h("div", { class: "chat-log", "data-test": "chat-log" });
  const input = h("textarea", { rows: 3, name: "message", placeholder: "Ask about your data…", "aria-label": "Message" });
  const send = h("button", { class: "primary", type: "submit" }, "Send");
  const fresh = h("button", { type: "button" }, "New conversation");
  const status = h("span", { class: "meta", "data-test": "chat-status" });
  const form = h("form", {}, input, h("div", { class: "row" }, send, fresh, status));
  show(main, h("h1", {}, "Chat"), h("p", { class: "meta mono" }, "Conversation ", conversation.id), log, form);
  for (const node of conversation.log) log.append(node);
  fresh.addEventListener("click", () => {
    forget();
    chat(main);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    input.value = "";
    send.disabled = true;
    add(h("div", { class: "msg user", "data-test": "user-message" }, content));
    const answer = h("div", { class: "msg assistant", "data-test": "assistant-message" });
    const text = h("div", {});
    answer.append(text);
    add(answer);
    const tools = new Map();
    const started = performance.now();
    show(status, "Thinking…");
    const controller = new AbortController();
    inFlight = controller;
    try {
      await stream("/api/v1/stream", { content, chat_id: conversation.id }, (name, raw) => {
        let event;
        try { event = JSON.parse(raw); } catch { return; }
        if (name === "delta") {
          text.append(event.data);
        } else if (name === "tool_start") {
          const output = h("pre", { class: "mono" }, "running…");
          const box = h("div", { class: "tool", "data-test": "tool-call" },
            h("strong", {}, event.tool_name), " ", h("span", { class: "mono" }, event.data), output);
          tools.set(event.tool_name, [...(tools.get(event.tool_name) || []), output]);
          answer.insertBefore(box, text);
        } else if (name === "tool_result") {
          const waiting = tools.get(event.tool_name) || [];
          const output = waiting.shift();
          if (output) show(output, event.data);
        } else if (name === "done") {
          show(text, event.data);
          if (event.summary) answer.append(summary(event.summary));
        } else if (name === "error") {
          show(text, h("span", { class: "error" }, event.data));
        }
      }, controller.signal);
      show(status, `${Math.round(performance.now() - started)} ms`);
    } catch (failed) {
      if (failed.name !== "AbortError") show(text, h("span", { class: "error" }, failed.message));
      show(status, "");
    } finally {
      send.disabled = false;
      if (inFlight === controller) inFlight = null;
      input.focus();
    }
  });

  function summary(s) {
    const tokens = (s.prompt_tokens || 0) + (s.completion_tokens || 0);
    return h("div", { class: "meta", "data-test": "turn-summary" },
      s.specialist ? [h("strong", {}, s.specialist), " · "] : null,
      `${tokens} tokens (${s.prompt_tokens || 0} in, ${s.completion_tokens || 0} out)`,
      ` · ${s.tool_calls || 0} tool call${s.tool_calls === 1 ? "" : "s"}`,
      s.trace_id && viewer.operator ? [" · ", h("a", { href: `#/traces/${encodeURIComponent(s.trace_id)}` }, "trace")] : null);
  }

  function add(node) {
    conversation.log.push(node);
    log.append(node);
    node.scrollIntoView({ block: "end" });
  }

  input.focus();
  return { stop: () => {} };
}
