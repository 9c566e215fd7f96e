#!/usr/bin/env bash
# POSIX behaviour of a real mount: files, directories, links, special files,
# renames with flags, attributes with nanoseconds, truncate, sparse files,
# fallocate, SEEK_DATA/SEEK_HOLE, xattrs, statfs, open-but-unlinked files.
# Everything is checked again after a clean remount.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires setfattr getfattr setcap getcap mkfifo

t=$(mktemp -d /tmp/zerofs-posix.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
zerofs_mount "$t/store" "$t/cache" "$M"

# Regular files and data.
head -c 3000000 /dev/urandom >"$t/rand"
cp "$t/rand" "$M/rand"
cmp "$t/rand" "$M/rand" || fail "file content differs"
echo hello >"$M/small"
assert_eq hello "$(cat "$M/small")"
printf 'abc' >>"$M/small"
assert_eq "$(printf 'hello\nabc')" "$(cat "$M/small")" "append"
# Overwrite in the middle of a block (read-modify-write).
printf 'XYZ' | dd of="$M/rand" bs=1 seek=70000 conv=notrunc status=none
printf 'XYZ' | dd of="$t/rand" bs=1 seek=70000 conv=notrunc status=none
cmp "$t/rand" "$M/rand" || fail "overwrite differs"

# Directories.
mkdir -p "$M/a/b/c"
assert_eq 3 "$(stat -c %h "$M/a")" "nlink of a directory with one subdirectory"
rmdir "$M/a/b/c"
assert_eq 2 "$(stat -c %h "$M/a/b")"
if rmdir "$M/a" 2>/dev/null; then fail "rmdir of a non-empty directory succeeded"; fi
if mkdir "$M/a" 2>/dev/null; then fail "mkdir over an existing directory succeeded"; fi

# Symlinks and hard links.
ln -s ../small "$M/a/link"
assert_eq ../small "$(readlink "$M/a/link")"
assert_eq "$(cat "$M/small")" "$(cat "$M/a/link")" "read through a symlink"
ln "$M/small" "$M/hard"
assert_eq 2 "$(stat -c %h "$M/small")"
assert_eq "$(stat -c %i "$M/small")" "$(stat -c %i "$M/hard")" "hard link inode"
rm "$M/hard"
assert_eq 1 "$(stat -c %h "$M/small")"

# Special files.
mkfifo "$M/fifo"
assert_eq "fifo" "$(stat -c %F "$M/fifo")"
mknod "$M/cdev" c 1 3
assert_eq "1,3" "$(stat -c %t,%T "$M/cdev")"

# Attributes with nanoseconds.
chmod 0640 "$M/small"
assert_eq 640 "$(stat -c %a "$M/small")"
chown 1234:5678 "$M/small"
assert_eq 1234:5678 "$(stat -c %u:%g "$M/small")"
touch -m -d '2001-02-03 04:05:06.123456789' "$M/small"
assert_eq "2001-02-03 04:05:06.123456789" "$(stat -c %y "$M/small" | cut -c1-29)" "mtime"
touch -a -d '2002-02-03 04:05:06.987654321' "$M/small"
assert_eq "2002-02-03 04:05:06.987654321" "$(stat -c %x "$M/small" | cut -c1-29)" "atime"

# Renames: plain, over a file, NOREPLACE and EXCHANGE.
echo one >"$M/r1"
echo two >"$M/r2"
mv "$M/r1" "$M/a/moved"
assert_eq one "$(cat "$M/a/moved")"
if "$FSPROBE" rename "$M/a/moved" "$M/r2" noreplace 2>/dev/null; then
	fail "RENAME_NOREPLACE replaced a file"
fi
"$FSPROBE" rename "$M/a/moved" "$M/r2" exchange
assert_eq two "$(cat "$M/a/moved")" "exchange (1)"
assert_eq one "$(cat "$M/r2")" "exchange (2)"
mv -T "$M/a/moved" "$M/r2"
assert_eq two "$(cat "$M/r2")" "rename over a file"
[ ! -e "$M/a/moved" ] || fail "old name still exists after rename"
mkdir "$M/d1" "$M/d2"
mv -T "$M/d1" "$M/d2"
[ -d "$M/d2" ] && [ ! -e "$M/d1" ] || fail "rename over an empty directory"

# Truncate and sparse files.
head -c 200000 /dev/urandom >"$t/tr"
cp "$t/tr" "$M/tr"
truncate -s 100000 "$M/tr"
truncate -s 100000 "$t/tr"
truncate -s 300000 "$M/tr"
truncate -s 300000 "$t/tr"
cmp "$t/tr" "$M/tr" || fail "truncate down and up: old bytes must read as zeros"
truncate -s 1T "$M/sparse"
"$FSPROBE" pwrite "$M/sparse" $((1 << 39)) "middle"
assert_eq $((1 << 40)) "$(stat -c %s "$M/sparse")"
assert_eq middle "$(dd if="$M/sparse" bs=1 skip=$((1 << 39)) count=6 status=none)"
assert_eq $((1 << 39)) "$("$FSPROBE" seek "$M/sparse" 0 data)" "SEEK_DATA"
assert_eq 0 "$("$FSPROBE" seek "$M/sparse" 0 hole)" "SEEK_HOLE at 0"
assert_eq $(( (1 << 39) + 65536 )) "$("$FSPROBE" seek "$M/sparse" $((1 << 39)) hole)" "SEEK_HOLE after data"
# Before fsync the written pages may still be dirty in the kernel (writeback
# cache): the answer must count them as data all the same.
assert_eq "1048576 2097152" "$("$FSPROBE" seekdirty "$M/seekdirty")" "SEEK_DATA/SEEK_HOLE before fsync"
assert_eq ENXIO "$("$FSPROBE" seek "$M/sparse" $(( (1 << 39) + 65536 )) data)" "SEEK_DATA past data"
assert_eq 0 "$(dd if="$M/sparse" bs=65536 skip=100 count=1 status=none | tr -d '\0' | wc -c)" "hole reads zeros"

# fallocate: punch a hole, zero a range, extend.
head -c 400000 /dev/urandom >"$t/fa"
cp "$t/fa" "$M/fa"
"$FSPROBE" falloc "$M/fa" punch 1000 200000
zero_ref() { head -c "$3" /dev/zero | dd of="$1" bs=64k seek="$2" oflag=seek_bytes conv=notrunc status=none; }
zero_ref "$t/fa" 1000 200000
cmp "$t/fa" "$M/fa" || fail "PUNCH_HOLE"
assert_eq 400000 "$(stat -c %s "$M/fa")" "PUNCH_HOLE keeps the size"
assert_eq 196608 "$("$FSPROBE" seek "$M/fa" 65536 data)" "punched blocks are holes"
"$FSPROBE" falloc "$M/fa" zero 300000 200000
zero_ref "$t/fa" 300000 200000
cmp "$t/fa" "$M/fa" || fail "ZERO_RANGE"
assert_eq 500000 "$(stat -c %s "$M/fa")" "ZERO_RANGE extends"
"$FSPROBE" falloc "$M/fa" plain 0 600000
assert_eq 600000 "$(stat -c %s "$M/fa")" "fallocate extends"

# Extended attributes.
setfattr -n user.color -v blue "$M/small"
setfattr -n user.empty "$M/small"
assert_eq blue "$(getfattr --only-values -n user.color "$M/small")"
getfattr -d "$M/small" | grep -q 'user.empty' || fail "listxattr misses user.empty"
setfattr -x user.color "$M/small"
if getfattr -n user.color "$M/small" 2>/dev/null; then fail "removed xattr still there"; fi
# File capabilities: the kernel looks security.capability up before each
# write and removes it (the daemon answers that lookup without the index
# until the first one is set).
echo x >"$M/capped"
setcap cap_net_raw+ep "$M/capped"
getcap "$M/capped" | grep -q cap_net_raw || fail "setcap not visible"
echo y >>"$M/capped"
[ -z "$(getcap "$M/capped")" ] || fail "a write kept the file's capabilities"
setcap cap_net_raw+ep "$M/capped" # for the remount below

# O_DIRECT: a device file's descriptor bypasses the kernel's page cache
# (FOPEN_DIRECT_IO: no shared mapping); another file's takes the kernel's
# own O_DIRECT path.  Each sees what a buffered descriptor left dirty, and
# the buffered one sees its writes.
mkdir -p "$M/.nbd"
truncate -s 1M "$M/.nbd/direct"
assert_eq "AAAA BBBB ENODEV" "$("$FSPROBE" direct "$M/.nbd/direct")" "O_DIRECT on a device file"
assert_eq "AAAA BBBB mapped" "$("$FSPROBE" direct "$M/direct")" "O_DIRECT on another file"
# The kernel drops no privileges before such a descriptor's writes; the
# daemon drops those set after the open: capabilities always, the set-ID
# bits for a writer other than root.
truncate -s 1M "$M/.nbd/priv"
/usr/bin/python3 - "$M/.nbd/priv" <<'EOF' || fail "privileges set after an O_DIRECT open"
import mmap, os, subprocess, sys
p = sys.argv[1]
def caps():
    return subprocess.run(["getcap", p], capture_output=True, text=True, check=True).stdout
fd = os.open(p, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
subprocess.run(["setcap", "cap_net_raw+ep", p], check=True)
os.chmod(p, 0o6775)
os.pwritev(fd, [buf], 0)
assert caps() == "", "a root write kept the capabilities"
assert os.stat(p).st_mode & 0o7777 == 0o6775, "a root write dropped the set-ID bits"
os.chown(p, 65534, 65534)
os.chmod(p, 0o6775)
if os.fork() == 0:
    os.setgid(65534)
    os.setuid(65534)
    os.pwritev(fd, [buf], 4096)
    os._exit(0)
assert os.waitpid(-1, 0)[1] == 0, "the unprivileged write failed"
assert os.stat(p).st_mode & 0o7777 == 0o775, "an unprivileged write kept the set-ID bits"
EOF

# statfs, open-but-unlinked.
stat -f -c %S "$M" | grep -qx 4096 || fail "statfs block size"
"$FSPROBE" unlinked "$M/gone"
[ ! -e "$M/gone" ] || fail "unlinked file reappeared"

# O_TRUNC opens (shell redirections) truncate.
head -c 200000 /dev/urandom >"$M/otrunc"
echo short >"$M/otrunc"
assert_eq 6 "$(stat -c %s "$M/otrunc")" "size after an O_TRUNC open"
head -c 100000 /dev/urandom >"$M/emptied"
: >"$M/emptied"

# Everything again after a clean remount.
listing() { (cd "$M" && find . -printf '%p %y %m %s %U %G %n %T@\n' | sort); }
listing >"$t/before"
zerofs_umount "$M"
zerofs_mount "$t/store" "$t/cache" "$M"
listing >"$t/after"
diff "$t/before" "$t/after" || fail "the tree differs after a remount"
cmp "$t/rand" "$M/rand" || fail "content after remount"
assert_eq short "$(cat "$M/otrunc")" "O_TRUNC then write, after remount"
assert_eq 0 "$(stat -c %s "$M/emptied")" "O_TRUNC to empty, after remount"
cmp "$t/fa" <(head -c 500000 "$M/fa") || fail "fallocated file after remount"
getcap "$M/capped" | grep -q cap_net_raw || fail "capabilities lost at the remount"
echo z >>"$M/capped"
[ -z "$(getcap "$M/capped")" ] || fail "a write after the remount kept the capabilities"
assert_eq middle "$(dd if="$M/sparse" bs=1 skip=$((1 << 39)) count=6 status=none)"
zerofs_umount "$M"
echo "t-posix: ok"
