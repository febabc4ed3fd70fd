#!/bin/bash
# The chain of a durable copy-on-write first write, in C (chain-model.c), beside qemu-img bench on a qcow2 overlay
# and, with STORE=1, the store's own `journal-bench cow`, in one run on this machine. docs/benchmarks.md, "The chain
# in C", reads the figures.
#
#   chain-model.sh [repo]      repo: where journal-bench was built with `dotnet build -c Release` (default: this checkout)
#
# Settings (environment): SNAPSHOTS (1), WRITERS (16), COUNT (20000), MODES ("0 1 4 2 3", see chain-model.c), PASSES (1),
# STORE=1 to run `journal-bench cow --snapshots $SNAPSHOTS --writers $WRITERS --count $COUNT` first.
# Same sizes as journal-bench cow: a 156 MiB origin of random data, 80 MiB zero-filled COW files, 4 KiB chunks; the
# page cache is dropped before each case. Needs root (drop_caches), gcc, qemu-utils.
set -e
repo=${1:-$(cd "$(dirname "$0")/../../.." && pwd)}
snapshots=${SNAPSHOTS:-1} writers=${WRITERS:-16} count=${COUNT:-20000} modes=${MODES:-0 1 4 2 3} passes=${PASSES:-1}
w=$(mktemp -d /tmp/chain-model.XXXXXX)
trap 'rm -rf "$w"' EXIT
gcc -O2 -pthread -o "$w/chain-model" "$(dirname "$0")/chain-model.c"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
echo "chain-model: $snapshots snapshot(s), $writers writers, $count first writes of 4 KiB; load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${STORE:-0}" = 1 ]; then
  dotnet "$repo/tools/journal-bench/bin/Release/net10.0/journal-bench.dll" cow --snapshots "$snapshots" \
    --writers "$writers" --count "$count" | grep -A3 '^snapshots  writers'
fi
for pass in $(seq 1 "$passes"); do
  d="$w/d"; rm -rf "$d"; mkdir -p "$d"
  head -c $((156 << 20)) /dev/urandom > "$d/origin.img"
  for f in $(seq 0 $((snapshots - 1))); do dd if=/dev/zero of="$d/cow$f.img" bs=1M count=80 status=none; done
  dd if=/dev/zero of="$d/log.img" bs=1M count=64 status=none
  for m in $modes; do
    drop
    "$w/chain-model" "$d" "$count" "$writers" 156 "$m" "$snapshots"
  done
  # qemu-img bench as journal-bench cow runs it: a fresh overlay with 4 KiB clusters over a raw base of random data.
  head -c $((156 << 20)) /dev/urandom > "$d/base.raw"
  qemu-img create -q -f qcow2 -o cluster_size=4096 -b "$d/base.raw" -F raw "$d/top.qcow2"
  drop
  start=$(date +%s.%N)
  qemu-img bench -w -t none -d 16 -s 4096 -S 4096 -c "$count" -f qcow2 "$d/top.qcow2" > /dev/null
  end=$(date +%s.%N)
  python3 -c "import sys; c, s = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'qcow2: {c} writes in {s:.3f} s, {c / s:.0f} writes/s')" "$count" "$start" "$end"
done
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
