#!/usr/bin/env bash
# postgres-on-zerofs.sh: PostgreSQL (Debian's packages) with its data
# directory on ext4, on a loop device, over a device file of a zerofs-fuse
# mount.
#
#   PostgreSQL  data directory DIR/ext4/pgdata, Unix socket in DIR/run
#   ext4        on the loop device, mounted on DIR/ext4 (noatime)
#   loop        losetup --direct-io=on over MNT/.nbd/NAME
#   zerofs-fuse mounted on MNT (not managed here: mount it first, unmount
#               it last)
#
# Usage: postgres-on-zerofs.sh [OPTIONS] setup|start|stop|teardown|status|env
#
#   setup     create the device file (if missing), attach the loop device,
#             make ext4 on it (if blank), mount it, run initdb (if the data
#             directory is empty).  Idempotent.
#   start     what setup does, then start the server (pg_ctl start -w).
#             After a crash (of the machine, of zerofs-fuse, of PostgreSQL)
#             this is the recovery: ext4 replays its journal on mount,
#             PostgreSQL replays its WAL.
#   stop      stop the server (pg_ctl stop -m fast: a shutdown checkpoint).
#   teardown  stop, unmount ext4, detach the loop device; zerofs-fuse can
#             then be unmounted.
#   status    the server, the ext4 mount and the loop device.
#   env       print PGHOST, PGPORT and PGUSER as shell exports, for clients
#             (eval "$(postgres-on-zerofs.sh -m MNT env)"; psql, pgbench).
#
# Options:
#   -m MNT    the zerofs-fuse mountpoint (required; or $ZEROFS_MNT)
#   -d DIR    state directory: ext4 mountpoint, socket, server log, loop
#             record (default /var/lib/zerofs-pg)
#   -n NAME   device file name in MNT/.nbd (default pg)
#   -S SIZE   device size when it is created (default 10G; sparse)
#   -p PORT   server port, used in the socket name (default 5432); the
#             server listens on the Unix socket only
#   -B BINDIR PostgreSQL programs (default: the newest
#             /usr/lib/postgresql/*/bin)
#   -c NAME=VALUE  a server setting for start (repeatable), such as
#             -c shared_buffers=1GB
#
# Why a loop device and ext4, not the data directory in the FUSE mount:
# - PostgreSQL's many small files, renames and directory fsyncs stay in
#   ext4 (journalled, in the page cache), and reach zerofs-fuse as block
#   writes to one file; its index holds one file's extents, not a database's
#   directory tree.
# - Durability follows the block layer's contract end to end.  A commit
#   fsyncs the WAL; ext4 commits its journal and issues a cache flush
#   (REQ_PREFLUSH/FUA) to the loop device; the loop driver turns the flush
#   into fsync of the device file; zerofs-fuse makes that fsync a barrier:
#   the data is uploaded to the object store and the index change is
#   written, and only then does the fsync, hence the commit, return.  So a
#   transaction reported committed with synchronous_commit=on (the default)
#   survives a crash of zerofs-fuse or of the machine, even with its cache
#   directory lost; with synchronous_commit=off the last commits may be lost,
#   never the database's consistency.  Leave fsync=on and
#   full_page_writes=on: the device file does not promise atomic 8 KiB
#   writes across a crash.
# - --direct-io=on: the loop device reads and writes the device file with
#   O_DIRECT, so its blocks are cached once (in ext4's page cache), not a
#   second time in the FUSE file's page cache.
# - Concurrent commits share one barrier in zerofs-fuse (group commit),
#   which is what keeps a TPC-B load going: the latency of one commit is
#   one object-store round trip (PUT of the segment and of the index log).
#
# Teardown order: PostgreSQL, then ext4 (umount), then the loop device
# (losetup -d), then zerofs-fuse (fusermount3 -u, and wait for the daemon to
# exit: its last barrier).  The other way round, writeback would go to a
# device whose file is gone.  Memory: the kernel may write back ext4's dirty
# pages through the loop device into zerofs-fuse to reclaim memory; see
# "BLOCK DEVICES" in zerofs-fuse(8) for that deadlock risk and what is done
# about it.
#
# Needs root (loop devices, mounts), the Debian packages postgresql (its
# server runs as the user postgres), e2fsprogs and util-linux.
set -euo pipefail

MNT=${ZEROFS_MNT:-}
DIR=/var/lib/zerofs-pg
NAME=pg
SIZE=10G
PORT=5432
BINDIR=
SETTINGS=()
ZEROFS=${ZEROFS_FUSE:-zerofs-fuse}

usage()
{
	sed -n 's/^# \{0,1\}//; /^Usage:/,/^Why a loop/p' "$0" | sed '$d' >&2
	exit 2
}
die()
{
	echo "postgres-on-zerofs: $*" >&2
	exit 1
}
say() { echo "postgres-on-zerofs: $*"; }

while getopts "m:d:n:S:p:B:c:h" opt; do
	case $opt in
	m) MNT=$OPTARG ;;
	d) DIR=$OPTARG ;;
	n) NAME=$OPTARG ;;
	S) SIZE=$OPTARG ;;
	p) PORT=$OPTARG ;;
	B) BINDIR=$OPTARG ;;
	c) SETTINGS+=("$OPTARG") ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
CMD=$1
[ -n "$MNT" ] || die "-m MOUNTPOINT is required (the zerofs-fuse mount)"
[ "$(id -u)" -eq 0 ] || die "must run as root (loop devices, mounts)"
MNT=$(realpath -m "$MNT")
DIR=$(realpath -m "$DIR")
if [ -z "$BINDIR" ]; then
	BINDIR=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null |
		sort -V | tail -n 1)
	[ -n "$BINDIR" ] || die "no /usr/lib/postgresql/*/bin: install the package postgresql"
fi
[ -x "$BINDIR/pg_ctl" ] || die "$BINDIR/pg_ctl is missing"
id postgres >/dev/null 2>&1 || die "no user postgres (the package postgresql creates it)"

DEV="$MNT/.nbd/$NAME"
EXT4="$DIR/ext4"
PGDATA="$EXT4/pgdata"
RUN="$DIR/run"
LOG="$DIR/postgresql.log"
LOOPREC="$DIR/loop"

as_pg() { runuser -u postgres -- "$@"; }
mounted() { findmnt -n -M "$1" >/dev/null 2>&1; }

# The loop device recorded at attach time ("NAME MAJ:MIN INO" of its backing
# file), if it still has that backing file: after a crash of zerofs-fuse and
# a lazy unmount, the backing file has no path, so its path cannot find it.
loop_dev()
{
	local rec name majmin ino cur f
	rec=$(cat "$LOOPREC" 2>/dev/null) || return 1
	read -r name majmin ino <<<"$rec"
	cur=$(losetup -l -n -O NAME,BACK-MAJ:MIN,BACK-INO "$name" 2>/dev/null) || return 1
	read -r -a f <<<"$cur"
	[ "${f[1]:-}" = "$majmin" ] && [ "${f[2]:-}" = "$ino" ] || return 1
	echo "$name"
}

# Is the server of this data directory running?  Not only "is the pid in
# postmaster.pid alive" (pg_ctl status): after a kill -9 that pid may have
# been reused by another process; the postmaster works in its data directory.
running()
{
	local pid
	[ -f "$PGDATA/postmaster.pid" ] || return 1
	pid=$(head -n 1 "$PGDATA/postmaster.pid")
	[ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$PGDATA")" ]
}

cmd_setup()
{
	local dev
	[ "$(findmnt -n -o FSTYPE -M "$MNT" 2>/dev/null)" = fuse.zerofs-fuse ] ||
		die "$MNT is not a mounted zerofs-fuse filesystem"
	mkdir -p "$DIR" "$EXT4" "$RUN"
	chown postgres: "$RUN"
	chmod 700 "$RUN"
	if [ ! -e "$DEV" ]; then
		"$ZEROFS" device create -m "$MNT" "$NAME" "$SIZE" || die "cannot create $DEV"
	fi
	if ! dev=$(loop_dev); then
		dev=$(losetup -f --show --direct-io=on "$DEV") || die "losetup on $DEV failed"
		losetup -l -n -O NAME,BACK-MAJ:MIN,BACK-INO "$dev" >"$LOOPREC"
		say "$DEV on $dev"
	fi
	if ! mounted "$EXT4"; then
		if [ -z "$(blkid -p -o value -s TYPE "$dev" 2>/dev/null)" ]; then
			say "mkfs.ext4 on $dev"
			mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev" ||
				die "mkfs.ext4 failed"
		fi
		mount -o noatime "$dev" "$EXT4" || die "mount of ext4 on $dev failed"
		say "ext4 on $dev mounted on $EXT4"
	fi
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		mkdir -p "$PGDATA"
		chown postgres: "$PGDATA"
		chmod 700 "$PGDATA"
		# trust: the only way in is the socket in DIR/run, mode 0700,
		# reachable by postgres and root alone.
		as_pg "$BINDIR/initdb" -D "$PGDATA" -A trust -k -E UTF8 --locale=C.UTF-8 \
			>"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
		say "initdb: $PGDATA"
	fi
}

cmd_start()
{
	local o="-p $PORT -c listen_addresses= -c unix_socket_directories=$RUN"
	o="$o -c unix_socket_permissions=0700"
	local s
	cmd_setup
	running && { say "already running"; return 0; }
	# After a crash the pid in postmaster.pid may belong to another process
	# by now, and PostgreSQL would refuse to start ("is another postmaster
	# running?"): this server is not running (see running), so the file is
	# stale.
	if [ -f "$PGDATA/postmaster.pid" ]; then
		say "removing the stale postmaster.pid (pid $(head -n 1 "$PGDATA/postmaster.pid") is not this server)"
		rm -f "$PGDATA/postmaster.pid" "$RUN/.s.PGSQL.$PORT.lock"
	fi
	for s in "${SETTINGS[@]}"; do
		o="$o -c $s"
	done
	touch "$LOG"
	chown postgres: "$LOG"
	as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -l "$LOG" -o "$o" -w -t 300 start >/dev/null ||
		{ tail -n 20 "$LOG" >&2; die "PostgreSQL did not start; log: $LOG"; }
	say "PostgreSQL running on $RUN/.s.PGSQL.$PORT"
}

cmd_stop()
{
	[ -e "$PGDATA/PG_VERSION" ] || return 0
	running || return 0
	as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -m fast -w -t 300 stop >/dev/null ||
		die "PostgreSQL did not stop; log: $LOG"
	say "PostgreSQL stopped"
}

cmd_teardown()
{
	local dev i
	if mounted "$EXT4"; then
		cmd_stop
		# The server's last processes may still be exiting for a moment.
		for ((i = 0; i < 50; i++)); do
			umount "$EXT4" 2>/dev/null && break
			sleep 0.2
		done
		mounted "$EXT4" && die "cannot unmount $EXT4 (busy: $(fuser -vm "$EXT4" 2>&1 | grep -v 'Cannot stat'))"
		say "ext4 unmounted from $EXT4"
	fi
	if dev=$(loop_dev); then
		losetup -d "$dev" || die "cannot detach $dev"
		say "$dev detached; $MNT can be unmounted now"
	fi
	rm -f "$LOOPREC"
}

cmd_status()
{
	local dev rc=0
	if dev=$(loop_dev); then echo "loop: $dev over $DEV"; else echo "loop: none"; rc=1; fi
	if mounted "$EXT4"; then echo "ext4: mounted on $EXT4"; else echo "ext4: not mounted"; rc=1; fi
	if [ -e "$PGDATA/PG_VERSION" ] && running; then
		echo "postgresql: running, $RUN/.s.PGSQL.$PORT"
	else
		echo "postgresql: not running"
		rc=1
	fi
	return "$rc"
}

case $CMD in
setup) cmd_setup ;;
start) cmd_start ;;
stop) cmd_stop ;;
teardown) cmd_teardown ;;
status) cmd_status ;;
env)
	echo "export PGHOST=$RUN"
	echo "export PGPORT=$PORT"
	echo "export PGUSER=postgres"
	;;
*) usage ;;
esac
