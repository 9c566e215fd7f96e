#!/usr/bin/env bash
# The geo mirror of contrib/geo-mirror.sh on S3: three zerofs-fuse instances
# on three buckets of the test radosgw, one device file each, btrfs raid1c3
# (raid1 where the kernel lacks raid1c3) over loop devices on them.
#
# A writer runs (1 MiB files, each synced, its checksum recorded once the
# sync returned) while instance 2 is killed with kill -9.  The writer must
# carry on without an error, and everything it and the setup wrote must read
# back identical with the caches dropped.  Then "down" (instance 2 lazily
# unmounted), its cache deleted, "up": it recovers from its bucket alone and
# is re-attached; "heal" (btrfs scrub) must correct the copies it missed with
# nothing uncorrectable, a second scrub must find no errors, and the data are
# still identical.  Where zfs-fuse is installed the same runs with --fs zfs
# (a ZFS mirror through zfs-fuse on the device files), where "up" alone puts
# the restarted instance's device back online (resilver).
#
# Skipped when the Ceph packages are missing, except under CI=true, where
# that is a failure (as tests/t-s3.sh).
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires curl losetup mkfs.btrfs btrfs md5sum blkid findmnt setsid
[ -e /dev/loop-control ] || { echo "$0: no loop devices: test skipped"; exit 77; }
if ! { modprobe btrfs 2>/dev/null; }; then :; fi
if ! grep -qw btrfs /proc/filesystems; then
	echo "$0: this kernel has no btrfs (built in or loadable): test skipped"
	exit 77
fi

RGW="$(dirname "$0")/s3/radosgw.sh"
GEO="${abs_top_srcdir:-$(dirname "$0")/..}/contrib/geo-mirror.sh"
if ! command -v radosgw >/dev/null || ! command -v ceph-mon >/dev/null ||
	! command -v ceph-osd >/dev/null; then
	if [ "${CI:-}" = true ]; then
		fail "radosgw, ceph-mon or ceph-osd is missing (tests/deps.sh installs them)"
	fi
	echo "$0: radosgw, ceph-mon or ceph-osd is missing: test skipped"
	exit 77
fi

t=$(mktemp -d /tmp/zerofs-geo.XXXXXX)
cleanup_fn rm -rf "$t"
if rgw_env=$("$RGW" env 2>/dev/null); then
	echo "$0: reusing the running radosgw"
else
	cleanup_fn "$RGW" stop
	rgw_env=$("$RGW" start) || fail "radosgw did not start"
fi
eval "$rgw_env"

# One bucket per "region", shared by runs; each run has its own prefix.
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
for i in 1 2 3; do
	code=$(curl -s -o "$t/mkbucket.out" -w '%{http_code}' -X PUT \
		--aws-sigv4 "aws:amz:us-east-1:s3" \
		--user "$ZEROFS_S3_ACCESS_KEY:$ZEROFS_S3_SECRET_KEY" \
		-H "x-amz-content-sha256: $EMPTY_SHA256" "$ZEROFS_S3_ENDPOINT/zerofs-geo-$i")
	case $code in
	200 | 409) ;;
	*) fail "cannot create bucket zerofs-geo-$i: HTTP $code $(cat "$t/mkbucket.out")" ;;
	esac
done
cat >"$t/s3.conf" <<EOC
s3_endpoint = "$ZEROFS_S3_ENDPOINT";
s3_path_style = true;
s3_access_key = "$ZEROFS_S3_ACCESS_KEY";
s3_secret_key = "$ZEROFS_S3_SECRET_KEY";
store_timeout_ms = 20000;
EOC
chmod 600 "$t/s3.conf"
export ZEROFS_FUSE="$ZEROFS"
run="t-geo-$$-$RANDOM"

# Whatever happens: the script's teardown, then by force what it left.
geo_cleanup()
{
	local d=$1 fs=$2 i pid
	if ! { "$GEO" -d "$d" -f "$fs" -p "geo$$" down >/dev/null 2>&1; }; then
		echo "$0: geo-mirror.sh down failed in the cleanup; forcing" >&2
		if ! { umount -l "$d/fs" 2>/dev/null; }; then :; fi
		if [ "$fs" = zfs ] && ! { zpool export -f "geo$$" 2>/dev/null; }; then :; fi
		for i in 1 2 3; do
			if [ -f "$d/$i/loop" ] && ! { losetup -d "$(cut -d' ' -f1 "$d/$i/loop")" 2>/dev/null; }; then :; fi
			pid=$(cat "$d/$i/pid" 2>/dev/null) || continue
			if ! { kill -9 "$pid" 2>/dev/null; }; then :; fi
			if ! { fusermount3 -uz "$d/$i/mnt" 2>/dev/null; }; then :; fi
		done
	fi
}

# show_logs DIR: the end of each instance's log, when something failed.
show_logs()
{
	local i
	for i in 1 2 3; do
		echo "--- instance $i log (last 30 lines) ---" >&2
		tail -n 30 "$1/$i/log" >&2
	done
}

# The writer: 1 MiB files, each synced before its checksum is recorded;
# stops when $1/stop exists; exits non-zero at the first failure.
writer()
{
	local dir=$1 sums=$2 stop=$3 n=0
	while [ ! -e "$stop" ]; do
		n=$((n + 1))
		head -c 1M /dev/urandom >"$dir/w$n" || return 1
		sync -f "$dir/w$n" || return 1
		(cd "$dir" && md5sum "w$n") >>"$sums" || return 1
	done
}
count() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
wait_count()
{
	local file=$1 want=$2 pid=$3 i
	for ((i = 0; i < 600; i++)); do
		[ "$(count "$file")" -ge "$want" ] && return 0
		_alive "$pid" || return 1
		sleep 0.1
	done
	return 1
}

# run_mirror FS STORE [CONFIG]: the whole scenario on filesystem FS (btrfs or
# zfs), the instances on STORE (%i: the instance number).
run_mirror()
{
	local fs=$1 store=$2 conf=${3:-}
	local d=$t/$fs M geo out wpid kpid corrected
	geo=("$GEO" -d "$d" -f "$fs" -p "geo$$" -n 3 -s "$store" ${conf:+-c "$conf"}
		-S 256M -o "$ZEROFS_TEST_OPTS")
	M=$d/fs
	cleanup_fn geo_cleanup "$d" "$fs"
	"${geo[@]}" up || { show_logs "$d"; fail "$fs: geo-mirror.sh up failed"; }
	echo "[${SECONDS}s] $fs: up done"
	if [ "$fs" = btrfs ]; then
		out=$(btrfs filesystem df "$M")
		if [ -e /sys/fs/btrfs/features/raid1c34 ]; then
			grep -q '^Data, RAID1C3' <<<"$out" || fail "data is not RAID1C3: $out"
			grep -q '^Metadata, RAID1C3' <<<"$out" || fail "metadata is not RAID1C3: $out"
		else
			grep -q '^Data, RAID1' <<<"$out" || fail "data is not RAID1: $out"
		fi
	fi
	"${geo[@]}" status >"$d/status.out" || { cat "$d/status.out"; fail "$fs: status not healthy after up"; }

	head -c 8M /dev/urandom >"$M/big"
	mkdir "$M/d"
	for i in $(seq 1 50); do echo "file $i $RANDOM" >"$M/d/f$i"; done
	(cd "$M" && find . -type f -print0 | sort -z | xargs -0 md5sum) >"$d/sums"
	sync

	# Kill instance 2 under write load.
	rm -f "$d/stop"
	writer "$M" "$d/wsums" "$d/stop" &
	wpid=$!
	wait_count "$d/wsums" 4 "$wpid" || fail "$fs: the writer did not get going"
	kpid=$(cat "$d/2/pid")
	kill -9 "$kpid"
	echo "[${SECONDS}s] $fs: killed instance 2 (pid $kpid) after $(count "$d/wsums") files of the writer"
	# kill -9 returns before the process is gone: it may still be exiting
	# (or wait to be reaped) when "up" runs.
	for ((i = 0; i < 300; i++)); do
		_alive "$kpid" || break
		sleep 0.1
	done
	wait_count "$d/wsums" $(($(count "$d/wsums") + 6)) "$wpid" ||
		fail "$fs: the writer stopped after instance 2 was killed"
	touch "$d/stop"
	wait "$wpid" || fail "$fs: the writer failed after instance 2 was killed"
	echo "[${SECONDS}s] $fs: the writer wrote $(count "$d/wsums") files"
	cat "$d/wsums" >>"$d/sums"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	(cd "$M" && md5sum --quiet -c "$d/sums") || fail "$fs: data differ with instance 2 dead"
	if "${geo[@]}" status >"$d/status.out"; then
		cat "$d/status.out"
		fail "$fs: status says healthy with instance 2 dead"
	fi
	grep -q '^instance 2: DEAD' "$d/status.out" || { cat "$d/status.out"; fail "status does not show instance 2 dead"; }

	# Instance 2 back from its bucket alone, re-attached, then healed.
	if [ "$fs" = btrfs ]; then
		"${geo[@]}" down || fail "$fs: down with instance 2 dead failed"
		rm -rf "$d/2/cache"
	fi
	"${geo[@]}" up || { show_logs "$d"; fail "$fs: up after the kill failed"; }
	echo "[${SECONDS}s] $fs: up done"
	if ! "${geo[@]}" status >"$d/status-up.out"; then
		: # Degraded or resilvering is expected here: the heal follows.
	fi
	"${geo[@]}" heal >"$d/heal1.out" 2>&1 || { cat "$d/heal1.out"; fail "$fs: the repairing heal failed"; }
	cat "$d/heal1.out"
	if [ "$fs" = btrfs ]; then
		corrected=$(sed -n 's/^ *Corrected: *\([0-9]*\).*/\1/p' "$d/heal1.out")
		[ "${corrected:-0}" -gt 0 ] || fail "the scrub corrected nothing (instance 2 missed writes)"
		grep -q 'Uncorrectable: *0' "$d/heal1.out" || fail "uncorrectable errors"
	else
		# "zpool online" in up may have resilvered it already.
		# No pipe: with pipefail, cat could die of SIGPIPE once grep -q
		# has its match, and fail the test on a success.
		grep -Eq 'repaired|resilvered' "$d/status-up.out" "$d/heal1.out" ||
			fail "zfs: nothing resilvered or repaired"
	fi
	"${geo[@]}" heal >"$d/heal2.out" 2>&1 || { cat "$d/heal2.out"; fail "$fs: the second heal failed"; }
	echo "[${SECONDS}s] $fs: heal done"
	if [ "$fs" = btrfs ]; then
		grep -q 'no errors found' "$d/heal2.out" || { cat "$d/heal2.out"; fail "second scrub not clean"; }
	else
		if ! grep -q 'with 0 errors' "$d/heal2.out" || grep -q repaired "$d/heal2.out"; then
			cat "$d/heal2.out"
			fail "zfs: second scrub not clean"
		fi
	fi
	echo 3 >/proc/sys/vm/drop_caches
	(cd "$M" && md5sum --quiet -c "$d/sums") || fail "$fs: data differ after the heal"
	"${geo[@]}" status >"$d/status.out" || { cat "$d/status.out"; fail "$fs: status not healthy after heal"; }
	"${geo[@]}" down || fail "$fs: down failed"
	echo "[${SECONDS}s] $fs: down done"
	# The daemons are not this shell's children: their logs tell how they
	# ended (and hold what a sanitizer build found).
	for i in 1 2 3; do
		grep -q 'all data is in the store' "$d/$i/log" ||
			{ show_logs "$d"; fail "$fs: instance $i did not end with its last barrier"; }
		if grep -Eq 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$d/$i/log"; then
			show_logs "$d"
			fail "$fs: a sanitizer report in the log of instance $i"
		fi
	done
	echo "[${SECONDS}s] $fs: ok"
}

run_mirror btrfs "s3://zerofs-geo-%i/$run" "$t/s3.conf"
# ZFS through zfs-fuse on S3 takes minutes here (its scrub and txg syncs go
# through FUSE twice, in small requests): its run uses local directory
# stores, the S3 instances being what the btrfs run tested.
if command -v zfs-fuse >/dev/null && command -v zpool >/dev/null; then
	run_mirror zfs "$t/zfs/store%i"
else
	echo "$0: zfs-fuse is not installed: the ZFS mirror is not tested"
fi
echo "t-geo-mirror: ok"
