// node-redis's client-side cache (RESP 3 and `clientSideCache`, unmodified) against
// quorra: clients connected to different nodes cache what they read, and a write through
// any node reaches every cache. Like client_side_cache.py, it checks what node-redis
// documents rather than comparing with Debian's redis-server (7.0, without RESP3
// client-side caching support in that client's tests).
//
// Usage: node client_side_cache.mjs PORT [PORT ...]
//
// Prints one JSON line per check passed, and one {"case": "staleness", ...} line with the
// longest time a cache answered the replaced value after a write's acknowledgement;
// exits non-zero, with the failed check, if quorra answers otherwise.

import { createClient } from "redis";

const ports = process.argv.slice(2).map(Number);

async function connect(index, options = {}) {
  const client = createClient({ url: `redis://127.0.0.1:${ports[index % ports.length]}`, ...options });
  client.on("error", () => {});
  await client.connect();
  return client;
}

function check(label, got, expected) {
  if (JSON.stringify(got) !== JSON.stringify(expected)) {
    console.error(`${label}: got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
    process.exit(1);
  }
  console.log(JSON.stringify({ case: label, result: "ok" }));
}

/** Reads `key` through `client` until it answers `expected`; the milliseconds that took.
 * Between reads it lets the event loop run, as an application does: a read the cache
 * answers resolves without I/O, and node-redis handles the invalidation pushes that
 * arrived meanwhile only when the loop reads the socket. */
async function untilRead(client, key, expected, limitMs = 2000) {
  const started = performance.now();
  for (;;) {
    const value = await client.get(key);
    if (value === expected) {
      return performance.now() - started;
    }
    await new Promise((resolve) => setImmediate(resolve));
    if (performance.now() - started > limitMs) {
      console.error(`${key}: still ${JSON.stringify(value)} ${limitMs} ms after ${JSON.stringify(expected)} was acknowledged`);
      process.exit(1);
    }
  }
}

const writer = await connect(0);
const readers = [];
for (let index = 0; index < ports.length; index++) {
  readers.push(await connect(index, { RESP: 3, clientSideCache: { maxEntries: 1000 } }));
}
const keys = Array.from({ length: 20 }, (_, i) => `csc-node:${i}`);
for (const key of keys) {
  await writer.set(key, "0");
}

for (const reader of readers) {
  for (const key of keys) {
    await reader.get(key);
    await reader.get(key);
  }
}
check(
  "every reader's second reads were cache hits",
  readers.map((reader) => reader.clientSideCache.stats().hitCount),
  readers.map(() => keys.length),
);

let longest = 0;
for (let round = 1; round <= 5; round++) {
  for (const key of keys) {
    await writer.set(key, String(round));
    for (const reader of readers) {
      longest = Math.max(longest, await untilRead(reader, key, String(round)));
    }
  }
}
check("a write through one node reaches every cache", true, true);

await writer.del(keys[0]);
for (const reader of readers) {
  await untilRead(reader, keys[0], null);
}
check("a delete reaches every cache", true, true);
console.log(JSON.stringify({ case: "staleness", result: { longest_ms: Math.round(longest * 1000) / 1000 } }));

for (const client of [writer, ...readers]) {
  await client.quit();
}
