// Traces: the host's recent traces, kept in memory (`telemetry.recent_traces`), and one trace
// as a waterfall: each span (router, model calls, tools, connectors, SQL statements) as a bar
// placed by its start and length, indented under its parent, failures marked; a span's
// attributes on click.

import { h, show, table, when } from "../dom.js";
import { get } from "../api.js";

export default function traces(main, id) {
  return id ? waterfall(main, id) : list(main);
}

function list(main) {
  const all = h("input", { type: "checkbox", name: "all", "aria-label": "Show every trace, not only turns" });
  const body = h("div", { "data-test": "traces" });
  show(main, h("h1", {}, "Traces"),
    h("label", { class: "row meta" }, all, "Show every trace (plugin loads, schedules), not only turns"),
    body);

  async function load() {
    let data;
    try {
      data = await get(`/api/v1/traces?limit=100&turns=${all.checked ? "false" : "true"}`);
    } catch (failed) {
      show(body, h("p", { class: "error" }, failed.message));
      return;
    }
    if (!data.recording) {
      show(body, h("p", { class: "muted" }, "This host keeps no traces in memory (telemetry.recent_traces is 0)."));
      return;
    }
    show(body,
      h("p", { class: "meta" }, `The last ${data.keep} traces are kept in memory.`),
      table([
        ["Trace", (t) => h("a", { href: `#/traces/${encodeURIComponent(t.trace_id)}`, class: "mono" }, t.trace_id.slice(0, 16))],
        ["Root", (t) => t.root],
        ["Conversation", (t) => h("span", { class: "mono" }, t.session || "")],
        ["Started", (t) => when(t.start_us / 1000)],
        ["Duration", (t) => duration(t.duration_us)],
        ["Spans", (t) => t.spans],
        ["Errors", (t) => (t.errors ? h("span", { class: "error" }, t.errors) : 0)],
      ], data.traces, "No traces yet: they appear as turns run."));
  }

  all.addEventListener("change", load);
  load();
  return { refresh: load };
}

function waterfall(main, id) {
  const body = h("div", { "data-test": "waterfall" }, h("p", { class: "muted" }, "Loading…"));
  const detail = h("div", { "data-test": "span-detail" });
  show(main, h("p", {}, h("a", { href: "#/traces" }, "← Traces")), h("h1", { class: "mono" }, `Trace ${id}`), body, detail);

  async function load() {
    let trace;
    try {
      trace = await get(`/api/v1/traces/${encodeURIComponent(id)}`);
    } catch (failed) {
      show(body, h("p", { class: "error" }, failed.message));
      return;
    }
    const spans = trace.spans;
    const start = Math.min(...spans.map((s) => s.start_us));
    const end = Math.max(...spans.map((s) => s.start_us + s.duration_us));
    const total = Math.max(end - start, 1);
    const byId = new Map(spans.map((s) => [s.span_id, s]));
    const depth = (span) => {
      let level = 0;
      for (let parent = byId.get(span.parent_span_id); parent && level < 32; parent = byId.get(parent.parent_span_id)) level += 1;
      return level;
    };
    const rows = ordered(spans, byId).map((span) => {
      const bar = h("div", { class: span.error ? "bar failed" : "bar" });
      bar.style.marginLeft = `${((span.start_us - start) / total) * 100}%`;
      bar.style.width = `${Math.max((span.duration_us / total) * 100, 0.3)}%`;
      const name = h("div", { class: "span-name mono", title: span.name }, span.name);
      name.style.paddingLeft = `${depth(span) * 12}px`;
      return h("div", { class: "span-row", "data-test": "span", role: "button", onclick: () => showSpan(span) },
        name, h("div", { class: "track" }, bar), h("div", { class: "meta span-time" }, duration(span.duration_us)));
    });
    show(body,
      h("p", { class: "meta" }, `${spans.length} spans over ${duration(total)}`, trace.dropped ? ` (${trace.dropped} more not kept)` : ""),
      h("div", { class: "waterfall" }, rows));
  }

  function showSpan(span) {
    show(detail, h("div", { class: "card" },
      h("h2", { class: "mono" }, span.name),
      span.error ? h("p", { class: "error" }, span.error) : null,
      table([["Attribute", ([key]) => h("span", { class: "mono" }, key)], ["Value", ([, value]) => h("span", { class: "mono" }, value)]],
        span.attributes, "No attributes.")));
  }

  load();
  return { stop: () => {} };
}

/** Spans depth first: each parent followed by its children, children by start. */
function ordered(spans, byId) {
  const children = new Map();
  const roots = [];
  for (const span of spans) {
    if (span.parent_span_id && byId.has(span.parent_span_id)) {
      const siblings = children.get(span.parent_span_id) || [];
      siblings.push(span);
      children.set(span.parent_span_id, siblings);
    } else {
      roots.push(span);
    }
  }
  const out = [];
  const visit = (span) => {
    out.push(span);
    for (const child of children.get(span.span_id) || []) visit(child);
  };
  for (const root of roots) visit(root);
  return out;
}

function duration(us) {
  if (us >= 1e6) return `${(us / 1e6).toFixed(2)} s`;
  if (us >= 1e3) return `${(us / 1e3).toFixed(1)} ms`;
  return `${Math.round(us)} µs`;
}
