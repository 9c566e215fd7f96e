#!/usr/bin/env bash
# PostgreSQL on zerofs-fuse through contrib/postgres-on-zerofs.sh (data
# directory on ext4 on a loop device over a device file; local directory
# store): initdb, start, pgbench -i (scale 2) and a 5 s TPC-B run with no
# failed transaction, the row counts, CHECKPOINT, stop, teardown, and the
# same database back after a remount (amcheck-free check: counts and sums).
#
# Then the crash: rows committed one transaction at a time (each COMMIT
# returned with synchronous_commit=on), then kill -9 of zerofs-fuse and of
# every PostgreSQL process, ext4 and the loop device taken down over the
# dead mount, the cache directory deleted, zerofs-fuse remounted from its
# store alone: "start" replays ext4's journal and PostgreSQL's WAL, and
# every committed row is there.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires losetup mkfs.ext4 blkid findmnt runuser psql pgbench
[ -e /dev/loop-control ] || { echo "$0: no loop devices: test skipped"; exit 77; }
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! id postgres >/dev/null 2>&1; then
	echo "$0: the PostgreSQL server (Debian package postgresql) is missing: test skipped"
	exit 77
fi

PGZ="${abs_top_srcdir:-$(dirname "$0")/..}/contrib/postgres-on-zerofs.sh"
t=$(mktemp -d /tmp/zerofs-pg.XXXXXX)
# The server runs as postgres: it must reach its socket and data under $t.
chmod 755 "$t"
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
port=$(pick_port)
export ZEROFS_FUSE="$ZEROFS"
pgz=("$PGZ" -m "$M" -d "$t/pg" -S 1G -p "$port")

zerofs_mount "$S" "$C" "$M" "nbd_listen="

# Whatever happens: PostgreSQL, ext4 and the loop device go before the mount.
pg_cleanup()
{
	local pid
	if ! { "${pgz[@]}" teardown >/dev/null 2>&1; }; then
		pid=$(head -n 1 "$t/pg/ext4/pgdata/postmaster.pid" 2>/dev/null) || pid=
		if [ -n "$pid" ]; then
			if ! { pkill -9 -P "$pid" 2>/dev/null; }; then :; fi
			if ! { kill -9 "$pid" 2>/dev/null; }; then :; fi
		fi
		if ! { umount "$t/pg/ext4" 2>/dev/null || umount -l "$t/pg/ext4" 2>/dev/null; }; then :; fi
		if [ -f "$t/pg/loop" ] && ! { losetup -d "$(cut -d' ' -f1 "$t/pg/loop")" 2>/dev/null; }; then :; fi
	fi
}
cleanup_fn pg_cleanup # registered after the mount: runs before its cleanup

"${pgz[@]}" start || fail "postgres-on-zerofs.sh start failed"
eval "$("${pgz[@]}" env)"
"${pgz[@]}" status || fail "status after start"
q() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d postgres -c "$1"; }

assert_eq ext4 "$(findmnt -n -o FSTYPE -M "$t/pg/ext4")" "filesystem of the data directory"
assert_eq 1 "$(cat "/sys/block/$(basename "$(cut -d' ' -f1 "$t/pg/loop")")/loop/dio")" "loop direct-io"
echo "[${SECONDS}s] pgbench -i"
pgbench -i -q -s 2 postgres >"$t/pgbench-i.out" 2>&1 || { cat "$t/pgbench-i.out"; fail "pgbench -i failed"; }
echo "[${SECONDS}s] pgbench TPC-B"
pgbench -n -c 4 -j 2 -T 5 postgres >"$t/pgbench.out" 2>&1 || { cat "$t/pgbench.out"; fail "pgbench failed"; }
cat "$t/pgbench.out"
grep -q 'number of failed transactions: 0' "$t/pgbench.out" || fail "pgbench had failed transactions"
tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$t/pgbench.out")
[ "${tx:-0}" -gt 0 ] || fail "pgbench processed no transaction"
assert_eq 200000 "$(q 'select count(*) from pgbench_accounts')" "pgbench_accounts rows"
assert_eq "$tx" "$(q 'select count(*) from pgbench_history')" "one history row per transaction"
# TPC-B moves money around: the branches, tellers and accounts balances sum
# to the history's deltas.
want=$(q 'select sum(delta) from pgbench_history')
assert_eq "$want" "$(q 'select sum(abalance) from pgbench_accounts')" "accounts balance"
assert_eq "$want" "$(q 'select sum(bbalance) from pgbench_branches')" "branches balance"
q 'checkpoint'
"${pgz[@]}" teardown || fail "teardown failed"
zerofs_umount "$M"

# The same database after a clean remount.
rm -rf "$C"
zerofs_mount "$S" "$C" "$M" "nbd_listen="
"${pgz[@]}" start || fail "start after a remount failed"
assert_eq "$tx" "$(q 'select count(*) from pgbench_history')" "history rows after a remount"
assert_eq "$want" "$(q 'select sum(abalance) from pgbench_accounts')" "balance after a remount"

# The crash: committed rows, then kill -9 of everything.
q 'create table committed (n int primary key, v text)'
for i in $(seq 1 20); do
	q "insert into committed values ($i, md5('$i'))"
done
assert_eq on "$(q 'show synchronous_commit')" "synchronous_commit"
# A transaction that never commits: must not show.
# shellcheck disable=SC2016 # $$x$$ is an SQL string
psql -X -q -d postgres -c 'begin; insert into committed values (1000, $$x$$); select pg_sleep(60)' \
	>/dev/null 2>&1 &
open_tx=$!
sleep 1
pid=$(head -n 1 "$t/pg/ext4/pgdata/postmaster.pid")
pids="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
echo "[${SECONDS}s] kill -9 of zerofs-fuse and of PostgreSQL ($pids)"
zerofs_kill9 "$M"
# shellcheck disable=SC2086 # one word per pid
kill -9 $pids
if ! wait "$open_tx" 2>/dev/null; then
	: # Its server was killed: it fails, on purpose.
fi
# ext4 on the dead device: unmount it once the killed processes are gone
# (its journal is in the store up to the last flush), detach the loop
# device, then remount zerofs-fuse from its store alone.
for ((i = 0; i < 100; i++)); do
	gone=1
	for p in $pids; do
		if _alive "$p"; then gone=0; fi
	done
	[ "$gone" -eq 1 ] && umount "$t/pg/ext4" 2>/dev/null && break
	sleep 0.2
done
findmnt -n -M "$t/pg/ext4" >/dev/null && fail "cannot unmount ext4 over the dead mount"
losetup -d "$(cut -d' ' -f1 "$t/pg/loop")" || fail "cannot detach the loop device"
rm -rf "$C"
zerofs_mount "$S" "$C" "$M" "nbd_listen="
"${pgz[@]}" start || fail "start after kill -9 (recovery) failed"
echo "[${SECONDS}s] recovered"
grep -q 'database system was interrupted\|database system was not properly shut down' "$t/pg/postgresql.log" ||
	fail "PostgreSQL did not run a crash recovery"
assert_eq 20 "$(q 'select count(*) from committed')" "committed rows after kill -9"
assert_eq "$(seq 1 20 | while read -r i; do printf '%s' "$i" | md5sum | cut -d' ' -f1; done | tr -d '\n')" \
	"$(q 'select string_agg(v, $$$$ order by n) from committed')" "committed values after kill -9"
assert_eq "$tx" "$(q 'select count(*) from pgbench_history')" "history rows after kill -9"
"${pgz[@]}" teardown || fail "teardown after the recovery failed"
e2fsck -fn "$M/.nbd/pg" >"$t/fsck.out" 2>&1 || { cat "$t/fsck.out"; fail "ext4 not clean"; }
zerofs_umount "$M"
echo "[${SECONDS}s] t-postgres: ok"
