// A hand-drawn SVG line chart over a time window: no library, a few hundred points.

import { h, s } from "./format.js";

const WIDTH = 480;
const HEIGHT = 150;
const LEFT = 56;
const BOTTOM = 20;
const TOP = 8;

/**
 * A chart titled `title`; `series` is [{name, color}]; `format` formats a y value.
 * `fixedMax` pins the top of the y axis (1 for ratios). Returns {element, update}.
 */
export function lineChart(title, series, { format = String, fixedMax = null, roundMax = true } = {}) {
  const current = h("span", { class: "chart-now" });
  const plot = s("g");
  const axis = s("g", { class: "axis" });
  const svg = s(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img", "aria-label": title },
    axis,
    plot,
  );
  const legend = h(
    "div",
    { class: "legend" },
    series.map((one) => h("span", {}, h("i", { class: `swatch swatch-${one.color}` }), one.name)),
  );
  const element = h("figure", { class: "card chart-card" }, h("figcaption", {}, title, current), svg, legend);

  /**
   * `points` is [{t, values: [..one per series, null when unknown]}], oldest first;
   * the x axis spans them, at least `minWindow` and at most `maxWindow` milliseconds,
   * so that a page opened a moment ago does not squeeze its points into one corner.
   */
  function update(points, minWindow, maxWindow) {
    plot.replaceChildren();
    axis.replaceChildren();
    if (points.length === 0) return;
    const end = points[points.length - 1].t;
    const window = Math.min(maxWindow, Math.max(minWindow, end - points[0].t));
    const start = end - window;
    let max = fixedMax;
    if (max === null) {
      max = 0;
      for (const point of points) for (const v of point.values) if (v !== null && v > max) max = v;
      // Bytes do not round to powers of ten nicely: such charts top at their largest value.
      max = roundMax ? niceCeiling(max) : max || 1;
    }
    const x = (t) => LEFT + ((t - start) / window) * (WIDTH - LEFT - 4);
    const y = (v) => HEIGHT - BOTTOM - (Math.min(v, max) / max) * (HEIGHT - BOTTOM - TOP);
    for (const fraction of [0, 0.5, 1]) {
      const value = max * fraction;
      axis.append(
        s("line", { x1: LEFT, x2: WIDTH - 4, y1: y(value), y2: y(value) }),
        s("text", { x: LEFT - 4, y: y(value) + 4, "text-anchor": "end" }, format(value)),
      );
    }
    axis.append(
      s("text", { x: LEFT, y: HEIGHT - 4 }, window >= 120000 ? `${Math.round(window / 60000)} min ago` : `${Math.round(window / 1000)} s ago`),
      s("text", { x: WIDTH - 4, y: HEIGHT - 4, "text-anchor": "end" }, "now"),
    );
    series.forEach((one, index) => {
      // A null value (a failed poll, a figure the node does not know) breaks the line.
      let run = [];
      const flush = () => {
        if (run.length > 0) {
          plot.append(s("polyline", { points: run.join(" "), class: `line line-${one.color}` }));
        }
        run = [];
      };
      for (const point of points) {
        const v = point.values[index];
        if (v === null || v === undefined || point.t < start) flush();
        else run.push(`${x(point.t).toFixed(1)},${y(v).toFixed(1)}`);
      }
      flush();
    });
    const last = points[points.length - 1].values;
    current.textContent = series.map((one, i) => (last[i] === null ? "–" : format(last[i]))).join(" / ");
  }

  return { element, update };
}

/** 1, 2 or 5 times a power of ten, at least `value` (1 for an empty chart). */
function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}
