#!/bin/sh
# tests/s3/radosgw.sh: a single-node Ceph RADOS Gateway on 127.0.0.1 for the
# S3 tests and benchmarks: one monitor, one bluestore OSD on a sparse file,
# the beast front-end, no manager.  Debian packages: radosgw ceph-mon ceph-osd
# (tests/deps.sh installs them).  Runs as root, without systemd.
#
#   radosgw.sh start   start it (if not running), create the user and the
#                      bucket, print the settings as shell exports
#   radosgw.sh env     print the settings of the running gateway
#   radosgw.sh stop    stop every daemon and delete every file
#
# Settings (environment): ZEROFS_RGW_DIR (/tmp/zerofs-rgw), ZEROFS_RGW_PORT
# (7480), ZEROFS_RGW_MON_PORT (6789), ZEROFS_RGW_BUCKET (zerofs-test).
# Exit status: 0, 2 when the packages are missing, 1 on any other failure.
set -eu

D=${ZEROFS_RGW_DIR:-/tmp/zerofs-rgw}
PORT=${ZEROFS_RGW_PORT:-7480}
MONPORT=${ZEROFS_RGW_MON_PORT:-6789}
BUCKET=${ZEROFS_RGW_BUCKET:-zerofs-test}
KEY=zerofstestkey
SECRET=zerofstestsecret
C="-c $D/ceph.conf"
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

die() {
	echo "radosgw.sh: $*" >&2
	exit 1
}

# Run a ceph command with a bound, so a stuck monitor fails the start fast.
bounded() {
	timeout 60 "$@" || die "'$*' failed or timed out; logs in $D/log"
}

pids() {
	# No pid files means no daemons: an empty answer, not an error.
	for f in "$D"/run/*.pid; do
		[ -f "$f" ] && cat "$f"
	done
	return 0
}

running() {
	[ -f "$D/env" ] || return 1
	for p in $(pids); do
		kill -0 "$p" 2>/dev/null || return 1
	done
	curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"
}

write_conf() {
	cat >"$D/ceph.conf" <<EOC
[global]
fsid = $1
mon host = v1:127.0.0.1:$MONPORT
public addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr2 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
[mon]
mon data = $D/mon
[osd]
osd data = $D/osd\$id
keyring = $D/osd\$id/keyring
osd objectstore = bluestore
bluestore block path = $D/osd\$id.block
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mkfs = false
osd memory target = 1073741824
osd max object size = 134217728
[client.rgw.a]
keyring = $D/rgw/keyring
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $D/rgw
rgw thread pool size = 64
EOC
}

# PUT /bucket, signed by curl (7.88 needs the payload hash header by hand).
make_bucket() {
	code=$(curl -s -o "$D/log/mkbucket.out" -w '%{http_code}' -X PUT \
		--aws-sigv4 "aws:amz:us-east-1:s3" --user "$KEY:$SECRET" \
		-H "x-amz-content-sha256: $EMPTY_SHA256" "http://127.0.0.1:$PORT/$1")
	case $code in
	200 | 409) ;;
	*) die "cannot create bucket $1: HTTP $code $(cat "$D/log/mkbucket.out")" ;;
	esac
}

start() {
	for b in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool curl; do
		command -v $b >/dev/null 2>&1 || {
			echo "radosgw.sh: $b is missing; install radosgw ceph-mon ceph-osd" \
				"(tests/deps.sh)" >&2
			exit 2
		}
	done
	if running; then
		cat "$D/env"
		return 0
	fi
	stop_daemons
	rm -rf "$D"
	mkdir -p "$D/mon" "$D/osd0" "$D/run" "$D/log" "$D/rgw"
	fsid=$(cat /proc/sys/kernel/random/uuid)
	write_conf "$fsid"
	ceph-authtool --create-keyring "$D/mon.keyring" --gen-key -n mon. --cap mon 'allow *' \
		>/dev/null
	ceph-authtool --create-keyring "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' \
		--cap osd 'allow *' --cap mgr 'allow *' >/dev/null
	ceph-authtool "$D/mon.keyring" --import-keyring "$D/keyring" >/dev/null
	monmaptool --create --addv a "v1:127.0.0.1:$MONPORT" --fsid "$fsid" "$D/monmap" >/dev/null
	bounded ceph-mon $C --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.keyring"
	bounded ceph-mon $C -i a
	id=$(bounded ceph $C osd create)
	bounded ceph-osd $C -i "$id" --mkfs --mkkey --no-mon-config 2>"$D/log/osd-mkfs.err"
	bounded ceph $C auth add "osd.$id" osd 'allow *' mon 'allow profile osd' \
		mgr 'allow profile osd' -i "$D/osd$id/keyring" 2>/dev/null
	bounded ceph $C osd crush add-bucket localhost host >/dev/null 2>&1
	bounded ceph $C osd crush move localhost root=default >/dev/null 2>&1
	bounded ceph $C osd crush add "osd.$id" 1.0 host=localhost >/dev/null 2>&1
	bounded ceph-osd $C -i "$id" 2>>"$D/log/osd.err"
	bounded ceph $C auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' \
		-o "$D/rgw/keyring"
	bounded radosgw $C -n client.rgw.a
	i=0
	until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"; do
		i=$((i + 1))
		[ $i -lt 600 ] || die "radosgw did not answer on 127.0.0.1:$PORT in 60 s; logs in $D/log"
		sleep 0.1
	done
	bounded radosgw-admin $C user create --uid=zerofs --display-name=zerofs \
		--access-key=$KEY --secret=$SECRET >/dev/null
	make_bucket "$BUCKET"
	cat >"$D/env" <<EOE
export ZEROFS_S3_ENDPOINT=http://127.0.0.1:$PORT
export ZEROFS_S3_BUCKET=$BUCKET
export ZEROFS_S3_ACCESS_KEY=$KEY
export ZEROFS_S3_SECRET_KEY=$SECRET
export ZEROFS_RGW_DIR=$D
EOE
	cat "$D/env"
}

stop_daemons() {
	p=$(pids)
	[ -n "$p" ] || return 0
	# shellcheck disable=SC2086 # one word per pid
	# A daemon may have exited already: the loop below checks each one.
	if ! kill $p 2>/dev/null; then :; fi
	i=0
	for pid in $p; do
		while kill -0 "$pid" 2>/dev/null; do
			i=$((i + 1))
			if [ $i -gt 100 ]; then
				if ! kill -9 "$pid" 2>/dev/null; then :; fi
				break
			fi
			sleep 0.1
		done
	done
}

case ${1:-} in
start) start ;;
env)
	running || die "not running (start it with: $0 start)"
	cat "$D/env"
	;;
stop)
	stop_daemons
	rm -rf "$D"
	;;
*)
	echo "usage: $0 start|env|stop" >&2
	exit 1
	;;
esac
