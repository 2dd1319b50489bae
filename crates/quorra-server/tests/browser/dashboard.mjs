// Drives the dashboard in headless Chromium against a running cluster, for
// tests/server/dashboard.rs, which starts the cluster, seeds its keys and reads what
// this script reports.
//
//   node dashboard.mjs cluster URL SCREENSHOT_DIR VICTIM
//   node dashboard.mjs token URL TOKEN SCREENSHOT_DIR
//
// It prints one JSON object per line on stdout: {"event": ...}. In `cluster` mode it
// stops at {"event": "ready-for-crash"} until a line arrives on stdin (the Rust side
// has crashed node VICTIM), then reports how long the Nodes page took to show it down,
// and forgets it through the page.
// Any error in the browser console, or an uncaught exception in the page, fails the
// run: every step checks what the page shows, and the last one checks the console.

import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [mode, url, ...rest] = process.argv.slice(2);
const TIMEOUT_MS = 20000;

function report(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // Root in a container has no user namespaces for Chromium's sandbox.
    args: ["--no-sandbox"],
  });
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  const problems = [];
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  return { browser, page, problems };
}

/** Confirms the dashboard's confirmation dialog, which must be open. */
async function confirmDialog(page) {
  await page.locator("#confirm[open]").waitFor();
  await page.click("#confirm-ok");
  await page.locator("#confirm[open]").waitFor({ state: "detached" }).catch(() => {});
  await page.waitForFunction(() => !document.getElementById("confirm").open);
}

async function go(page, name) {
  await page.evaluate((hash) => (location.hash = hash), `#/${name}`);
  await page.waitForFunction((n) => document.getElementById("page").dataset.page === n, name);
}

async function screenshot(page, dir, name) {
  await page.screenshot({ path: `${dir}/${name}.png`, fullPage: true });
}

/**
 * Scans for `pattern` on the Keys page, page after page (a cluster's scan walks one node
 * at a time, so a key may be on a later page), and opens the key with bytes `hex`.
 */
async function openKey(page, pattern, hex) {
  await page.fill("#scan-match", pattern);
  await page.click("#scan-form button[type=submit]");
  for (let pages = 1; ; pages += 1) {
    await page.waitForFunction((n) => (document.getElementById("scan-status").textContent || "").startsWith(`page ${n}:`), pages);
    const row = page.locator(`#keys-table tr[data-key-hex="${hex}"]`);
    if ((await row.count()) === 1) {
      await row.click();
      return;
    }
    check(!(await page.isDisabled("#scan-next")), `the scan for ${pattern} finds the key ${hex}`);
    await page.click("#scan-next");
  }
}

const hexOf = (text, encoding = "utf8") => Buffer.from(text, encoding).toString("hex");

async function cluster(shots, victim) {
  const { browser, page, problems } = await launch();
  await page.goto(url);

  // Overview: the cluster's figures, and the charts fill as the page polls.
  await page.locator(".card.figure .value").first().waitFor();
  await page.waitForFunction(() => document.querySelector("#page").textContent.includes("3 / 3"));
  // A few seconds of history, so the lines in the screenshot have points to join.
  await page.waitForFunction(() => document.querySelectorAll("svg.chart polyline").length >= 4 && [...document.querySelectorAll("svg.chart polyline")].some((line) => line.getAttribute("points").split(" ").length >= 5), null, { timeout: 30000 });
  const overview = await page.textContent("#page");
  check(overview.includes("QUORUM"), "the overview names the consistency levels");
  check(overview.includes("hints pending"), "the overview shows the replication figures");
  await screenshot(page, shots, "overview");
  report("page", { name: "overview" });

  // Nodes: three members, all up.
  await go(page, "nodes");
  await page.waitForFunction(() => document.querySelectorAll("#nodes-table tbody tr").length === 3);
  const states = await page.$$eval("#nodes-table tbody tr", (rows) => rows.map((row) => row.dataset.state));
  check(states.every((state) => state === "up"), `every node up, not ${states}`);
  await screenshot(page, shots, "nodes");
  report("page", { name: "nodes", states });

  // Ring: every vnode drawn; a key's owners highlighted.
  await go(page, "ring");
  await page.locator("svg.ring path.arc").first().waitFor();
  const arcs = await page.locator("svg.ring path.arc").count();
  await page.fill("#ring-key", "dash:edit");
  await page.click("text=Find owners");
  await page.waitForFunction(() => document.querySelectorAll(".legend-table tr.highlight").length === 3);
  const owners = await page.textContent("#ring-owners");
  check(owners.includes("primary"), "the key's primary is named");
  check((await page.locator("svg.ring .key-marker").count()) === 1, "the key is marked on the circle");
  await screenshot(page, shots, "ring");
  report("page", { name: "ring", arcs, owners });

  // Keys: every page of a scan, by the "next page" button.
  await go(page, "keys");
  // The page lists the first keys of the whole keyspace as it opens.
  await page.waitForFunction(() => (document.getElementById("scan-status").textContent || "").startsWith("page 1:"));
  await page.fill("#scan-match", "dash:*");
  await page.selectOption("#scan-count", "20");
  await page.click("#scan-form button[type=submit]");
  const seen = new Set();
  let pages = 0;
  for (;;) {
    await page.waitForFunction((n) => (document.getElementById("scan-status").textContent || "").startsWith(`page ${n}:`), pages + 1);
    pages += 1;
    for (const hex of await page.$$eval("#keys-table tbody tr", (rows) => rows.map((row) => row.dataset.keyHex))) seen.add(hex);
    if (await page.isDisabled("#scan-next")) break;
    check(pages < 1000, "the scan ends");
    await page.click("#scan-next");
  }
  report("scanned", { pages, keys_hex: [...seen].sort() });

  // A binary key and value: shown as hex.
  await openKey(page, "dash:bin:*", hexOf("dash:bin:\xff\x00", "latin1"));
  await page.waitForFunction(() => document.getElementById("value-note")?.textContent.includes("not UTF-8"));
  const binaryView = await page.textContent("#value-view");
  check(binaryView.includes("fe ed 00 01"), `the binary value as hex, not ${JSON.stringify(binaryView)}`);
  report("binary", { view: binaryView });

  // A JSON value: pretty-printed.
  await openKey(page, "dash:json", hexOf("dash:json"));
  await page.click('#key-detail button[data-mode="json"]');
  await page.waitForFunction(() => document.getElementById("value-view").textContent.includes('\n  "name": "quorra"'));
  await screenshot(page, shots, "keys");

  // Edit a value through the page; the Rust side reads it back with redis-cli.
  await openKey(page, "dash:edit", hexOf("dash:edit"));
  await page.waitForFunction(() => document.getElementById("value-view").textContent === "before");
  const edited = "edited from the dashboard ✓";
  await page.fill("#value-editor", edited);
  await page.click("#value-save");
  await confirmDialog(page);
  await page.waitForFunction((text) => document.getElementById("value-view").textContent === text && document.getElementById("value-note").textContent.includes("saved"), edited);
  report("edited", { key: "dash:edit", value: edited });

  // A value larger than the page fetches: truncated, with its full size.
  await openKey(page, "dash:large", hexOf("dash:large"));
  await page.waitForFunction(() => document.getElementById("value-note")?.textContent.startsWith("truncated, 100,000 bytes in all"));
  check(await page.isDisabled("#value-save"), "a truncated value cannot be saved");
  report("truncated", { note: await page.textContent("#value-note") });

  // Hot keys (the Rust side pinned one) and namespaces.
  await go(page, "namespaces");
  await page.waitForFunction(() => document.querySelector("#namespaces-table tbody tr") && document.querySelector("#hot-keys-table tbody tr"));
  const namespace = await page.$$eval("#namespaces-table tbody tr td", (cells) => cells.map((cell) => cell.textContent));
  check(namespace[0] === "items" && namespace[1] === "item:", `the items namespace, not ${namespace}`);
  const hotKey = await page.$$eval("#hot-keys-table tbody tr td", (cells) => cells.map((cell) => cell.textContent));
  check(hotKey[0] === "dash:json" && hotKey[4].split(", ").length === 3, `the pinned key on three nodes, not ${hotKey}`);
  await screenshot(page, shots, "namespaces");
  report("page", { name: "namespaces", namespace, hotKey });

  // Console: a command and its reply, as redis-cli would print it.
  await go(page, "console");
  for (const command of ["SET dash:console 41", "INCR dash:console", 'GET "dash:no such key"', "INCR dash:edit"]) {
    const entries = await page.locator("#console-output .entry").count();
    await page.fill("#console-input", command);
    await page.press("#console-input", "Enter");
    await page.waitForFunction((n) => document.querySelectorAll("#console-output .entry").length === n + 1, entries);
  }
  const replies = await page.$$eval("#console-output .entry .reply", (nodes) => nodes.map((node) => node.textContent));
  check(replies[0] === '"OK"' && replies[1] === "(integer) 42" && replies[2] === "(nil)", `console replies ${JSON.stringify(replies)}`);
  check(replies[3].startsWith("(error) ERR value is not an integer"), `an error reply, not ${replies[3]}`);
  await screenshot(page, shots, "console");
  report("console", { replies });

  // A node crashes while the Nodes page is open: its row turns red.
  await go(page, "nodes");
  await page.waitForFunction(() => document.querySelectorAll('#nodes-table tbody tr[data-state="up"]').length === 3);
  report("ready-for-crash");
  await stdinLines.next();
  const crashed = Date.now();
  const row = `#nodes-table tbody tr[data-node="${victim}"][data-state="down"]`;
  await page.locator(row).waitFor({ timeout: 30000 });
  const shownAfterMs = Date.now() - crashed;
  const colour = await page.$eval(row, (element) => getComputedStyle(element).color);
  check(colour === "rgb(198, 40, 40)", `the down node's row is red, not ${colour}`);
  await screenshot(page, shots, "nodes-down");
  report("down", { node: victim, ms: shownAfterMs, colour });

  // Forget it, through the button and its confirmation: it leaves the ring (the row
  // goes, or stays marked out of the ring while gossip still remembers the node).
  await page.click(`#nodes-table tbody tr[data-node="${victim}"] button.danger`);
  await confirmDialog(page);
  await page.waitForFunction((id) => {
    const row = document.querySelector(`#nodes-table tbody tr[data-node="${id}"]`);
    return !row || row.dataset.inRing === "false";
  }, victim);
  report("forgotten", { node: victim });

  check(problems.length === 0, `no errors in the browser console:\n${problems.join("\n")}`);
  await browser.close();
}

async function token(secret, shots) {
  const { browser, page, problems } = await launch();
  await page.goto(url);
  // Without the token: the prompt, and nothing of the cluster.
  await page.locator("#auth").waitFor({ state: "visible" });
  check((await page.locator("#page > *").count()) === 0, "no data without the token");
  await screenshot(page, shots, "token");
  report("prompt");

  // A wrong token: a clear message, still no data.
  await page.fill("#auth-token", "not the token");
  await page.click("#auth-form button[type=submit]");
  await page.waitForFunction(() => !document.getElementById("auth-message").classList.contains("hidden"));
  const message = await page.textContent("#auth-message");
  check(message.includes("refused this token"), `the wrong token is named, not ${message}`);
  check((await page.locator("#page > *").count()) === 0, "no data with a wrong token");
  report("wrong", { message });

  // The right one: the overview fills, and every later call carries it.
  await page.fill("#auth-token", secret);
  await page.click("#auth-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#page").textContent.includes("3 / 3"));
  check(await page.isHidden("#auth"), "the prompt is gone");
  await go(page, "nodes");
  await page.waitForFunction(() => document.querySelectorAll("#nodes-table tbody tr").length === 3);
  const stored = await page.evaluate(() => ({ session: sessionStorage.getItem("quorra-token"), cookie: document.cookie }));
  check(stored.session === secret && stored.cookie === "", "the token is in sessionStorage, not a cookie");
  report("authorized");

  // The Leave button, confirmed, with the token: the node leaves the ring gracefully.
  await page.click('#nodes-table tbody tr[data-node="n2"] button:not(.danger)');
  await confirmDialog(page);
  await page.waitForFunction(() => document.getElementById("nodes-outcome").textContent === "n2 is leaving the cluster.");
  // The node's process stops on its own (in the test, the Rust side stops it).
  report("leave-requested", { node: "n2" });
  await page
    .waitForFunction(() => {
      const row = document.querySelector('#nodes-table tbody tr[data-node="n2"]');
      return !row || (row.dataset.state !== "up" && row.dataset.inRing === "false");
    })
    .catch(async (error) => {
      const row = await page.$eval('#nodes-table tbody tr[data-node="n2"]', (element) => JSON.stringify(element.dataset)).catch(() => "none");
      throw new Error(`${error.message}: n2's row ${row}, outcome ${JSON.stringify(await page.textContent("#nodes-outcome"))}`);
    });
  report("left", { node: "n2" });

  // The browser logs each 401 as a failed resource load: those are this test's
  // point. Anything else is a fault.
  const unexpected = problems.filter((problem) => !problem.includes("status of 401"));
  check(unexpected.length === 0, `no other errors in the browser console:\n${unexpected.join("\n")}`);
  await browser.close();
}

try {
  if (mode === "cluster") await cluster(rest[0], rest[1]);
  else if (mode === "token") await token(rest[0], rest[1]);
  else throw new Error(`unknown mode ${mode}`);
  report("done");
  process.exit(0);
} catch (error) {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
}
