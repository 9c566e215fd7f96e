#!/usr/bin/env bash
# The core benchmarks of zerofs-fuse on an S3 store (the project's single-node
# radosgw), beside the raw ceiling of the same server measured through
# zerofs-fuse's own store layer (tests/bench/s3bench: PUT and GET of
# segment-sized objects at 1, 4 and 8 threads) in the same run.  Each figure
# is reported with its ratio to the ceiling.  Not a test: it asserts nothing.
# Beside the cold read stands the ratio that a model reader reaches (s3bench
# -m): no FUSE, no cache, just the GET and the codec opening each frame into pages
# never touched before, which is what filling the page cache costs; on VMs
# that hand freed memory back to their host that first touch is dear, and
# no reader through the page cache can beat the model.
#
# The sequential figures are measured REPEAT times, each time right after the
# ceiling, and reported as medians (with the spread of the ratios: the machine
# may be shared and noisy).  The random 4 KiB workloads have no raw S3
# ceiling: they are reported beside the same workloads on the local directory
# store (same daemon, same options), measured in the same run.
#
#   tests/bench/bench-s3.sh [SIZE]     SIZE of the sequential file (default 1G)
#   env: REPEAT (default 3), RUNTIME of each random workload in s (default 20)
#
# Run from a build tree (zerofs-fuse and tests/bench/s3bench built), as root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
top=${BUILD:-$src}
ZEROFS=$top/zerofs-fuse
S3BENCH=$top/tests/bench/s3bench
SIZE=${1:-1G}
REPEAT=${REPEAT:-3}
RUNTIME=${RUNTIME:-20}
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
S3STORE="s3://$ZEROFS_S3_BUCKET/bench-$$"
STORE=$S3STORE

py() { python3 -c "$1"; }
median() { py "import statistics; print('%.${2:-1}f' % statistics.median([$1]))"; }
spread() { py "v=[$1]; print('%.2f-%.2f' % (min(v), max(v)))"; }

# The ceiling: best PUT and GET over 1, 4 and 8 threads, 8 MiB objects (the
# default segment size).  Sets best_put and best_get, and model_get: the
# best, at 4 and 8 threads, that a reader through the page cache reaches on
# this machine (s3bench -m: GET, each frame opened into never-touched memory).
ceiling()
{
	local th out p g m
	best_put=0
	best_get=0
	model_get=0
	for th in 1 4 8; do
		out=$("$S3BENCH" -c "$work/s3.conf" -s "s3://$ZEROFS_S3_BUCKET/ceiling-$$" -n 48 \
			-b 8388608 -t "$th" $([ "$th" != 1 ] && echo -m))
		echo "$out"
		p=$(awk '/^put:/ { print $(NF-1) }' <<<"$out")
		g=$(awk '/^get:/ { print $(NF-1) }' <<<"$out")
		m=$(awk '/^mget:/ { print $(NF-1) }' <<<"$out")
		best_put=$(py "print(max($best_put, $p))")
		best_get=$(py "print(max($best_get, $g))")
		model_get=$(py "print(max($model_get, ${m:-0}))")
	done
}

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
# A cold mount: nothing cached in the daemon (its cache directory removed)
# nor in the kernel.
cold_mount()
{
	rm -rf "$work/cache"
	mount_zerofs
	sync
	echo 3 >/proc/sys/vm/drop_caches
}
stat_of() { awk -v k="$1" '$1 == k { print $2 }' "$work/mnt/.zerofs-stats"; }
fio_json() { DIR="$work/mnt" SIZE="$SIZE" RUNTIME="$RUNTIME" fio --output-format=json "$here/fio/$1.fio"; }
fio_bw() { fio_json "$1" | py 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%.1f" % ((j["write"]["bw_bytes"] + j["read"]["bw_bytes"]) / 1048576))'; }
fio_iops() { fio_json "$1" | py 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%.0f" % (j["write"]["iops"] + j["read"]["iops"]))'; }

# ---- sequential, REPEAT times, each beside its ceiling ----
puts=() gets=()
wr=() rr=() wratio=() rratio=() mratio=() puts_gib=()
gib=$(py "print($(numfmt --from=iec "$SIZE") / 2**30)")
for i in $(seq "$REPEAT"); do
	ceiling
	STORE="$S3STORE-$i"
	mount_zerofs
	puts0=$(stat_of store_puts)
	t0=$(date +%s.%N)
	fio_json seqwrite >/dev/null
	t1=$(date +%s.%N)
	puts1=$(stat_of store_puts)
	w=$(py "print('%.1f' % ($(numfmt --from=iec "$SIZE") / 1048576 / ($t1 - $t0)))")
	umount_zerofs
	cold_mount
	r=$(fio_bw seqread)
	umount_zerofs
	echo "round $i: ceiling put $best_put get $best_get; zerofs write $w read $r"
	wr+=("$w") rr+=("$r")
	wratio+=("$(py "print($w / $best_put)")")
	rratio+=("$(py "print($r / $best_get)")")
	mratio+=("$(py "print($model_get / $best_get)")")
	puts_gib+=("$(py "print(($puts1 - $puts0) / $gib)")")
	puts+=("$best_put") gets+=("$best_get")
done
csv() { local IFS=,; echo "$*"; }

# ---- random 4 KiB: S3, then the local directory store ----
declare -A R
random_suite()
{
	local name="$1"
	mount_zerofs
	fio_json randprep >/dev/null
	umount_zerofs
	cold_mount
	R[$name.randread_cold]=$(fio_iops randread)
	# Hot: the whole file read once, so every block is in the daemon's
	# cache (the jobs use O_DIRECT: the kernel's page cache plays no part).
	cat "$work/mnt/rand256m" >/dev/null
	R[$name.randread_hot]=$(fio_iops randread)
	R[$name.randwrite]=$(fio_iops randwrite)
	R[$name.gets]=$(stat_of store_gets)
	R[$name.mib_in]=$(py "print('%.0f' % ($(stat_of store_bytes_in) / 1048576))")
	umount_zerofs
}
STORE="$S3STORE-rand"
random_suite s3
STORE="$work/store"
random_suite local

STORE="$S3STORE-meta"
mount_zerofs
mkdir "$work/mnt/meta"
read -r _ create _ stat _ unlink < <("$work/metabench" "$work/mnt/meta" 10000)
umount_zerofs

echo
echo "S3: radosgw; $REPEAT rounds: medians, and the spread of the ratios over the rounds"
printf '%-34s %12s %12s %8s %12s\n' "workload" "zerofs-fuse" "ceiling" "ratio" "ratio range"
printf '%-34s %12s %12s %8s %12s\n' "seq write, durable (MiB/s)" "$(median "$(csv "${wr[@]}")")" \
	"$(median "$(csv "${puts[@]}")")" "$(median "$(csv "${wratio[@]}")" 2)" "$(spread "$(csv "${wratio[@]}")")"
printf '%-34s %12s %12s %8s %12s\n' "cold seq read (MiB/s)" "$(median "$(csv "${rr[@]}")")" \
	"$(median "$(csv "${gets[@]}")")" "$(median "$(csv "${rratio[@]}")" 2)" "$(spread "$(csv "${rratio[@]}")")"
printf '%-34s %12s %12s %8s %12s\n' "  bound: page-cache reader model" "$(median "$(csv "${mratio[@]}")" 2)" \
	"" "" "$(spread "$(csv "${mratio[@]}")")"
printf '%-34s %12s\n' "PUT requests per GiB written" "$(median "$(csv "${puts_gib[@]}")" 0)"
echo
echo "random 4 KiB, libaio iodepth 16, ${RUNTIME}s each (ratio: S3 / local directory store)"
printf '%-34s %12s %12s %8s\n' "workload" "S3" "local dir" "ratio"
for k in randread_cold randread_hot randwrite; do
	printf '%-34s %12s %12s %8s\n' "$k (IOPS)" "${R[s3.$k]}" "${R[local.$k]}" \
		"$(py "print('%.2f' % (${R[s3.$k]} / max(${R[local.$k]}, 1e-9)))")"
done
printf '%-34s %12s\n' "S3 GETs in the random suite" "${R[s3.gets]}"
printf '%-34s %12s\n' "MiB read from S3 in it" "${R[s3.mib_in]}"
echo
printf '%-34s %12s\n' "create (ops/s)" "$create"
printf '%-34s %12s\n' "stat (ops/s)" "$stat"
printf '%-34s %12s\n' "unlink (ops/s)" "$unlink"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
