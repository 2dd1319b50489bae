// What Node.js applications do with transactions, scripts, scans and pub/sub through
// ioredis and node-redis, run against one server.
//
// Usage: node node_clients.mjs PORT [PORT ...]
//
// Every port must serve the same data (one server, or the nodes of one cluster); clients
// are spread over them. Prints one JSON object per case, {"case": ..., "result": ...},
// like redis_py.py; the suite compares the lines with Debian's redis-server's
// (crates/quorra-server/tests/server/compat.rs). Keys carry a hash tag, so that each
// case's keys have one primary in a cluster.

import Redis from "ioredis";
import { createClient } from "redis";

const ports = process.argv.slice(2).map(Number);
const portOf = (index) => ports[index % ports.length];

function ioredis(index = 0) {
  return new Redis({ host: "127.0.0.1", port: portOf(index), lazyConnect: false });
}

async function nodeRedis(index = 0, database = 0, options = {}) {
  const client = createClient({ url: `redis://127.0.0.1:${portOf(index)}/${database}`, ...options });
  client.on("error", () => {});
  await client.connect();
  return client;
}

/** The value `work` resolves to, or the error it throws, as the application sees it. */
async function observed(work) {
  try {
    return await work();
  } catch (error) {
    return { raised: error.constructor.name, text: error.message };
  }
}

/** ioredis's [error, value] pairs with errors shown by text. */
const pairs = (results) =>
  results.map(([error, value]) => (error ? { error: error.message } : value));

const cases = [];
const testCase = (name, work) => cases.push([name, work]);

testCase("ioredis_multi_exec", async () => {
  const r = ioredis();
  const results = await r
    .multi()
    .set("{io}:a", "1")
    .incr("{io}:a")
    .get("{io}:a")
    .exec();
  r.disconnect();
  return pairs(results);
});

testCase("ioredis_multi_with_a_runtime_error", async () => {
  const r = ioredis();
  await r.set("{io-rt}:s", "abc");
  const results = await r.multi().incr("{io-rt}:s").set("{io-rt}:t", "1").exec();
  const after = await r.get("{io-rt}:t");
  r.disconnect();
  return [pairs(results), after];
});

testCase("ioredis_watch_aborted_by_another_client", async () => {
  const r = ioredis(0);
  const other = ioredis(1);
  await r.set("{io-w}:k", "1");
  await r.watch("{io-w}:k");
  await other.set("{io-w}:k", "2");
  const results = await r.multi().set("{io-w}:k", "3").exec();
  const value = await r.get("{io-w}:k");
  r.disconnect();
  other.disconnect();
  return [results, value];
});

testCase("ioredis_define_command", async () => {
  const r = ioredis();
  r.defineCommand("setAndGet", {
    numberOfKeys: 1,
    lua: "redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])",
  });
  const first = await r.setAndGet("{io-s}:k", "scripted");
  const second = await r.setAndGet("{io-s}:k", "again");
  r.disconnect();
  return [first, second];
});

testCase("ioredis_scan_stream", async () => {
  const r = ioredis();
  const keys = Array.from({ length: 30 }, (_, i) => `{io-scan}:k${i}`);
  await r.mset(...keys.flatMap((key) => [key, "v"]));
  const seen = new Set();
  await new Promise((resolve, reject) => {
    const stream = r.scanStream({ match: "{io-scan}:*", count: 7 });
    stream.on("data", (batch) => batch.forEach((key) => seen.add(key)));
    stream.on("end", resolve);
    stream.on("error", reject);
  });
  r.disconnect();
  return [...seen].sort();
});

testCase("node_redis_multi_exec", async () => {
  const r = await nodeRedis();
  const results = await r
    .multi()
    .set("{nr}:a", "1")
    .incr("{nr}:a")
    .get("{nr}:a")
    .exec();
  await r.quit();
  return results;
});

testCase("node_redis_multi_with_a_queuing_error", async () => {
  const r = await nodeRedis();
  const result = await observed(() =>
    r.multi().set("{nr-q}:a", "1").addCommand(["NOSUCHCOMMAND"]).exec(),
  );
  const after = await r.get("{nr-q}:a");
  await r.quit();
  return [result, after];
});

testCase("node_redis_watch_aborted_by_another_client", async () => {
  const r = await nodeRedis(0);
  const other = await nodeRedis(1);
  await r.set("{nr-w}:k", "1");
  await r.watch("{nr-w}:k");
  await other.set("{nr-w}:k", "2");
  const result = await observed(() => r.multi().set("{nr-w}:k", "3").exec());
  const value = await r.get("{nr-w}:k");
  await r.quit();
  await other.quit();
  return [result, value];
});

testCase("node_redis_scripts", async () => {
  const r = await nodeRedis();
  const script = "return redis.call('incrby', KEYS[1], ARGV[1])";
  const sha = await r.scriptLoad(script);
  const first = await r.evalSha(sha, { keys: ["{nr-s}:n"], arguments: ["5"] });
  const second = await r.eval(script, { keys: ["{nr-s}:n"], arguments: ["2"] });
  const missing = await observed(() => r.evalSha("0".repeat(40), { keys: [], arguments: [] }));
  await r.quit();
  return [first, second, missing];
});

testCase("node_redis_scan_iterator", async () => {
  const r = await nodeRedis();
  const keys = Array.from({ length: 30 }, (_, i) => `{nr-scan}:k${i}`);
  for (const key of keys) await r.set(key, "v");
  const seen = new Set();
  for await (const batch of r.scanIterator({ MATCH: "{nr-scan}:*", COUNT: 7 })) {
    for (const key of [].concat(batch)) seen.add(key);
  }
  await r.quit();
  return [...seen].sort();
});

testCase("node_redis_and_ioredis_with_a_database_number", async () => {
  const r = await nodeRedis(0, 1);
  const io = new Redis({ host: "127.0.0.1", port: portOf(1), db: 1 });
  const zero = await nodeRedis(2);
  await r.set("{node-db}:k", "one");
  await zero.set("{node-db}:k", "zero");
  const seen = [await r.get("{node-db}:k"), await io.get("{node-db}:k"), await zero.get("{node-db}:k")];
  const multi = await io.multi().set("{node-db}:m", "1").incr("{node-db}:m").exec();
  const keys = [await r.keys("{node-db}:*"), await zero.keys("{node-db}:*")].map((list) => list.sort());
  const fromZero = await zero.get("{node-db}:m");
  await r.quit();
  await zero.quit();
  io.disconnect();
  return [seen, pairs(multi), keys, fromZero];
});

/** Resolves once `received` holds `count` items; rejects after 10 s with what it holds. */
function receivedAll(received, count) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      if (received.length >= count) {
        clearInterval(poll);
        resolve();
      } else if (Date.now() - started > 10_000) {
        clearInterval(poll);
        reject(new Error(`received ${received.length} of ${count}`));
      }
    }, 5);
  });
}

// The subscriber and the publisher are on different nodes of a cluster. PUBLISH's reply
// is left out: it counts the subscribers of the publisher's node only, as in Redis
// Cluster (docs/pubsub.md).
testCase("ioredis_pubsub_across_nodes", async () => {
  const subscriber = ioredis(0);
  const publisher = ioredis(1);
  const received = [];
  subscriber.on("message", (channel, message) => received.push(["message", channel, message]));
  subscriber.on("pmessage", (pattern, channel, message) =>
    received.push(["pmessage", pattern, channel, message]),
  );
  const subscribed = [
    await subscriber.subscribe("{ps-io}:news", "{ps-io}:other"),
    await subscriber.psubscribe("{ps-io}:n*"),
  ];
  for (let i = 0; i < 20; i++) await publisher.publish("{ps-io}:news", `m${i}`);
  await publisher.publish("{ps-io}:nothing-here", "p");
  await receivedAll(received, 41);
  const left = [
    await subscriber.unsubscribe("{ps-io}:news", "{ps-io}:other"),
    await subscriber.punsubscribe("{ps-io}:n*"),
  ];
  subscriber.disconnect();
  publisher.disconnect();
  return { subscribed, left, received };
});

for (const resp of [2, 3]) {
  testCase(`node_redis_resp${resp}_pubsub_across_nodes`, async () => {
    const subscriber = await nodeRedis(0, 0, { RESP: resp });
    const publisher = await nodeRedis(2, 0, { RESP: resp });
    const received = [];
    await subscriber.subscribe("{ps-nr}:news", (message, channel) =>
      received.push(["message", channel, message]),
    );
    await subscriber.pSubscribe("{ps-nr}:*", (message, channel) =>
      received.push(["pmessage", channel, message]),
    );
    await subscriber.sSubscribe("{ps-nr}:shard", (message, channel) =>
      received.push(["smessage", channel, message]),
    );
    for (let i = 0; i < 10; i++) await publisher.publish("{ps-nr}:news", `m${i}`);
    await publisher.sPublish("{ps-nr}:shard", "s");
    await receivedAll(received, 21);
    await subscriber.unsubscribe();
    await subscriber.pUnsubscribe();
    await subscriber.sUnsubscribe();
    const numsub = await subscriber.pubSubNumSub("{ps-nr}:news");
    await subscriber.quit();
    await publisher.quit();
    return { received, numsub };
  });
}

// Commands on a client of one node, keyspace events seen by a subscriber on another.
// The keys share a hash tag, so that one node raises every event, in order.
testCase("ioredis_keyspace_notifications_across_nodes", async () => {
  const configs = ports.map((port) => new Redis({ host: "127.0.0.1", port }));
  for (const config of configs) await config.config("SET", "notify-keyspace-events", "KEA");
  const subscriber = ioredis(0);
  const client = ioredis(1);
  const received = [];
  subscriber.on("pmessage", (_pattern, channel, message) => received.push([channel, message]));
  await subscriber.psubscribe("__key*@0__:*");
  await client.set("{kn}:a", "1", "EX", 100);
  await client.set("{kn}:a", "2", "NX");
  await client.incr("{kn}:n");
  await client.append("{kn}:n", "0");
  await client.getdel("{kn}:n");
  await client.rename("{kn}:a", "{kn}:b");
  await client.expire("{kn}:b", 100);
  await client.persist("{kn}:b");
  await client.copy("{kn}:b", "{kn}:c");
  await client.del("{kn}:b", "{kn}:c", "{kn}:missing");
  await client.mset("{kn}:d", "1", "{kn}:e", "2");
  await client.pexpire("{kn}:d", -1);
  await receivedAll(received, 30);
  const shown = await configs[0].config("GET", "notify-keyspace-events");
  const refused = await observed(() => configs[0].config("SET", "notify-keyspace-events", "KEA?"));
  for (const config of configs) {
    await config.config("SET", "notify-keyspace-events", "");
    config.disconnect();
  }
  subscriber.disconnect();
  client.disconnect();
  return { received, shown, refused };
});

testCase("ioredis_expired_event_across_nodes", async () => {
  const configs = ports.map((port) => new Redis({ host: "127.0.0.1", port }));
  for (const config of configs) await config.config("SET", "notify-keyspace-events", "Ex");
  const subscriber = ioredis(2);
  const client = ioredis(0);
  const received = [];
  subscriber.on("message", (channel, message) => received.push([channel, message]));
  await subscriber.subscribe("__keyevent@0__:expired");
  await client.set("{kx}:short", "v", "PX", 30);
  await client.set("{kx}:long", "v", "EX", 600);
  await receivedAll(received, 1);
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const config of configs) {
    await config.config("SET", "notify-keyspace-events", "");
    config.disconnect();
  }
  subscriber.disconnect();
  client.disconnect();
  return received;
});

for (const [name, work] of cases) {
  const result = await observed(work);
  console.log(JSON.stringify({ case: name, result }));
}
process.exit(0);
