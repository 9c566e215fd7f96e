#!/usr/bin/env bash
# The built-in NBD server with real clients: nbdinfo (--list, size, flags),
# nbdcopy (several connections, checksum round trip), nbdsh (FUA, flush,
# trim, zero, range errors, requests in flight), qemu-io and qemu-img; one
# namespace (FUSE readers see NBD writes at once and NBD readers see FUSE
# writes); a removed export; FLUSH survives kill -9 and a remount without
# the cache; the Unix socket; a clean unmount with a client connected.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires nbdinfo nbdcopy nbdsh qemu-io qemu-img md5sum
# nbdsh runs "python3 -m nbd": Debian's module is in the system python3,
# which another python3 earlier on PATH would hide.
nbdsh() { PATH=/usr/bin:$PATH command nbdsh "$@"; }
if ! PATH=/usr/bin:$PATH python3 -c 'import nbd' 2>/dev/null; then
	echo "$0: python3-libnbd missing: test skipped"
	exit 77
fi

t=$(mktemp -d /tmp/zerofs-nbd.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
port=$(pick_port)
U=nbd://127.0.0.1:$port
SOCK=$t/nbd.sock
OPTS="nbd_listen=127.0.0.1:$port,nbd_socket=$SOCK,barrier_interval_ms=3600000"
zerofs_mount "$S" "$C" "$M" "$OPTS"

# The server made .nbd; its regular files are the exports.
[ -d "$M/.nbd" ] || fail ".nbd was not created at mount"
assert_eq 755 "$(stat -c %a "$M/.nbd")" ".nbd mode"
truncate -s 64M "$M/.nbd/disk"
truncate -s 1M "$M/.nbd/small"
mkdir "$M/.nbd/adir"
nbdinfo --list "$U" >"$t/list" || fail "nbdinfo --list failed"
grep -q '^export="disk":' "$t/list" || fail "disk not listed"
grep -q '^export="small":' "$t/list" || fail "small not listed"
grep -q 'adir' "$t/list" && fail "a directory was listed as an export"
assert_eq 67108864 "$(nbdinfo --size "$U/disk")" "export size"
for cap in multi-conn flush fua trim zero fast-zero cache; do
	nbdinfo --can "$cap" "$U/disk" || fail "export cannot $cap"
done
nbdinfo --is read-only "$U/disk" && fail "export is read-only"
nbdinfo --json "$U/disk" | grep -q '"block_size_preferred": 4096' || fail "block size"
assert_eq 1048576 "$(nbdinfo --size "nbd+unix:///small?socket=$SOCK")" "size over the Unix socket"
nbdinfo "$U/nothere" >/dev/null 2>&1 && fail "an unknown export was served"

# nbdcopy in and out over 4 connections, 16 requests in flight each.
head -c 64M /dev/urandom >"$t/rnd"
want=$(md5sum <"$t/rnd")
nbdcopy -C 4 -R 16 --flush "$t/rnd" "$U/disk" || fail "nbdcopy to the export failed"
assert_eq "$want" "$(nbdcopy -C 4 -R 16 "$U/disk" - | md5sum)" "nbdcopy round trip"
assert_eq "$want" "$(md5sum <"$M/.nbd/disk")" "FUSE view of the nbdcopy data"

# nbdsh: FUA, flush, trim, zero (with and without holes), range errors, and
# several requests in flight on one connection.
nbdsh -u "$U/small" -c '
import errno
h.set_strict_mode(0)  # let the server, not libnbd, judge the ranges
a = b"A" * 4096
h.pwrite(a, 8192, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 8192) == a
h.flush()
h.pwrite(b"B" * 65536, 65536)
h.trim(4096, 65536, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 65536) == bytes(4096)
h.zero(4096, 69632)
h.zero(4096, 73728, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(12288, 65536) == bytes(12288)
assert h.pread(4096, 77824) == b"B" * 4096
h.cache(65536, 0)
for off, n, want in ((1048576 - 5, 10, errno.EINVAL), (1 << 40, 1, errno.EINVAL)):
    try:
        h.pread(n, off)
        assert False, "read past the end succeeded"
    except nbd.Error as e:
        assert e.errnum == want, e
try:
    h.pwrite(b"x" * 10, 1048576 - 5)
    assert False, "write past the end succeeded"
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
bufs = [nbd.Buffer.from_bytearray(bytearray([i]) * 4096) for i in range(1, 17)]
cookies = [h.aio_pwrite(bufs[i], 131072 + i * 4096) for i in range(16)]
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    assert h.aio_command_completed(c)
for i in range(16):
    assert h.pread(4096, 131072 + i * 4096) == bytes([i + 1]) * 4096
h.shutdown()
' || fail "nbdsh checks failed"
assert_eq "$(printf 'A%.0s' $(seq 4096))" "$(dd if="$M/.nbd/small" bs=4096 skip=2 count=1 status=none)" \
	"FUSE view of the FUA write"

# One namespace: FUSE has the page cached; an NBD write must replace it.
dd if="$M/.nbd/small" of=/dev/null bs=64k status=none
nbdsh -u "$U/small" -c 'h.pwrite(b"fresh-from-nbd", 8192)'
assert_eq "fresh-from-nbd" "$(dd if="$M/.nbd/small" bs=1 skip=8192 count=14 status=none)" \
	"FUSE read after an NBD write"
nbdsh -u "$U/small" -c 'h.trim(4096, 8192)'
assert_eq 0 "$(dd if="$M/.nbd/small" bs=4096 skip=2 count=1 status=none | tr -d '\0' | wc -c)" \
	"FUSE read after an NBD trim"
# ...and NBD readers see what FUSE wrote (once the writer closed the file).
printf 'written-by-fuse' | dd of="$M/.nbd/small" bs=1 seek=300000 conv=notrunc status=none
nbdsh -u "$U/small" -c 'assert h.pread(15, 300000) == b"written-by-fuse"' ||
	fail "NBD read after a FUSE write"

# qemu-io and qemu-img as clients.
qemu-io -f raw -c 'write -P 0xcd 1M 256k' -c 'read -P 0xcd 1M 256k' -c flush "$U/disk" \
	>"$t/qemu-io.out" || fail "qemu-io failed"
grep -q 'read 262144/262144' "$t/qemu-io.out" || fail "qemu-io read"
assert_eq "$(printf '\xcd%.0s' $(seq 16))" "$(dd if="$M/.nbd/disk" bs=1 skip=1048576 count=16 status=none)" \
	"FUSE view of the qemu-io write"
qemu-img info -f raw "$U/disk" | grep -q 'virtual size: 64 MiB' || fail "qemu-img info"
qemu-img convert -f raw -O raw "$U/small" "$t/small.copy" || fail "qemu-img convert"
cmp "$t/small.copy" "$M/.nbd/small" || fail "qemu-img copy differs"

# A removed export: the open connection keeps its (now nameless) file, new
# connections are refused, others carry on.
truncate -s 1M "$M/.nbd/gone"
nbdsh -u "$U/gone" -c "
import os
h.pwrite(b'before', 0)
os.unlink('$M/.nbd/gone')
h.pwrite(b'after!', 0)
assert h.pread(6, 0) == b'after!'
h.flush()
" || fail "connection to a removed export"
nbdinfo "$U/gone" >/dev/null 2>&1 && fail "a removed export was served"
assert_eq 67108864 "$(nbdinfo --size "$U/disk")" "the server after a removed export"

# FLUSH is a barrier: the data survives kill -9 and a remount without the
# local cache.
head -c 1M /dev/urandom >"$t/flushed"
nbdcopy --flush "$t/flushed" "$U/small" || fail "nbdcopy --flush failed"
nbdsh -u "$U/disk" -c "
with open('$t/flushed', 'rb') as f:
    h.pwrite(f.read(), 5 << 20)
h.flush()
"
zerofs_kill9 "$M"
rm -rf "$C"
zerofs_mount "$S" "$C" "$M" "$OPTS"
cmp "$t/flushed" "$M/.nbd/small" || fail "nbdcopy --flush data lost after kill -9"
cmp "$t/flushed" <(nbdcopy "$U/disk" - | dd bs=1M skip=5 count=1 iflag=fullblock status=none) ||
	fail "flushed NBD write lost after kill -9"
cmp <(head -c 1M "$t/rnd") <(dd if="$M/.nbd/disk" bs=1M count=1 status=none) ||
	fail "nbdcopy data lost after kill -9"

# A clean unmount while a client is connected: the server ends the
# connection and the daemon exits 0.
PATH=/usr/bin:$PATH python3 -c "
import nbd, time
h = nbd.NBD()
h.connect_uri('$U/disk')
h.pread(512, 0)
time.sleep(30)
" >/dev/null 2>&1 &
holder=$!
cleanup_fn kill "$holder"
sleep 1
zerofs_umount "$M"
echo "t-nbd: ok"
