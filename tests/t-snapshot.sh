#!/usr/bin/env bash
# Snapshots and read-only replicas, on the directory store.
#  - snapshot create/list/info/delete through a mount; a bad name, a
#    duplicate and an unknown name are refused with a message.
#  - A snapshot mounted read-only (-o snapshot=NAME) beside the running
#    writer shows the old state (files changed, deleted, renamed since);
#    writes to it fail with EROFS; a file restored from it with cp is
#    identical.
#  - Garbage collection keeps every segment a snapshot uses (the data of a
#    deleted file stays readable in the snapshot after gc with grace 0, and
#    after the snapshot is remounted from the store alone); once the
#    snapshot is deleted, gc reclaims it.
#  - A replica (-o ro) follows the writer: files written and flushed on the
#    writer show on the replica within a few polls, including after the
#    writer checkpointed and pruned the logs the replica had not applied;
#    the replica stores nothing (its store_puts stays 0) and refuses writes.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires md5sum dd cmp

t=$(mktemp -d /tmp/zerofs-snap.XXXXXX)
cleanup_fn rm -rf "$t"
S=$t/store
OPTS="segment_size=1M,barrier_interval_ms=3600000,gc_interval_ms=0,gc_grace_ms=0"

stat_of()
{
	local out
	out=$("$ZEROFS" stats "$1")
	awk -v k="$2" '$1 == k { print $2 }' <<<"$out"
}

snap()
{
	"$ZEROFS" snapshot "$@"
}

# Wait up to 15 s for file $1 to hold $2.
wait_content()
{
	local i
	for ((i = 0; i < 150; i++)); do
		[ "$(cat "$1" 2>/dev/null)" = "$2" ] && return 0
		sleep 0.1
	done
	fail "$1 does not hold '$2' after 15 s (it holds '$(cat "$1" 2>&1)')"
}

zerofs_mount "$S" "$t/cw" "$t/w" "$OPTS,checkpoint_interval=2"
mkdir "$t/w/d"
echo one >"$t/w/d/f"
dd if=/dev/urandom of="$t/big" bs=1M count=3 status=none
cp "$t/big" "$t/w/big"
echo keep >"$t/w/keep"

# ---- create, list, info, refusals ----
snap create -m "$t/w" s1
out=$(snap list -m "$t/w")
echo "$out"
grep -q "^s1 .* barrier=" <<<"$out" || fail "snapshot list does not show s1"
snap info -m "$t/w" s1 >/dev/null || fail "snapshot info s1 failed"
if snap create -m "$t/w" s1 2>"$t/err"; then fail "a second snapshot s1 was made"; fi
grep -q "exists" "$t/err" || fail "duplicate refusal: $(cat "$t/err")"
if snap create -m "$t/w" ../x 2>"$t/err"; then fail "snapshot name ../x was taken"; fi
grep -q "not a valid snapshot name" "$t/err" || fail "bad name refusal: $(cat "$t/err")"
if snap delete -m "$t/w" nosuch 2>"$t/err"; then fail "deleting an unknown snapshot succeeded"; fi
grep -q "no snapshot of that name" "$t/err" || fail "unknown name refusal: $(cat "$t/err")"

# ---- change the live filesystem ----
echo two >"$t/w/d/f"
rm "$t/w/big"
mv "$t/w/keep" "$t/w/kept"
"$ZEROFS" flush "$t/w"
"$ZEROFS" gc "$t/w" >/dev/null

# ---- the snapshot, mounted beside the writer ----
zerofs_mount "$S" "$t/cs" "$t/s" "$OPTS,snapshot=s1"
assert_eq one "$(cat "$t/s/d/f")" "d/f in the snapshot"
cmp "$t/s/big" "$t/big" || fail "big (deleted since, gc run) differs in the snapshot"
[ -e "$t/s/keep" ] && [ ! -e "$t/s/kept" ] || fail "the rename shows in the snapshot"
if (echo x >"$t/s/new") 2>"$t/err"; then fail "a write to the snapshot succeeded"; fi
grep -q "Read-only file system" "$t/err" || fail "snapshot write: $(cat "$t/err")"
cp "$t/s/big" "$t/w/big"
cmp "$t/w/big" "$t/big" || fail "the file restored from the snapshot differs"
zerofs_umount "$t/s"

# ---- the writer's gc keeps the snapshot's segments; after delete, not ----
rm "$t/w/big"
"$ZEROFS" flush "$t/w"
"$ZEROFS" gc "$t/w" >/dev/null
rm -rf "$t/cs"
zerofs_mount "$S" "$t/cs" "$t/s" "$OPTS,snapshot=s1"
cmp "$t/s/big" "$t/big" || fail "the snapshot lost big's data to gc"
zerofs_umount "$t/s"
before=$(du -sb "$S/segments" | cut -f1)
snap delete -m "$t/w" s1
"$ZEROFS" gc "$t/w" >/dev/null
after=$(du -sb "$S/segments" | cut -f1)
echo "segments: $before bytes with the snapshot, $after after deleting it and gc"
[ "$after" -lt $((before - 2 * 1024 * 1024)) ] ||
	fail "deleting the snapshot did not let gc reclaim big's 3 MiB"
out=$(snap list -m "$t/w")
[ -z "$out" ] || fail "snapshot list after delete: $out"

# ---- a replica follows the writer ----
zerofs_mount "$S" "$t/cr" "$t/r" "$OPTS,ro,replica_poll_ms=200"
assert_eq two "$(cat "$t/r/d/f")" "d/f on the replica at mount"
echo three >"$t/w/d/f"
echo new >"$t/w/nf"
"$ZEROFS" flush "$t/w"
wait_content "$t/r/d/f" three
wait_content "$t/r/nf" new
# Several barriers with checkpoint_interval=2: the writer checkpoints and
# prunes logs while the replica is frozen (SIGSTOP), so it must reload.
rpid=$(pgrep -f -- "-o store=$S,cache_dir=$t/cr" | head -n 1)
[ -n "$rpid" ] || fail "cannot find the replica's pid"
kill -STOP "$rpid"
for i in 1 2 3 4 5 6; do
	echo "v$i" >"$t/w/nf"
	"$ZEROFS" flush "$t/w"
done
kill -CONT "$rpid"
wait_content "$t/r/nf" v6
grep -q "replica: reloaded the index from checkpoint" "$t/r.log" ||
	fail "the replica did not reload from a checkpoint after the writer pruned"
if (echo x >"$t/r/new") 2>"$t/err"; then fail "a write to the replica succeeded"; fi
assert_eq 0 "$(stat_of "$t/r" store_puts)" "objects stored by the replica"
assert_eq 0 "$(stat_of "$t/r" store_deletes)" "objects deleted by the replica"
zerofs_umount "$t/r"
zerofs_umount "$t/w"
echo "snapshots and replicas ok"
