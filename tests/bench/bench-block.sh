#!/usr/bin/env bash
# Block-device benchmarks of zerofs-fuse, each figure with its ratio to the
# same workload on local disk measured in the same run.  Not a test: it
# asserts nothing about speed; it prints the issue's targets beside the
# figures.
#
# Three stacks, ext4 on top of each:
#   local  ext4 on a loop device (--direct-io=on) over a file on local disk
#          (the work directory, /var/tmp)
#   fuse   ext4 on a loop device (--direct-io=on) over a device file in the
#          zerofs-fuse mount
#   nbd    ext4 on a loop device over the file nbdfuse makes of the NBD
#          export of the same mount (nbdfuse -C 4: four connections)
# fio on each (tests/bench/fio/*.fio): sequential 1 MiB write of SIZE timed
# with its final fsync, sequential 1 MiB read of it after ext4 was remounted
# and the page cache dropped (zerofs-fuse's own caches stay warm), 4 KiB
# random read (libaio, iodepth 16, O_DIRECT) and 4 KiB random write (iodepth
# 16, fsync every 64 writes) on a 256 MiB file.  Then PostgreSQL on the local
# and fuse stacks (the data directory on that ext4): pgbench -i -s SCALE,
# select-only and TPC-B (synchronous_commit=on, the default) runs of RUNTIME
# seconds with 8 clients.  Last, a device file alone (no filesystem, no
# nbdfuse): SIZE bytes written (durable at the end) and read back with 1 MiB
# requests through FUSE (dd) and through NBD (nbdcopy -C 4).
#
#   tests/bench/bench-block.sh
#
# Environment: SIZE (sequential size, default 512M), RUNTIME (seconds of
# each time-based run, default 15), SCALE (pgbench scale, default 10),
# STORE (the zerofs-fuse store, default a local directory store in the work
# directory), ZEROFS_CONFIG (a config file for it, e.g. S3 settings), BUILD
# (build tree, default the source tree).  Needs root, fio, nbdfuse, losetup,
# mkfs.ext4, python3, and the Debian postgresql package for pgbench.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
top=${BUILD:-$src}
ZEROFS=$top/zerofs-fuse
SIZE=${SIZE:-512M}
RUNTIME=${RUNTIME:-15}
SCALE=${SCALE:-10}
export ZEROFS_PASSWORD=${ZEROFS_PASSWORD:-bench}
for c in fio nbdfuse losetup mkfs.ext4 python3; do
	command -v "$c" >/dev/null || { echo "$c is needed" >&2; exit 1; }
done
[ -x "$ZEROFS" ] || { echo "build zerofs-fuse first ($ZEROFS)" >&2; exit 1; }
PGBIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PGBIN" ] || ! id postgres >/dev/null 2>&1; then
	echo "bench-block: no PostgreSQL server (package postgresql): pgbench figures skipped" >&2
	PGBIN=
fi

work=$(mktemp -d /var/tmp/zerofs-bench-block.XXXXXX)
chmod 755 "$work"
STORE=${STORE:-$work/store}
M=$work/mnt
NF=$work/nbdfuse
IN=$work/ext4
mkdir -p "$M" "$NF" "$IN" "$work/run"
chown postgres: "$work/run" 2>/dev/null || PGBIN=
pid=
nbdfuse_pid=
loop=
cleanup()
{
	set +e
	if [ -n "$PGBIN" ] && [ -f "$IN/pgdata/postmaster.pid" ]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$IN/pgdata" -m immediate stop >/dev/null 2>&1
	fi
	mountpoint -q "$IN" && umount_retry "$IN"
	[ -n "$loop" ] && losetup -d "$loop"
	if [ -n "$nbdfuse_pid" ]; then
		fusermount3 -u "$NF" 2>/dev/null
		wait "$nbdfuse_pid" 2>/dev/null
	fi
	if [ -n "$pid" ]; then
		fusermount3 -u "$M" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	mountpoint -q "$M" && fusermount3 -uz "$M"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "bench-block: failed at line $LINENO" >&2' ERR

# umount, retried: a server's last processes may hold it for a moment.
umount_retry()
{
	local i
	for ((i = 0; i < 50; i++)); do
		umount "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	umount "$1"
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$ZEROFS" -f ${ZEROFS_CONFIG:+-c "$ZEROFS_CONFIG"} \
	-o "store=$STORE,cache_dir=$work/cache,kdf=min,nbd_listen=127.0.0.1:$port" "$M" \
	>>"$work/zerofs.log" 2>&1 &
pid=$!
for _ in $(seq 200); do mountpoint -q "$M" && break; sleep 0.1; done
mountpoint -q "$M" || { cat "$work/zerofs.log" >&2; echo "mount failed" >&2; exit 1; }

fio_json() { DIR="$IN" SIZE="$SIZE" RUNTIME="$RUNTIME" fio --output-format=json "$here/fio/$1.fio"; }
fio_bw()
{
	fio_json "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%.1f" % ((j["write"]["bw_bytes"] + j["read"]["bw_bytes"]) / 1048576))'
}
fio_iops()
{
	fio_json "$1" | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%.0f" % (j["write"]["iops"] + j["read"]["iops"]))'
}
seq_write()
{
	local t0 t1
	t0=$(date +%s.%N)
	fio_json seqwrite >/dev/null
	t1=$(date +%s.%N)
	python3 -c "print('%.1f' % ($(numfmt --from=iec "$SIZE") / 1048576 / ($t1 - $t0)))"
}
remount_ext4()
{
	umount_retry "$IN"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	mount -o noatime "$loop" "$IN"
}

# The pgbench figure of a run: its tps (without the connection time).
pg_tps() { sed -n 's/^tps = \([0-9]*\)\.[0-9]* (without initial connection time)$/\1/p'; }
as_pg() { runuser -u postgres -- "$@"; }
pgbench_suite()
{
	local name=$1 out
	[ -n "$PGBIN" ] || return 0
	mkdir "$IN/pgdata"
	chown postgres: "$IN/pgdata"
	as_pg "$PGBIN/initdb" -D "$IN/pgdata" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
	touch "$work/pg-$name.log"
	chown postgres: "$work/pg-$name.log"
	as_pg "$PGBIN/pg_ctl" -D "$IN/pgdata" -l "$work/pg-$name.log" -w \
		-o "-p 5439 -c listen_addresses= -c unix_socket_directories=$work/run -c shared_buffers=512MB" \
		start >/dev/null
	export PGHOST=$work/run PGPORT=5439 PGUSER=postgres
	as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" postgres >/dev/null 2>&1
	as_pg "$PGBIN/psql" -X -q -c checkpoint postgres
	# Warm the cache once, then measure.
	as_pg "$PGBIN/pgbench" -n -S -c 8 -j 2 -T 3 postgres >/dev/null
	out=$(as_pg "$PGBIN/pgbench" -n -S -c 8 -j 2 -T "$RUNTIME" postgres)
	R[$name.pg_select]=$(pg_tps <<<"$out")
	out=$(as_pg "$PGBIN/pgbench" -n -c 8 -j 2 -T "$RUNTIME" postgres)
	R[$name.pg_tpcb]=$(pg_tps <<<"$out")
	as_pg "$PGBIN/pg_ctl" -D "$IN/pgdata" -m fast -w stop >/dev/null
}

declare -A R
# suite NAME FILE [DIO]: ext4 on a loop device over FILE, fio, then pgbench.
suite()
{
	local name=$1 file=$2 dio=${3:-on}
	echo "bench-block: $name: ext4 on a loop device over $file (direct-io=$dio)" >&2
	loop=$(losetup -f --show --direct-io="$dio" "$file")
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$loop"
	mount -o noatime "$loop" "$IN"
	fio_json randprep >/dev/null
	R[$name.seqwrite]=$(seq_write)
	remount_ext4
	R[$name.seqread]=$(fio_bw seqread)
	rm -f "$IN/seq"
	R[$name.randread]=$(fio_iops randread)
	R[$name.randwrite]=$(fio_iops randwrite)
	rm -f "$IN/rand256m"
	[ "$name" = nbd ] || pgbench_suite "$name"
	umount_retry "$IN"
	losetup -d "$loop"
	loop=
}

disk_size=$(($(numfmt --from=iec "$SIZE") + (3 << 30)))
truncate -s "$disk_size" "$work/local.img"
suite local "$work/local.img"

"$ZEROFS" device create -m "$M" fuse.img "$disk_size" >/dev/null
suite fuse "$M/.nbd/fuse.img"

"$ZEROFS" device create -m "$M" nbd.img "$disk_size" >/dev/null
nbdfuse -C 4 -P "$work/nbdfuse.pid" "$NF/nbd.img" "nbd://127.0.0.1:$port/nbd.img" \
	>"$work/nbdfuse.log" 2>&1 &
nbdfuse_pid=$!
for _ in $(seq 100); do [ -s "$work/nbdfuse.pid" ] && break; sleep 0.1; done
# nbdfuse's file may refuse O_DIRECT: then the loop device caches.
if losetup -f --show --direct-io=on "$NF/nbd.img" >"$work/probe" 2>/dev/null &&
	[ "$(cat "/sys/block/$(basename "$(cat "$work/probe")")/loop/dio")" = 1 ]; then
	losetup -d "$(cat "$work/probe")"
	nbd_dio=on
else
	[ -s "$work/probe" ] && losetup -d "$(cat "$work/probe")"
	nbd_dio=off
fi
suite nbd "$NF/nbd.img" "$nbd_dio"
fusermount3 -u "$NF"
wait "$nbdfuse_pid"
nbdfuse_pid=

# The two paths to a device file alone, no filesystem and no nbdfuse on top:
# SIZE bytes of random data written (durable at the end) and read back with
# 1 MiB requests, through the FUSE file (dd, O_DIRECT for the read) and
# through the NBD export (nbdcopy, 4 connections, --flush).
timed()
{
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>>"$work/raw.log" || return 1
	t1=$(date +%s.%N)
	python3 -c "print('%.1f' % ($(numfmt --from=iec "$SIZE") / 1048576 / ($t1 - $t0)))"
}
head -c "$(numfmt --from=iec "$SIZE")" /dev/urandom >"$work/src.bin"
"$ZEROFS" device create -m "$M" rawf.img "$SIZE" >/dev/null
"$ZEROFS" device create -m "$M" rawn.img "$SIZE" >/dev/null
R[raw.fuse_write]=$(timed dd if="$work/src.bin" of="$M/.nbd/rawf.img" bs=1M conv=fsync,notrunc)
R[raw.nbd_write]=$(timed nbdcopy -C 4 --flush "$work/src.bin" "nbd://127.0.0.1:$port/rawn.img")
sync
echo 3 >/proc/sys/vm/drop_caches
R[raw.fuse_read]=$(timed dd if="$M/.nbd/rawf.img" of=/dev/null bs=1M iflag=direct)
R[raw.nbd_read]=$(timed nbdcopy -C 4 "nbd://127.0.0.1:$port/rawn.img" null:)

ratio() { python3 -c "print('%.2f' % ($1 / max($2, 1e-9)))"; }
printf '\n%-30s %10s %10s %6s %10s %6s\n' workload local fuse ratio nbd ratio
for k in seqwrite:MiB/s seqread:MiB/s randread:IOPS randwrite:IOPS pg_select:tps pg_tpcb:tps; do
	w=${k%%:*}
	u=${k#*:}
	[ -n "${R[local.$w]:-}" ] || continue
	l=${R[local.$w]}
	f=${R[fuse.$w]:-}
	n=${R[nbd.$w]:-}
	printf '%-30s %10s %10s %6s %10s %6s\n' "$w ($u)" "$l" "$f" "$(ratio "$f" "$l")" \
		"${n:--}" "$([ -n "$n" ] && ratio "$n" "$l" || echo -)"
done
echo
printf '%-30s %10s %10s %6s\n' "device file alone, 1 MiB" fuse nbd ratio
for w in write read; do
	printf '%-30s %10s %10s %6s\n' "seq $w (MiB/s)" "${R[raw.fuse_$w]}" "${R[raw.nbd_$w]}" \
		"$(ratio "${R[raw.nbd_$w]}" "${R[raw.fuse_$w]}")"
done
echo "NBD (nbdcopy -C 4) / FUSE (dd) on a device file: write" \
	"$(ratio "${R[raw.nbd_write]}" "${R[raw.fuse_write]}"), read" \
	"$(ratio "${R[raw.nbd_read]}" "${R[raw.fuse_read]}") (target >= 1)"
echo "NBD (nbdfuse -C 4, loop direct-io=$nbd_dio) / FUSE loop: seqwrite" \
	"$(ratio "${R[nbd.seqwrite]}" "${R[fuse.seqwrite]}")," \
	"seqread $(ratio "${R[nbd.seqread]}" "${R[fuse.seqread]}") (target >= 1)"
if [ -n "${R[local.pg_select]:-}" ]; then
	echo "pgbench select-only: $(ratio "${R[fuse.pg_select]}" "${R[local.pg_select]}") of local (target >= 0.9)"
	echo "pgbench TPC-B, synchronous_commit=on: $(ratio "${R[fuse.pg_tpcb]}" "${R[local.pg_tpcb]}") of local (target >= 0.5)"
fi
echo "SIZE=$SIZE RUNTIME=${RUNTIME}s SCALE=$SCALE store=$STORE; one run on a shared machine: noisy"
