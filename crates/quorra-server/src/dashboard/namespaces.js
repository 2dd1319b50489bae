// Hot keys and namespaces: the cluster-wide hot keys from GET /v1/hotkeys (detected or
// pinned; each is copied to every node), and each namespace's read-through figures from
// GET /v1/namespaces (this node's counts: loads run at each key's primary), refreshed
// every few seconds.

import { call } from "./api.js";
import { h, number } from "./format.js";

const PERIOD_MS = 5000;

// The columns, by the field names /v1/namespaces returns (quorra-origin's report), with
// how to show a figure when not as a plain number.
const COLUMNS = [
  ["name", "Namespace"],
  ["prefix", "Prefix"],
  ["origin", "Origin"],
  ["origin_status", "Origin status"],
  ["write", "Writes"],
  ["loads", "Loads"],
  ["load_errors", "Load errors"],
  ["avg_load_us", "Avg load (ms)", (micros) => number(micros / 1000, 3)],
  ["singleflight_dedup", "Single-flight collapses"],
  ["stale_served", "Stale serves"],
  ["refreshes", "Refreshes"],
  ["negative_hits", "Negative hits"],
  ["origin_writes", "Origin writes"],
  ["origin_write_errors", "Write errors"],
  ["write_behind_pending", "Write-behind pending"],
  ["write_behind_lag_ms", "Write-behind lag (ms)"],
];

// The hot keys' table, or a sentence when there are none.
function hotKeyTable(hotkeys) {
  if (hotkeys.length === 0) {
    return h("p", { id: "no-hot-keys" }, "No key is hot right now.");
  }
  return h(
    "table",
    { class: "table", id: "hot-keys-table" },
    h("thead", {}, h("tr", {}, ["Key", "DB", "Ops/s", "Hot since", "Nodes"].map((title) => h("th", {}, title)))),
    h(
      "tbody",
      {},
      hotkeys.map((key) =>
        h(
          "tr",
          {},
          h("td", {}, key.key),
          h("td", {}, number(key.db)),
          h("td", {}, number(key.ops_per_sec)),
          h("td", {}, new Date(key.since_ms).toLocaleTimeString()),
          h("td", {}, key.nodes.join(", ")),
        ),
      ),
    ),
  );
}

export function mount(root, { showError }) {
  const content = h("div");
  const hotKeys = h("div");
  root.append(
    h("h1", {}, "Hot keys & namespaces"),
    h(
      "section",
      { class: "card", id: "hot-keys" },
      h("h2", {}, "Hot keys"),
      h("p", { class: "muted" }, "Keys that take an outsized share of a node's load, or pinned with QUORRA HOT key ON. Each is copied to every node, which answers its GETs locally; a write drops the copies before it is acknowledged."),
      hotKeys,
    ),
    h("h2", {}, "Namespaces"),
    h("p", { class: "muted" }, "Keys with a namespace's prefix are read through from its origin on a miss. The figures are counted on the node this page talks to."),
    content,
  );

  let stopped = false;
  let timer = null;
  async function poll() {
    try {
      const [{ namespaces }, { hotkeys }] = await Promise.all([call("/v1/namespaces"), call("/v1/hotkeys")]);
      if (stopped) return;
      hotKeys.replaceChildren(hotKeyTable(hotkeys));
      if (namespaces.length === 0) {
        content.replaceChildren(h("p", { id: "no-namespaces" }, "No namespaces are configured on this node (see docs/namespaces.md)."));
      } else {
        content.replaceChildren(
          h(
            "table",
            { class: "table", id: "namespaces-table" },
            h("thead", {}, h("tr", {}, COLUMNS.map(([, title]) => h("th", {}, title)))),
            h(
              "tbody",
              {},
              namespaces.map((namespace) =>
                h(
                  "tr",
                  { class: String(namespace.origin_status).startsWith("down") ? "state-down" : "" },
                  COLUMNS.map(([field, , format = number]) => {
                    const value = namespace[field];
                    return h("td", {}, value === undefined ? "–" : typeof value === "number" ? format(value) : value);
                  }),
                ),
              ),
            ),
          ),
        );
      }
      showError(null);
    } catch (error) {
      if (stopped) return;
      showError(error);
    }
    if (!stopped) timer = setTimeout(poll, PERIOD_MS);
  }
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
