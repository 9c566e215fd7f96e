#!/usr/bin/env bash
# fio with --verify=crc32c: random writes of mixed sizes, each block with
# a checksummed header, verified while writing (--verify_backlog) and
# after; on a file in the mount (buffered and O_DIRECT) and on an NBD
# export through fio's nbd engine.  Then the same blocks are verified
# again after kill -9 and a remount from the store alone (the cache
# deleted): what fio fsynced (end_fsync, NBD FLUSH) must all be there.  A
# control run damages a file behind fio's back and must fail to verify.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires fio
if ! fio --enghelp=nbd >/dev/null 2>&1; then
	echo "$0: this fio has no nbd engine: test skipped"
	exit 77
fi

t=$(mktemp -d /tmp/zerofs-fio.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
port=$(pick_port)
OPTS="nbd_listen=127.0.0.1:$port,barrier_interval_ms=3600000"
URI=nbd://127.0.0.1:$port/disk

# Same job options for the write and the verify-only runs, so that fio
# regenerates the same offsets and patterns (randrepeat is on by default).
common=(--rw=randwrite --bsrange=4k-128k --verify=crc32c --verify_fatal=1
	--randrepeat=1 --group_reporting --verify_state_save=0)

# run_fio NAME ARGS...: fio must exit 0 without errors; its output is kept.
run_fio()
{
	local name="$1" rc=0
	shift
	fio --name="$name" "${common[@]}" "$@" --output="$t/$name.out" || rc=$?
	if [ "$rc" -ne 0 ] || grep -Eq "err= *[1-9]|verify: bad|crc32c: verify failed" \
		"$t/$name.out"; then
		cat "$t/$name.out"
		fail "fio $name failed (exit status $rc)"
	fi
}

# read_bytes NAME: bytes fio read (the verify reads) in run NAME.
read_bytes()
{
	local line
	line=$(grep -E '^ +READ:' "$t/$1.out") || fail "fio $1 read nothing"
	sed -E 's/.*io=[^(]*\(([0-9.]+)([kMG]?)B\).*/\1 \2/' <<<"$line" |
		awk '{ m = $2 == "k" ? 1e3 : $2 == "M" ? 1e6 : $2 == "G" ? 1e9 : 1
		       printf "%d\n", $1 * m }'
}

zerofs_mount "$S" "$C" "$M" "$OPTS"
truncate -s 64M "$M/.nbd/disk"

# Write and verify, buffered, O_DIRECT and over NBD (FLUSH every 16 writes).
run_fio buffered --filename="$M/buffered" --size=32M --verify_backlog=64 --end_fsync=1
run_fio direct --filename="$M/direct" --size=32M --direct=1 --verify_backlog=64 --end_fsync=1
run_fio nbd --ioengine=nbd --uri="$URI" --size=64M --iodepth=8 --verify_backlog=64 \
	--fsync=16 --end_fsync=1
for run in buffered direct nbd; do
	[ "$(read_bytes $run)" -ge 30000000 ] || fail "fio $run verified too little"
done

# The NBD writes seen through the file in the mount: the same blocks verify.
run_fio nbd --filename="$M/.nbd/disk" --size=64M --verify_only
# A control: damage a verified file behind fio's back; verify must fail.
run_fio control --filename="$M/control" --size=4M --end_fsync=1
dd if=/dev/urandom of="$M/control" bs=4k seek=300 count=2 conv=notrunc,fsync status=none
if fio --name=control "${common[@]}" --filename="$M/control" --size=4M --verify_only \
	--output="$t/control-damaged.out"; then
	fail "fio verified a damaged file: the verify runs prove nothing"
fi

# Crash after the last fsync/FLUSH, lose the cache, verify everything again.
zerofs_kill9 "$M"
rm -rf "$C"
zerofs_mount "$S" "$C" "$M" "$OPTS"
run_fio buffered --filename="$M/buffered" --size=32M --verify_only
run_fio direct --filename="$M/direct" --size=32M --direct=1 --verify_only
run_fio nbd --ioengine=nbd --uri="$URI" --size=64M --iodepth=8 --verify_only
for run in buffered direct nbd; do
	[ "$(read_bytes $run)" -ge 30000000 ] || fail "fio $run verified too little after the crash"
done
zerofs_umount "$M"
