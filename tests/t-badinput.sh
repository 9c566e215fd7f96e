#!/usr/bin/env bash
# Bad input gives a clear one-line message and a non-zero exit, or EIO on
# the affected file with a log line naming the object; never wrong bytes.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse

t=$(mktemp -d /tmp/zerofs-bad.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
opts="kdf=min"

# expect_fail PATTERN CMD...: CMD must fail and say PATTERN on stderr.
expect_fail()
{
	local pattern="$1" out
	shift
	if out=$("$@" 2>&1); then
		fail "'$*' succeeded; expected an error matching '$pattern'"
	fi
	grep -qiE "$pattern" <<<"$out" || fail "'$*' said '$out'; expected '$pattern'"
	echo "ok: $pattern"
}

mkdir -p "$M"
expect_fail "mountpoint .*(No such file|not)" \
	"$ZEROFS" -f -o "store=$S,cache_dir=$C,$opts" "$t/nowhere"
touch "$t/file"
expect_fail "not a directory" "$ZEROFS" -f -o "store=$S,cache_dir=$C,$opts" "$t/file"
expect_fail "unknown|invalid" "$ZEROFS" -f -o "store=$S,cache_dir=$C,no_such_setting=1,$opts" "$M"
expect_fail "no mountpoint" "$ZEROFS" -f -o "store=$S"

# A directory with other things in it is not a store.
mkdir -p "$t/notastore"
echo data >"$t/notastore/somefile"
expect_fail "not a zerofs-fuse store" \
	"$ZEROFS" -f -o "store=$t/notastore,cache_dir=$C,$opts" "$M"
expect_fail "not empty" "$ZEROFS" mkfs -o "store=$t/notastore,cache_dir=$C,$opts"
[ "$(ls "$t/notastore")" = somefile ] || fail "something was written into a foreign directory"

# A real store; then a wrong password changes nothing.
zerofs_mkfs "$S" "$C"
expect_fail "already" "$ZEROFS" mkfs -o "store=$S,cache_dir=$C,$opts"
before=$(cd "$S" && find . -type f -printf '%p %s %T@\n' | sort | md5sum)
expect_fail "wrong password" env ZEROFS_PASSWORD=nope \
	"$ZEROFS" -f -o "store=$S,cache_dir=$C,$opts" "$M"
after=$(cd "$S" && find . -type f -printf '%p %s %T@\n' | sort | md5sum)
assert_eq "$before" "$after" "a wrong password wrote to the store"
echo "$ZEROFS_PASSWORD" >"$t/pwfile"
ZEROFS_PASSWORD= zerofs_mount "$S" "$C" "$M" "password_file=$t/pwfile"
expect_fail "busy|mounted" "$ZEROFS" -f -o "store=$S,cache_dir=$t/cache2,$opts" "$M"
mkdir -p "$t/mnt2"
expect_fail "already mounted" "$ZEROFS" -f -o "store=$S,cache_dir=$C,$opts" "$t/mnt2"

# Two files in different segments; damage one segment.
head -c 300000 /dev/urandom >"$t/a"
head -c 300000 /dev/urandom >"$t/b"
cp "$t/a" "$M/a"
sync "$M/a"
cp "$t/b" "$M/b"
sync "$M/b"
zerofs_umount "$M"
segs=$(ls "$S/segments" | sort)
[ "$(echo "$segs" | wc -l)" -ge 2 ] || fail "expected two segments, got: $segs"
first=$(echo "$segs" | head -1)
cp "$S/segments/$first" "$t/seg.bak"
printf '\xff' | dd of="$S/segments/$first" bs=1 seek=100 conv=notrunc status=none
zerofs_mount "$S" "$C" "$M"
if cat "$M/a" >/dev/null 2>"$t/err"; then fail "reading a damaged segment succeeded"; fi
grep -q "Input/output error" "$t/err" || fail "expected EIO, got: $(cat "$t/err")"
grep -q "segments/$first" "$M.log" || fail "no log line names segments/$first"
cmp "$t/b" "$M/b" || fail "undamaged file b is not readable"
zerofs_umount "$M"

# A truncated segment: EIO too, never short or wrong data.
truncate -s 50000 "$S/segments/$first"
zerofs_mount "$S" "$C" "$M"
if cat "$M/a" >/dev/null 2>"$t/err"; then fail "reading a truncated segment succeeded"; fi
grep -q "Input/output error" "$t/err" || fail "expected EIO for a truncated segment"
zerofs_umount "$M"
cp "$t/seg.bak" "$S/segments/$first"
zerofs_mount "$S" "$C" "$M"
cmp "$t/a" "$M/a" || fail "file a after repairing its segment"
zerofs_umount "$M"

# A damaged index checkpoint with no local cache: the mount is refused.
rm -rf "$C"
ck=$(ls "$S/meta/ckpt" | sort | tail -1)
cp "$S/meta/ckpt/$ck" "$t/ck.bak"
printf '\x00\x01' | dd of="$S/meta/ckpt/$ck" bs=1 seek=40 conv=notrunc status=none
expect_fail "damaged|authentication" "$ZEROFS" -f -o "store=$S,cache_dir=$C,$opts" "$M"
cp "$t/ck.bak" "$S/meta/ckpt/$ck"

# A store of a newer format is refused.
cp "$S/zerofs.key" "$t/key.bak"
printf '\x63' | dd of="$S/zerofs.key" bs=1 seek=8 conv=notrunc status=none
expect_fail "newer format" "$ZEROFS" -f -o "store=$S,cache_dir=$C,$opts" "$M"
cp "$t/key.bak" "$S/zerofs.key"

zerofs_mount "$S" "$C" "$M"
cmp "$t/a" "$M/a" || fail "file a at the end"
cmp "$t/b" "$M/b" || fail "file b at the end"
zerofs_umount "$M"
echo "t-badinput: ok"
