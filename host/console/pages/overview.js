// Overview: what needs attention first (refused or degraded plugins, open breakers, unhealthy
// connectors, channels with errors, failing schedules), then counts of everything.

import { h, show, pill, when } from "../dom.js";
import { get } from "../api.js";

export default function overview(main) {
  const problems = h("div", { "data-test": "problems" });
  const stats = h("div", { class: "grid" });
  show(main, h("h1", {}, "Overview"), problems, stats);

  async function load() {
    const [plugins, connectors, channels, jobs] = await Promise.all([
      get("/api/v1/plugins"),
      get("/api/v1/connectors"),
      get("/api/v1/channels"),
      get("/api/v1/schedules").catch(() => ({ jobs: [] })),
    ]);
    const issues = [];
    for (const plugin of plugins.plugins) {
      if (plugin.state !== "ready") issues.push([plugin.state, `plugin ${plugin.name}`, plugin.last_error || ""]);
      if (plugin.breaker && plugin.breaker !== "closed") issues.push([plugin.breaker, `plugin ${plugin.name}`, "circuit breaker"]);
    }
    for (const connector of connectors.connectors) {
      if (connector.status !== "healthy") issues.push([connector.status, `connector ${connector.name}`, connector.message]);
    }
    for (const channel of channels.channels) {
      if (channel.state !== "ready") issues.push([channel.state, `channel ${channel.name}`, channel.last_error || ""]);
    }
    show(problems, issues.length
      ? h("div", { class: "card" }, h("h2", {}, "Needs attention"),
          issues.map(([state, what, why]) => h("p", {}, pill(state), " ", h("strong", {}, what), " ", h("span", { class: "muted" }, why))))
      : h("div", { class: "card ok" }, "Everything is healthy."));
    const calls = plugins.plugins.reduce((sum, p) => sum + (p.calls || 0), 0);
    const failures = plugins.plugins.reduce((sum, p) => sum + (p.failures || 0), 0);
    const next = jobs.jobs.filter((j) => j.next_run && !j.paused).map((j) => j.next_run).sort()[0];
    show(stats,
      card("Plugins", plugins.plugins.length, `${plugins.tools.length} tools`),
      card("Plugin calls", calls, `${failures} failed`),
      card("Connectors", connectors.connectors.length,
        `${connectors.connectors.filter((c) => c.status === "healthy").length} healthy`),
      card("Channels", channels.channels.length,
        `${channels.channels.reduce((sum, c) => sum + c.accepted, 0)} messages accepted`),
      card("Schedules", jobs.jobs.length, next ? `next ${when(next)}` : "none due"));
  }

  function card(title, value, detail) {
    return h("div", { class: "card" }, h("div", { class: "muted" }, title), h("div", { class: "stat" }, value), h("div", { class: "meta" }, detail));
  }

  load().catch((error) => show(problems, h("p", { class: "error" }, error.message)));
  return { refresh: () => load().catch(() => {}) };
}
