#!/usr/bin/env bash
# What the dashboard's polling costs a node: CPU seconds (utime + stime from
# /proc/PID/stat) of each node of a `quorra up` cluster over SECONDS with the Overview
# page open on node 0 in headless Chromium, and over SECONDS with no page open,
# alternately, ROUNDS times. Run from the repository root after
# `cargo build --release -p quorra-server`:
#
#   crates/quorra-server/tests/browser/measure-cpu.sh [SECONDS] [ROUNDS]
set -euo pipefail
seconds=${1:-60}
rounds=${2:-2}
browser=$(cd "$(dirname "$0")" && pwd)
log=$(mktemp -d)
# Ports away from quorra up's default, so a running demo cluster does not collide.
target/release/quorra up --base-port 27379 --log-dir "$log" >"$log/up.out" 2>&1 &
up=$!
trap 'kill -INT $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^node-2' "$log/up.out" && break; sleep 0.2; done
pids=$(awk '/^node-[0-9]/ {print $2}' "$log/up.out")
ticks=$(getconf CLK_TCK)
cpu() { for pid in $pids; do awk '{print $14 + $15}' "/proc/$pid/stat"; done | paste -sd' '; }
# Seconds of CPU per node between two samples.
used() { paste <(tr ' ' '\n' <<<"$1") <(tr ' ' '\n' <<<"$2") | awk -v t="$ticks" '{printf "%.2f ", ($2 - $1) / t}'; }
sleep 10 # let the cluster settle after start-up
echo "nodes: $(echo $pids) (node-0 serves the page); CPU seconds per node over ${seconds}s"
for round in $(seq "$rounds"); do
  before=$(cpu); sleep "$seconds"; after=$(cpu)
  echo "round $round, page closed: $(used "$before" "$after")"
  coproc page { node "$browser/overview-open.mjs" http://127.0.0.1:28379/ "$seconds"; }
  read -r line <&"${page[0]}" # "open": the page has drawn its first figures
  before=$(cpu)
  read -r line <&"${page[0]}" # the page closes
  after=$(cpu)
  wait "$page_PID" || true
  echo "round $round, page open:   $(used "$before" "$after") ($line)"
done
