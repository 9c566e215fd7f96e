#!/usr/bin/env bash
# Incremental send and receive between two directory stores.
#  - A full stream of snapshot s1, received into a new store, then an
#    incremental stream s1 -> s2 (a block rewritten, a file added, one
#    removed, one renamed, an attribute and a symlink): each received
#    snapshot, mounted read-only, is identical to the source's (contents,
#    names, symlinks, xattrs).
#  - Sizes: the incremental stream of ~1% changed is a small fraction of the
#    full one (printed as a ratio; asserted below 10%).
#  - Bad input, each refused with a clear message and the target unchanged
#    (its snapshot list and its live tree as before): a stream whose base
#    the target does not have, a truncated stream, a stream with one byte
#    flipped, a wrong stream password, a full stream into a store that is
#    not empty, and (after s2 is received) a target that has changed since
#    the base; then receive --force rolls that target back and applies.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires md5sum dd cmp getfattr setfattr

t=$(mktemp -d /tmp/zerofs-sendrecv.XXXXXX)
cleanup_fn rm -rf "$t"
export ZEROFS_STREAM_PASSWORD=stream-secret
OPTS="segment_size=1M,gc_interval_ms=0"
A=$t/storeA
B=$t/storeB

tool()
{
	local store="$1" cache="$2"
	shift 2
	"$ZEROFS" "$1" -o "store=$store,cache_dir=$cache,$ZEROFS_TEST_OPTS,$OPTS" "${@:2}"
}

# A listing of a tree: type, mode, size, checksum or target, xattrs.
tree()
{
	(
		cd "$1"
		find . -path ./.nbd -prune -o -print | LC_ALL=C sort | while read -r f; do
			if [ -L "$f" ]; then
				echo "$f link $(readlink "$f")"
			elif [ -f "$f" ]; then
				echo "$f file $(stat -c %a "$f") $(md5sum <"$f" | cut -d' ' -f1)"
			else
				echo "$f dir $(stat -c %a "$f")"
			fi
			getfattr -h -d --absolute-names "$f" 2>/dev/null | sed '/^#/d; /^$/d' | sort
		done
	)
}

snapshot_tree()
{
	local store="$1" name="$2" out="$3"
	zerofs_mount "$store" "$t/cv" "$t/v" "$OPTS,snapshot=$name"
	tree "$t/v" >"$out"
	zerofs_umount "$t/v"
	rm -rf "$t/cv"
}

expect_refused()
{
	local what="$1" stream="$2" pattern="$3" rc=0
	tool "$B" "$t/cb" receive <"$stream" >"$t/recv.out" 2>&1 || rc=$?
	cat "$t/recv.out"
	[ "$rc" -ne 0 ] || fail "$what: receive succeeded"
	grep -q "$pattern" "$t/recv.out" || fail "$what: the refusal does not say '$pattern'"
	grep -q "the target is unchanged" "$t/recv.out" || fail "$what: no 'target is unchanged'"
}

# ---- the source ----
zerofs_mount "$A" "$t/ca" "$t/a" "$OPTS"
mkdir -p "$t/a/d/e"
dd if=/dev/urandom of="$t/a/big" bs=1M count=12 status=none
echo hello >"$t/a/d/h"
echo gone >"$t/a/d/gone"
echo move >"$t/a/d/e/m"
ln -s d/h "$t/a/sl"
setfattr -n user.color -v blue "$t/a/d/h"
chmod 640 "$t/a/d/h"
"$ZEROFS" snapshot create -m "$t/a" s1
tree "$t/a" >"$t/a-s1.tree"

# ---- full stream ----
tool "$A" "$t/cs" send s1 >"$t/full.zs"
zerofs_mkfs "$B" "$t/cb"
tool "$B" "$t/cb" receive <"$t/full.zs"
snapshot_tree "$B" s1 "$t/b-s1.tree"
diff "$t/a-s1.tree" "$t/b-s1.tree" || fail "the received s1 differs from the source's"

# ---- incremental stream (about 1% of the data changed) ----
dd if=/dev/urandom of="$t/a/big" bs=64K count=2 seek=50 conv=notrunc status=none
echo new >"$t/a/new"
rm "$t/a/d/gone"
mv "$t/a/d/e/m" "$t/a/moved"
setfattr -n user.color -v red "$t/a/d/h"
ln -sf new "$t/a/sl"
"$ZEROFS" snapshot create -m "$t/a" s2
tree "$t/a" >"$t/a-s2.tree"
tool "$A" "$t/cs" send --from s1 s2 >"$t/inc.zs"
full=$(stat -c %s "$t/full.zs")
inc=$(stat -c %s "$t/inc.zs")
echo "stream sizes: full $full bytes, incremental $inc bytes, ratio $(awk -v a="$inc" -v b="$full" 'BEGIN { printf "%.4f", a / b }')"
[ $((inc * 10)) -lt "$full" ] || fail "the incremental stream is not small ($inc of $full bytes)"

# ---- bad input first: the target must stay at s1 ----
echo more >"$t/a/more"
"$ZEROFS" snapshot create -m "$t/a" s3
tool "$A" "$t/cs" send --from s2 s3 >"$t/wrongbase.zs"
expect_refused "wrong base" "$t/wrongbase.zs" "which the target does not have"
head -c $(($(stat -c %s "$t/inc.zs") - 100)) "$t/inc.zs" >"$t/trunc.zs"
expect_refused "truncated" "$t/trunc.zs" "truncated\|damaged"
cp "$t/inc.zs" "$t/flip.zs"
printf '\x55' | dd of="$t/flip.zs" bs=1 seek=5000 conv=notrunc status=none
expect_refused "tampered" "$t/flip.zs" "damaged or was tampered with\|cannot be opened"
ZEROFS_STREAM_PASSWORD=wrong expect_refused "wrong password" "$t/inc.zs" "wrong stream password"
expect_refused "not empty" "$t/full.zs" "a full stream needs an empty target\|already has a snapshot"
zerofs_mount "$B" "$t/cb" "$t/b" "$OPTS"
out=$("$ZEROFS" snapshot list -m "$t/b")
grep -q "^s1 " <<<"$out" || fail "the target lost s1"
if grep -q "^s2 " <<<"$out"; then fail "a refused stream left snapshot s2"; fi
tree "$t/b" >"$t/b-live.tree"
diff "$t/a-s1.tree" "$t/b-live.tree" || fail "a refused stream changed the target's live tree"
zerofs_umount "$t/b"

# ---- the incremental stream, now accepted ----
tool "$B" "$t/cb" receive <"$t/inc.zs"
snapshot_tree "$B" s2 "$t/b-s2.tree"
diff "$t/a-s2.tree" "$t/b-s2.tree" || fail "the received s2 differs from the source's"
snapshot_tree "$B" s1 "$t/b-s1-again.tree"
diff "$t/a-s1.tree" "$t/b-s1-again.tree" || fail "s1 on the target changed after receiving s2"

# ---- a target that moved on since the base is refused ----
zerofs_mount "$B" "$t/cb" "$t/b" "$OPTS"
echo local >"$t/b/local-change"
zerofs_umount "$t/b"
expect_refused "moved on" "$t/wrongbase.zs" "has changed since its snapshot s2"
zerofs_mount "$B" "$t/cb" "$t/b" "$OPTS"
[ "$(cat "$t/b/local-change")" = local ] || fail "the refused stream touched the target's own change"
out=$("$ZEROFS" snapshot list -m "$t/b")
if grep -q "^s3 " <<<"$out"; then fail "a refused stream left snapshot s3"; fi
zerofs_umount "$t/b"

# ---- --force rolls the target back to the base, then applies ----
tree "$t/a" >"$t/a-s3.tree"
tool "$B" "$t/cb" receive --force <"$t/wrongbase.zs" 2>"$t/force.err" ||
	fail "receive --force failed: $(cat "$t/force.err")"
grep -q "rolled back to it" "$t/force.err" || fail "receive --force did not say it rolled back"
zerofs_mount "$B" "$t/cb" "$t/b" "$OPTS"
tree "$t/b" >"$t/b-live.tree"
diff "$t/a-s3.tree" "$t/b-live.tree" || fail "after receive --force the target is not s3"
zerofs_umount "$t/b"
rm -rf "$t/cb"
zerofs_mount "$B" "$t/cb" "$t/b" "$OPTS"
tree "$t/b" >"$t/b-live.tree"
diff "$t/a-s3.tree" "$t/b-live.tree" || fail "after a remount from the store the target is not s3"
zerofs_umount "$t/b"
tool "$B" "$t/cb" fsck >"$t/fsck.out" || fail "fsck of the target: $(cat "$t/fsck.out")"
zerofs_umount "$t/a"
echo "send/receive ok"
