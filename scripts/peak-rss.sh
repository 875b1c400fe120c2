#!/usr/bin/env bash
# Runs a command and reports its peak anonymous resident memory (RssAnon: heap and stacks, not
# the pages of memory-mapped input files), sampled every 5 ms from /proc, plus its wall time.
#
#   scripts/peak-rss.sh ./target/release/weir replay big.log -o /dev/null
set -euo pipefail
start=$(date +%s.%N)
"$@" &
pid=$!
peak=0
while kill -0 "$pid" 2>/dev/null; do
  kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ -n "$kb" ] && [ "$kb" -gt "$peak" ] && peak=$kb
  sleep 0.005
done
wait "$pid"
rc=$?
end=$(date +%s.%N)
echo "peak RssAnon: $((peak / 1024)) MiB; wall $(awk "BEGIN {printf \"%.3f\", $end - $start}") s; exit $rc" >&2
exit $rc
