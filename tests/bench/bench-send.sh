#!/usr/bin/env bash
# tests/bench/bench-send.sh [SIZE_MIB]: incremental send/receive against a
# full copy.  A data directory of SIZE_MIB (default 2048) of incompressible
# files (8 MiB each) on a directory store; snapshot s1; about 1% of it
# rewritten in place (640 KiB in each of SIZE/64 files, like a database's
# scattered page writes); snapshot s2.  Measured: the full stream of s1 and
# the incremental stream s1 -> s2 (bytes, send seconds, receive seconds into
# a second store), printed with their ratios (incremental / full).
# Run as root from a built tree (make), on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
Z=$(pwd)/zerofs-fuse
[ -x "$Z" ] || { echo "build zerofs-fuse first (make)" >&2; exit 1; }
SIZE=${1:-2048}
t=$(mktemp -d /var/tmp/zerofs-bench-send.XXXXXX)
trap 'fusermount3 -uz "$t/m" 2>/dev/null; rm -rf "$t"' EXIT
export ZEROFS_PASSWORD=bench ZEROFS_STREAM_PASSWORD=bench-stream
O="kdf=min,log_level=warning,nbd_listen=,gc_interval_ms=0"
A="$O,store=$t/A,cache_dir=$t/ca"
mkdir -p "$t/m"
"$Z" -o "$A" "$t/m"
files=$((SIZE / 8))
mkdir "$t/m/data"
for ((i = 0; i < files; i++)); do
	head -c $((8 << 20)) /dev/urandom >"$t/m/data/f$i"
done
"$Z" flush "$t/m"
"$Z" snapshot create -m "$t/m" s1
# About 1%: 640 KiB rewritten in every eighth file.
changed=0
for ((i = 0; i < files; i += 8)); do
	dd if=/dev/urandom of="$t/m/data/f$i" bs=64K count=10 seek=$((RANDOM % 100)) \
		conv=notrunc status=none
	changed=$((changed + 640 * 1024))
done
"$Z" flush "$t/m"
"$Z" snapshot create -m "$t/m" s2
fusermount3 -u "$t/m"
sleep 1

now() { date +%s.%N; }
S="$O,store=$t/A,cache_dir=$t/cs"
B="$O,store=$t/B,cache_dir=$t/cb"
"$Z" mkfs -o "$B" 2>/dev/null
sync
t0=$(now)
"$Z" send -o "$S" s1 >"$t/full.zs" 2>/dev/null
t1=$(now)
"$Z" receive -o "$B" <"$t/full.zs" 2>/dev/null
t2=$(now)
"$Z" send -o "$S" --from s1 s2 >"$t/inc.zs" 2>/dev/null
t3=$(now)
"$Z" receive -o "$B" <"$t/inc.zs" 2>/dev/null
t4=$(now)
full=$(stat -c %s "$t/full.zs")
inc=$(stat -c %s "$t/inc.zs")
awk -v size="$SIZE" -v ch="$changed" -v full="$full" -v inc="$inc" \
	-v sf="$(echo "$t1 - $t0" | bc)" -v rf="$(echo "$t2 - $t1" | bc)" \
	-v si="$(echo "$t3 - $t2" | bc)" -v ri="$(echo "$t4 - $t3" | bc)" 'BEGIN {
	printf "data directory %d MiB, changed %.1f MiB (%.2f%%)\n", size, ch / 1048576, ch / 10485.76 / size
	printf "%-12s %14s %10s %12s\n", "stream", "bytes", "send s", "receive s"
	printf "%-12s %14.0f %10.2f %12.2f\n", "full s1", full, sf, rf
	printf "%-12s %14.0f %10.2f %12.2f\n", "s1 -> s2", inc, si, ri
	printf "ratio incremental/full: size %.4f, send time %.4f, receive time %.4f\n",
		inc / full, si / sf, ri / rf
}'
