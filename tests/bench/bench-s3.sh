#!/usr/bin/env bash
# The core benchmarks of zerofs-fuse on an S3 store (the project's single-node
# radosgw), beside the raw ceiling of the same server measured through
# zerofs-fuse's own store layer (tests/bench/s3bench: PUT and GET of
# segment-sized objects at 1, 4 and 8 threads) in the same run.  Each figure
# is reported with its ratio to the ceiling.  Not a test: it asserts nothing.
#
#   tests/bench/bench-s3.sh [SIZE]     SIZE of the sequential file (default 1G)
#
# Run from a build tree (zerofs-fuse and tests/bench/s3bench built), as root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
top=${BUILD:-$src}
ZEROFS=$top/zerofs-fuse
S3BENCH=$top/tests/bench/s3bench
SIZE=${1:-1G}
export ZEROFS_PASSWORD=bench
command -v fio >/dev/null || { echo "fio is needed" >&2; exit 1; }
[ -x "$ZEROFS" ] && [ -x "$S3BENCH" ] || { echo "build zerofs-fuse and tests/bench/s3bench first" >&2; exit 1; }

work=$(mktemp -d /var/tmp/zerofs-bench-s3.XXXXXX)
pid=
started=
cleanup()
{
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	mountpoint -q "$work/mnt" && fusermount3 -uz "$work/mnt"
	[ -n "$started" ] && "$src/tests/s3/radosgw.sh" stop >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT
if ! env=$("$src/tests/s3/radosgw.sh" env 2>/dev/null); then
	env=$("$src/tests/s3/radosgw.sh" start)
	started=1
fi
eval "$env"
cat >"$work/s3.conf" <<EOC
s3_endpoint = "$ZEROFS_S3_ENDPOINT";
s3_path_style = true;
s3_access_key = "$ZEROFS_S3_ACCESS_KEY";
s3_secret_key = "$ZEROFS_S3_SECRET_KEY";
EOC
chmod 600 "$work/s3.conf"
gcc -O2 -o "$work/metabench" "$here/metabench.c"
STORE="s3://$ZEROFS_S3_BUCKET/bench-$$"

# The ceiling: best PUT and GET over 1, 4 and 8 threads, 8 MiB objects (the
# default segment size).
best_put=0
best_get=0
for th in 1 4 8; do
	out=$("$S3BENCH" -c "$work/s3.conf" -s "s3://$ZEROFS_S3_BUCKET/ceiling-$$" -n 48 \
		-b 8388608 -t "$th")
	echo "$out"
	p=$(awk '/^put:/ { print $(NF-1) }' <<<"$out")
	g=$(awk '/^get:/ { print $(NF-1) }' <<<"$out")
	best_put=$(python3 -c "print(max($best_put, $p))")
	best_get=$(python3 -c "print(max($best_get, $g))")
done

mount_zerofs()
{
	mkdir -p "$work/mnt"
	"$ZEROFS" -f -c "$work/s3.conf" -o "store=$STORE,cache_dir=$work/cache,kdf=min,nbd_listen=" \
		"$work/mnt" >>"$work/zerofs.log" 2>&1 &
	pid=$!
	for _ in $(seq 200); do mountpoint -q "$work/mnt" && return 0; sleep 0.1; done
	cat "$work/zerofs.log" >&2
	exit 1
}
umount_zerofs()
{
	fusermount3 -u "$work/mnt"
	wait "$pid"
	pid=
}

mount_zerofs
puts0=$(awk '$1 == "store_puts" { print $2 }' "$work/mnt/.zerofs-stats")
t0=$(date +%s.%N)
DIR="$work/mnt" SIZE="$SIZE" fio --output-format=terse "$here/fio/seqwrite.fio" >/dev/null
t1=$(date +%s.%N)
puts1=$(awk '$1 == "store_puts" { print $2 }' "$work/mnt/.zerofs-stats")
seqwrite=$(python3 -c "print('%.1f' % ($(numfmt --from=iec "$SIZE") / 1048576 / ($t1 - $t0)))")
umount_zerofs
rm -rf "$work/cache"
mount_zerofs
sync
echo 3 >/proc/sys/vm/drop_caches
seqread=$(DIR="$work/mnt" SIZE="$SIZE" fio --output-format=json "$here/fio/seqread.fio" |
	python3 -c 'import json,sys; print("%.1f" % (json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"] / 1048576))')
mkdir "$work/mnt/meta"
read -r _ create _ stat _ unlink < <("$work/metabench" "$work/mnt/meta" 10000)
umount_zerofs

gib=$(python3 -c "print($(numfmt --from=iec "$SIZE") / 2**30)")
printf '\n%-34s %12s %12s %8s\n' "workload (S3: radosgw)" "zerofs-fuse" "ceiling" "ratio"
printf '%-34s %12s %12s %8s\n' "seq write, durable (MiB/s)" "$seqwrite" "$best_put" \
	"$(python3 -c "print('%.2f' % ($seqwrite / $best_put))")"
printf '%-34s %12s %12s %8s\n' "cold seq read (MiB/s)" "$seqread" "$best_get" \
	"$(python3 -c "print('%.2f' % ($seqread / $best_get))")"
printf '%-34s %12s\n' "create (ops/s)" "$create"
printf '%-34s %12s\n' "stat (ops/s)" "$stat"
printf '%-34s %12s\n' "unlink (ops/s)" "$unlink"
printf '%-34s %12s\n' "PUT requests per GiB written" \
	"$(python3 -c "print('%.0f' % (($puts1 - $puts0) / $gib))")"
