// Knowledge base: what it holds (chunks by kind, each source with its chunk count) and a search
// box that shows the matches the agent would be given for a message, with their scores.

import { h, show, table, statCard } from "../dom.js";
import { get } from "../api.js";

export default function knowledge(main) {
  const summary = h("div", { "data-test": "knowledge" });
  const query = h("input", { type: "search", name: "query", placeholder: "A message, as a user would write it", "aria-label": "Search the knowledge base" });
  const results = h("div", { "data-test": "knowledge-matches" });
  const form = h("form", { class: "row" }, query, h("button", { class: "primary", type: "submit" }, "Search"));
  show(main, h("h1", {}, "Knowledge base"), summary, h("h2", {}, "What the agent would get"), form, results);

  async function load() {
    let data;
    try {
      data = await get("/api/v1/knowledge");
    } catch (failed) {
      show(summary, h("p", { class: "error" }, failed.message));
      return;
    }
    if (!data.enabled) {
      show(summary, h("p", { class: "muted" }, "This host has no knowledge base (rag.enabled is false)."));
      form.hidden = true;
      return;
    }
    const stats = data.stats;
    show(summary,
      h("div", { class: "grid" },
        statCard("Chunks", stats.chunks, `${stats.store} · ${stats.location}`),
        Object.entries(stats.by_kind || {}).map(([kind, count]) => statCard(kind, count, "chunks")),
        statCard("Per message", data.top_k, `score ≥ ${Number(data.min_score.toFixed(3))}`)),
      h("h2", {}, "Sources"),
      table([
        ["Source", (s) => h("span", { class: "mono" }, s.source)],
        ["Chunks", (s) => s.chunks],
      ], data.sources, "Nothing ingested yet: run `databot rag ingest`."));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = query.value.trim();
    if (!text) return;
    show(results, h("p", { class: "muted" }, "Searching…"));
    try {
      const found = await get(`/api/v1/knowledge/search?${new URLSearchParams({ query: text })}`);
      show(results, found.matches.length
        ? found.matches.map((m) => h("div", { class: "card", "data-test": "match" },
            h("div", { class: "meta" }, h("span", { class: "mono" }, m.source), ` · score ${m.score.toFixed(3)}`),
            h("pre", { class: "mono" }, m.text)))
        : h("p", { class: "muted" }, "Nothing scores high enough: the agent would get no reference material."));
    } catch (failed) {
      show(results, h("p", { class: "error" }, failed.message));
    }
  });


  load();
  // Not re-read on every live event: listing the sources reads the whole store.
  return { refresh: (kind) => { if (kind === "resync") load(); } };
}
