// Schedules: every job with its timing, what it runs, where it delivers and its next run;
// pause, resume and run now; the history of the job chosen.

import { h, show, table, pill, when } from "../dom.js";
import { get, post } from "../api.js";

export default function schedules(main) {
  const jobs = h("div", { "data-test": "schedules" });
  const history = h("div", { "data-test": "history" });
  let chosen = null;
  show(main, h("h1", {}, "Schedules"), jobs, history);

  async function act(job, action) {
    try {
      await post(`/api/v1/schedules/${encodeURIComponent(job)}/${action}`);
    } catch (failed) {
      jobs.prepend(h("p", { class: "error", role: "alert" }, failed.message));
    }
    await load();
  }

  function button(label, action) {
    const element = h("button", { type: "button" }, label);
    element.addEventListener("click", action);
    return element;
  }

  async function load() {
    let listed;
    try {
      listed = await get("/api/v1/schedules");
    } catch (failed) {
      show(jobs, h("p", { class: "muted" }, failed.message));
      return;
    }
    show(jobs, table([
      ["Job", (j) => h("strong", {}, j.name)],
      ["When", (j) => j.when],
      ["What", (j) => j.what],
      ["Delivers to", (j) => j.deliver],
      ["Next run", (j) => (j.paused ? pill("paused") : when(j.next_run))],
      ["", (j) => h("span", { class: "row" },
        j.paused ? button("Resume", () => act(j.name, "resume")) : button("Pause", () => act(j.name, "pause")),
        button("Run now", () => act(j.name, "run")),
        button("History", () => { chosen = j.name; loadHistory(); }))],
    ], listed.jobs, "No scheduled jobs."));
    if (chosen) await loadHistory();
  }

  async function loadHistory() {
    if (!chosen) return;
    try {
      const runs = await get(`/api/v1/schedules/${encodeURIComponent(chosen)}/runs`);
      show(history, h("h2", {}, "Runs of ", chosen), table([
        ["Slot", (r) => when(r.slot)],
        ["Status", (r) => pill(r.status)],
        ["Attempt", (r) => r.attempt],
        ["Took", (r) => (r.started_at && r.finished_at ? `${r.finished_at - r.started_at} ms` : "–")],
        ["Output", (r) => h("span", { class: "mono" }, r.error || r.output || "")],
        ["Trace", (r) => h("span", { class: "mono" }, r.trace_id || "")],
      ], runs.runs, "No runs yet."));
    } catch (failed) {
      show(history, h("p", { class: "error" }, failed.message));
    }
  }

  load();
  return { refresh: (kind) => { if (kind === "schedules" || kind === "resync") load(); } };
}
