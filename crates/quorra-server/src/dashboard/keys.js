// Keys: a browser over GET /v1/scan, one page at a time (the cursor the node returns
// asks for the next; nothing loads the whole keyspace), and a key's value to read as
// text, hex or JSON, edit, give a TTL or delete.

import { call, keyPath } from "./api.js";
import { bytes as size, h, hex, hexDump, hexToBytes, number, ttl, utf8 } from "./format.js";

// The most of a value the page fetches: enough to read and edit any ordinary value,
// and a multi-megabyte one does not travel in full to be shown.
const VALUE_LIMIT = 65536;

export function mount(root, context) {
  const pattern = h("input", { type: "text", id: "scan-match", value: "*", autocomplete: "off" });
  const count = h("select", { id: "scan-count" }, [20, 50, 200, 1000].map((n) => h("option", { value: n, selected: n === 50 }, n)));
  const form = h("form", { class: "inline", id: "scan-form" }, h("label", {}, "Pattern ", pattern), h("label", {}, "Per page ", count), h("button", { type: "submit" }, "Scan"));
  const body = h("tbody");
  const status = h("span", { class: "muted", id: "scan-status" });
  const next = h("button", { type: "button", id: "scan-next", disabled: true }, "Next page");
  const detail = h("section", { id: "key-detail", class: "card hidden" });
  root.append(
    h("h1", {}, "Keys"),
    form,
    h(
      "table",
      { class: "table", id: "keys-table" },
      h("thead", {}, h("tr", {}, ["Key", "Type", "TTL", "Size in memory", "Owners"].map((title) => h("th", {}, title)))),
      body,
    ),
    h("p", { class: "pager" }, next, " ", status),
    detail,
  );

  let cursor = "0";
  let page = 0;
  let seen = 0;
  // Only the latest scan's answer is shown: a new pattern typed while a page is on its
  // way must not get the old pattern's keys.
  let latest = 0;

  async function scan(fresh) {
    if (fresh) {
      cursor = "0";
      page = 0;
      seen = 0;
    }
    const scanning = ++latest;
    const query = new URLSearchParams({ cursor, match: pattern.value || "*", count: count.value });
    status.textContent = "scanning…";
    next.disabled = true;
    try {
      const answer = await call(`/v1/scan?${query}`);
      if (scanning !== latest) return;
      page += 1;
      seen += answer.keys.length;
      cursor = answer.cursor;
      body.replaceChildren(...answer.keys.map(row));
      const done = cursor === "0";
      next.disabled = done;
      // A SCAN page may be empty and still not be the last one: the node walks a
      // part of the keyspace per call, matching or not.
      const plural = (n) => `${n} ${n === 1 ? "key" : "keys"}`;
      status.textContent = `page ${page}: ${plural(answer.keys.length)} (${seen} so far)${done ? ", the end of the scan" : ""}`;
      context.showError(null);
    } catch (error) {
      if (scanning === latest) context.showError(error);
    }
  }

  function row(entry) {
    return h(
      "tr",
      { class: "clickable", "data-key-hex": entry.key_hex, onclick: () => open(entry) },
      h("td", { class: "key" }, entry.key, entry.binary ? h("span", { class: "tag" }, "binary") : null),
      h("td", {}, entry.type),
      h("td", {}, ttl(entry.ttl_ms)),
      h("td", {}, size(entry.size)),
      h("td", {}, (entry.owners || []).join(", ")),
    );
  }

  async function open(entry) {
    const keyBytes = hexToBytes(entry.key_hex);
    const path = `/v1/keys/${keyPath(keyBytes)}`;
    let response;
    try {
      response = await call(`${path}?limit=${VALUE_LIMIT}`, { raw: true });
    } catch (error) {
      context.showError(error);
      return;
    }
    const value = new Uint8Array(await response.arrayBuffer());
    const header = response.headers.get("X-Quorra-Value-Length");
    const total = header === null ? value.length : Number(header);
    context.showError(null);
    showValue({ entry, keyBytes, path, value, total });
  }

  function showValue({ entry, keyBytes, path, value, total }) {
    const truncated = total > value.length;
    const text = utf8(value);
    let json = null;
    if (text !== null && !truncated) {
      try {
        json = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        json = null;
      }
    }
    // Binary values are shown as hex: their bytes would not survive as text.
    let mode = text === null ? "hex" : "text";
    const view = h("pre", { class: "value", id: "value-view" });
    const modes = h("div", { class: "modes" });
    const editor = h("textarea", { id: "value-editor", rows: 6, spellcheck: "false", disabled: truncated });
    const ttlInput = h("input", { type: "number", id: "ttl-seconds", min: 1, placeholder: "none", value: entry.ttl_ms > 0 ? Math.ceil(entry.ttl_ms / 1000) : "" });
    const note = h("p", { class: "muted", id: "value-note" });

    function render() {
      view.textContent = mode === "hex" ? hexDump(value) : mode === "json" ? json : text;
      editor.value = mode === "hex" ? hex(value) : text;
      modes.replaceChildren(
        ...[["text", "Text", text !== null], ["hex", "Hex", true], ["json", "JSON", json !== null]].map(([name, label, usable]) =>
          h("button", { type: "button", class: name === mode ? "active" : "", disabled: !usable, "data-mode": name, onclick: () => { mode = name; render(); } }, label),
        ),
      );
    }

    note.textContent = truncated
      ? `truncated, ${number(total)} bytes in all (the first ${number(value.length)} shown; a truncated value cannot be edited here)`
      : `${number(total)} bytes${text === null ? ", not UTF-8: shown as hex" : ""}`;

    async function write(body, seconds, what) {
      const query = seconds ? `?ttl=${seconds}` : "";
      await call(`${path}${query}`, { method: "PUT", body });
      context.showError(null);
      const fresh = { ...entry, ttl_ms: seconds ? seconds * 1000 : -1, size: body.length };
      await reopen(fresh, what);
    }

    async function reopen(fresh, what) {
      await open(fresh);
      const done = document.getElementById("value-note");
      if (done) done.textContent += ` — ${what}`;
    }

    async function save() {
      let body;
      try {
        body = mode === "hex" ? hexToBytes(editor.value) : new TextEncoder().encode(editor.value);
      } catch (error) {
        context.showError(error);
        return;
      }
      const seconds = ttlInput.value ? Number(ttlInput.value) : 0;
      if (!(await context.confirm(`Replace the value of ${entry.key} (${number(body.length)} bytes${seconds ? `, TTL ${seconds} s` : ", no TTL"})?`, "Save"))) return;
      try {
        await write(body, seconds, "saved");
      } catch (error) {
        context.showError(error);
      }
    }

    async function setTtl(seconds) {
      const question = seconds ? `Expire ${entry.key} in ${seconds} s?` : `Remove the TTL of ${entry.key}?`;
      if (!(await context.confirm(question, seconds ? "Set TTL" : "Remove TTL"))) return;
      try {
        if (!entry.binary) {
          // A command sets the TTL alone, leaving the value (however large) untouched.
          const args = seconds ? ["EXPIRE", entry.key, String(seconds)] : ["PERSIST", entry.key];
          const { reply } = await call("/v1/command", { method: "POST", json: { args } });
          if (reply && reply.error) throw new Error(reply.error);
          await reopen({ ...entry, ttl_ms: seconds ? seconds * 1000 : -1 }, seconds ? `TTL set to ${seconds} s` : "TTL removed");
        } else if (!truncated) {
          // A binary key cannot be named in the JSON of a command: write it again.
          await write(value, seconds, seconds ? `TTL set to ${seconds} s` : "TTL removed");
        } else {
          throw new Error("the TTL of a binary key with a value over 64 KiB cannot be set here");
        }
      } catch (error) {
        context.showError(error);
      }
    }

    async function remove() {
      if (!(await context.confirm(`Delete ${entry.key}? This cannot be undone.`, "Delete"))) return;
      try {
        await call(path, { method: "DELETE" });
        detail.classList.add("hidden");
        detail.replaceChildren();
        for (const tr of body.querySelectorAll("tr")) if (tr.dataset.keyHex === entry.key_hex) tr.remove();
        context.showError(null);
      } catch (error) {
        context.showError(error);
      }
    }

    detail.replaceChildren(
      h("h2", {}, entry.key, entry.binary ? h("span", { class: "tag" }, "binary") : null),
      h("p", { class: "muted" }, `key bytes (hex) ${hex(keyBytes)} · type ${entry.type} · TTL ${ttl(entry.ttl_ms)} · owners ${(entry.owners || []).join(", ") || "–"}`),
      note,
      modes,
      view,
      h("h3", {}, "Edit"),
      editor,
      h(
        "div",
        { class: "inline" },
        h("label", {}, "TTL seconds ", ttlInput),
        h("button", { type: "button", id: "value-save", disabled: truncated, onclick: save }, "Save value"),
        h("button", { type: "button", id: "ttl-set", onclick: () => (ttlInput.value ? setTtl(Number(ttlInput.value)) : null) }, "Set TTL only"),
        h("button", { type: "button", id: "ttl-remove", onclick: () => setTtl(0) }, "Remove TTL"),
        h("button", { type: "button", id: "key-delete", class: "danger", onclick: remove }, "Delete key"),
      ),
      h("p", { class: "muted" }, "The editor holds the value as text, or as hex digits when the Hex view is chosen."),
    );
    render();
    detail.classList.remove("hidden");
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    scan(true);
  });
  next.addEventListener("click", () => scan(false));
  scan(true);
}
