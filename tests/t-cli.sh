#!/usr/bin/env bash
# The subcommands: flush (a barrier from the command line), stats (the
# statistics file of a mount), change-password, --help and --version; the
# cipher a store is made with, and kept.
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

# The cipher is chosen by mkfs and kept: an XChaCha20-Poly1305 store has the
# version 1 key object (132 bytes) older programs read, an AES-256-GCM one
# the version 2 object (136 bytes, cipher 2 at byte 60).  A mount asking for
# the other cipher keeps the store's and says so; change-password keeps it.
key_version() { od -An -tu4 -j8 -N4 "$1" | tr -d ' '; }
key_cipher() { od -An -tu4 -j60 -N4 "$1" | tr -d ' '; }
for cipher in xchacha20-poly1305 aes-256-gcm; do
	SC=$t/store-$cipher
	"$ZEROFS" mkfs -o "store=$SC,kdf=min,cipher=$cipher" 2>"$t/err" ||
		fail "mkfs with cipher=$cipher: $(cat "$t/err")"
	grep -q "(cipher $cipher)" "$t/err" || fail "mkfs said: $(cat "$t/err")"
	if [ "$cipher" = aes-256-gcm ]; then
		other=xchacha20-poly1305
		assert_eq 136 "$(stat -c %s "$SC/zerofs.key")" "aes-256-gcm key object size"
		assert_eq 2 "$(key_version "$SC/zerofs.key")" "aes-256-gcm key object version"
		assert_eq 2 "$(key_cipher "$SC/zerofs.key")" "aes-256-gcm key object cipher"
	else
		other=aes-256-gcm
		assert_eq 132 "$(stat -c %s "$SC/zerofs.key")" "xchacha20-poly1305 key object size"
		assert_eq 1 "$(key_version "$SC/zerofs.key")" "xchacha20-poly1305 key version"
	fi
	: >"$M.log"
	zerofs_mount "$SC" "$t/cache-$cipher" "$M" "cipher=$other"
	grep -q "cipher = $other applies to new stores only: .* keeps $cipher" "$M.log" ||
		fail "a mount asking for $other on a $cipher store said: $(cat "$M.log")"
	cp "$t/data" "$M/data"
	zerofs_umount "$M"
	before=$(md5sum <"$SC/zerofs.key")
	ZEROFS_NEW_PASSWORD=newpw "$ZEROFS" change-password -o "store=$SC,kdf=min"
	[ "$(md5sum <"$SC/zerofs.key")" != "$before" ] || fail "change-password left the key object"
	[ "$cipher" = xchacha20-poly1305 ] || assert_eq 2 "$(key_cipher "$SC/zerofs.key")" \
		"cipher after change-password"
	rm -rf "$t/cache-$cipher" # recovery from the store alone
	ZEROFS_PASSWORD=newpw zerofs_mount "$SC" "$t/cache-$cipher" "$M"
	cmp "$t/data" "$M/data" || fail "data of the $cipher store"
	zerofs_umount "$M"
done
# Without a choice, mkfs takes AES-256-GCM where the CPU has AES and
# carry-less multiply instructions (libsodium's test), XChaCha20-Poly1305
# elsewhere.
"$ZEROFS" mkfs -o "store=$t/store-auto,kdf=min" 2>"$t/err" || fail "mkfs: $(cat "$t/err")"
if grep -qw aes /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo; then
	grep -q "(cipher aes-256-gcm)" "$t/err" || fail "auto on an AES CPU: $(cat "$t/err")"
else
	grep -q "(cipher xchacha20-poly1305)" "$t/err" || fail "auto: $(cat "$t/err")"
fi
if "$ZEROFS" mkfs -o "store=$t/store-bad,kdf=min,cipher=rot13" 2>"$t/err"; then
	fail "mkfs accepted cipher=rot13"
fi
grep -q "cipher" "$t/err" || fail "cipher=rot13 said: $(cat "$t/err")"
echo "t-cli: ok"
