#!/usr/bin/env bash
# Store faults and outages, on the directory store (faults injected by the
# store_faults wrapper) and on the S3 store (a real radosgw behind
# tests/helpers/faultproxy, so that the S3 backend's own retries are what is
# tested):
#  1. 5% failures, 2% lost answers and 2 s latency spikes during a
#     write/fsync workload: every fsync that returned 0 is durable (kill -9,
#     remount with the cache deleted, checksums).
#  2. a full outage in the middle of writes and fsyncs: fsync waits about
#     store_timeout_ms and fails with EIO, never succeeds falsely; when the
#     outage ends the same mount recovers by itself, a new fsync succeeds,
#     and nothing acknowledged is lost (kill -9, remount without the cache).
# store_timeout_ms is 4 s here; LONG=1 runs the outage with the default 60 s
# bound and a 70 s outage.  The S3 half is skipped when the Ceph packages
# are missing, except under CI=true, where that is a failure.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires timeout

PROXY="$abs_top_builddir/tests/helpers/faultproxy"
RGW="$(dirname "$0")/s3/radosgw.sh"
if [ "${LONG:-}" = 1 ]; then
	TIMEOUT_MS=60000
	OUTAGE_S=70
else
	TIMEOUT_MS=4000
	OUTAGE_S=10
fi
OPTS="barrier_interval_ms=3600000,checkpoint_interval=4,segment_size=1M"
OPTS+=",store_timeout_ms=$TIMEOUT_MS"

t=$(mktemp -d /tmp/zerofs-faults.XXXXXX)
cleanup_fn rm -rf "$t"
CTL=$t/faults.ctl
: >"$CTL"
M=$t/mnt
C=$t/cache

now_ms()
{
	date +%s%3N
}

# The store under test: "dir" or "s3", set by the driver at the bottom.
KIND=
PROXY_LOG=

# store_url NAME: a fresh, empty store for one scenario.
store_url()
{
	if [ "$KIND" = dir ]; then
		echo "$t/store-$1"
	else
		echo "s3://$ZEROFS_S3_BUCKET/t-faults-$$-$RANDOM/$1"
	fi
}

mount_store()
{
	local store="$1"
	if [ "$KIND" = dir ]; then
		zerofs_mount "$store" "$C" "$M" "$OPTS,store_faults=$CTL"
	else
		zerofs_mount "$store" "$C" "$M" "$OPTS"
	fi
}

# How many faults were injected so far (by the wrapper or the proxy).
injected()
{
	if [ "$KIND" = dir ]; then
		if ! { cat "$M.log" 2>/dev/null | grep -c "store_faults: .*injected"; }; then :; fi
	else
		if ! { grep -c "faultproxy: \(503\|reset\)" "$PROXY_LOG"; }; then :; fi
	fi
}

# Every file of the mount with its checksum, one "name sum" a line.
snapshot()
{
	local f
	for f in $(cd "$M" && ls); do
		echo "$f $("$FSPROBE" sum "$M/$f")"
	done
}

# verify WANTFILE WHAT: the mount holds each "name sum" of WANTFILE.
verify()
{
	local name sum
	while read -r name sum; do
		assert_eq "$sum" "$("$FSPROBE" sum "$M/$name" 2>&1)" "$name $2"
	done <"$1"
}

crash_and_remount()
{
	local store="$1"
	: >"$CTL"
	zerofs_kill9 "$M"
	rm -rf "$C"
	mount_store "$store"
}

flaky()
{
	local store ok=0 failed=0 i sum
	store=$(store_url flaky)
	: >"$t/acked"
	mount_store "$store"
	echo "fail=5% reset=2% delay=2000ms@2%" >"$CTL"
	for i in $(seq 0 39); do
		if sum=$("$FSPROBE" writesync "$M/f$i" $((RANDOM * 20 + i)) "$i" 2>>"$t/errors"); then
			echo "f$i $sum" >>"$t/acked"
			ok=$((ok + 1))
		else
			failed=$((failed + 1))
		fi
	done
	# Rewrites: the newest acknowledged content is the one that must be kept.
	# (Larger than the first versions: the size must not depend on a
	# truncation, which is another test's concern.)
	for i in 0 1 2 3 4; do
		if ! { grep -v "^f$i " "$t/acked" >"$t/acked.tmp"; }; then :; fi
		mv "$t/acked.tmp" "$t/acked"
		if sum=$("$FSPROBE" writesync "$M/f$i" 700000 $((i + 100)) 2>>"$t/errors"); then
			echo "f$i $sum" >>"$t/acked"
			ok=$((ok + 1))
		else
			failed=$((failed + 1))
		fi
	done
	echo "$KIND flaky: $ok fsyncs acknowledged, $failed failed, $(injected) faults injected"
	[ "$(injected)" -gt 0 ] || fail "$KIND flaky: no fault was injected"
	[ "$ok" -gt 20 ] || fail "$KIND flaky: only $ok of 45 fsyncs succeeded"
	if grep -v "Input/output error" "$t/errors" | grep -q .; then
		fail "$KIND flaky: fsync failed other than with EIO: $(sort -u "$t/errors")"
	fi
	verify "$t/acked" "before the crash ($KIND, flaky store)"
	crash_and_remount "$store"
	verify "$t/acked" "after kill -9 and a remount without cache ($KIND, flaky store)"
	zerofs_umount "$M"
	rm -rf "$C" "$t/errors"
}

# The background writer of the outage scenario: writesync in a loop until
# $t/stop exists; one line per fsync: "name rc start_ms end_ms sum".
writer()
{
	local i=0 start rc sum
	while [ ! -e "$t/stop" ]; do
		start=$(now_ms)
		rc=0
		sum=$("$FSPROBE" writesync "$M/w$i" $((100000 + i * 1000)) $((i + 1000)) \
			2>>"$t/werrors") || rc=$?
		echo "w$i $rc $start $(now_ms) ${sum:-none}" >>"$t/wlog"
		i=$((i + 1))
		sleep 0.2
	done
}

outage()
{
	local store on off start end took sum name rc s e wpid
	store=$(store_url outage)
	mount_store "$store"
	: >"$t/acked"
	sum=$("$FSPROBE" writesync "$M/a" 700000 1) || fail "$KIND: fsync before the outage failed"
	echo "a $sum" >>"$t/acked"
	rm -f "$t/stop" "$t/wlog" "$t/werrors"
	writer &
	wpid=$!
	sleep 1
	echo outage >"$CTL"
	on=$(now_ms)
	# The control file is re-read at most every 100 ms.
	sleep 0.3
	start=$(now_ms)
	if "$FSPROBE" writesync "$M/b" 900000 2 2>"$t/b.err"; then
		fail "$KIND: fsync succeeded during a store outage"
	fi
	end=$(now_ms)
	took=$((end - start))
	grep -q "Input/output error" "$t/b.err" || fail "$KIND: fsync failed but not with EIO: $(cat "$t/b.err")"
	echo "$KIND outage: fsync failed with EIO after $took ms (store_timeout_ms $TIMEOUT_MS)"
	[ "$took" -ge $((TIMEOUT_MS * 9 / 10)) ] ||
		fail "$KIND: fsync failed after $took ms, before store_timeout_ms ($TIMEOUT_MS)"
	[ "$took" -le $((TIMEOUT_MS * 3 + 5000)) ] ||
		fail "$KIND: fsync took $took ms to fail (store_timeout_ms $TIMEOUT_MS)"
	while [ $(($(now_ms) - on)) -lt $((OUTAGE_S * 1000)) ]; do
		sleep 0.5
	done
	: >"$CTL"
	off=$(now_ms)
	start=$(now_ms)
	sum=$("$FSPROBE" writesync "$M/c" 500000 3) ||
		fail "$KIND: the first fsync after the outage failed: the mount did not recover"
	echo "$KIND outage: the first fsync after the outage took $(($(now_ms) - start)) ms"
	echo "c $sum" >>"$t/acked"
	touch "$t/stop"
	wait "$wpid"

	# The writer's fsyncs: none wholly inside the outage succeeded; some failed
	# with EIO; those after it succeeded.
	local during=0 after=0
	while read -r name rc s e sum; do
		if [ "$rc" -eq 0 ]; then
			echo "$name $sum" >>"$t/acked"
			if [ "$s" -gt $((on + 300)) ] && [ "$e" -lt "$off" ]; then
				fail "$KIND: $name's fsync succeeded during the outage"
			fi
			[ "$s" -gt "$off" ] && after=$((after + 1))
		else
			during=$((during + 1))
		fi
	done <"$t/wlog"
	echo "$KIND outage: writer fsyncs: $(wc -l <"$t/wlog") in all, $during failed," \
		"$after succeeded after the outage"
	[ "$during" -gt 0 ] || fail "$KIND: no writer fsync failed during the outage"
	if grep -v "Input/output error" "$t/werrors" | grep -q .; then
		fail "$KIND: a writer fsync failed other than with EIO: $(sort -u "$t/werrors")"
	fi
	# c's barrier covered everything written before it, b and the writer's
	# failed files included: all of it must now survive a crash.
	snapshot >"$t/all"
	verify "$t/acked" "before the crash ($KIND, after the outage)"
	crash_and_remount "$store"
	verify "$t/acked" "after the outage, kill -9 and a remount without cache ($KIND)"
	verify "$t/all" "(written before the last fsync) after the outage and a remount ($KIND)"
	zerofs_umount "$M"
	rm -rf "$C"
}

run_kind()
{
	KIND="$1"
	local t0
	t0=$(date +%s)
	flaky
	outage
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
PROXY_LOG=$t/proxy.log
"$PROXY" "$CTL" "${ZEROFS_S3_ENDPOINT##*:}" >"$t/proxy.port" 2>"$PROXY_LOG" &
proxy_pid=$!
cleanup_fn kill "$proxy_pid"
for ((i = 0; i < 50; i++)); do
	[ -s "$t/proxy.port" ] && break
	sleep 0.1
done
[ -s "$t/proxy.port" ] || fail "faultproxy did not start"
cat >"$t/s3.conf" <<EOC
s3_endpoint = "http://127.0.0.1:$(cat "$t/proxy.port")";
s3_path_style = true;
s3_access_key = "$ZEROFS_S3_ACCESS_KEY";
s3_secret_key = "$ZEROFS_S3_SECRET_KEY";
EOC
chmod 600 "$t/s3.conf"
export ZEROFS_CONFIG="$t/s3.conf"
run_kind s3
