#!/usr/bin/env bash
# The seed's PostgreSQL workflow (contrib/pg-replicate.sh) on two directory
# stores: a primary on a zerofs-fuse mount, three replication rounds (an
# online backup as a snapshot, sent in full then incrementally to the second
# store, received with --force, a standby started on it that catches up by
# streaming replication).  After each round, and after more writes on the
# primary that only streaming brings over, the standby's tables match the
# primary's; the incremental streams are a fraction of the full one.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires runuser pgrep
BINDIR=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
	sort -V | tail -n 1)
if [ -z "$BINDIR" ] || [ ! -x "$BINDIR/pg_ctl" ]; then
	[ "${CI:-}" = true ] && fail "PostgreSQL is missing (tests/deps.sh installs it)"
	echo "$0: PostgreSQL is not installed: test skipped"
	exit 77
fi
id postgres >/dev/null 2>&1 || fail "no postgres user"

t=$(mktemp -d /tmp/zerofs-pgrep.XXXXXX)
chmod 755 "$t"
cleanup_fn rm -rf "$t"
export ZEROFS_STREAM_PASSWORD=pg-stream
export ZEROFS="$ZEROFS"
PORT_P=$(pick_port)
PORT_S=$(pick_port)
A=$t/storeA
B=$t/storeB
OPTS="nbd_listen=,allow_other"
TARGET_OPTS="store=$B,cache_dir=$t/cb,$ZEROFS_TEST_OPTS,nbd_listen="
SOURCE_OPTS="store=$A,cache_dir=$t/csend,$ZEROFS_TEST_OPTS,nbd_listen="
mkdir -p "$t/standby"
REP=("$(dirname "$0")/../contrib/pg-replicate.sh" -P "$t/primary" -S "$t/standby" -s "$SOURCE_OPTS"
	-t "$TARGET_OPTS" -d "$t/state" -p "$PORT_P" -q "$PORT_S" -B "$BINDIR")

stop_all()
{
	if ! { "${REP[@]}" standby-stop >/dev/null 2>&1; }; then :; fi
	if ! { "${REP[@]}" primary-stop >/dev/null 2>&1; }; then :; fi
}

q()
{
	runuser -u postgres -- "$BINDIR/psql" -X -q -At -h "$t/state/run" -p "$1" -d postgres -c "$2"
}

# The content of every pgbench table, as one digest.
digest()
{
	q "$1" "SELECT md5(string_agg(t, '|')) FROM (
		SELECT 'a' || aid || ':' || abalance AS t FROM pgbench_accounts
		UNION ALL SELECT 'b' || bid || ':' || bbalance FROM pgbench_branches
		UNION ALL SELECT 't' || tid || ':' || tbalance FROM pgbench_tellers
		UNION ALL SELECT 'h' || count(*) FROM pgbench_history ORDER BY 1) s"
}

# Wait until the standby has replayed everything the primary has written.
caught_up()
{
	local lsn i
	lsn=$(q "$PORT_P" "SELECT pg_current_wal_lsn()")
	for ((i = 0; i < 600; i++)); do
		if [ "$(q "$PORT_S" "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '$lsn') >= 0" 2>/dev/null)" = t ]; then
			return 0
		fi
		sleep 0.1
	done
	fail "the standby did not reach the primary's $lsn in 60 s"
}

bench()
{
	runuser -u postgres -- "$BINDIR/pgbench" -h "$t/state/run" -p "$PORT_P" "$@" postgres \
		>>"$t/pgbench.log" 2>&1 || fail "pgbench $* failed: $(tail -5 "$t/pgbench.log")"
}

zerofs_mkfs "$B" "$t/cb"
zerofs_mount "$A" "$t/ca" "$t/primary" "$OPTS"
cleanup_fn stop_all # registered after the mount: runs before its cleanup
"${REP[@]}" primary-init
bench -i -q -s 2
sizes=()
prev=
for r in r1 r2 r3; do
	bench -c 2 -t 200
	out=$("${REP[@]}" round "$r" $prev)
	echo "$out"
	sizes+=("$(awk '/stream of/ { print $(NF - 1) }' <<<"$out")")
	caught_up
	assert_eq "$(digest "$PORT_P")" "$(digest "$PORT_S")" "$r: standby tables after the round"
	# More writes that only streaming replication brings over.
	bench -c 2 -t 100
	caught_up
	assert_eq "$(digest "$PORT_P")" "$(digest "$PORT_S")" "$r: standby tables after streaming"
	prev=$r
done
echo "stream sizes: full ${sizes[0]}, incremental ${sizes[1]} and ${sizes[2]} bytes"
# Each round's new WAL segments (16 MiB each) dominate at this small scale.
[ $((sizes[1] * 10)) -lt $((sizes[0] * 7)) ] && [ $((sizes[2] * 10)) -lt $((sizes[0] * 7)) ] ||
	fail "the incremental streams are not smaller than 0.7 of the full one"
stop_all
zerofs_umount "$t/primary"
echo "pg-replicate ok"
