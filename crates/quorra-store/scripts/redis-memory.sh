#!/usr/bin/env bash
# Redis's memory per key, measured the same way as quorra-store's `examples/memory.rs`:
# N keys `key:%012d` (16 bytes) with 100-byte values; prints used_memory and RSS growth
# per key and the bytes per key beyond key + value.
#
#   crates/quorra-store/scripts/redis-memory.sh [keys] [port]
#
# Installs Debian's redis-server if missing, runs it on 127.0.0.1 only, without
# persistence, and stops it at the end.
set -euo pipefail

KEYS=${1:-1000000}
PORT=${2:-6399}
VALUE_LEN=100
KEY_LEN=16

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi

DIR=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$DIR" --daemonize no --logfile "$DIR/redis.log" &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DIR"' EXIT

cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }
for _ in $(seq 50); do cli ping >/dev/null 2>&1 && break; sleep 0.1; done

info() { cli info memory | tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2 }'; }
rss() { awk '/^VmRSS/ { print $2 * 1024 }' "/proc/$PID/status"; }

used0=$(info used_memory); rss0=$(rss)

# RESP-encoded SETs, piped in bulk.
awk -v n="$KEYS" -v vlen="$VALUE_LEN" 'BEGIN {
  v = sprintf("%*s", vlen, ""); gsub(/ /, "v", v);
  for (i = 0; i < n; i++) {
    k = sprintf("key:%012d", i);
    printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, vlen, v;
  }
}' | cli --pipe >/dev/null

used1=$(info used_memory); rss1=$(rss)
dbsize=$(cli dbsize | tr -d '\r')
version=$(cli info server | tr -d '\r' | awk -F: '$1 == "redis_version" { print $2 }')
alloc=$(cli info memory | tr -d '\r' | awk -F: '$1 == "mem_allocator" { print $2 }')

awk -v n="$KEYS" -v u0="$used0" -v u1="$used1" -v r0="$rss0" -v r1="$rss1" \
    -v kv=$((KEY_LEN + VALUE_LEN)) -v db="$dbsize" -v ver="$version" -v al="$alloc" 'BEGIN {
  printf "redis %s (%s), keys: %d (dbsize %d)\n", ver, al, n, db;
  printf "used_memory delta per key: %.1f B (overhead beyond key + value: %.1f B)\n", (u1 - u0) / n, (u1 - u0) / n - kv;
  printf "RSS delta per key:         %.1f B (overhead beyond key + value: %.1f B)\n", (r1 - r0) / n, (r1 - r0) / n - kv;
}'
