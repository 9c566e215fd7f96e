#!/usr/bin/env bash
# The subcommands: flush (a barrier from the command line), stats (the
# statistics file of a mount), change-password, --help and --version.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse

t=$(mktemp -d /tmp/zerofs-cli.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache

"$ZEROFS" --version | grep -q '^zerofs-fuse [0-9]' || fail "--version"
for cmd in mount mkfs change-password flush stats; do
	help=$("$ZEROFS" "$cmd" --help)
	grep -q "zerofs-fuse \[\?$cmd" <<<"$help" || fail "$cmd --help does not describe $cmd"
done
if "$ZEROFS" flush "$t/nothing" 2>"$t/err"; then fail "flush of a missing path succeeded"; fi
if "$ZEROFS" stats "$t" 2>"$t/err"; then fail "stats of a plain directory succeeded"; fi
grep -q "not a mounted zerofs-fuse" "$t/err" || fail "stats said: $(cat "$t/err")"

# flush is a barrier: what it covered survives kill -9 without the cache.
zerofs_mount "$S" "$C" "$M" "barrier_interval_ms=3600000"
head -c 500000 /dev/urandom >"$t/data"
cp "$t/data" "$M/data"
"$ZEROFS" flush "$M"
"$ZEROFS" stats "$M" >"$t/stats1"
for key in fsyncs barriers barrier_p99_us dirty_bytes cache_hits store_puts store_errors \
	live_bytes inodes; do
	grep -q "^$key [0-9]" "$t/stats1" || fail "stats has no $key"
done
[ "$(awk '$1 == "store_puts" { print $2 }' "$t/stats1")" -gt 0 ] || fail "no store puts counted"
[ "$(awk '$1 == "live_bytes" { print $2 }' "$t/stats1")" -gt 0 ] || fail "no live bytes counted"
cat "$M/data" >/dev/null
"$ZEROFS" stats "$M" >"$t/stats2"
b1=$(awk '$1 == "barriers" { print $2 }' "$t/stats1")
[ "$(awk '$1 == "barriers" { print $2 }' "$t/stats2")" -ge "$b1" ] || fail "barrier count went down"
zerofs_kill9 "$M"
rm -rf "$C"
zerofs_mount "$S" "$C" "$M"
cmp "$t/data" "$M/data" || fail "data covered by flush was lost"
zerofs_umount "$M"

# change-password: the old one stops working, the new one works, a wrong
# old one changes nothing.
if ZEROFS_PASSWORD=wrong ZEROFS_NEW_PASSWORD=other "$ZEROFS" change-password \
	-o "store=$S,kdf=min" 2>"$t/err"; then
	fail "change-password with a wrong old password succeeded"
fi
grep -q "wrong password" "$t/err" || fail "change-password said: $(cat "$t/err")"
ZEROFS_NEW_PASSWORD=newpw "$ZEROFS" change-password -o "store=$S,kdf=min"
if "$ZEROFS" -f -o "store=$S,cache_dir=$C,kdf=min" "$M" 2>"$t/err"; then
	fail "the old password still mounts"
fi
grep -q "wrong password" "$t/err" || fail "old password: $(cat "$t/err")"
ZEROFS_PASSWORD=newpw zerofs_mount "$S" "$C" "$M"
cmp "$t/data" "$M/data" || fail "data after change-password"
zerofs_umount "$M"
echo "t-cli: ok"
