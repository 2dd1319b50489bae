"""redis-py's client-side caching (RESP3 and a cache config, unmodified) against quorra:
clients connected to different nodes cache what they read, and a write through any node
reaches every cache. Debian's redis-server (7.0) is older than the 7.4 that redis-py
requires for this, so there is nothing to compare with: the script checks what redis-py
documents instead.

Usage: python3 client_side_cache.py PORT [PORT ...]

Prints one JSON line per check passed, and one {"case": "staleness", ...} line with the
longest time a cache answered the replaced value after a write's acknowledgement;
exits non-zero, with the failed check, if quorra answers otherwise.
"""

import json
import sys
import time

import redis
from redis.cache import CacheConfig

PORTS = [int(port) for port in sys.argv[1:]]


def plain(index=0):
    return redis.Redis(host="127.0.0.1", port=PORTS[index % len(PORTS)], decode_responses=True)


def caching(index):
    return redis.Redis(
        host="127.0.0.1",
        port=PORTS[index % len(PORTS)],
        decode_responses=True,
        protocol=3,
        cache_config=CacheConfig(max_size=1000),
    )


def check(label, got, expected):
    if got != expected:
        sys.exit(f"{label}: got {got!r}, expected {expected!r}")
    print(json.dumps({"case": label, "result": "ok"}), flush=True)


def until_read(client, key, expected, limit=2.0):
    """Reads `key` through `client` until it answers `expected`; the seconds that took.
    Any other value than the replaced one or `expected` fails."""
    started = time.monotonic()
    while True:
        value = client.get(key)
        if value == expected:
            return time.monotonic() - started
        if time.monotonic() - started > limit:
            sys.exit(f"{key}: still {value!r} {limit}s after {expected!r} was acknowledged")


def main():
    writer = plain(0)
    readers = [caching(index) for index in range(len(PORTS))]
    keys = [f"csc:{i}" for i in range(20)]
    for key in keys:
        writer.set(key, "0")

    # Each reader's second read of a key is answered from its cache.
    for reader in readers:
        for key in keys:
            reader.get(key)
            reader.get(key)
    check("every reader cached every key", [reader.get_cache().size for reader in readers], [len(keys)] * len(readers))
    info = readers[-1].client_trackinginfo()
    check("tracking is on for a caching client", info.get("flags"), ["on"])

    # A write through one node reaches the caches of clients on every node.
    longest = 0.0
    for round_ in range(1, 6):
        for key in keys:
            writer.set(key, str(round_))
            for reader in readers:
                longest = max(longest, until_read(reader, key, str(round_)))
                # Cached again.
                reader.get(key)
    check("every cache holds every key after the writes", [reader.get_cache().size for reader in readers], [len(keys)] * len(readers))

    # A delete and an expiry reach them too.
    writer.delete(keys[0])
    writer.set(keys[1], "short", px=100)
    for reader in readers:
        until_read(reader, keys[1], "short")
    for reader in readers:
        until_read(reader, keys[0], None)
        until_read(reader, keys[1], None)
    check("deletes and expiry reach every cache", True, True)

    # FLUSHALL empties every cache.
    writer.flushall()
    for reader in readers:
        until_read(reader, keys[2], None)
    check("flushall reaches every cache", True, True)
    print(json.dumps({"case": "staleness", "result": {"longest_ms": round(longest * 1000, 3)}}), flush=True)


main()
