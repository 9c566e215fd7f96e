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
# and fuse stacks side by side (each data directory on an ext4 of its own,
# two servers): pgbench -i -s SCALE, then PG_ROUNDS rounds that alternate
# the stacks, each a select-only and a TPC-B (synchronous_commit=on, the
# default) run of RUNTIME seconds with 8 clients, each run started once the
# daemon is idle and the page cache synced; the ratios are taken within
# each round and reported as medians with their range (this machine's
# speed drifts by a third from one minute to the next).  Last, a device file
# alone (no filesystem): SIZE bytes written (durable at the end) through
# FUSE (dd) and through NBD (nbdcopy -C 4), and one file read back through
# FUSE (dd), NBD (nbdcopy -C 4) and nbdfuse (dd).
#
# The NBD-against-FUSE targets are judged on SEQ_ROUNDS rounds that
# alternate which path goes first (the fio sequential pair on a fresh ext4
# of each stack, then the device file alone): the ratios are taken within
# each round and reported as medians with their range.
#
#   tests/bench/bench-block.sh
#
# Environment: SIZE (sequential size, default 512M), RUNTIME (seconds of
# each time-based run, default 15), SCALE (pgbench scale, default 10),
# PG_ROUNDS (pgbench rounds, default 5), SEQ_ROUNDS (rounds of the NBD and
# FUSE sequential comparison, default 4: as many rounds with each path
# first),
# CACHE (the mount's cache_size, default 256M as the daemon's),
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
PG_ROUNDS=${PG_ROUNDS:-5}
SEQ_ROUNDS=${SEQ_ROUNDS:-4}
CACHE=${CACHE:-256M}
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
declare -A PGLOOP
cleanup()
{
	set +e
	local n
	for n in "${!PGLOOP[@]}"; do
		if [ -f "$work/pg-$n/pgdata/postmaster.pid" ]; then
			runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg-$n/pgdata" \
				-m immediate stop >/dev/null 2>&1
		fi
		mountpoint -q "$work/pg-$n" && umount_retry "$work/pg-$n"
		losetup -d "${PGLOOP[$n]}"
	done
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

# nbdfuse_on NAME: nbdfuse's file $NF/NAME of the export NAME (4
# connections), once nbdfuse is ready; nbdfuse_off unmounts it.
nbdfuse_on()
{
	rm -f "$work/nbdfuse.pid"
	nbdfuse -C 4 -P "$work/nbdfuse.pid" "$NF/$1" "nbd://127.0.0.1:$port/$1" \
		>>"$work/nbdfuse.log" 2>&1 &
	nbdfuse_pid=$!
	for _ in $(seq 100); do [ -s "$work/nbdfuse.pid" ] && return 0; sleep 0.1; done
	cat "$work/nbdfuse.log" >&2
	echo "bench-block: nbdfuse did not start" >&2
	exit 1
}
nbdfuse_off()
{
	fusermount3 -u "$NF"
	wait "$nbdfuse_pid"
	nbdfuse_pid=
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$ZEROFS" -f ${ZEROFS_CONFIG:+-c "$ZEROFS_CONFIG"} \
	-o "store=$STORE,cache_dir=$work/cache,cache_size=$CACHE,kdf=min,nbd_listen=127.0.0.1:$port" "$M" \
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
# pg_setup NAME FILE PORT: ext4 on a loop device over FILE, a PostgreSQL
# server on it listening on PORT, pgbench's tables, the cache warmed.
pg_setup()
{
	local name=$1 file=$2 port=$3 dir=$work/pg-$1
	echo "bench-block: $name: PostgreSQL on ext4 on a loop device over $file" >&2
	PGLOOP[$name]=$(losetup -f --show --direct-io=on "$file")
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "${PGLOOP[$name]}"
	mkdir -p "$dir"
	mount -o noatime "${PGLOOP[$name]}" "$dir"
	mkdir "$dir/pgdata"
	chown postgres: "$dir/pgdata"
	as_pg "$PGBIN/initdb" -D "$dir/pgdata" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
	touch "$work/pg-$name.log"
	chown postgres: "$work/pg-$name.log"
	as_pg "$PGBIN/pg_ctl" -D "$dir/pgdata" -l "$work/pg-$name.log" -w \
		-o "-p $port -c listen_addresses= -c unix_socket_directories=$work/run -c shared_buffers=512MB" \
		start >/dev/null
	pg_on "$port" as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" postgres >/dev/null 2>&1
	pg_on "$port" as_pg "$PGBIN/psql" -X -q -c checkpoint postgres
	pg_on "$port" as_pg "$PGBIN/pgbench" -n -S -c 8 -j 2 -T 3 postgres >/dev/null
}
pg_on() { local port=$1; shift; PGHOST=$work/run PGPORT=$port PGUSER=postgres "$@"; }
daemon_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
# settle: wait (at most 60 s) until the daemon used at most 3% of a CPU in
# a second, then sync: a run does not pay for what the run before it left
# (the daemon's uploads and garbage collection after a fuse run, the page
# cache's writeback).  Prints the seconds waited.
settle()
{
	local i t0 t1
	for ((i = 0; i < 60; i++)); do
		t0=$(daemon_ticks)
		sleep 1
		t1=$(daemon_ticks)
		((t1 - t0 <= 3)) && break
	done
	sync
	echo "$i"
}
# pg_run PORT ARGS...: one pgbench run of RUNTIME seconds, once the daemon
# is idle; prints its tps.
pg_run()
{
	local port=$1 waited
	shift
	waited=$(settle)
	if ((waited > 0)); then
		echo "bench-block: waited ${waited}s for the daemon to go idle before a run" >&2
	fi
	pg_on "$port" as_pg "$PGBIN/pgbench" -n "$@" -c 8 -j 2 -T "$RUNTIME" postgres | pg_tps
}
ratio() { python3 -c "print('%.2f' % ($1 / max($2, 1e-9)))"; }
median() { python3 -c "import statistics,sys; print('%.${2:-0}f' % statistics.median([float(x) for x in sys.argv[1].split()]))" "$1"; }
spread() { python3 -c "import sys; v=[float(x) for x in sys.argv[1].split()]; print('%.2f-%.2f' % (min(v), max(v)))" "$1"; }

declare -A R
# ext4_on FILE DIO: a fresh ext4 on a loop device over FILE, mounted on IN.
ext4_on()
{
	loop=$(losetup -f --show --direct-io="$2" "$1")
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$loop"
	mount -o noatime "$loop" "$IN"
}
ext4_off()
{
	umount_retry "$IN"
	losetup -d "$loop"
	loop=
}
# seq_pair FILE DIO: "write read" MiB/s of the sequential pair on a fresh
# ext4 over FILE.
seq_pair()
{
	local w r
	ext4_on "$1" "$2"
	w=$(seq_write)
	remount_ext4
	r=$(fio_bw seqread)
	ext4_off
	echo "$w $r"
}

# suite NAME FILE [DIO]: ext4 on a loop device over FILE, fio, then pgbench.
suite()
{
	local name=$1 file=$2 dio=${3:-on}
	echo "bench-block: $name: ext4 on a loop device over $file (direct-io=$dio)" >&2
	ext4_on "$file" "$dio"
	fio_json randprep >/dev/null
	R[$name.seqwrite]=$(seq_write)
	remount_ext4
	R[$name.seqread]=$(fio_bw seqread)
	rm -f "$IN/seq"
	R[$name.randread]=$(fio_iops randread)
	R[$name.randwrite]=$(fio_iops randwrite)
	rm -f "$IN/rand256m"
	ext4_off
}

disk_size=$(($(numfmt --from=iec "$SIZE") + (3 << 30)))
truncate -s "$disk_size" "$work/local.img"
suite local "$work/local.img"

"$ZEROFS" device create -m "$M" fuse.img "$disk_size" >/dev/null
suite fuse "$M/.nbd/fuse.img"

"$ZEROFS" device create -m "$M" nbd.img "$disk_size" >/dev/null
nbdfuse_on nbd.img
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

# NBD against FUSE, sequential: rounds that alternate which goes first.
seqw_r="" seqr_r=""
for ((i = 1; i <= SEQ_ROUNDS; i++)); do
	if ((i % 2)); then
		f=$(seq_pair "$M/.nbd/fuse.img" on)
		n=$(seq_pair "$NF/nbd.img" "$nbd_dio")
	else
		n=$(seq_pair "$NF/nbd.img" "$nbd_dio")
		f=$(seq_pair "$M/.nbd/fuse.img" on)
	fi
	seqw_r+=" $(ratio "${n% *}" "${f% *}")" seqr_r+=" $(ratio "${n#* }" "${f#* }")"
	echo "bench-block: sequential round $i: write fuse ${f% *} nbd ${n% *}," \
		"read fuse ${f#* } nbd ${n#* } (MiB/s)" >&2
done
nbdfuse_off

# PostgreSQL, local and fuse side by side, the rounds alternated.
if [ -n "$PGBIN" ]; then
	truncate -s 3G "$work/pg-local.img"
	"$ZEROFS" device create -m "$M" pg.img 3G >/dev/null
	pg_setup local "$work/pg-local.img" 5439
	pg_setup fuse "$M/.nbd/pg.img" 5440
	sel_l="" sel_f="" tpcb_l="" tpcb_f="" sel_r="" tpcb_r=""
	for ((i = 1; i <= PG_ROUNDS; i++)); do
		l=$(pg_run 5439 -S)
		f=$(pg_run 5440 -S)
		sel_l+=" $l" sel_f+=" $f" sel_r+=" $(ratio "$f" "$l")"
		l=$(pg_run 5439)
		f=$(pg_run 5440)
		tpcb_l+=" $l" tpcb_f+=" $f" tpcb_r+=" $(ratio "$f" "$l")"
		echo "bench-block: pgbench round $i: select-only local ${sel_l##* } fuse ${sel_f##* }," \
			"TPC-B local $l fuse $f" >&2
	done
	R[local.pg_select]=$(median "$sel_l")
	R[fuse.pg_select]=$(median "$sel_f")
	R[local.pg_tpcb]=$(median "$tpcb_l")
	R[fuse.pg_tpcb]=$(median "$tpcb_f")
	for n in local fuse; do
		as_pg "$PGBIN/pg_ctl" -D "$work/pg-$n/pgdata" -m fast -w stop >/dev/null
		umount_retry "$work/pg-$n"
		losetup -d "${PGLOOP[$n]}"
		unset "PGLOOP[$n]"
	done
fi

# The paths to a device file alone, no filesystem on top: SIZE bytes of
# random data written (durable at the end) through the FUSE file (dd, 1 MiB)
# and through the NBD export (nbdcopy: 4 connections, its default 256 KiB
# requests, --flush), each to a file of its own; then one file (the one dd
# wrote, so the layout in the store is the same for every reader) read
# back, cold (another file of more than CACHE bytes read first, to push it
# out of the block cache, and the page cache dropped), through the FUSE
# file (dd, 1 MiB, O_DIRECT), through the export (nbdcopy as above), and
# through nbdfuse's file of the export (dd, 1 MiB, O_DIRECT): the client
# path the ext4 figures take, which adds a FUSE round trip of nbdfuse's to
# every request.
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
raw_fuse_write() { timed dd if="$work/src.bin" of="$M/.nbd/rawf.img" bs=1M conv=fsync,notrunc; }
raw_nbd_write() { timed nbdcopy -C 4 --flush "$work/src.bin" "nbd://127.0.0.1:$port/rawn.img"; }
evict_size=$(($(numfmt --from=iec "$CACHE") + (64 << 20)))
"$ZEROFS" device create -m "$M" evict.img "$evict_size" >/dev/null
head -c "$evict_size" /dev/urandom >"$M/.nbd/evict.img"
cold()
{
	dd if="$M/.nbd/evict.img" of=/dev/null bs=1M iflag=direct status=none
	sync
	echo 3 >/proc/sys/vm/drop_caches
	"$@"
}
raw_fuse_read() { cold timed dd if="$M/.nbd/rawf.img" of=/dev/null bs=1M iflag=direct; }
raw_nbd_read() { cold timed nbdcopy -C 4 "nbd://127.0.0.1:$port/rawf.img" null:; }
raw_nbdfuse_read() { cold timed dd if="$NF/rawf.img" of=/dev/null bs=1M iflag=direct; }
nbdfuse_on rawf.img
raww_r="" rawr_r="" rawrf_r="" raww_f="" raww_n="" rawr_f="" rawr_n="" rawr_nf=""
for ((i = 1; i <= SEQ_ROUNDS; i++)); do
	if ((i % 2)); then
		fw=$(raw_fuse_write) nw=$(raw_nbd_write)
		fr=$(raw_fuse_read) nr=$(raw_nbd_read) nfr=$(raw_nbdfuse_read)
	else
		nw=$(raw_nbd_write) fw=$(raw_fuse_write)
		nfr=$(raw_nbdfuse_read) nr=$(raw_nbd_read) fr=$(raw_fuse_read)
	fi
	raww_f+=" $fw" raww_n+=" $nw" rawr_f+=" $fr" rawr_n+=" $nr" rawr_nf+=" $nfr"
	raww_r+=" $(ratio "$nw" "$fw")" rawr_r+=" $(ratio "$nr" "$fr")"
	rawrf_r+=" $(ratio "$nfr" "$fr")"
	echo "bench-block: device file round $i: write fuse $fw nbd $nw, read fuse $fr" \
		"nbd $nr nbdfuse $nfr (MiB/s)" >&2
done
nbdfuse_off
R[raw.fuse_write]=$(median "$raww_f" 1)
R[raw.nbd_write]=$(median "$raww_n" 1)
R[raw.fuse_read]=$(median "$rawr_f" 1)
R[raw.nbd_read]=$(median "$rawr_n" 1)
R[raw.nbdfuse_read]=$(median "$rawr_nf" 1)

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
printf '%-30s %10s %10s %6s %10s %6s\n' "device file alone" fuse nbd ratio nbdfuse ratio
printf '%-30s %10s %10s %6s %10s %6s\n' "seq write (MiB/s)" "${R[raw.fuse_write]}" \
	"${R[raw.nbd_write]}" "$(ratio "${R[raw.nbd_write]}" "${R[raw.fuse_write]}")" - -
printf '%-30s %10s %10s %6s %10s %6s\n' "seq read (MiB/s)" "${R[raw.fuse_read]}" \
	"${R[raw.nbd_read]}" "$(ratio "${R[raw.nbd_read]}" "${R[raw.fuse_read]}")" \
	"${R[raw.nbdfuse_read]}" "$(ratio "${R[raw.nbdfuse_read]}" "${R[raw.fuse_read]}")"
echo "NBD (nbdcopy -C 4) / FUSE (dd) on a device file: write $(median "$raww_r" 2)" \
	"(rounds $(spread "$raww_r")), read $(median "$rawr_r" 2) (rounds $(spread "$rawr_r"))" \
	"(target >= 1)"
echo "NBD through nbdfuse (dd) / FUSE (dd), the same file read: $(median "$rawrf_r" 2)" \
	"(rounds $(spread "$rawrf_r")): the cost of nbdfuse's own FUSE hop"
echo "NBD (nbdfuse -C 4, loop direct-io=$nbd_dio) / FUSE loop, ext4 sequential:" \
	"write $(median "$seqw_r" 2) (rounds $(spread "$seqw_r")), read $(median "$seqr_r" 2)" \
	"(rounds $(spread "$seqr_r")) (target >= 1)"
echo "(sequential NBD/FUSE: medians of $SEQ_ROUNDS rounds alternating which goes first;" \
	"the device-file table shows median MiB/s)"
if [ -n "${R[local.pg_select]:-}" ]; then
	echo "pgbench select-only: $(median "$sel_r" 2) of local, rounds $(spread "$sel_r") (target >= 0.9)"
	echo "pgbench TPC-B, synchronous_commit=on: $(median "$tpcb_r" 2) of local, rounds $(spread "$tpcb_r") (target >= 0.5)"
	echo "(pgbench: medians of $PG_ROUNDS alternated rounds; the table shows median tps)"
fi
echo "SIZE=$SIZE RUNTIME=${RUNTIME}s SCALE=$SCALE store=$STORE; one run on a shared machine: noisy"
