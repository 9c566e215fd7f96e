#!/usr/bin/env bash
# NBD structured replies and block status with real clients, on a sparse
# export: nbdinfo --map lists exactly the blocks written (dirty, packed,
# stored, after a remount) as data and the rest (never written or trimmed)
# as holes; nbdsh block_status with and without REQ_ONE, structured reads
# that get OFFSET_HOLE chunks for the holes and one chunk with DF, error
# chunks for bad requests; qemu-img map; raw bytes for the negotiation
# errors (contexts without structured replies, block status without a
# context).  The daemon serves FUSE and unmounts cleanly afterwards.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires nbdinfo nbdsh qemu-img od timeout
# nbdsh runs "python3 -m nbd": Debian's module is in the system python3,
# which another python3 earlier on PATH would hide.
nbdsh() { PATH=/usr/bin:$PATH command nbdsh "$@"; }
py() { PATH=/usr/bin:$PATH command python3 "$@"; }
if ! py -c 'import nbd' 2>/dev/null; then
	echo "$0: python3-libnbd missing: test skipped"
	exit 77
fi

t=$(mktemp -d /tmp/zerofs-nbdstatus.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
S=$t/store
C=$t/cache
port=$(pick_port)
U=nbd://127.0.0.1:$port
# No timed barrier: until the explicit flush, the partial writes stay in
# dirty buffers.
OPTS="nbd_listen=127.0.0.1:$port,barrier_interval_ms=3600000"
zerofs_mount "$S" "$C" "$M" "$OPTS"

K=65536
truncate -s 16M "$M/.nbd/sparse"
nbdinfo --can structured-reply "$U/sparse" || fail "no structured replies"
nbdinfo --can df "$U/sparse" || fail "no DF with structured replies"

# Blocks 0, 3 (a partial write: a dirty buffer), 8-11 then 10 trimmed,
# 13 (partial), and the last one; all without a flush.
nbdsh -u "$U/sparse" -c "
K = $K
h.pwrite(b'a' * K, 0)
h.pwrite(b'partial', 3 * K + 100)
h.pwrite(b'b' * 4 * K, 8 * K)
h.trim(K, 10 * K)
h.pwrite(b'c' * 10, 13 * K + K - 10)
h.pwrite(b'z' * K, (16 << 20) - K)
" || fail "nbdsh writes failed"

# The map as "offset length flags" lines.
want_map="0 $K 0
$K $((2 * K)) 3
$((3 * K)) $K 0
$((4 * K)) $((4 * K)) 3
$((8 * K)) $((2 * K)) 0
$((10 * K)) $K 3
$((11 * K)) $K 0
$((12 * K)) $K 3
$((13 * K)) $K 0
$((14 * K)) $(((16 << 20) - 15 * K)) 3
$(((16 << 20) - K)) $K 0"
map() { nbdinfo --map "$U/sparse" | awk '{ print $1, $2, $3 }'; }
check_map() {
	local got
	got=$(map) || fail "nbdinfo --map failed ($1)"
	assert_eq "$want_map" "$got" "nbdinfo --map $1"
}
check_map "with dirty buffers"
nbdinfo --map "$U/sparse" >"$t/map.txt"
grep -q 'hole,zero' "$t/map.txt" || fail "holes not described as hole,zero"

# qemu-img map sees the same data ranges.
qemu-img map -f raw --output=json "$U/sparse" >"$t/qmap.json" || fail "qemu-img map failed"
got=$(py -c "
import json, sys
for e in json.load(open(sys.argv[1])):
    if e['data']:
        print(e['start'], e['length'])
" "$t/qmap.json")
assert_eq "$(awk '$3 == 0 { print $1, $2 }' <<<"$want_map")" "$got" "qemu-img map data ranges"

# nbdsh: block status with and without REQ_ONE, structured reads.
nbdsh -c "
import errno
K = $K
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri('$U/sparse')
assert h.get_structured_replies_negotiated()
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.set_strict_mode(0)  # let the server, not libnbd, judge the requests

def status(count, off, flags=0):
    got = []
    def cb(ctx, o, entries, err):
        assert ctx == nbd.CONTEXT_BASE_ALLOCATION, ctx
        assert o == off
        got.extend(entries)
    h.block_status(count, off, cb, flags)
    return got

assert status(K, 0) == [K, 0]
assert status(1000, 100) == [1000, 0], status(1000, 100)
assert status(4 * K, K) == [2 * K, 3, K, 0, K, 3], status(4 * K, K)
# REQ_ONE: one extent, however far its kind goes.
assert status(16 * K, 4 * K, nbd.CMD_FLAG_REQ_ONE) == [4 * K, 3]
assert status(3 * K, 8 * K, nbd.CMD_FLAG_REQ_ONE) == [2 * K, 0]
assert status(K - 10, 14 * K + 5, nbd.CMD_FLAG_REQ_ONE) == [K - 10, 3]
# The whole export: extents add up to the request, kinds alternate.
e = status(16 << 20, 0)
assert sum(e[0::2]) == 16 << 20 and all(e[i] != e[i + 2] for i in range(1, len(e) - 2, 2)), e
# Out of range and empty requests.
for count, off in ((2, (16 << 20) - 1), (1, 16 << 20), (K, 1 << 50), (0, 0)):
    try:
        status(count, off)
        assert False, 'block status %d at %d succeeded' % (count, off)
    except nbd.Error as err:
        assert err.errnum == errno.EINVAL, err

# A structured read over data and holes: the holes come as hole chunks.
def read(count, off, flags=0):
    buf = bytearray(count)
    chunks = []
    def cb(sub, o, st, err):
        assert off <= o and o + len(sub) <= off + count
        chunks.append((o, len(sub), st))
        buf[o - off:o - off + len(sub)] = sub
        return 0
    h.pread_structured(count, off, cb, flags)
    return bytes(buf), sorted(chunks)

data, chunks = read(6 * K, 0)
want = b'a' * K + bytes(2 * K) + bytes(100) + b'partial' + bytes(K - 107) + bytes(2 * K)
assert data == want
assert chunks == [(0, K, nbd.READ_DATA), (K, 2 * K, nbd.READ_HOLE),
                  (3 * K, K, nbd.READ_DATA), (4 * K, 2 * K, nbd.READ_HOLE)], chunks
assert h.pread(6 * K, 0) == want
# Unaligned, starting and ending inside holes.
data, chunks = read(2 * K, 9 * K + 5)
assert data == b'b' * (K - 5) + bytes(K) + b'b' * 5
assert chunks == [(9 * K + 5, K - 5, nbd.READ_DATA), (10 * K, K, nbd.READ_HOLE),
                  (11 * K, 5, nbd.READ_DATA)], chunks
# DF: one data chunk with the zeros in it.
data, chunks = read(6 * K, 0, nbd.CMD_FLAG_DF)
assert data == want and chunks == [(0, 6 * K, nbd.READ_DATA)], chunks
# Errors come as error chunks.
for count, off, flags in ((10, (16 << 20) - 5, 0), (K, 0, nbd.CMD_FLAG_REQ_ONE)):
    try:
        read(count, off, flags)
        assert False, 'read %d at %d flags %d succeeded' % (count, off, flags)
    except nbd.Error as err:
        assert err.errnum == errno.EINVAL, err
h.shutdown()
" || fail "nbdsh block status and structured reads"

# Listing contexts.
nbdsh -c "
h.set_opt_mode(True)
h.connect_uri('$U/sparse')
names = []
def cb(name):
    names.append(name)
    return 0
assert h.opt_list_meta_context(cb) == 1 and names == ['base:allocation'], names
h.opt_abort()
" || fail "opt_list_meta_context"

# The same map once packed (a flush), then stored and read back from the
# index after a remount.
nbdsh -u "$U/sparse" -c 'h.flush()'
check_map "after a flush"
zerofs_umount "$M"
zerofs_mount "$S" "$C" "$M" "$OPTS"
check_map "after a remount"
# FUSE writes show up too; a whole-block trim from FUSE makes a hole.
printf 'fuse' | dd of="$M/.nbd/sparse" bs=1 seek=$((5 * K + 7)) conv=notrunc status=none
fallocate -p -o 0 -l "$K" "$M/.nbd/sparse"
got=$(nbdinfo --map "$U/sparse" | awk '$1 < 6 * 65536 { print $1, $2, $3 }')
assert_eq "0 $((3 * K)) 3
$((3 * K)) $K 0
$((4 * K)) $K 3
$((5 * K)) $K 0" "$got" "map after FUSE writes and a punched hole"

# Raw bytes: negotiation errors.  be32 N, str S as printf escapes.
be() { local n=$1 bytes=$2 i out=""; for ((i = bytes - 1; i >= 0; i--)); do
	out+=$(printf '\\x%02x' $(((n >> (8 * i)) & 255))); done; printf '%s' "$out"; }
str() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n' | sed 's/../\\x&/g'; }
IHAVEOPT='\x49\x48\x41\x56\x45\x4f\x50\x54'
exec 3<>"/dev/tcp/127.0.0.1/$port"
send() { printf "$1" >&3; }
get() { timeout 10 dd bs=1 count="$1" status=none <&3 | od -An -tx1 -v | tr -d ' \n'; }
expect() { assert_eq "$2" "$(get "$1")" "$3"; }
option() { send "$IHAVEOPT$(be "$1" 4)$(be "$2" 4)$3"; }
reply_hdr() { printf '0003e889045565a9%08x%08x%08x' "$@"; }
hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }
meta() { # option, queries...: for export "sparse"
	local opt=$1 q d len=14
	shift
	d="$(be 6 4)$(str sparse)$(be $# 4)"
	for q in "$@"; do
		d+="$(be ${#q} 4)$(str "$q")"
		len=$((len + 4 + ${#q}))
	done
	option "$opt" "$len" "$d"
}
expect 18 4e42444d4147494349484156454f50540003 "greeting"
send "$(be 3 4)"
meta 10 base:allocation
expect 20 "$(reply_hdr 10 $((0x80000003)) 34)" "SET_META_CONTEXT before STRUCTURED_REPLY"
get 34 >/dev/null
option 8 0 ''
expect 20 "$(reply_hdr 8 1 0)" "STRUCTURED_REPLY: ack"
meta 9
expect 20 "$(reply_hdr 9 4 19)" "LIST_META_CONTEXT: one context"
expect 19 "00000000$(hex base:allocation)" "LIST_META_CONTEXT: id 0, name"
expect 20 "$(reply_hdr 9 1 0)" "LIST_META_CONTEXT: ack"
meta 10 x-other:thing
expect 20 "$(reply_hdr 10 1 0)" "SET_META_CONTEXT of an unknown context: nothing selected"
option 7 $((4 + 6 + 2)) "$(be 6 4)$(str sparse)$(be 0 2)"
expect 20 "$(reply_hdr 7 3 12)" "GO: export info"
expect 12 "000000000000010000000ded" "GO: 16 MiB, flags with SEND_DF"
expect 20 "$(reply_hdr 7 3 14)" "GO: block size"
get 14 >/dev/null
expect 20 "$(reply_hdr 7 1 0)" "GO: ack"
# BLOCK_STATUS with no context selected: an EINVAL error chunk (22 bytes
# of message: "Invalid argument").
send '\x25\x60\x95\x13'"$(be 0 2)$(be 7 2)$(be 77 8)$(be 0 8)$(be 4096 4)"
expect 20 "668e33ef00018001$(printf '%016x' 77)00000016" "BLOCK_STATUS without a context"
expect 6 "000000160010" "EINVAL, 16 byte message"
get 16 >/dev/null
# A good structured read of a hole: one OFFSET_HOLE chunk, done.
send '\x25\x60\x95\x13'"$(be 0 2)$(be 0 2)$(be 78 8)$(be $((2 * K)) 8)$(be 4096 4)"
expect 32 "668e33ef00010002$(printf '%016x' 78)0000000c$(printf '%016x' $((2 * K)))00001000" \
	"read of a hole: OFFSET_HOLE"
send '\x25\x60\x95\x13'"$(be 0 2)$(be 2 2)$(be 0 8)$(be 0 8)$(be 0 4)"
expect 1 "" "DISC closes"

echo hello >"$M/after"
assert_eq hello "$(cat "$M/after")" "FUSE after the NBD tests"
zerofs_umount "$M"
echo "t-nbd-status: ok"
