#!/usr/bin/env bash
# The main job: checkpoint a real, running workload, kill it, restore it at the same pid, and
# show that it continued: its tick counter goes on and its memory checksum still matches.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
stasis=$root/target/release/stasis
work=$(mktemp -d /tmp/stasis-demo.XXXXXX)
images=$work/images
pid=
cleanup() {
    if [ -n "$pid" ] && [ -e "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

gcc -O1 -Wno-format-truncation -o "$work/workload" "$root/tests/workloads/workload.c"
"$work/workload" count "$work" 64 </dev/null >/dev/null 2>&1 &
pid=$!
while [ ! -e "$work/ready" ]; do sleep 0.05; done
sleep 1
echo "== workload pid $pid counts and checksums 64 MiB every 100 ms:"
tail -n 3 "$work/log"

echo "== stasis dump -t $pid -D $images"
"$stasis" dump -t "$pid" -D "$images"
wait "$pid" 2>/dev/null || true
last=$(tail -n 1 "$work/log")
echo "   the workload is gone; its last line was: $last"
du -sh "$images" | sed 's/^/   images: /'
"$stasis" show "$images" | sed -n '1,9p'

echo "== stasis restore -D $images --detach"
"$stasis" restore -D "$images" --detach --pid-file "$work/pid"
restored=$(cat "$work/pid")
sleep 1.5
echo "   restored pid $restored; its log goes on:"
tail -n 4 "$work/log"

before=$(echo "$last" | awk '{print $2}')
after=$(tail -n 1 "$work/log" | awk '{print $2}')
if [ "$restored" != "$pid" ] || [ "$after" -le "$before" ] || grep -q CORRUPT "$work/log" \
    || ! tail -n 1 "$work/log" | grep -q "pid $pid .* ok$"; then
    echo "DEMO FAILED: pid $restored (was $pid), tick $after (was $before)" >&2
    exit 1
fi
echo "== OK: same pid $pid, ticks went on from $before to $after, every checksum matched"
