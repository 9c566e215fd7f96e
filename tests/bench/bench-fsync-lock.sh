#!/usr/bin/env bash
# How much a flush holds up the other writes to the same file: 8 KiB
# O_DIRECT random writes to one file (fio, one job, psync), RUNTIME seconds
# alone, then as long again beside a second job that writes 4 KiB and
# fsyncs the same file in a loop.  Once on a device file in a zerofs-fuse
# mount, once on a file in the work directory (local disk).  Not a test:
# it asserts nothing about speed.  The kernel keeps a FUSE file's inode
# lock for the whole fsync and a write takes the same lock, so on the
# device file the writer waits for each barrier.
#
#   tests/bench/bench-fsync-lock.sh
#
# Environment: RUNTIME (seconds of each run, default 8), BUILD (build tree,
# default the source tree).  Needs root, fio and python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=${BUILD:-$(cd "$here/../.." && pwd)}
ZEROFS=$top/zerofs-fuse
RUNTIME=${RUNTIME:-8}
export ZEROFS_PASSWORD=${ZEROFS_PASSWORD:-bench}
for c in fio python3; do
	command -v "$c" >/dev/null || { echo "$c is needed" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/zerofs-bench-fsync-lock.XXXXXX)
M=$work/mnt
pid=
cleanup()
{
	if [ -n "$pid" ]; then
		fusermount3 -u "$M" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# probe FILE: "writes/s alone | writes/s, mean and p99 latency, fsyncs/s
# with the fsync job".
probe()
{
	local f=$1 w=(--name=w --rw=randwrite --bs=8k --size=256M --direct=1 --ioengine=psync
		--time_based --runtime="$RUNTIME")
	local alone with
	alone=$(fio --output-format=json --filename="$f" "${w[@]}" | python3 -c '
import json, sys
print("%d" % json.load(sys.stdin)["jobs"][0]["write"]["iops"])')
	with=$(fio --output-format=json --filename="$f" "${w[@]}" \
		--name=s --filename="$f" --rw=write --bs=4k --size=4k --offset=512M --direct=1 \
		--fsync=1 --time_based --runtime="$RUNTIME" | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"]
w, s = j[0]["write"], j[1]
print("%d writes/s, mean %d us, p99 %d us; %d fsyncs/s" % (w["iops"],
      w["clat_ns"]["mean"] / 1000, w["clat_ns"]["percentile"]["99.000000"] / 1000,
      s["sync"]["total_ios"] / (s["job_runtime"] / 1000)))')
	echo "$alone writes/s alone | with the fsync job: $with"
}

mkdir -p "$M"
"$ZEROFS" -f -o "store=$work/store,cache_dir=$work/cache,kdf=min" "$M" >>"$work/zerofs.log" 2>&1 &
pid=$!
for _ in $(seq 200); do mountpoint -q "$M" && break; sleep 0.1; done
mountpoint -q "$M" || { cat "$work/zerofs.log" >&2; echo "mount failed" >&2; exit 1; }
"$ZEROFS" device create -m "$M" lock.img 1G >/dev/null
for f in "$M/.nbd/lock.img" "$work/local.img"; do
	dd if=/dev/urandom of="$f" bs=1M count=600 oflag=direct conv=notrunc status=none
done
echo "device file in the mount: $(probe "$M/.nbd/lock.img")"
echo "file on local disk:       $(probe "$work/local.img")"
