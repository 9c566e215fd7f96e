#!/usr/bin/env bash
# The S3 backend against a real S3 server (a single-node Ceph RADOS Gateway,
# tests/s3/radosgw.sh): what fsync acknowledged survives kill -9 and a
# remount with the cache deleted (recovery from the bucket alone); two
# prefixes of one bucket are independent filesystems; a wrong secret key and
# an unreachable endpoint fail the mount with a clear message, in bounded
# time.  The credentials reach the daemon through a config file (-c).
#
# Skipped when the Ceph packages are missing, except under CI=true, where
# that is a failure.  A gateway this test starts is stopped at the end; one
# already running (tests/s3/radosgw.sh start) is reused and left running.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires curl timeout

RGW="$(dirname "$0")/s3/radosgw.sh"
if ! command -v radosgw >/dev/null || ! command -v ceph-mon >/dev/null ||
	! command -v ceph-osd >/dev/null; then
	if [ "${CI:-}" = true ]; then
		fail "radosgw, ceph-mon or ceph-osd is missing (tests/deps.sh installs them)"
	fi
	echo "$0: radosgw, ceph-mon or ceph-osd is missing: test skipped"
	exit 77
fi

t=$(mktemp -d /tmp/zerofs-s3.XXXXXX)
cleanup_fn rm -rf "$t"
if rgw_env=$("$RGW" env 2>/dev/null); then
	echo "$0: reusing the running radosgw"
else
	cleanup_fn "$RGW" stop
	rgw_env=$("$RGW" start) || fail "radosgw did not start"
fi
eval "$rgw_env"

# A fresh pair of prefixes per run: the bucket may be shared with other runs.
run="t-s3-$$-$RANDOM"
write_config()
{
	local file="$1" endpoint="$2" secret="$3" timeout_ms="$4"
	cat >"$file" <<EOC
s3_endpoint = "$endpoint";
s3_path_style = true;
s3_access_key = "$ZEROFS_S3_ACCESS_KEY";
s3_secret_key = "$secret";
store_timeout_ms = $timeout_ms;
EOC
	chmod 600 "$file"
}
write_config "$t/s3.conf" "$ZEROFS_S3_ENDPOINT" "$ZEROFS_S3_SECRET_KEY" 20000
export ZEROFS_CONFIG="$t/s3.conf"

S1="s3://$ZEROFS_S3_BUCKET/$run/a"
S2="s3://$ZEROFS_S3_BUCKET/$run/b"
M=$t/mnt
C=$t/cache
OPTS="barrier_interval_ms=3600000,checkpoint_interval=3,segment_size=1M"

zerofs_mount "$S1" "$C" "$M" "$OPTS"
declare -A want=()
sizes=(0 1 4095 65543 300000 1048576 5000000 12345678)
for i in "${!sizes[@]}"; do
	want[f$i]=$("$FSPROBE" writesync "$M/f$i" "${sizes[$i]}" "$i")
done
mkdir "$M/dir"
want[dir/g]=$("$FSPROBE" writesync "$M/dir/g" 777777 99)
# Not fsynced: may or may not survive, must not break anything.
head -c 2000000 /dev/urandom >"$M/unsynced"

check()
{
	local what="$1" f
	for f in "${!want[@]}"; do
		assert_eq "${want[$f]}" "$("$FSPROBE" sum "$M/$f")" "$f $what"
	done
}
check "before the crash"
zerofs_kill9 "$M"
rm -rf "$C"
zerofs_mount "$S1" "$C" "$M" "$OPTS"
check "after kill -9 and a remount with the cache deleted"

# Another prefix of the same bucket is another filesystem.
zerofs_mount "$S2" "$t/cache2" "$t/mnt2" "$OPTS"
# (ls without -A: the mount root may hold the hidden .nbd directory.)
[ -z "$(ls "$t/mnt2")" ] || fail "a new prefix shows files: $(ls "$t/mnt2")"
other=$("$FSPROBE" writesync "$t/mnt2/other" 100000 5)
[ ! -e "$M/other" ] || fail "a file of prefix b appeared under prefix a"
zerofs_umount "$t/mnt2"
zerofs_umount "$M"
rm -rf "$t/cache2"
zerofs_mount "$S2" "$t/cache2" "$t/mnt2" "$OPTS"
assert_eq "$other" "$("$FSPROBE" sum "$t/mnt2/other")" "prefix b after a remount"
assert_eq other "$(ls "$t/mnt2")" "files in prefix b"
zerofs_umount "$t/mnt2"

# A mount that must fail: non-zero exit, within bounds, with the message.
must_fail()
{
	local what="$1" conf="$2" store="$3" pattern="$4" limit="$5" start rc=0
	mkdir -p "$t/mnt3"
	start=$(date +%s)
	timeout 60 "$ZEROFS" -f -c "$conf" -o "store=$store,cache_dir=$t/cache3,kdf=min" \
		"$t/mnt3" >"$t/fail.log" 2>&1 || rc=$?
	cat "$t/fail.log"
	[ "$rc" -ne 0 ] || fail "$what: the mount succeeded"
	[ "$rc" -ne 124 ] || fail "$what: still running after 60 s"
	[ $(($(date +%s) - start)) -le "$limit" ] || fail "$what: took more than $limit s"
	grep -q -- "$pattern" "$t/fail.log" || fail "$what: no message matching '$pattern'"
}
write_config "$t/bad.conf" "$ZEROFS_S3_ENDPOINT" "not-the-secret" 20000
must_fail "wrong secret key" "$t/bad.conf" "$S1" "SignatureDoesNotMatch" 10
must_fail "missing bucket" "$t/s3.conf" "s3://no-such-bucket-$$/x" "NoSuchBucket" 10
port=$(pick_port)
write_config "$t/unreachable.conf" "http://127.0.0.1:$port" "$ZEROFS_S3_SECRET_KEY" 3000
must_fail "unreachable endpoint" "$t/unreachable.conf" "$S1" "giving up" 10
