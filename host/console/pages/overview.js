// Overview: what needs attention first (refused or degraded plugins, open breakers, unhealthy
// connectors, channels with errors, failing schedules), then counts of everything, then the
// last hour's turns, tool calls, errors and turn time as charts (one point per 10 s).

import { h, show, pill, when, statCard } from "../dom.js";
import { get } from "../api.js";

const SVG = "http://www.w3.org/2000/svg";

export default function overview(main) {
  const problems = h("div", { "data-test": "problems" });
  const stats = h("div", { class: "grid" });
  const charts = h("div", { class: "grid charts", "data-test": "charts" });
  show(main, h("h1", {}, "Overview"), problems, stats, h("h2", {}, "The last hour"), charts);

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
      statCard("Plugins", plugins.plugins.length, `${plugins.tools.length} tools`),
      statCard("Plugin calls", calls, `${failures} failed`),
      statCard("Connectors", connectors.connectors.length,
        `${connectors.connectors.filter((c) => c.status === "healthy").length} healthy`),
      statCard("Channels", channels.channels.length,
        `${channels.channels.reduce((sum, c) => sum + c.accepted, 0)} messages accepted`),
      statCard("Schedules", jobs.jobs.length, next ? `next ${when(next)}` : "none due"));
  }

  async function loadCharts() {
    const activity = await get("/api/v1/activity");
    const samples = activity.samples;
    const sum = (key) => samples.reduce((total, s) => total + s[key], 0);
    const day = activity.last_24h;
    show(charts,
      chart("Turns", samples.map((s) => s.turns), `${sum("turns")} in the last hour${day ? `, ${day.turns} saved in 24 h` : ""}`),
      chart("Tool calls", samples.map((s) => s.tool_calls), `${sum("tool_calls")} asked by the model; ${sum("plugin_calls")} plugin calls`),
      chart("Errors", samples.map((s) => s.failed_turns + s.plugin_failures), `${sum("failed_turns")} failed turns, ${sum("plugin_failures")} failed plugin calls`, true),
      chart("Turn time (ms)", samples.map((s) => s.mean_turn_ms), day ? `slowest in 24 h: ${day.slowest_ms} ms` : "mean per 10 s"));
  }

  /** A line chart of `values` (oldest first) as SVG, its latest value large. */
  function chart(title, values, detail, bad = false) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", "0 0 300 90");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${title} over the last hour`);
    const top = Math.max(...values, 1);
    const step = 300 / Math.max(values.length - 1, 1);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", bad ? "chart-line bad" : "chart-line");
    line.setAttribute("points", values.map((v, i) => `${(i * step).toFixed(1)},${(88 - (v / top) * 84).toFixed(1)}`).join(" "));
    svg.append(line);
    const latest = values.length ? values[values.length - 1] : 0;
    return h("div", { class: "card" },
      h("div", { class: "muted" }, title),
      h("div", { class: "stat" }, Number.isInteger(latest) ? latest : latest.toFixed(1)),
      values.length > 1 ? svg : h("p", { class: "meta" }, "Points arrive every 10 s."),
      h("div", { class: "meta" }, detail));
  }


  load().catch((error) => show(problems, h("p", { class: "error" }, error.message)));
  loadCharts().catch((error) => show(charts, h("p", { class: "error" }, error.message)));
  const timer = setInterval(() => loadCharts().catch(() => {}), 10000);
  return { refresh: () => load().catch(() => {}), stop: () => clearInterval(timer) };
}
