#!/usr/bin/env bash
# The single-writer lease, on the directory store and on the S3 store (a
# real radosgw): a second read-write mount is refused with a message naming
# the holder; a forced takeover while the first writer is frozen (SIGSTOP)
# fences it: after SIGCONT its next fsync fails with EIO, its log says
# "fenced by HOST/PID", it writes no further object, and nothing it wrote
# after the takeover is visible to the new writer or to a later mount; a
# clean unmount releases the lease (the next mount needs no force); a crash
# leaves a lease that the next mount on the same host takes over by itself.
# A writer frozen between its lease check and its index log put (a crash
# point) cannot store that log once another writer has taken over, even
# after the new writer's checkpoints pruned the logs around it.
# The S3 half is skipped when the Ceph packages are missing, except under
# CI=true, where that is a failure.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires timeout

RGW="$(dirname "$0")/s3/radosgw.sh"
OPTS="barrier_interval_ms=3600000,segment_size=1M,store_timeout_ms=5000"
HOST=$(hostname)

t=$(mktemp -d /tmp/zerofs-lease.XXXXXX)
cleanup_fn rm -rf "$t"
KIND=

store_url()
{
	if [ "$KIND" = dir ]; then
		echo "$t/store-$1"
	else
		echo "s3://$ZEROFS_S3_BUCKET/t-lease-$$-$RANDOM/$1"
	fi
}

daemon_pid()
{
	local key
	key=$(_zerofs_key "$1")
	echo "${_zerofs_pid[$key]}"
}

# The store's objects, one a line (the directory store only).
objects()
{
	(cd "$1" && find . -path ./.tmp -prune -o -type f -print | sort)
}

run_kind()
{
	KIND="$1"
	local store a1 b1 pa pb rc=0 t0
	t0=$(date +%s)
	store=$(store_url lease)
	zerofs_mount "$store" "$t/ca" "$t/ma" "$OPTS"
	pa=$(daemon_pid "$t/ma")
	a1=$("$FSPROBE" writesync "$t/ma/a1" 500000 1)

	# A second read-write mount is refused, naming the holder.
	mkdir -p "$t/mx"
	timeout 60 "$ZEROFS" -f ${ZEROFS_CONFIG:+-c "$ZEROFS_CONFIG"} \
		-o "store=$store,cache_dir=$t/cx,$ZEROFS_TEST_OPTS,$OPTS" "$t/mx" \
		>"$t/second.log" 2>&1 || rc=$?
	cat "$t/second.log"
	[ "$rc" -ne 0 ] || fail "$KIND: a second read-write mount succeeded"
	[ "$rc" -ne 124 ] || fail "$KIND: the second mount hung"
	grep -q "lease is held by $HOST pid $pa since" "$t/second.log" ||
		fail "$KIND: the refusal does not name the holder ($HOST pid $pa)"

	# Force a takeover while the first writer is frozen.
	kill -STOP "$pa"
	zerofs_mount "$store" "$t/cb" "$t/mb" "$OPTS,force_takeover"
	pb=$(daemon_pid "$t/mb")
	assert_eq "$a1" "$("$FSPROBE" sum "$t/mb/a1")" "$KIND: a1 seen by the new writer"
	b1=$("$FSPROBE" writesync "$t/mb/b1" 300000 2)
	kill -CONT "$pa"

	# The fenced writer's next fsync fails with EIO, and it says why.
	if "$FSPROBE" writesync "$t/ma/late" 400000 3 2>"$t/late.err"; then
		fail "$KIND: the fenced writer's fsync succeeded"
	fi
	grep -q "Input/output error" "$t/late.err" ||
		fail "$KIND: the fenced writer's fsync failed, but not with EIO: $(cat "$t/late.err")"
	grep -q "fenced by $HOST/$pb" "$t/ma.log" ||
		fail "$KIND: the fenced writer's log does not say 'fenced by $HOST/$pb'"
	# (Its segments uploaded before it noticed are unreferenced garbage.)
	if [ "$KIND" = dir ]; then
		objects "$store" >"$t/objects.before"
	fi
	if "$FSPROBE" writesync "$t/ma/later" 400000 4 2>/dev/null; then
		fail "$KIND: a second fsync of the fenced writer succeeded"
	fi
	if [ "$KIND" = dir ]; then
		sleep 2
		objects "$store" >"$t/objects.after"
		diff "$t/objects.before" "$t/objects.after" ||
			fail "$KIND: the fenced writer changed the store's objects"
	fi
	[ ! -e "$t/mb/late" ] || fail "$KIND: the fenced writer's file is visible to the new one"
	zerofs_kill9 "$t/ma"

	# A clean unmount releases the lease: the next mount needs no force, and
	# sees the new writer's files but nothing of the fenced one's.
	zerofs_umount "$t/mb"
	grep -q "released the writer lease" "$t/mb.log" || fail "$KIND: no release logged"
	rm -rf "$t/cb"
	zerofs_mount "$store" "$t/cb" "$t/mb" "$OPTS"
	assert_eq "$a1" "$("$FSPROBE" sum "$t/mb/a1")" "$KIND: a1 after the takeover"
	assert_eq "$b1" "$("$FSPROBE" sum "$t/mb/b1")" "$KIND: b1 after the takeover"
	[ ! -e "$t/mb/late" ] && [ ! -e "$t/mb/later" ] ||
		fail "$KIND: a file of the fenced writer is visible to a later mount"

	# A writer frozen after its lease check, its index log on the way (the
	# crash point freezes it there; its first log is the mount's own).  The
	# new writer checkpoints and prunes past that sequence number; when the
	# old one resumes, its log put must find the number taken and fail: its
	# fsync returns EIO, never a false success.
	zerofs_umount "$t/mb"
	ZEROFS_CRASH_AT=barrier.before_log:2:stop zerofs_mount "$store" "$t/cc" "$t/mc" "$OPTS"
	pc=$(daemon_pid "$t/mc")
	"$FSPROBE" writesync "$t/mc/frozen" 200000 5 2>"$t/frozen.err" &
	wp=$!
	for ((i = 0; i < 300; i++)); do
		st=$(awk '{ print $3 }' "/proc/$pc/stat")
		[ "$st" = T ] && break
		sleep 0.1
	done
	[ "$st" = T ] || fail "$KIND: the writer did not stop at barrier.before_log"
	zerofs_mount "$store" "$t/cd" "$t/md" "$OPTS,force_takeover,checkpoint_interval=1"
	d1=$("$FSPROBE" writesync "$t/md/d1" 100000 6)
	d2=$("$FSPROBE" writesync "$t/md/d2" 100000 7)
	zerofs_umount "$t/md"
	kill -CONT "$pc"
	if wait "$wp"; then
		fail "$KIND: the writer frozen before its log put had its fsync succeed"
	fi
	grep -q "was written by another writer" "$t/mc.log" ||
		fail "$KIND: the frozen writer's log does not say its log was taken"
	zerofs_kill9 "$t/mc"
	rm -rf "$t/cb"
	zerofs_mount "$store" "$t/cb" "$t/mb" "$OPTS"
	assert_eq "$d1" "$("$FSPROBE" sum "$t/mb/d1")" "$KIND: d1 after the frozen writer resumed"
	assert_eq "$d2" "$("$FSPROBE" sum "$t/mb/d2")" "$KIND: d2 after the frozen writer resumed"
	[ ! -e "$t/mb/frozen" ] || fail "$KIND: the frozen writer's file is visible"

	# A crash leaves the lease held by a dead process of this host: the next
	# mount takes it over by itself.
	zerofs_kill9 "$t/mb"
	zerofs_mount "$store" "$t/cb" "$t/mb" "$OPTS"
	grep -q "which is no longer running" "$t/mb.log" ||
		fail "$KIND: the stale lease was not taken over as such"
	assert_eq "$b1" "$("$FSPROBE" sum "$t/mb/b1")" "$KIND: b1 after a crash"
	zerofs_umount "$t/mb"
	echo "$KIND: lease check (GET) and renewal (conditional PUT) times, us:"
	grep -ho "lease check (GET) took [0-9]*" "$t"/m?.log | awk '{ s += $NF; n++ }
		END { if (n) printf "  GET: %d checks, mean %d us\n", n, s / n }'
	grep -ho "lease renewal (PUT If-Match) took [0-9]*" "$t"/m?.log | awk '{ s += $NF; n++ }
		END { if (n) printf "  PUT: %d renewals, mean %d us\n", n, s / n }'
	rm -rf "$t/ca" "$t/cb" "$t/cc" "$t/cd" "$t/cx" "$t"/m?.log
	echo "$KIND: done in $(($(date +%s) - t0)) s"
}

run_kind dir

if ! command -v radosgw >/dev/null || ! command -v ceph-mon >/dev/null ||
	! command -v ceph-osd >/dev/null; then
	if [ "${CI:-}" = true ]; then
		fail "radosgw, ceph-mon or ceph-osd is missing (tests/deps.sh installs them)"
	fi
	echo "$0: radosgw, ceph-mon or ceph-osd is missing: the S3 half is skipped"
	exit 0
fi
if rgw_env=$("$RGW" env 2>/dev/null); then
	echo "$0: reusing the running radosgw"
else
	cleanup_fn "$RGW" stop
	rgw_env=$("$RGW" start) || fail "radosgw did not start"
fi
eval "$rgw_env"
cat >"$t/s3.conf" <<EOC
s3_endpoint = "$ZEROFS_S3_ENDPOINT";
s3_path_style = true;
s3_access_key = "$ZEROFS_S3_ACCESS_KEY";
s3_secret_key = "$ZEROFS_S3_SECRET_KEY";
EOC
chmod 600 "$t/s3.conf"
export ZEROFS_CONFIG="$t/s3.conf"
run_kind s3
