#!/usr/bin/env bash
# stress-ng's filesystem stressors with --verify against a real mount, all
# at once; then the tree must survive a clean unmount and a remount from
# the store alone (the cache deleted), byte for byte, with the files fsynced
# before the stress.  ZEROFS_STRESS_SECS sets the seconds of each round.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires stress-ng md5sum

t=$(mktemp -d /tmp/zerofs-stress.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
OPTS="nbd_listen="
zerofs_mount "$S" "$C" "$M" "$OPTS"

# Fsynced before the stress: must be intact after it and after remounts.
mkdir "$M/sample"
declare -A want=()
for i in 1 2 3; do
	want[sample/f$i]=$("$FSPROBE" writesync "$M/sample/f$i" $((i * 400000 + 3)) "$i")
done
setfattr -n user.sample -v kept "$M/sample/f1"

# Rounds, so that the fsync-heavy data stressors (every fsync a barrier)
# do not starve the others on a small machine: seconds per round, and
# sizes that keep the cleanup short.
secs=${ZEROFS_STRESS_SECS:-10}
# Not here: --seek.  It lseeks SEEK_DATA/SEEK_HOLE on a file whose writes
# are still in the kernel's writeback cache, which the daemon cannot see
# (the kernel sends FUSE_LSEEK without flushing first): the daemon answers
# ENXIO for data the kernel holds.
declare -A opts=(
	[dir]="--dir-dirs 512" [dentry]="--dentries 256"
	[hdd]="--hdd-bytes 32M --hdd-write-size 64K" [fallocate]="--fallocate-bytes 16M"
	[sync-file]="--sync-file-bytes 8M" [mmap]="--mmap-file --mmap-bytes 2M"
	[msync]="--msync-bytes 8M" [readahead]="--readahead-bytes 4M"
	[copy-file]="--copy-file-bytes 128M"
)

# stress ROUND STRESSOR...: one instance of each stressor, with --verify;
# check stress-ng's status and report, and that every stressor did work.
stress()
{
	local round="$1" out="$t/stress-$1.out" rc=0 start s args=()
	shift
	for s in "$@"; do
		# shellcheck disable=SC2206 # the options are words
		args+=(--"$s" 1 ${opts[$s]:-})
	done
	mkdir "$M/stress-$round"
	start=$(date +%s)
	stress-ng "${args[@]}" --verify --timeout "$secs" --temp-path "$M/stress-$round" \
		--metrics-brief >"$out" 2>&1 || rc=$?
	echo "stress-ng $round round: $(($(date +%s) - start)) s, exit status $rc"
	cat "$out"
	[ "$rc" -eq 0 ] || fail "stress-ng ($round) exited with status $rc"
	if grep -E "(fail|error):|terminated|unsuccessful|skipping" "$out"; then
		fail "stress-ng ($round) reported failures"
	fi
	grep -q "successful run completed" "$out" || fail "stress-ng ($round) did not complete"
	# Every stressor ran; the ones with small operations completed some.
	# (One operation of link, symlink, xattr, mmap or filename is many calls
	# and may not end within the round on a slow machine: their checks run
	# inside the operation.)
	for s in "$@"; do
		grep -Eq "metrc: .* $s +[0-9]+ " "$out" || fail "stressor $s did not run"
		case "$s" in
		link | symlink | xattr | mmap | filename) continue ;;
		esac
		grep -Eq "metrc: .* $s +[1-9][0-9]* " "$out" || fail "stressor $s did no work"
	done
	rmdir "$M/stress-$round" || fail "stress-ng left files in $M/stress-$round"
}
stress metadata dir dentry link symlink rename chmod chown utime filename lockf flock fcntl
# Apart from the fsyncs of the data round: xattr (each of its operations
# is thousands of calls) and readahead (it writes its file first).
stress light xattr readahead
stress data hdd fallocate sync-file mmap msync copy-file
# stress-ng removes what it made; whatever is left is what the mount has.
mountpoint -q "$M" || fail "the mount went away under stress"

check_tree()
{
	local f
	for f in "${!want[@]}"; do
		assert_eq "${want[$f]}" "$("$FSPROBE" sum "$M/$f")" "$f $1"
	done
	assert_eq kept "$(getfattr --only-values -n user.sample "$M/sample/f1")" "xattr $1"
}
check_tree "after the stress"

# The whole tree, names, sizes, modes and contents, before and after.
snapshot()
{
	(cd "$M" && find . -printf '%p %y %s %m %n\n' | sort &&
		find . -type f -print0 | sort -z | xargs -0 -r md5sum)
}
snapshot >"$t/before"
zerofs_umount "$M"
zerofs_mount "$S" "$C" "$M" "$OPTS"
snapshot >"$t/after-remount"
diff "$t/before" "$t/after-remount" || fail "the tree changed over a remount"
check_tree "after a remount"
zerofs_umount "$M"
rm -rf "$C"
zerofs_mount "$S" "$C" "$M" "$OPTS"
snapshot >"$t/after-rebuild"
diff "$t/before" "$t/after-rebuild" || fail "the tree changed over a rebuild from the store"
check_tree "after a rebuild from the store"
zerofs_umount "$M"
