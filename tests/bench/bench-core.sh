#!/usr/bin/env bash
# The core benchmarks of zerofs-fuse on the local directory store, beside the
# same workloads on a local ext4 directory in the same run; each figure is
# reported with its ratio to ext4.  Not a test: it asserts nothing about speed.
#
#   tests/bench/bench-core.sh [SIZE]     SIZE of the sequential file (default 1G)
#
# Needs root, fio, a built zerofs-fuse (run from the build tree).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ZEROFS=${ZEROFS:-$top/zerofs-fuse}
SIZE=${1:-1G}
RUNTIME=${RUNTIME:-20}
export ZEROFS_PASSWORD=bench
command -v fio >/dev/null || { echo "fio is needed" >&2; exit 1; }
[ -x "$ZEROFS" ] || { echo "build zerofs-fuse first ($ZEROFS)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/zerofs-bench.XXXXXX)
pid=
cleanup()
{
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	mountpoint -q "$work/mnt" && fusermount3 -uz "$work/mnt"
	rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -o "$work/metabench" "$here/metabench.c"

mount_zerofs()
{
	mkdir -p "$work/mnt"
	"$ZEROFS" -f -o "store=$work/store,cache_dir=$work/cache,kdf=min" "$work/mnt" \
		>>"$work/zerofs.log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do mountpoint -q "$work/mnt" && return 0; sleep 0.1; done
	echo "mount failed" >&2
	cat "$work/zerofs.log" >&2
	exit 1
}

umount_zerofs()
{
	fusermount3 -u "$work/mnt"
	wait "$pid"
	pid=
}

# fio_bw JOB DIR: MiB/s of the job; fio_iops JOB DIR: IOPS.
fio_json() { DIR="$2" SIZE="$SIZE" RUNTIME="$RUNTIME" fio --output-format=json "$here/fio/$1.fio"; }
fio_bw()
{
	fio_json "$@" | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%.1f" % ((j["write"]["bw_bytes"] + j["read"]["bw_bytes"]) / 1048576))'
}
fio_iops()
{
	fio_json "$@" | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%.0f" % (j["write"]["iops"] + j["read"]["iops"]))'
}
# Sequential write timed with its final fsync included (durable).
seq_write()
{
	local t0 t1
	t0=$(date +%s.%N)
	fio_json seqwrite "$1" >/dev/null
	t1=$(date +%s.%N)
	python3 -c "import sys; print('%.1f' % ($(numfmt --from=iec "$SIZE") / 1048576 / ($t1 - $t0)))"
}
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

declare -A R
run_suite()
{
	local name="$1" dir="$2" remount="$3"
	# Warm up memory and the code paths first.
	fio_json randprep "$dir" >/dev/null
	R[$name.seqwrite]=$(seq_write "$dir")
	$remount
	drop
	R[$name.seqread]=$(fio_bw seqread "$dir")
	rm -f "$dir/seq"
	fio_json randprep "$dir" >/dev/null
	$remount
	drop
	R[$name.randread_cold]=$(fio_iops randread "$dir")
	R[$name.randread_hot]=$(fio_iops randread "$dir")
	R[$name.randwrite]=$(fio_iops randwrite "$dir")
	rm -f "$dir/rand256m"
	mkdir -p "$dir/meta"
	read -r _ c _ s _ u < <("$work/metabench" "$dir/meta" 10000)
	R[$name.create]=$c
	R[$name.stat]=$s
	R[$name.unlink]=$u
}

nothing() { :; }
remount_zerofs() { umount_zerofs; mount_zerofs; }

mkdir -p "$work/ext4"
run_suite ext4 "$work/ext4" nothing
mount_zerofs
run_suite zerofs "$work/mnt" remount_zerofs
umount_zerofs

printf '\n%-22s %12s %12s %8s\n' "workload" "ext4" "zerofs-fuse" "ratio"
for k in seqwrite:MiB/s seqread:MiB/s randread_cold:IOPS randread_hot:IOPS randwrite:IOPS \
	create:ops/s stat:ops/s unlink:ops/s; do
	w=${k%%:*}
	u=${k#*:}
	printf '%-22s %12s %12s %8s\n' "$w ($u)" "${R[ext4.$w]}" "${R[zerofs.$w]}" \
		"$(python3 -c "print('%.2f' % (${R[zerofs.$w]} / max(${R[ext4.$w]}, 1e-9)))")"
done
echo "store: $(du -sh "$work/store" | cut -f1) after the run (local directory store)"
