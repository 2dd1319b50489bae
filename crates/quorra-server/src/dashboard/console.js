// Console: a Redis command typed in, run by POST /v1/command through the node's
// ordinary command path, its reply formatted the way redis-cli shows it.

import { call } from "./api.js";
import { h } from "./format.js";

// Kept for the tab's life so that switching pages does not lose the session.
const transcript = [];
const typed = [];

/** Splits a command line into arguments: spaces separate, quotes group, \ escapes. */
export function parse(line) {
  const args = [];
  let current = null;
  let quote = null;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quote) {
      if (c === "\\" && i + 1 < line.length) {
        const escaped = line[++i];
        current += { n: "\n", r: "\r", t: "\t" }[escaped] ?? escaped;
      } else if (c === quote) quote = null;
      else current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      current = current ?? "";
    } else if (/\s/.test(c)) {
      if (current !== null) args.push(current);
      current = null;
    } else current = (current ?? "") + c;
  }
  if (quote) throw new Error("unbalanced quotes");
  if (current !== null) args.push(current);
  return args;
}

/** A reply as redis-cli prints it. */
export function format(reply, indent = "") {
  if (reply === null) return "(nil)";
  if (typeof reply === "number") return `(integer) ${reply}`;
  if (typeof reply === "string") return JSON.stringify(reply);
  if (Array.isArray(reply)) {
    if (reply.length === 0) return "(empty array)";
    const width = String(reply.length).length;
    return reply
      .map((item, i) => {
        const label = `${String(i + 1).padStart(width)}) `;
        const inner = format(item, indent + " ".repeat(label.length));
        return `${i === 0 ? "" : indent}${label}${inner}`;
      })
      .join("\n");
  }
  if (typeof reply === "object") {
    if ("error" in reply) return `(error) ${reply.error}`;
    if ("binary_hex" in reply) return `(binary) ${reply.binary_hex}`;
  }
  return JSON.stringify(reply);
}

export function mount(root, { showError }) {
  const output = h("pre", { class: "console", id: "console-output" });
  const input = h("input", { type: "text", id: "console-input", placeholder: "SET greeting hello", autocomplete: "off", spellcheck: "false" });
  const form = h("form", { class: "inline console-form" }, h("span", { class: "prompt" }, ">"), input, h("button", { type: "submit" }, "Run"));
  root.append(
    h("h1", {}, "Console"),
    h("p", { class: "muted" }, "Commands run on the node this page talks to, routed through the cluster like any client's. ↑ and ↓ recall earlier commands."),
    output,
    form,
  );

  function show() {
    output.replaceChildren(
      ...transcript.map(({ line, reply, failed }) => h("div", { class: failed ? "entry failed" : "entry" }, h("div", { class: "command" }, `> ${line}`), h("div", { class: "reply" }, reply))),
    );
    output.scrollTop = output.scrollHeight;
  }

  let recall = typed.length;
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowUp" && recall > 0) recall -= 1;
    else if (event.key === "ArrowDown" && recall < typed.length) recall += 1;
    else return;
    event.preventDefault();
    input.value = typed[recall] ?? "";
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const line = input.value.trim();
    if (!line) return;
    typed.push(line);
    recall = typed.length;
    input.value = "";
    let args;
    try {
      args = parse(line);
    } catch (error) {
      transcript.push({ line, reply: `(error) ${error.message}`, failed: true });
      show();
      return;
    }
    try {
      const { reply } = await call("/v1/command", { method: "POST", json: { args } });
      const failed = reply !== null && typeof reply === "object" && "error" in reply;
      transcript.push({ line, reply: format(reply), failed });
      showError(null);
    } catch (error) {
      transcript.push({ line, reply: `(refused) ${error.message}`, failed: true });
    }
    show();
  });
  show();
  input.focus();
}
