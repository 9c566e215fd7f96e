#!/usr/bin/env bash
# Malformed NBD input, sent as raw bytes with bash's /dev/tcp: bad client
# flags, bad magics, unknown and oversized options, unknown exports, reads
# and writes out of range, oversized requests, unknown commands and flags,
# connections dropped mid-option and mid-request.  Each gets the protocol's
# error reply or a closed connection; afterwards the daemon still serves
# nbdinfo and FUSE, and unmounts cleanly.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires nbdinfo od timeout

t=$(mktemp -d /tmp/zerofs-nbdbad.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
port=$(pick_port)
zerofs_mount "$t/store" "$t/cache" "$M" "nbd_listen=127.0.0.1:$port"
truncate -s 1M "$M/.nbd/disk"

# Bytes as printf escapes: be16/be32/be64 N, str S.
be() { local n=$1 bytes=$2 i out=""; for ((i = bytes - 1; i >= 0; i--)); do
	out+=$(printf '\\x%02x' $(((n >> (8 * i)) & 255))); done; printf '%s' "$out"; }
be16() { be "$1" 2; }
be32() { be "$1" 4; }
be64() { be "$1" 8; }
str() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n' | sed 's/../\\x&/g'; }

IHAVEOPT='\x49\x48\x41\x56\x45\x4f\x50\x54'
REQ_MAGIC='\x25\x60\x95\x13'

conn() { exec 3<>"/dev/tcp/127.0.0.1/$port"; }
hangup() { exec 3<&- 3>&-; }
send() { printf "$1" >&3; }
# Read exactly N bytes as hex (empty at end of file).
get() { timeout 10 dd bs=1 count="$1" status=none <&3 | od -An -tx1 -v | tr -d ' \n'; }
expect() { assert_eq "$2" "$(get "$1")" "$3"; }
expect_closed() { assert_eq "" "$(get 1)" "$1: connection not closed"; hangup; }

# Greeting and client flags (FIXED_NEWSTYLE | NO_ZEROES).
handshake() {
	conn
	expect 18 4e42444d4147494349484156454f50540003 "greeting"
	send "$(be32 3)"
}
option() { send "$IHAVEOPT$(be32 "$1")$(be32 "$2")$3"; }
# The header of an option reply: option, type, length.
expect_reply() {
	expect 20 "0003e889045565a9$(printf '%08x%08x%08x' "$1" "$2" "$3")" "$4"
	[ "$3" -eq 0 ] || get "$3" >/dev/null
}
go() { option 7 $((4 + ${#1} + 2)) "$(be32 ${#1})$(str "$1")$(be16 0)"; }
go_disk() {
	handshake
	go disk
	expect_reply 7 3 12 "GO: export info"
	expect_reply 7 3 14 "GO: block size info"
	expect_reply 7 1 0 "GO: ack"
}
request() { send "$REQ_MAGIC$(be16 "$1")$(be16 "$2")$(be64 "$3")$(be64 "$4")$(be32 "$5")"; }
expect_simple() { expect 16 "67446698$(printf '%08x' "$1")$(printf '%016x' "$2")" "$3"; }

# Handshake phase.
conn
expect 18 4e42444d4147494349484156454f50540003 "greeting"
send "$(be32 $((0x80000001)))"
expect_closed "unknown client flags"

handshake
send '\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00'
expect_closed "bad option magic"

handshake
option $((0x1234)) 3 'abc'
expect_reply $((0x1234)) $((0x80000001)) 20 "unknown option: ERR_UNSUP"
option 8 1 'x'
expect_reply 8 $((0x80000003)) 30 "STRUCTURED_REPLY with data: ERR_INVALID"
go nothere
expect_reply 7 $((0x80000006)) 23 "unknown export: ERR_UNKNOWN"
go ../store
expect_reply 7 $((0x80000006)) 23 "export outside .nbd: ERR_UNKNOWN"
option 7 10 "$(be32 99)$(str disk)$(be16 0)"
expect_reply 7 $((0x80000003)) 17 "malformed GO: ERR_INVALID"
option 3 1 'x'
expect_reply 3 $((0x80000003)) 18 "LIST with data: ERR_INVALID"
option 2 0 ''
expect_reply 2 1 0 "ABORT: ack"
expect_closed "after ABORT"

handshake
option 7 $((0x10000000)) ''
expect_closed "2 GiB of option data"

handshake
option 1 7 "$(str nothere)"
expect_closed "EXPORT_NAME of an unknown export"

handshake
option 7 100 'only a few bytes'
hangup # dropped mid-option

# Transmission phase.
go_disk
request 0 0 1 0 512
expect_simple 0 1 "a good read"
get 512 >/dev/null
request 0 0 2 $((1048576 - 100)) 512
expect_simple 22 2 "read past the end: EINVAL"
request 0 0 3 $((1 << 62)) 512
expect_simple 22 3 "read far past the end: EINVAL"
request 0 0 4 0 $((64 << 20))
expect_simple 22 4 "oversized read: EINVAL"
request 0 99 5 0 512
expect_simple 22 5 "unknown command: EINVAL"
request $((0x8000)) 0 6 0 512
expect_simple 22 6 "unknown flag: EINVAL"
request 0 7 7 0 512
expect_simple 22 7 "block status without negotiation: EINVAL"
request 0 1 8 $((1048576 - 4)) 8
send 'xxxxxxxx'
expect_simple 28 8 "write past the end: ENOSPC"
request 0 3 9 0 0
expect_simple 0 9 "flush still works"
request 0 1 10 0 $((0x7fffffff))
expect_closed "oversized write"

go_disk
send '\x12\x34\x56\x78'"$(be64 0)$(be64 0)$(be64 0)"
expect_closed "bad request magic"

go_disk
request 0 1 11 0 4096
send 'only part of the payload'
hangup # dropped mid-request

go_disk
send "$REQ_MAGIC"'\x00\x00'
hangup # dropped mid-header

# Many connections dropped at once, some in the middle of a request.
droppers=()
for i in $(seq 1 20); do
	(
		exec 4<>"/dev/tcp/127.0.0.1/$port"
		printf '\x00\x00\x00\x03' >&4
		[ $((i % 2)) -eq 0 ] && printf "$IHAVEOPT"'\x00\x00\x00\x07' >&4
		exec 4>&-
	) &
	droppers+=($!)
done
for p in "${droppers[@]}"; do
	if ! { wait "$p"; }; then :; fi
done

# The daemon carries on: nbdinfo, a normal read, FUSE, a clean unmount.
assert_eq 1048576 "$(nbdinfo --size "nbd://127.0.0.1:$port/disk")" "nbdinfo after bad input"
go_disk
request 0 2 12 0 0
expect_closed "DISC"
# An explicitly configured address that is taken fails the mount, clearly.
mkdir -p "$t/mnt2"
if timeout 60 "$ZEROFS" -f -o "store=$t/store2,cache_dir=$t/cache2,$ZEROFS_TEST_OPTS,nbd_listen=127.0.0.1:$port" \
	"$t/mnt2" >"$t/mnt2.log" 2>&1; then
	if ! { fusermount3 -u "$t/mnt2" 2>/dev/null; }; then :; fi
	fail "a second mount on a taken nbd_listen address succeeded"
fi
grep -q "cannot listen on 127.0.0.1:$port" "$t/mnt2.log" || fail "no clear message for a taken address"
echo hello >"$M/after"
assert_eq hello "$(cat "$M/after")" "FUSE after bad input"
zerofs_umount "$M"
echo "t-nbd-bad: ok"
