#!/usr/bin/env bash
# systemd's Type=notify protocol: READY=1 once mounted, STOPPING=1 when the
# daemon starts to stop; SIGTERM ends the daemon with status 0 and unmounted.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires python3

t=$(mktemp -d /tmp/zerofs-notify.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
sock=$t/notify.sock
# Collect the datagrams sent to the socket into a file, one per line.
python3 - "$sock" "$t/messages" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
with open(sys.argv[2], "w") as out:
    while True:
        msg = s.recv(4096).decode()
        out.write(msg.replace("\n", " ") + "\n")
        out.flush()
        if "STOPPING=1" in msg:
            break
PY
listener=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "the test's notify socket did not appear"

NOTIFY_SOCKET=$sock zerofs_mount "$t/store" "$t/cache" "$M"
for _ in $(seq 50); do grep -q READY=1 "$t/messages" && break; sleep 0.1; done
grep -q "READY=1" "$t/messages" || fail "no READY=1 after the mount"
echo data >"$M/f"
zerofs_term "$M"
wait "$listener" || fail "the notify listener failed"
grep -q "STOPPING=1" "$t/messages" || fail "no STOPPING=1 at the stop"
echo "t-notify: ok"
