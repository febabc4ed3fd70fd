#!/bin/bash
# A 1 MiB sequential writer and a 4 KiB random writer at once, through NBD, for 10 s, on first writes with one
# snapshot; or the same against qemu-nbd on a qcow2 overlay (4 KiB clusters) of a raw base.
#
#   mixed-nbd.sh store [repo]   snapctl serve (built with `dotnet build -c Release` in repo, default: this checkout)
#                               on a new store: 3 GiB origin filled through NBD, 4 KiB chunks, one snapshot
#   mixed-nbd.sh qcow2          qemu-nbd -t -e 8 --cache=writeback --aio=threads on a qcow2 overlay of a filled 3 GiB raw base
#
# fio's nbd engine, one connection per job: "seq" writes 1 MiB requests at iodepth 4 from offset 0 (2 GiB),
# "rand" 4 KiB random writes at iodepth 16 in the third GiB. Page cache dropped before the timed part.
# SERVE_ARGS adds options to snapctl serve (e.g. --defer-writes). Needs root (drop_caches), fio, qemu-utils.
set -e
mode=${1:?store or qcow2}
repo=${2:-$(cd "$(dirname "$0")/../../.." && pwd)}
w=$(mktemp -d /tmp/mixed-nbd.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill -TERM $pid 2>/dev/null && wait $pid 2>/dev/null; rm -rf "$w"' EXIT
if [ "$mode" = store ]; then
  snap="dotnet $repo/tools/snapctl/bin/Release/net10.0/snapctl.dll"
  $snap init "$w/store" --origin-size 3G --chunk-size 4K --log-size 64M >/dev/null
  $snap serve "$w/store" --socket "$w/s.sock" $SERVE_ARGS >"$w/serve.out" 2>"$w/serve.log" </dev/null & pid=$!
  for i in $(seq 1 100); do [ -S "$w/s.sock" ] && break; sleep 0.2; done
  uri="nbd+unix:///origin?socket=$w/s.sock"
  fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size=3G --output=/dev/null
  $snap snapshot create "$w/store" s >/dev/null
elif [ "$mode" = qcow2 ]; then
  fio --name=fill --filename="$w/base.raw" --rw=write --bs=1M --iodepth=8 --size=3G --ioengine=libaio --direct=1 --output=/dev/null
  qemu-img create -q -f qcow2 -o cluster_size=4096 -b "$w/base.raw" -F raw "$w/top.qcow2"
  qemu-nbd -k "$w/s.sock" -f qcow2 -t -e 8 --cache=writeback --aio=threads "$w/top.qcow2" & pid=$!
  for i in $(seq 1 100); do [ -S "$w/s.sock" ] && break; sleep 0.2; done
  uri="nbd+unix:///?socket=$w/s.sock"
else
  echo "mixed-nbd.sh: unknown mode '$mode' (use store or qcow2)" >&2; exit 2
fi
sync; echo 3 > /proc/sys/vm/drop_caches
fio --ioengine=nbd --uri="$uri" --runtime=10 --time_based --group_reporting=0 --output-format=json \
  --name=seq --rw=write --bs=1M --iodepth=4 --offset=0 --size=2G \
  --name=rand --rw=randwrite --bs=4k --iodepth=16 --offset=2G --size=1G > "$w/fio.json" 2>"$w/fio.err" || { cat "$w/fio.err" >&2; exit 1; }
echo "$mode ${SERVE_ARGS:-} load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$w/fio.json" <<'P'
import json, sys
s = open(sys.argv[1]).read()
j = json.loads(s[s.index('{'):])  # fio's nbd engine prints a line before the JSON
for job in j['jobs']:
    wr = job['write']; p = wr['clat_ns']['percentile']
    print(f"{job['jobname']:5} {wr['bw']/1024:8.1f} MiB/s {wr['iops']:9.0f} IOPS  p50 {p['50.000000']/1000:8.0f} us  p99 {p['99.000000']/1000:8.0f} us")
P
