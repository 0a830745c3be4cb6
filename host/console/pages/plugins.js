// Plugins: every loaded or refused plugin with its kind, version, digest, signer, source, state,
// breaker, calls, failures and mean latency, what it was granted and its budgets, and the
// reason a revision was refused; tool groups switched
// on and off at runtime.

import { h, show, table, pill } from "../dom.js";
import { get, post } from "../api.js";

export default function plugins(main) {
  const list = h("div", { "data-test": "plugins" });
  const groups = h("div", { "data-test": "tool-groups" });
  const tools = h("div", {});
  show(main, h("h1", {}, "Plugins"), list, h("h2", {}, "Tool groups"), groups, h("h2", {}, "Tools"), tools);

  async function load() {
    const [status, toolGroups] = await Promise.all([get("/api/v1/plugins"), get("/api/v1/tool-groups")]);
    show(list, table([
      ["Name", (p) => h("strong", { "data-test": "plugin-name" }, p.name)],
      ["Kind", (p) => p.kind || "–"],
      ["Version", (p) => p.version || "–"],
      ["Description", (p) => p.description || ""],
      ["State", (p) => pill(p.state)],
      ["Breaker", (p) => (p.breaker ? pill(p.breaker) : "–")],
      ["Calls", (p) => [`${p.calls} (${p.failures} failed)`,
        p.mean_latency_ms != null ? h("div", { class: "meta" }, `mean ${p.mean_latency_ms.toFixed(2)} ms`) : null]],
      ["Granted", (p) => (p.capabilities && p.capabilities.length
        ? h("ul", { class: "plain" }, p.capabilities.map((c) => h("li", { class: "mono" }, c)))
        : h("span", { class: "muted" }, "nothing"))],
      ["Budgets", (p) => (p.budgets ? h("span", { class: "meta", "data-test": "budgets" },
        `${p.budgets.timeout_ms} ms, ${p.budgets.memory_mb} MiB, ${p.budgets.max_concurrency} at once, ` +
        `${p.budgets.max_output_bytes} B out, ${p.budgets.max_connections} connections`) : "–")],
      ["Revisions", (p) => p.revisions],
      ["Source", (p) => h("span", { class: "mono" }, p.source)],
      ["Digest", (p) => h("span", { class: "mono", title: p.digest || "" }, (p.digest || "–").slice(0, 12))],
      ["Signer", (p) => (p.signer
        ? h("span", { title: `key id ${p.signer.key_id}` }, p.signer.key)
        : h("span", { class: "muted" }, "unsigned"))],
      ["Last error", (p) => (p.last_error ? h("span", { class: "error" }, p.last_error) : "")],
    ], status.plugins, "No plugins loaded."));
    show(groups, table([
      ["Group", (g) => h("strong", {}, g.name)],
      ["Description", (g) => g.description],
      ["Tools", (g) => g.tools.join(", ")],
      ["State", (g) => pill(g.enabled ? "enabled" : "disabled")],
      ["", (g) => {
        const toggle = h("button", { type: "button" }, g.enabled ? "Disable" : "Enable");
        toggle.addEventListener("click", async () => {
          toggle.disabled = true;
          try {
            await post(`/api/v1/tool-groups/${encodeURIComponent(g.name)}/${g.enabled ? "disable" : "enable"}`);
          } catch (failed) {
            alertIn(groups, failed.message);
          }
          await load();
        });
        return toggle;
      }],
    ], toolGroups.groups, "No tool groups configured."));
    show(tools, table([
      ["Tool", (t) => h("strong", {}, t.name)],
      ["Plugin", (t) => t.plugin],
      ["Description", (t) => t.description],
    ], status.tools, "No tools."));
  }

  load().catch((error) => show(list, h("p", { class: "error" }, error.message)));
  return { refresh: (kind) => { if (kind !== "schedules") load().catch(() => {}); } };
}

function alertIn(container, message) {
  container.prepend(h("p", { class: "error", role: "alert" }, message));
}
