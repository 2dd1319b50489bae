// Overview: the cluster's figures from GET /v1/overview, polled every second, with
// the last five minutes kept in the page for the charts.

import { ApiError, call } from "./api.js";
import { lineChart } from "./chart.js";
import { bytes, h, number, percent } from "./format.js";

const PERIOD_MS = 1000;
const WINDOW_MS = 5 * 60 * 1000;
const MIN_WINDOW_MS = 30 * 1000;

// Kept across page switches, so going to Nodes and back does not empty the charts.
const history = [];

function record(t, overview) {
  history.push({ t, overview });
  while (history.length > 0 && history[0].t < t - WINDOW_MS) history.shift();
}

// A node not in cluster mode has no /v1/overview (404): the page then derives the same
// figures from its /v1/stats, rates from the change between two polls.
let singleNode = false;
let previousStats = null;

async function fetchOverview() {
  if (!singleNode) {
    try {
      return await call("/v1/overview");
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      singleNode = true;
    }
  }
  const stats = await call("/v1/stats");
  const at = Date.now();
  const before = previousStats;
  previousStats = { at, stats };
  const perSecond = (field) => (before ? Math.max(0, stats[field] - before.stats[field]) / ((at - before.at) / 1000) : null);
  const hits = perSecond("keyspace_hits");
  const misses = perSecond("keyspace_misses");
  return {
    self: "this node (not in cluster mode)",
    nodes_up: 1,
    nodes_total: 1,
    ops_per_sec: perSecond("total_commands_processed"),
    hit_ratio: hits !== null && hits + misses > 0 ? hits / (hits + misses) : null,
    used_memory: stats.used_memory,
    maxmemory: stats.maxmemory,
    keys: stats.keys,
    evictions_per_sec: perSecond("evicted_keys"),
    expirations_per_sec: perSecond("expired_keys"),
    latency_p50_ms: null,
    latency_p99_ms: null,
    consistency: null,
    replication: null,
  };
}

const ms = (v) => `${number(v, v < 10 ? 2 : 0)} ms`;
const rate = (v) => number(v, v < 10 ? 1 : 0);

export function mount(root, { showError }) {
  const figures = h("div", { class: "cards" });
  const charts = [
    [lineChart("Operations per second", [{ name: "ops/s", color: "a" }], { format: rate }), (o) => [o.ops_per_sec]],
    [lineChart("Hit ratio", [{ name: "hits / (hits + misses)", color: "b" }], { format: percent, fixedMax: 1 }), (o) => [o.hit_ratio]],
    [
      lineChart("Memory", [{ name: "used", color: "a" }, { name: "maxmemory", color: "d" }], { format: bytes, roundMax: false }),
      (o) => [o.used_memory, o.maxmemory > 0 ? o.maxmemory : null],
    ],
    [lineChart("Keys", [{ name: "keys", color: "b" }], { format: (v) => number(v) }), (o) => [o.keys]],
    [
      lineChart("Evictions and expirations per second", [{ name: "evictions/s", color: "d" }, { name: "expirations/s", color: "c" }], { format: rate }),
      (o) => [o.evictions_per_sec, o.expirations_per_sec],
    ],
    [
      lineChart("Latency", [{ name: "p50", color: "a" }, { name: "p99", color: "c" }], { format: ms }),
      (o) => [o.latency_p50_ms, o.latency_p99_ms],
    ],
  ];
  root.append(
    h("h1", {}, "Overview"),
    figures,
    h("div", { class: "charts" }, charts.map(([chart]) => chart.element)),
  );

  function draw() {
    const latest = history.length > 0 ? history[history.length - 1].overview : null;
    if (latest) figures.replaceChildren(...cards(latest));
    for (const [chart, pick] of charts) {
      chart.update(
        history.map(({ t, overview }) => ({ t, values: overview ? pick(overview) : pick({}).map(() => null) })),
        MIN_WINDOW_MS,
        WINDOW_MS,
      );
    }
  }

  let stopped = false;
  let timer = null;
  async function poll() {
    // A hidden tab polls nothing: the node does no work for a page no one looks at.
    if (!document.hidden) {
      try {
        record(Date.now(), await fetchOverview());
        showError(null);
      } catch (error) {
        if (stopped) return;
        record(Date.now(), null);
        showError(error);
      }
      if (stopped) return;
      draw();
    }
    timer = setTimeout(poll, PERIOD_MS);
  }
  draw();
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function card(label, value, detail, warn = false) {
  return h("div", { class: warn ? "card figure warn" : "card figure" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), detail ? h("div", { class: "muted" }, detail) : null);
}

function cards(o) {
  const consistency = o.consistency || {};
  const replication = o.replication || {};
  const figures = [
    card("Nodes up", `${number(o.nodes_up)} / ${number(o.nodes_total)}`, `seen from ${o.self ?? "?"}`, o.nodes_up < o.nodes_total),
    card("Ops/s", rate(o.ops_per_sec)),
    card("Hit ratio", percent(o.hit_ratio)),
    card("Memory", bytes(o.used_memory), o.maxmemory > 0 ? `of ${bytes(o.maxmemory)} (${percent(o.used_memory / o.maxmemory)})` : "maxmemory unlimited"),
    card("Keys", number(o.keys)),
    card("Latency", `p50 ${o.latency_p50_ms === null ? "–" : ms(o.latency_p50_ms)}`, `p99 ${o.latency_p99_ms === null ? "–" : ms(o.latency_p99_ms)}`),
  ];
  if (o.consistency) {
    figures.push(
      card("Consistency", `N=${consistency.replicas ?? "?"}`, `write ${consistency.write ?? "?"}, read ${consistency.read ?? "?"}`),
      card(
        "Replication",
        `${number(replication.hints_pending)} hints pending`,
        `${number(replication.read_repairs)} read repairs, ${number(replication.quorum_failures)} quorum failures`,
      ),
    );
  }
  return figures;
}
