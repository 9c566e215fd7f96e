#!/usr/bin/env bash
# pg-replicate.sh: keep a PostgreSQL standby on a second zerofs-fuse store,
# fed by incremental snapshot streams (zerofs-fuse send | receive) instead of
# a full copy or an rsync that scans the whole data directory, then caught
# up by streaming replication.  The ZFS workflow (snapshot, zfs send -i,
# zfs recv -F), natively.
#
#   primary   data directory PRIMARY_MNT/pgdata on a zerofs-fuse mount that
#             the caller mounted (read-write, allow_other: the server runs
#             as the postgres user)
#   target    a second store (another bucket, region or a directory); it
#             is mounted here on STANDBY_MNT only while the standby runs
#   standby   data directory STANDBY_MNT/pgdata, streaming from the primary
#
# Usage: pg-replicate.sh [OPTIONS] COMMAND
#   primary-init          initdb in PRIMARY_MNT/pgdata, replication settings
#                         and a replication slot; start the primary
#   primary-start | primary-stop
#   round NAME [BASE]     one replication round: stop the standby, take an
#                         online backup of the primary as snapshot NAME
#                         (pg_backup_start, snapshot, pg_backup_stop), send it
#                         to the target (incrementally from snapshot BASE when
#                         given), receive it there (--force: the standby's own
#                         changes since BASE are rolled back), start the
#                         standby on it with the backup label; it then
#                         catches up by streaming
#   standby-start NAME | standby-stop
#   status
#
# Options (or the environment variables in brackets):
#   -P DIR     primary mountpoint                       [PRIMARY_MNT]
#   -S DIR     standby mountpoint                       [STANDBY_MNT]
#   -s OPTS    zerofs-fuse -o settings of the primary's store, for send
#              (store=..., cache_dir=... of a cache not used by the mount)
#                                                       [SOURCE_OPTS]
#   -t OPTS    zerofs-fuse -o settings of the target store
#                                                       [TARGET_OPTS]
#   -d DIR     state: labels, logs, sockets (default /var/lib/zerofs-pgrep)
#                                                       [STATE_DIR]
#   -p PORT    primary port (5432), -q PORT standby port (5433)
#   -B BINDIR  PostgreSQL programs (default: newest /usr/lib/postgresql/*/bin)
# ZEROFS_STREAM_PASSWORD must be set (the stream key); the stores' passwords
# come from their settings or ZEROFS_PASSWORD as usual.
set -euo pipefail

PRIMARY_MNT=${PRIMARY_MNT:-}
STANDBY_MNT=${STANDBY_MNT:-}
SOURCE_OPTS=${SOURCE_OPTS:-}
TARGET_OPTS=${TARGET_OPTS:-}
STATE_DIR=${STATE_DIR:-/var/lib/zerofs-pgrep}
PPORT=5432
SPORT=5433
BINDIR=
ZEROFS=${ZEROFS:-zerofs-fuse}

die()
{
	echo "pg-replicate.sh: $*" >&2
	exit 1
}

while getopts "P:S:s:t:d:p:q:B:" o; do
	case $o in
	P) PRIMARY_MNT=$OPTARG ;;
	S) STANDBY_MNT=$OPTARG ;;
	s) SOURCE_OPTS=$OPTARG ;;
	t) TARGET_OPTS=$OPTARG ;;
	d) STATE_DIR=$OPTARG ;;
	p) PPORT=$OPTARG ;;
	q) SPORT=$OPTARG ;;
	B) BINDIR=$OPTARG ;;
	*) die "bad option (see the comment at the top)" ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || die "no command"
if [ -z "$BINDIR" ]; then
	BINDIR=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d | sort -V | tail -n 1)
fi
[ -x "$BINDIR/pg_ctl" ] || die "no PostgreSQL programs in '$BINDIR'"
[ -n "$PRIMARY_MNT" ] && [ -n "$STANDBY_MNT" ] || die "-P and -S are required"
mkdir -p "$STATE_DIR/run" "$STATE_DIR/log"
chown postgres: "$STATE_DIR/run" "$STATE_DIR/log"
PDATA=$PRIMARY_MNT/pgdata
SDATA=$STANDBY_MNT/pgdata

as_pg()
{
	runuser -u postgres -- "$@"
}

psql_p()
{
	as_pg "$BINDIR/psql" -X -q -At -h "$STATE_DIR/run" -p "$PPORT" -d postgres "$@"
}

pg_start()
{
	as_pg "$BINDIR/pg_ctl" -D "$1" -w -t 120 -l "$STATE_DIR/log/$2.log" \
		-o "-p $3 -k $STATE_DIR/run -c listen_addresses=''" start >/dev/null
}

pg_stop()
{
	if [ -f "$1/postmaster.pid" ]; then
		as_pg "$BINDIR/pg_ctl" -D "$1" -w -t 120 -m fast stop >/dev/null
	fi
}

standby_stop()
{
	if mountpoint -q "$STANDBY_MNT"; then
		pg_stop "$SDATA"
		"$ZEROFS" flush "$STANDBY_MNT"
		fusermount3 -u "$STANDBY_MNT"
		# The daemon's last barrier runs after the unmount: wait for it.
		for _ in $(seq 300); do
			pgrep -f -- "zerofs-fuse .*$STANDBY_MNT\$" >/dev/null || return 0
			sleep 0.1
		done
		die "the standby's zerofs-fuse did not exit"
	fi
}

standby_start()
{
	local name="$1"
	mkdir -p "$STANDBY_MNT"
	"$ZEROFS" -o "$TARGET_OPTS" -o allow_other "$STANDBY_MNT"
	# The backup label of the round's online backup, and the standby's
	# settings: it streams from the primary through the replication slot.
	install -o postgres -g postgres -m 600 "$STATE_DIR/$name.label" "$SDATA/backup_label"
	rm -f "$SDATA/postmaster.pid"
	as_pg touch "$SDATA/standby.signal"
	as_pg tee "$SDATA/postgresql.auto.conf" >/dev/null <<-EOF
		primary_conninfo = 'host=$STATE_DIR/run port=$PPORT user=postgres application_name=standby'
		primary_slot_name = 'standby'
		hot_standby = on
	EOF
	pg_start "$SDATA" standby "$SPORT"
}

case $1 in
primary-init)
	[ ! -e "$PDATA" ] || die "$PDATA exists"
	install -d -o postgres -g postgres -m 700 "$PDATA"
	as_pg "$BINDIR/initdb" -D "$PDATA" -A trust -U postgres >/dev/null
	cat >>"$PDATA/postgresql.conf" <<-EOF
		wal_level = replica
		max_wal_senders = 4
		max_replication_slots = 4
		hot_standby = on
	EOF
	pg_start "$PDATA" primary "$PPORT"
	psql_p -c "SELECT pg_create_physical_replication_slot('standby')" >/dev/null
	;;
primary-start) pg_start "$PDATA" primary "$PPORT" ;;
primary-stop) pg_stop "$PDATA" ;;
round)
	[ $# -ge 2 ] || die "round NAME [BASE]"
	name=$2 base=${3:-}
	[ -n "${ZEROFS_STREAM_PASSWORD:-}" ] || die "set ZEROFS_STREAM_PASSWORD"
	standby_stop
	# An online (non-exclusive) backup: one psql session holds it open
	# while the snapshot is taken (as root: it is a control attribute of
	# the mount), and pg_backup_stop returns the backup label.
	fifo=$STATE_DIR/run/$name.fifo
	marker=$STATE_DIR/run/$name.started
	rm -f "$fifo" "$marker"
	mkfifo -m 600 "$fifo"
	chown postgres: "$fifo"
	psql_p -v ON_ERROR_STOP=1 <"$fifo" >"$STATE_DIR/$name.label" 2>&1 &
	psql_pid=$!
	exec 3>"$fifo"
	printf "SELECT pg_backup_start('%s', true) \\gset\n\\! touch %s\n" "$name" "$marker" >&3
	for _ in $(seq 600); do
		[ -e "$marker" ] && break
		kill -0 "$psql_pid" 2>/dev/null || break
		sleep 0.1
	done
	[ -e "$marker" ] || die "pg_backup_start failed: $(cat "$STATE_DIR/$name.label")"
	snap_rc=0
	"$ZEROFS" snapshot create -m "$PRIMARY_MNT" "$name" || snap_rc=$?
	printf "SELECT labelfile FROM pg_backup_stop(false);\n" >&3
	exec 3>&-
	wait "$psql_pid" || die "pg_backup_stop failed: $(cat "$STATE_DIR/$name.label")"
	rm -f "$fifo" "$marker"
	[ "$snap_rc" -eq 0 ] || die "snapshot $name failed"
	"$ZEROFS" snapshot info -m "$PRIMARY_MNT" "$name" >/dev/null ||
		die "snapshot $name was not made"
	"$ZEROFS" send -o "$SOURCE_OPTS" ${base:+--from "$base"} "$name" >"$STATE_DIR/$name.zs"
	"$ZEROFS" receive --force -o "$TARGET_OPTS" <"$STATE_DIR/$name.zs"
	echo "round $name: stream of $(stat -c %s "$STATE_DIR/$name.zs") bytes"
	rm -f "$STATE_DIR/$name.zs"
	standby_start "$name"
	;;
standby-start)
	[ $# -ge 2 ] || die "standby-start NAME"
	standby_start "$2"
	;;
standby-stop) standby_stop ;;
status)
	psql_p -c "SELECT application_name, state, replay_lag FROM pg_stat_replication"
	;;
*) die "unknown command $1" ;;
esac
