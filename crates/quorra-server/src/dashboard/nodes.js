// Nodes: every member from GET /v1/cluster, refreshed every second, with the actions
// an operator takes on them: a graceful leave, and forgetting a node that is gone.

import { call } from "./api.js";
import { bytes, duration, h, number, percent } from "./format.js";

const PERIOD_MS = 1000;

export function mount(root, { showError, confirm }) {
  const body = h("tbody");
  const summary = h("p", { class: "muted" });
  // An action's outcome stays until the next action: the polling's banner would clear
  // it within a second.
  const outcome = h("p", { id: "nodes-outcome", class: "hidden" });
  root.append(
    h("h1", {}, "Nodes"),
    summary,
    outcome,
    h(
      "table",
      { class: "table", id: "nodes-table" },
      h(
        "thead",
        {},
        h("tr", {}, ["Node", "State", "Health", "Zone", "Addresses", "Memory", "CPU", "Ops/s", "Hit ratio", "Uptime", ""].map((title) => h("th", {}, title))),
      ),
      body,
    ),
  );

  async function act(node, verb) {
    const question =
      verb === "leave"
        ? `Make ${node.id} leave the cluster? It hands its keys to the others and stops serving.`
        : `Forget ${node.id}? Do this only for a node that will not come back with its data: its copies are dropped from the ring.`;
    if (!(await confirm(question, verb === "leave" ? "Leave" : "Forget"))) return;
    const show = (text, failed) => {
      outcome.textContent = text;
      outcome.className = failed ? "error" : "notice-line";
    };
    try {
      await call(`/v1/nodes/${encodeURIComponent(node.id)}/${verb}`, { method: "POST" });
      show(verb === "leave" ? `${node.id} is leaving the cluster.` : `${node.id} is forgotten.`, false);
      refresh();
    } catch (error) {
      show(error.message, true);
    }
  }

  function row(node, self) {
    const stats = node.stats || {};
    const lookups = (stats.hits_per_sec ?? 0) + (stats.misses_per_sec ?? 0);
    const reasons = node.health_reasons || [];
    const healthy = (node.health ?? "ok") === "ok";
    const addresses = node.addresses || {};
    return h(
      "tr",
      { class: `state-${node.state}${healthy ? "" : " degraded"}`, "data-node": node.id, "data-state": node.state, "data-in-ring": String(node.in_ring) },
      h("td", {}, h("strong", {}, node.id), node.id === self ? h("span", { class: "tag" }, "this node") : null),
      // A down node stays in the ring (its copies wait for it) until it is forgotten.
      h("td", {}, h("span", { class: `badge badge-${node.state}` }, node.state), node.in_ring === false ? h("div", { class: "muted" }, "not in the ring") : null),
      // A down node's health and figures are the last it gossiped: not a health to show.
      node.state === "down"
        ? h("td", {}, "–", h("div", { class: "muted" }, "figures as last heard"))
        : h("td", {}, h("span", { class: healthy ? "badge badge-up" : "badge badge-leaving" }, node.health ?? "–"), reasons.length ? h("div", { class: "muted" }, reasons.join(", ")) : null),
      h("td", {}, node.zone ?? "–"),
      h("td", { class: "addresses" }, `RESP ${addresses.resp ?? "–"}`, h("br"), `HTTP ${addresses.http ?? "–"}`, h("br"), `cluster ${addresses.cluster ?? "–"}`),
      h("td", {}, bytes(stats.used_memory), stats.maxmemory > 0 ? ` / ${bytes(stats.maxmemory)}` : "", stats.rss_bytes ? h("div", { class: "muted" }, `RSS ${bytes(stats.rss_bytes)}`) : null),
      h("td", {}, stats.cpu_percent === undefined ? "–" : `${number(stats.cpu_percent, 1)}%`),
      h("td", {}, number(stats.ops_per_sec, 1)),
      h("td", {}, stats.hits_per_sec === undefined ? "–" : lookups > 0 ? percent(stats.hits_per_sec / lookups) : "no reads"),
      h("td", {}, duration(stats.uptime_seconds)),
      h(
        "td",
        { class: "actions" },
        h("button", { type: "button", disabled: node.state !== "up", onclick: () => act(node, "leave") }, "Leave"),
        h("button", { type: "button", class: "danger", disabled: node.state !== "down", onclick: () => act(node, "forget") }, "Forget"),
      ),
    );
  }

  let stopped = false;
  let timer = null;
  async function refresh() {
    try {
      const cluster = await call("/v1/cluster");
      if (stopped) return;
      const down = cluster.nodes.filter((node) => node.state === "down").length;
      summary.textContent = `${cluster.nodes.length} members, ${down} down; ring version ${cluster.ring_version}; seen from ${cluster.self}.`;
      body.replaceChildren(...cluster.nodes.map((node) => row(node, cluster.self)));
      showError(null);
    } catch (error) {
      if (!stopped) showError(error);
    }
  }
  async function poll() {
    if (!document.hidden) await refresh();
    if (!stopped) timer = setTimeout(poll, PERIOD_MS);
  }
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
