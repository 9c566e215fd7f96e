#!/usr/bin/env bash
# bench-peers.sh: zerofs-fuse beside the filesystems a user would otherwise
# put over an object store, on one radosgw and in one run (issue 7):
#
#   zerofs    zerofs-fuse on an S3 store
#   s3fs      s3fs (Debian), no data cache
#   s3backer  s3backer (Debian), ext4 on a loop device over its file
#   rclone    rclone mount (Debian), full VFS cache
#   ext4      local ext4 on a loop file on local disk: the limit of the
#             filesystem workloads
#   fusept    libfuse's own passthrough_ll example (Debian's libfuse3-dev,
#             built here) over local ext4 on a loop file: what any FUSE
#             filesystem can reach on this kernel, nothing stored remotely
#   raw       the raw S3 ceiling: PUT and GET of 8 MiB objects through
#             zerofs-fuse's own store layer (tests/bench/s3bench) at 1, 4 and
#             8 threads, the best kept: the limit of the sequential ones
#
# Workloads: fio sequential write with a final fsync, timed until the data is
# in the bucket (the unmount of s3backer, the upload of rclone included), and
# the cold read after a remount (cache purged) and drop_caches, 1 MiB blocks;
# 4 KiB random read (cold after a remount, then hot) and random write with an
# fsync every 64 writes (libaio, iodepth 16, O_DIRECT); create, stat,
# readdir and unlink of N files (tests/bench/peers/metaphase.c); a small-file
# tree (untar, cp -r, rm -r of files from /usr/include); pgbench select-only
# and TPC-B on ext4 over a loop device (in the zerofs mount; on the ext4 and
# s3backer filesystems as they are); S3 requests per GiB written and per
# 10,000 files created, counted by radosgw itself (its perf counters, read
# from its admin socket), the same way for every system.
#
# Every figure is printed with its ratio to the best peer (s3fs, s3backer,
# rclone) and to the limit (raw S3 for the sequential figures and for
# requests per GiB, ext4 for the rest), as a text table, a CSV and a PNG
# chart (gnuplot).  A system that fails to start is reported as FAILED, a
# workload that fails as "fail".  Not a test: it asserts nothing about speed.
#
#   tests/bench/bench-peers.sh [--size SIZE] [--quick] [--only LIST]
#                              [--out DIR] [--files N] [--tree-files N]
#                              [--runtime S] [--pg-scale N]
#
#   --size SIZE       sequential file (default 1G)
#   --quick           a smoke run: 64M sequential, 32M random file, 5 s
#                     random runs, 200 files, 200-file tree, pgbench scale 1
#   --only LIST       comma-separated systems among
#                     zerofs,s3fs,s3backer,rclone,ext4,fusept,raw (default:
#                     all)
#   --out DIR         where results.txt, results.csv, results.png and the
#                     logs go (default: ./bench-peers-DATE)
#   --files N         files of the metadata workload (default 10000)
#   --tree-files N    files of the small-file tree (default 2000)
#   --runtime S       seconds of each random fio run (default 20)
#   --pg-scale N      pgbench scale factor (default 10); --pg-time S seconds
#                     of each pgbench run (default 20)
#
# Run as root from a build tree (zerofs-fuse and tests/bench/s3bench built:
# make, make check) after tests/deps.sh and tests/bench/deps-bench.sh.  It
# uses the radosgw of tests/s3/radosgw.sh (ZEROFS_RGW_* select the instance);
# it starts one when none runs, and stops it at the end.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
top=${BUILD:-$src}
ZEROFS=$top/zerofs-fuse
S3BENCH=$top/tests/bench/s3bench
export ZEROFS_PASSWORD=bench

SIZE=1G
RANDSIZE=256M
WARMSIZE=64M
RUNTIME=20
FILES=10000
TREE_FILES=2000
PG_SCALE=10
PG_TIME=20
RAW_COUNT=48
ALL="zerofs s3fs s3backer rclone ext4 fusept raw"
ONLY=$ALL
OUT=
usage()
{
	sed -n '/^#   tests\/bench\/bench-peers.sh/,/^# Run as root/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--size) SIZE=$2; shift ;;
	--quick)
		SIZE=64M RANDSIZE=32M WARMSIZE=16M RUNTIME=5 FILES=200 TREE_FILES=200
		PG_SCALE=1 PG_TIME=5 RAW_COUNT=16
		;;
	--only) ONLY=$(tr ',' ' ' <<<"$2"); shift ;;
	--out) OUT=$2; shift ;;
	--files) FILES=$2; shift ;;
	--tree-files) TREE_FILES=$2; shift ;;
	--runtime) RUNTIME=$2; shift ;;
	--pg-scale) PG_SCALE=$2; shift ;;
	--pg-time) PG_TIME=$2; shift ;;
	-h | --help) usage ;;
	*) echo "bench-peers.sh: unknown argument $1" >&2; usage ;;
	esac
	shift
done
for s in $ONLY; do
	case " $ALL " in
	*" $s "*) ;;
	*) echo "bench-peers.sh: unknown system $s (one of: $ALL)" >&2; exit 2 ;;
	esac
done
want() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

[ "$(id -u)" -eq 0 ] || { echo "bench-peers.sh: run as root" >&2; exit 2; }
for t in fio python3 gcc losetup mkfs.ext4 curl tar gnuplot; do
	command -v $t >/dev/null || {
		echo "bench-peers.sh: $t is missing (tests/bench/deps-bench.sh)" >&2
		exit 2
	}
done
if want zerofs || want raw; then
	[ -x "$ZEROFS" ] && [ -x "$S3BENCH" ] || {
		echo "bench-peers.sh: build zerofs-fuse and tests/bench/s3bench first (make check)" >&2
		exit 2
	}
fi
BYTES=$(numfmt --from=iec "$SIZE")
RANDBYTES=$(numfmt --from=iec "$RANDSIZE")
OUT=${OUT:-$PWD/bench-peers-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/bench.log
: >"$LOG"

work=$(mktemp -d /var/tmp/zerofs-bench-peers.XXXXXX)
chmod 755 "$work" # PostgreSQL runs as postgres in it
declare -A PID     # SYS -> pid of its daemon
declare -A MNT     # SYS -> mountpoint
declare -A LOOP    # SYS -> loop device it runs ext4 on
declare -A STATUS  # SYS -> ok | failed: why
declare -A R       # SYS.METRIC -> figure | fail | n/a
declare -A BUCKET  # SYS -> its bucket
declare -a LOOPS   # every loop device this run attached
LOOPDEV=
started=
say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }

cleanup()
{
	local s l
	for s in "${!PID[@]}"; do
		[ -n "${PID[$s]}" ] || continue
		if ! kill "${PID[$s]}" 2>/dev/null; then :; fi # it may have exited
	done
	for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
		if ! umount -l "$m" 2>/dev/null; then fusermount3 -uz "$m" 2>/dev/null; fi
	done
	for l in "${LOOPS[@]}"; do
		if ! losetup -d "$l" 2>/dev/null; then :; fi # detached already
	done
	if [ -n "$started" ]; then "$src/tests/s3/radosgw.sh" stop >/dev/null 2>&1; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the object store --------------------------------------------------------
if ! env=$("$src/tests/s3/radosgw.sh" env 2>/dev/null); then
	say "starting radosgw (tests/s3/radosgw.sh)"
	env=$("$src/tests/s3/radosgw.sh" start) || { echo "radosgw did not start" >&2; exit 1; }
	started=1
fi
eval "$env"
ASOK=$ZEROFS_RGW_DIR/run/client.rgw.a.asok
KEY=$ZEROFS_S3_ACCESS_KEY
SECRET=$ZEROFS_S3_SECRET_KEY
EP=$ZEROFS_S3_ENDPOINT
SIGV4=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$KEY:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")

# Requests radosgw has served so far (all of them, whoever asked).
rgw_req() { "$here/peers/rgwreq.py" "$ASOK" | cut -d' ' -f1; }
make_bucket()
{
	local code
	code=$(curl -s -o "$work/mkbucket.out" -w '%{http_code}' -X PUT "${SIGV4[@]}" "$EP/$1")
	case $code in
	200 | 409) return 0 ;;
	*) say "cannot create bucket $1: HTTP $code $(cat "$work/mkbucket.out")"; return 1 ;;
	esac
}
# Size of an object, empty when absent.
object_size()
{
	curl -s -I "${SIGV4[@]}" "$EP/$1" | tr -d '\r' |
		awk 'tolower($1) == "content-length:" { print $2 }'
}
# Wait until radosgw has served no request for 8 s (background uploads of
# a peer are over), at most 600 s.
rgw_quiet()
{
	local a b
	a=$(rgw_req)
	for _ in $(seq 75); do
		sleep 8
		b=$(rgw_req)
		[ "$a" = "$b" ] && return 0
		a=$b
	done
	say "radosgw still busy after 600 s"
	return 1
}
drop_caches() { echo 3 >/proc/sys/vm/drop_caches; }
fmt() { python3 -c "import sys; print('%.${2:-1}f' % ($1))"; }
now() { date +%s.%N; }

cat >"$work/s3.conf" <<EOC
s3_endpoint = "$EP";
s3_path_style = true;
s3_access_key = "$KEY";
s3_secret_key = "$SECRET";
EOC
printf '%s:%s\n' "$KEY" "$SECRET" >"$work/s3.passwd"
echo bench-s3backer >"$work/s3backer.password"
chmod 600 "$work/s3.conf" "$work/s3.passwd" "$work/s3backer.password"
if ! gcc -O2 -o "$work/metaphase" "$here/peers/metaphase.c" >>"$LOG" 2>&1; then
	echo "bench-peers.sh: cannot build metaphase" >&2
	exit 1
fi
PASSTHROUGH_SRC=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c

# The small-file tree: the first TREE_FILES files under 64 KiB of /usr/include.
find /usr/include -type f -size -64k | sort | head -n "$TREE_FILES" | sed 's|^/||' >"$work/tree.list"
tar -C / -cf "$work/tree.tar" -T "$work/tree.list"
TREE_N=$(wc -l <"$work/tree.list")
say "small-file tree: $TREE_N files, $(du -h "$work/tree.tar" | cut -f1) tarred"

# --- mounting each system ------------------------------------------------------
# mount_SYS / umount_SYS / purge_SYS (drop the system's own cache between an
# unmount and a mount) / durable_SYS FILE (make what was written durable in
# the bucket; may unmount).
wait_mount()
{
	local sys=$1 dir=$2
	for _ in $(seq 300); do
		mountpoint -q "$dir" && return 0
		if [ -n "${PID[$sys]:-}" ] && ! kill -0 "${PID[$sys]}" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	say "$sys: $dir did not mount; end of $work/$sys.log:"
	tail -n 5 "$work/$sys.log" | tee -a "$LOG" >&2
	return 1
}
# Unmount a FUSE mount and wait for its daemon to exit (all written back).
fuse_down()
{
	local sys=$1 dir=$2 rc
	for _ in $(seq 10); do
		mountpoint -q "$dir" || break
		fusermount3 -u "$dir" 2>>"$LOG" && break
		# Busy: the kernel may still hold a file that was just closed.
		say "$sys: $dir busy; holders: $(fuser -m "$dir" 2>&1 | tr '\n' ' ')"
		sleep 1
	done
	if mountpoint -q "$dir"; then
		say "$sys: cannot unmount $dir"
		return 1
	fi
	if [ -n "${PID[$sys]:-}" ]; then
		rc=0
		wait "${PID[$sys]}" || rc=$?
		[ $rc -eq 0 ] || say "$sys: daemon exited with status $rc"
		PID[$sys]=
	fi
}
# attach_loop FILE: attach a loop device, its name in LOOPDEV (and in LOOPS,
# for the cleanup); not to be run in a command substitution.
attach_loop()
{
	LOOPDEV=$(losetup -f --show "$1") || return 1
	LOOPS+=("$LOOPDEV")
}

mount_zerofs()
{
	MNT[zerofs]=$work/zerofs/mnt
	mkdir -p "${MNT[zerofs]}"
	"$ZEROFS" -f -c "$work/s3.conf" \
		-o "store=s3://${BUCKET[zerofs]}/fs,cache_dir=$work/zerofs/cache,kdf=min,nbd_listen=" \
		"${MNT[zerofs]}" >>"$work/zerofs.log" 2>&1 &
	PID[zerofs]=$!
	wait_mount zerofs "${MNT[zerofs]}"
}
umount_zerofs() { fuse_down zerofs "${MNT[zerofs]}"; }
purge_zerofs() { rm -rf "$work/zerofs/cache"; }
durable_zerofs() { :; } # fsync is a barrier: in the bucket when it returns

mount_s3fs()
{
	MNT[s3fs]=$work/s3fs/mnt
	mkdir -p "${MNT[s3fs]}"
	s3fs "${BUCKET[s3fs]}" "${MNT[s3fs]}" -f \
		-o "passwd_file=$work/s3.passwd,url=$EP,use_path_request_style,endpoint=us-east-1,sigv4" \
		>>"$work/s3fs.log" 2>&1 &
	PID[s3fs]=$!
	wait_mount s3fs "${MNT[s3fs]}"
}
umount_s3fs() { fuse_down s3fs "${MNT[s3fs]}"; }
purge_s3fs() { :; }   # no data cache by default
durable_s3fs() { :; } # its fsync uploads the file

mount_rclone()
{
	MNT[rclone]=$work/rclone/mnt
	mkdir -p "${MNT[rclone]}"
	cat >"$work/rclone.conf" <<EOC
[bench]
type = s3
provider = Ceph
endpoint = $EP
force_path_style = true
region = us-east-1
access_key_id = $KEY
secret_access_key = $SECRET
EOC
	env -u AWS_CA_BUNDLE rclone mount --config "$work/rclone.conf" "bench:${BUCKET[rclone]}" \
		"${MNT[rclone]}" --vfs-cache-mode full --vfs-cache-max-size 2G \
		--cache-dir "$work/rclone/cache" >>"$work/rclone.log" 2>&1 &
	PID[rclone]=$!
	wait_mount rclone "${MNT[rclone]}"
}
umount_rclone() { fuse_down rclone "${MNT[rclone]}"; }
purge_rclone() { rm -rf "$work/rclone/cache"; }
# fsync stops at its cache; the upload follows the close (after
# --vfs-write-back, 5 s): wait until the object has its full size.  The HEAD
# requests of the wait are counted in POLLS, to be taken off the count.
POLLS=0
durable_rclone()
{
	local want
	want=$(stat -c %s "${MNT[rclone]}/$1") || return 1
	for _ in $(seq 6000); do
		POLLS=$((POLLS + 1))
		[ "$(object_size "${BUCKET[rclone]}/$1")" = "$want" ] && return 0
		sleep 0.2
	done
	say "rclone: $1 not uploaded after 20 min"
	return 1
}

S3BACKER_SIZE=$(python3 -c "print(max(4 << 30, 2 * $BYTES + 3 * $RANDBYTES + (2 << 30)))")
mount_s3backer()
{
	local fresh=$1
	MNT[s3backer]=$work/s3backer/mnt
	mkdir -p "$work/s3backer/fuse" "${MNT[s3backer]}"
	s3backer -f --baseURL="$EP/" --authVersion=aws4 --accessFile="$work/s3.passwd" \
		--size="$S3BACKER_SIZE" --blockSize=1M --listBlocks --encrypt \
		--passwordFile="$work/s3backer.password" --compress=1 --blockCacheSize=256 \
		--blockCacheThreads=8 "${BUCKET[s3backer]}" "$work/s3backer/fuse" \
		>>"$work/s3backer.log" 2>&1 &
	PID[s3backer]=$!
	wait_mount s3backer "$work/s3backer/fuse" || return 1
	attach_loop "$work/s3backer/fuse/file" || return 1
	LOOP[s3backer]=$LOOPDEV
	if [ "$fresh" = fresh ]; then
		mkfs.ext4 -q -E nodiscard "${LOOP[s3backer]}" >>"$LOG" 2>&1 || return 1
	fi
	mount "${LOOP[s3backer]}" "${MNT[s3backer]}"
}
umount_s3backer()
{
	if mountpoint -q "${MNT[s3backer]}"; then umount "${MNT[s3backer]}" || return 1; fi
	if [ -n "${LOOP[s3backer]:-}" ]; then losetup -d "${LOOP[s3backer]}"; LOOP[s3backer]=; fi
	# Its unmount returns before the dirty blocks are written: wait for the
	# process to exit.
	fuse_down s3backer "$work/s3backer/fuse"
}
purge_s3backer() { :; } # its block cache is in memory
# Its FUSE fsync is a no-op: durable once the whole stack is unmounted.
durable_s3backer() { umount_s3backer; }

mount_ext4()
{
	local fresh=$1
	MNT[ext4]=$work/ext4/mnt
	mkdir -p "${MNT[ext4]}"
	if [ "$fresh" = fresh ]; then
		truncate -s "$S3BACKER_SIZE" "$work/ext4.img"
		attach_loop "$work/ext4.img" || return 1
		LOOP[ext4]=$LOOPDEV
		mkfs.ext4 -q -E nodiscard "${LOOP[ext4]}" >>"$LOG" 2>&1 || return 1
	fi
	mount "${LOOP[ext4]}" "${MNT[ext4]}"
}
umount_ext4() { umount "${MNT[ext4]}"; }
purge_ext4() { :; }
durable_ext4() { :; }

# libfuse's passthrough_ll with its default options (1 s caching, no
# writeback cache) over ext4 on its own loop file.
mount_fusept()
{
	local fresh=$1
	MNT[fusept]=$work/fusept/mnt
	mkdir -p "$work/fusept/src" "${MNT[fusept]}"
	if [ "$fresh" = fresh ]; then
		gcc -O2 -o "$work/passthrough_ll" "$PASSTHROUGH_SRC" \
			$(pkg-config --cflags --libs fuse3) >>"$LOG" 2>&1 || return 1
		truncate -s "$S3BACKER_SIZE" "$work/fusept.img"
		attach_loop "$work/fusept.img" || return 1
		LOOP[fusept]=$LOOPDEV
		mkfs.ext4 -q -E nodiscard "${LOOP[fusept]}" >>"$LOG" 2>&1 || return 1
	fi
	mount "${LOOP[fusept]}" "$work/fusept/src" || return 1
	"$work/passthrough_ll" -f -o "source=$work/fusept/src" "${MNT[fusept]}" \
		>>"$work/fusept.log" 2>&1 &
	PID[fusept]=$!
	wait_mount fusept "${MNT[fusept]}"
}
umount_fusept() { fuse_down fusept "${MNT[fusept]}" && umount "$work/fusept/src"; }
purge_fusept() { :; }
durable_fusept() { :; }

mounted() { mountpoint -q "${MNT[$1]:-/nonexistent}"; }
remount_cold()
{
	local sys=$1
	if mounted "$sys"; then "umount_$sys" || return 1; fi
	"purge_$sys"
	drop_caches
	"mount_$sys" again || return 1
	drop_caches
}

# --- workloads -----------------------------------------------------------------
fio_run()
{
	local job=$1 dir=$2
	DIR=$dir SIZE=$SIZE RANDSIZE=$RANDSIZE WARMSIZE=$WARMSIZE RUNTIME=$RUNTIME \
		fio --output-format=json "$job" 2>>"$LOG"
}
fio_iops()
{
	local out
	out=$(fio_run "$@") || return 1
	python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%.0f" % (j["write"]["iops"] + j["read"]["iops"]))' <<<"$out"
}
fio_mibs()
{
	local out
	out=$(fio_run "$@") || return 1
	python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%.1f" % ((j["write"]["bw_bytes"] + j["read"]["bw_bytes"]) / 1048576))' <<<"$out"
}
# set SYS METRIC COMMAND...: the figure the command prints, or "fail".
set_fig()
{
	local sys=$1 metric=$2 v
	shift 2
	if v=$("$@") && [ -n "$v" ]; then
		R[$sys.$metric]=$v
	else
		R[$sys.$metric]=fail
		say "$sys: $metric failed"
	fi
	say "$sys: $metric = ${R[$sys.$metric]}"
}

seq_write()
{
	local sys=$1 dir=${MNT[$1]} t0 t1 q0 q1 p0
	p0=$POLLS
	q0=$(rgw_req)
	t0=$(now)
	fio_run "$src/tests/bench/fio/seqwrite.fio" "$dir" >/dev/null || return 1
	"durable_$sys" seq || return 1
	t1=$(now)
	q1=$(rgw_req)
	# (run in a command substitution: the count goes through a file)
	fmt "($q1 - $q0 - ($POLLS - $p0)) / ($BYTES / 2**30)" 0 >"$work/$sys.req_gib"
	fmt "$BYTES / 1048576 / ($t1 - $t0)"
}

meta()
{
	local sys=$1 dir=${MNT[$1]}/meta q0 q1 p v
	mkdir -p "$dir" || return 1
	q0=$(rgw_req)
	set_fig "$sys" create "$work/metaphase" "$dir" "$FILES" create
	[ "${R[$sys.create]}" != fail ] || return 1
	# Count what the creates cost, once durable.
	case $sys in
	zerofs) "$ZEROFS" flush "${MNT[zerofs]}" >>"$LOG" 2>&1 ;;
	*) sync -f "$dir" ;;
	esac
	if [ "$sys" = ext4 ] || [ "$sys" = fusept ]; then
		R[$sys.req_10k]=n/a # no object store
	else
		rgw_quiet
		q1=$(rgw_req)
		R[$sys.req_10k]=$(fmt "($q1 - $q0) * 10000 / $FILES" 0)
	fi
	say "$sys: req_10k = ${R[$sys.req_10k]}"
	for p in stat readdir unlink; do
		set_fig "$sys" "$p" "$work/metaphase" "$dir" "$FILES" "$p"
	done
	rm -rf "$dir"
}

tree_phase()
{
	local n=$1 t0 t1
	shift
	t0=$(now)
	"$@" >>"$LOG" 2>&1 || return 1
	t1=$(now)
	fmt "$n / ($t1 - $t0)" 0
}
tree()
{
	local sys=$1 dir=${MNT[$1]}
	mkdir -p "$dir/tree" || return 1
	set_fig "$sys" untar tree_phase "$TREE_N" tar -C "$dir/tree" -xf "$work/tree.tar"
	set_fig "$sys" cp tree_phase "$TREE_N" cp -r "$dir/tree" "$dir/tree2"
	set_fig "$sys" rm tree_phase "$((2 * TREE_N))" rm -rf "$dir/tree" "$dir/tree2"
}

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pg_port()
{
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
asuser() { runuser -u postgres -- "$@"; }
# pgbench select-only and TPC-B in a PostgreSQL cluster made in DIR.
pgbench_in()
{
	local sys=$1 dir=$2 port sock=$work/pgsock out
	# (the server's log goes where postgres may write: beside its socket)
	port=$(pg_port)
	mkdir -p "$dir/pg" "$sock" && chown postgres: "$dir/pg" "$sock" || return 1
	if ! asuser "$PGBIN/initdb" --auth=trust -D "$dir/pg/data" >>"$LOG" 2>&1; then
		say "$sys: initdb failed"
		rm -rf "$dir/pg"
		return 1
	fi
	if ! asuser "$PGBIN/pg_ctl" -D "$dir/pg/data" -l "$sock/pg-$sys.log" -w \
		-o "-p $port -k $sock -c listen_addresses=" start >>"$LOG" 2>&1; then
		say "$sys: PostgreSQL did not start (pg-$sys.log)"
		cp "$sock/pg-$sys.log" "$OUT/"
		rm -rf "$dir/pg"
		return 1
	fi
	if asuser "$PGBIN/pgbench" -h "$sock" -p "$port" -i -q -s "$PG_SCALE" postgres \
		>>"$LOG" 2>&1; then
		for mode in select tpcb; do
			local args=()
			[ $mode = select ] && args=(-S)
			if out=$(asuser "$PGBIN/pgbench" -h "$sock" -p "$port" "${args[@]}" -c 2 -j 2 \
				-T "$PG_TIME" postgres 2>>"$LOG"); then
				R[$sys.pg_$mode]=$(awk '/^tps = / { printf "%.0f\n", $3 }' <<<"$out")
			fi
			echo "$out" >>"$LOG"
			[ -n "${R[$sys.pg_$mode]:-}" ] || R[$sys.pg_$mode]=fail
			say "$sys: pg_$mode = ${R[$sys.pg_$mode]}"
		done
	fi
	asuser "$PGBIN/pg_ctl" -D "$dir/pg/data" -m fast -w stop >>"$LOG" 2>&1
	cp "$sock/pg-$sys.log" "$OUT/"
	rm -rf "$dir/pg"
}
pgbench_sys()
{
	local sys=$1 img l=
	case $sys in
	ext4 | s3backer) pgbench_in "$sys" "${MNT[$sys]}" ;;
	zerofs)
		# ext4 over a loop device on a file of the mount.
		img=${MNT[zerofs]}/pg.img
		mkdir -p "$work/zerofs/pgmnt"
		if truncate -s 4G "$img" && attach_loop "$img" && l=$LOOPDEV &&
			mkfs.ext4 -q -E nodiscard "$l" >>"$LOG" 2>&1 &&
			mount "$l" "$work/zerofs/pgmnt"; then
			pgbench_in zerofs "$work/zerofs/pgmnt"
		fi
		if mountpoint -q "$work/zerofs/pgmnt"; then umount "$work/zerofs/pgmnt"; fi
		if [ -n "$l" ]; then losetup -d "$l"; fi
		rm -f "$img"
		;;
	*)
		R[$sys.pg_select]=n/a # not a block device: ext4 would sit on a loop over
		R[$sys.pg_tpcb]=n/a   # one object rewritten whole at each flush
		;;
	esac
	[ -n "${R[$sys.pg_select]:-}" ] || R[$sys.pg_select]=fail
	[ -n "${R[$sys.pg_tpcb]:-}" ] || R[$sys.pg_tpcb]=fail
}

run_fs()
{
	local sys=$1
	say "=== $sys"
	mkdir -p "$work/$sys"
	if [ "$sys" != ext4 ] && [ "$sys" != fusept ]; then
		BUCKET[$sys]=bench-$sys-$$
		if ! make_bucket "${BUCKET[$sys]}"; then
			STATUS[$sys]="failed: no bucket"
			return
		fi
	fi
	if ! "mount_$sys" fresh; then
		STATUS[$sys]="failed: did not mount (see $sys.log)"
		return
	fi
	STATUS[$sys]=ok
	# Warm up memory, the page cache and the code paths first.
	if ! fio_run "$here/peers/fio/warmup.fio" "${MNT[$sys]}" >/dev/null; then
		say "$sys: warm-up failed"
	fi
	rm -f "${MNT[$sys]}/warmup"

	set_fig "$sys" seqwrite seq_write "$sys"
	R[$sys.req_gib]=fail
	if [ -s "$work/$sys.req_gib" ]; then R[$sys.req_gib]=$(cat "$work/$sys.req_gib"); fi
	if [ "$sys" = ext4 ] || [ "$sys" = fusept ]; then R[$sys.req_gib]=n/a; fi # no store
	if remount_cold "$sys"; then
		set_fig "$sys" seqread fio_mibs "$src/tests/bench/fio/seqread.fio" "${MNT[$sys]}"
	else
		R[$sys.seqread]=fail
	fi
	mounted "$sys" || "mount_$sys" again
	rm -f "${MNT[$sys]}/seq"

	if fio_run "$here/peers/fio/randprep.fio" "${MNT[$sys]}" >/dev/null &&
		"durable_$sys" rand && remount_cold "$sys"; then
		set_fig "$sys" randread_cold fio_iops "$here/peers/fio/randread.fio" "${MNT[$sys]}"
		set_fig "$sys" randread_hot fio_iops "$here/peers/fio/randread.fio" "${MNT[$sys]}"
		set_fig "$sys" randwrite fio_iops "$here/peers/fio/randwrite.fio" "${MNT[$sys]}"
	else
		say "$sys: the random file could not be laid out"
		R[$sys.randread_cold]=fail R[$sys.randread_hot]=fail R[$sys.randwrite]=fail
	fi
	mounted "$sys" || "mount_$sys" again
	rm -f "${MNT[$sys]}/rand"

	meta "$sys" || say "$sys: metadata workload failed"
	tree "$sys" || say "$sys: tree workload failed"
	mounted "$sys" || "mount_$sys" again
	pgbench_sys "$sys"
	if [ "$sys" = zerofs ]; then
		"$ZEROFS" stats "${MNT[zerofs]}" >"$OUT/zerofs-stats.txt" 2>&1
	fi
	if mounted "$sys" && ! "umount_$sys"; then say "$sys: unmount failed"; fi
}

run_raw()
{
	local th out p g best_put=0 best_get=0
	say "=== raw"
	if ! make_bucket "bench-raw-$$"; then
		STATUS[raw]="failed: no bucket"
		return
	fi
	for th in 1 4 8; do
		if ! out=$("$S3BENCH" -c "$work/s3.conf" -s "s3://bench-raw-$$/ceiling" \
			-n "$RAW_COUNT" -b 8388608 -t "$th" 2>>"$LOG"); then
			say "raw: s3bench -t $th failed"
			continue
		fi
		echo "$out" | tee -a "$LOG" >&2
		p=$(awk '/^put:/ { print $(NF-1) }' <<<"$out")
		g=$(awk '/^get:/ { print $(NF-1) }' <<<"$out")
		best_put=$(python3 -c "print(max($best_put, $p))")
		best_get=$(python3 -c "print(max($best_get, $g))")
	done
	if [ "$best_put" = 0 ]; then
		STATUS[raw]="failed: s3bench"
		return
	fi
	STATUS[raw]=ok
	R[raw.seqwrite]=$best_put
	R[raw.seqread]=$best_get
	R[raw.req_gib]=128 # one PUT per 8 MiB object
}

say "bench-peers: size $SIZE, random file $RANDSIZE, runtime ${RUNTIME}s, $FILES files," \
	"tree $TREE_N files, pgbench scale $PG_SCALE ${PG_TIME}s; systems: $ONLY; out $OUT"
say "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); shared: figures are noisy"
want raw && run_raw
for sys in zerofs s3fs s3backer rclone ext4 fusept; do
	want "$sys" && run_fs "$sys"
done

# --- the report ------------------------------------------------------------------
export OUT ONLY
{
	for s in $ONLY; do printf 'status %s %s\n' "$s" "${STATUS[$s]:-failed: not run}"; done
	for k in "${!R[@]}"; do printf 'fig %s %s\n' "$k" "${R[$k]}"; done
} >"$OUT/raw-figures.txt"
python3 "$here/peers/report.py" "$OUT/raw-figures.txt" "$OUT" \
	"size $SIZE, random file $RANDSIZE, ${RUNTIME}s random runs, $FILES files, tree $TREE_N files, pgbench scale $PG_SCALE ${PG_TIME}s"
for f in "$work"/*.log; do cp "$f" "$OUT/"; done
cat "$OUT/results.txt"
