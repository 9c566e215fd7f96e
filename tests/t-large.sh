#!/usr/bin/env bash
# Scale: a directory of 100,000 entries (create, list, stat, remove) and a
# 1 TiB sparse file, both surviving a remount without the cache.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse

t=$(mktemp -d /tmp/zerofs-large.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
zerofs_mount "$t/store" "$t/cache" "$M"

mkdir "$M/big"
"$FSPROBE" mkfiles "$M/big" 100000
assert_eq 100000 "$(ls -f "$M/big" | grep -cv '^\.\.\?$')" "entries listed"
assert_eq 100000 "$(find "$M/big" -type f | wc -l)" "entries found"
[ -f "$M/big/f99999" ] && [ -f "$M/big/f0" ] || fail "lookup in a large directory"

truncate -s 1T "$M/huge"
"$FSPROBE" pwrite "$M/huge" $(( (1 << 40) - 5 )) "tail!"
"$FSPROBE" pwrite "$M/huge" 0 "head"

zerofs_umount "$M"
rm -rf "$t/cache"
zerofs_mount "$t/store" "$t/cache" "$M"
assert_eq 100000 "$(ls -f "$M/big" | grep -cv '^\.\.\?$')" "entries after remount"
assert_eq $((1 << 40)) "$(stat -c %s "$M/huge")" "size of the sparse file"
assert_eq "tail!" "$(tail -c 5 "$M/huge")" "last bytes of the sparse file"
assert_eq head "$(head -c 4 "$M/huge")" "first bytes of the sparse file"
assert_eq $(( (1 << 40) - 65536 )) "$("$FSPROBE" seek "$M/huge" 65536 data)" "SEEK_DATA over 1 TiB"

find "$M/big" -type f -delete
rmdir "$M/big"
rm "$M/huge"
zerofs_umount "$M"
echo "t-large: ok"
