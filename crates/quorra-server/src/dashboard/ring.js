// Ring: the consistent-hash ring drawn as a circle, every vnode's arc coloured by its
// node, from GET /v1/ring?tokens=true; a key typed in shows where it lands and which
// nodes hold its copies (GET /v1/keys/{key}/owners).

import { call, keyPath } from "./api.js";
import { h, number, percent, s } from "./format.js";

const SIZE = 420;
const CENTER = SIZE / 2;
const OUTER = 190;
const INNER = 150;
const TWO_POW_64 = 2 ** 64;

/**
 * Where a token sits on the circle, 0..1. Tokens are u64 sent as decimal strings (a JS
 * number has 53 bits); the top 53 bits are plenty to place them.
 */
function position(token) {
  if (typeof token === "string") return Number(BigInt(token) >> 11n) / 2 ** 53;
  return Number(token) / TWO_POW_64;
}

function point(fraction, radius) {
  // Token 0 at the top, growing clockwise.
  const angle = fraction * 2 * Math.PI - Math.PI / 2;
  return [CENTER + radius * Math.cos(angle), CENTER + radius * Math.sin(angle)];
}

/** The annulus segment from `from` to `to` (fractions of the circle, from < to). */
function arc(from, to) {
  const large = to - from > 0.5 ? 1 : 0;
  const [x1, y1] = point(from, OUTER);
  const [x2, y2] = point(to, OUTER);
  const [x3, y3] = point(to, INNER);
  const [x4, y4] = point(from, INNER);
  const f = (v) => v.toFixed(2);
  return `M${f(x1)},${f(y1)} A${OUTER},${OUTER} 0 ${large} 1 ${f(x2)},${f(y2)} L${f(x3)},${f(y3)} A${INNER},${INNER} 0 ${large} 0 ${f(x4)},${f(y4)} Z`;
}

/** Whether `p` lies in the arc (from, to], `from` negative for the arc that wraps. */
function inArc(p, from, to) {
  return from < 0 ? p <= to || p > 1 + from : p > from && p <= to;
}

export function mount(root, { showError }) {
  const svg = s("svg", { viewBox: `0 0 ${SIZE} ${SIZE}`, class: "ring", role: "img", "aria-label": "the ring" });
  const legend = h("table", { class: "table legend-table" });
  const summary = h("p", { class: "muted" });
  const input = h("input", { type: "text", id: "ring-key", placeholder: "a key, e.g. user:42", autocomplete: "off" });
  const result = h("div", { id: "ring-owners", class: "owners" });
  const form = h("form", { class: "inline" }, h("label", {}, "Key ", input), h("button", { type: "submit" }, "Find owners"));
  root.append(
    h("h1", {}, "Ring"),
    summary,
    form,
    result,
    h("div", { class: "ring-layout" }, svg, legend),
  );

  let ring = null;
  const colour = new Map();

  function draw(owners = null, keyToken = null) {
    svg.replaceChildren();
    const tokens = [];
    for (const node of ring.nodes) for (const token of node.tokens || []) tokens.push([position(token), node.id]);
    tokens.sort((a, b) => a[0] - b[0]);
    const dimmed = (id) => owners !== null && !owners.includes(id);
    if (tokens.length > 0) {
      // A key belongs to the first vnode at or after its token, so each vnode owns the
      // arc from the previous token up to its own; the first one also owns the wrap.
      tokens.forEach(([at, id], index) => {
        const from = index === 0 ? tokens[tokens.length - 1][0] - 1 : tokens[index - 1][0];
        const segments = from < 0 ? [[0, at], [1 + from, 1]] : [[from, at]];
        const holdsKey = keyToken !== null && inArc(position(keyToken), from, at);
        for (const [a, b] of segments) {
          if (b > a) svg.append(s("path", { d: arc(a, b), class: `arc fill-${colour.get(id)}${dimmed(id) ? " dim" : ""}${holdsKey ? " owning" : ""}`, "data-node": id }));
        }
      });
      // On top of its neighbours, so its outline shows whole.
      for (const owning of svg.querySelectorAll(".owning")) svg.append(owning);
    } else {
      // A node that does not send tokens: each node's share as one arc, in order.
      let from = 0;
      for (const node of ring.nodes) {
        const to = Math.min(1, from + node.share);
        if (to > from) svg.append(s("path", { d: arc(from, to), class: `arc fill-${colour.get(node.id)}${dimmed(node.id) ? " dim" : ""}` }));
        from = to;
      }
    }
    if (keyToken !== null) {
      const [x1, y1] = point(position(keyToken), INNER - 18);
      const [x2, y2] = point(position(keyToken), OUTER + 8);
      svg.append(s("line", { x1, y1, x2, y2, class: "key-marker" }), s("circle", { cx: x1, cy: y1, r: 5, class: "key-dot" }));
    }
    svg.append(
      s("text", { x: CENTER, y: CENTER - 6, "text-anchor": "middle", class: "ring-title" }, `${ring.nodes.length} nodes`),
      s("text", { x: CENTER, y: CENTER + 14, "text-anchor": "middle", class: "muted-svg" }, `${number(tokens.length || ring.vnodes)} vnodes`),
    );
    legend.replaceChildren(
      h("thead", {}, h("tr", {}, h("th", {}, "Node"), h("th", {}, "Zone"), h("th", {}, "Vnodes"), h("th", {}, "Share"), h("th", {}, "Holds the key"))),
      h(
        "tbody",
        {},
        ring.nodes.map((node) => {
          const rank = owners === null ? -1 : owners.indexOf(node.id);
          return h(
            "tr",
            { class: rank >= 0 ? "highlight" : "" },
            h("td", {}, h("i", { class: `swatch swatch-${colour.get(node.id)}` }), node.id),
            h("td", {}, node.zone ?? "–"),
            h("td", {}, number(node.vnodes)),
            h("td", {}, percent(node.share)),
            h("td", {}, rank < 0 ? "" : rank === 0 ? "primary" : `replica ${rank}`),
          );
        }),
      ),
    );
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value;
    if (!key || !ring) return;
    try {
      const answer = await call(`/v1/keys/${keyPath(new TextEncoder().encode(key))}/owners`);
      result.replaceChildren(
        h("strong", {}, answer.key),
        // A token sent as a JSON number has lost its last digits: it still places the key.
        typeof answer.token === "string" ? ` token ${answer.token}` : "",
        ` at ${percent(position(answer.token))} of the ring: primary `,
        h("strong", {}, answer.owners[0] ?? "–"),
        answer.owners.length > 1 ? `, replicas ${answer.owners.slice(1).join(", ")}` : "",
      );
      draw(answer.owners, answer.token);
      showError(null);
    } catch (error) {
      showError(error);
    }
  });

  let stopped = false;
  (async () => {
    try {
      ring = await call("/v1/ring?tokens=true");
      if (stopped) return;
      ring.nodes.forEach((node, index) => colour.set(node.id, index % 8));
      const withTokens = ring.nodes.some((node) => Array.isArray(node.tokens));
      summary.textContent = `Ring version ${ring.version}, ${number(ring.vnodes)} vnodes.${withTokens ? "" : " (This node did not send the tokens: each node is drawn as one arc of its share.)"}`;
      draw();
    } catch (error) {
      if (!stopped) showError(error);
    }
  })();
  return () => {
    stopped = true;
  };
}
