// Connectors and channels: each connector's health (checked on the host's cached cadence)
// and operations; each channel's state, traffic, verification failures and last event.

import { h, show, table, pill, when } from "../dom.js";
import { get } from "../api.js";

export default function connectors(main) {
  const connectorList = h("div", { "data-test": "connectors" });
  const channelList = h("div", { "data-test": "channels" });
  show(main, h("h1", {}, "Connectors"), connectorList, h("h2", {}, "Channels"), channelList);

  async function load() {
    const [found, channels] = await Promise.all([get("/api/v1/connectors"), get("/api/v1/channels")]);
    show(connectorList, table([
      ["Name", (c) => h("strong", {}, c.name)],
      ["Health", (c) => pill(c.status)],
      ["Message", (c) => c.message],
      ["Checked", (c) => `${c.age_seconds} s ago`],
      ["Operations", (c) => c.operations.join(", ")],
    ], found.connectors, "No connectors loaded."));
    show(channelList, table([
      ["Name", (c) => h("strong", {}, c.name)],
      ["State", (c) => pill(c.state)],
      ["Accepted", (c) => c.accepted],
      ["Replies", (c) => `${c.replies} (${c.send_failures} failed)`],
      ["Verification failures", (c) => c.verification_failures],
      ["Duplicates", (c) => c.duplicates],
      ["Last event", (c) => when(c.last_event_ms)],
      ["Last error", (c) => (c.last_error ? h("span", { class: "error" }, c.last_error) : "")],
    ], channels.channels, "No channels loaded."));
  }

  load().catch((error) => show(connectorList, h("p", { class: "error" }, error.message)));
  return { refresh: (kind) => { if (kind !== "schedules") load().catch(() => {}); } };
}
