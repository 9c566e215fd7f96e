#!/usr/bin/env bash
# The Prometheus endpoint (stats_listen): GET /metrics answers HELP and TYPE
# lines and zerofs_ samples, zerofs_write_bytes_total grows with writes,
# other paths get 404, and idle, oversized or garbage requests neither kill
# the daemon nor keep it from answering the next client.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires curl timeout

t=$(mktemp -d /tmp/zerofs-metrics.XXXXXX)
cleanup_fn rm -rf "$t"
M=$t/mnt
port=$(pick_port)
url="http://127.0.0.1:$port"

zerofs_mount "$t/store" "$t/cache" "$M" "stats_listen=127.0.0.1:$port,nbd_listen="

metrics()
{
	curl -sS --max-time 10 -o "$1" -w '%{http_code}' "$url/metrics"
}

# A sample's value: metric $2 (with its labels, if any) in file $1.
value()
{
	awk -v m="$2" '$1 == m { print $2 }' "$1"
}

assert_eq 200 "$(metrics "$t/m1")" "GET /metrics status"
for m in zerofs_write_bytes_total zerofs_reads_total zerofs_barriers_total \
	zerofs_store_errors_total; do
	grep -q "^# HELP $m " "$t/m1" || fail "no HELP line for $m"
	grep -q "^# TYPE $m counter\$" "$t/m1" || fail "$m is not a counter"
done
for m in zerofs_dirty_bytes zerofs_inodes zerofs_barrier_latency_seconds; do
	grep -q "^# TYPE $m gauge\$" "$t/m1" || fail "$m is not a gauge"
done
grep -q '^zerofs_store_requests_total{op="put"} [0-9]' "$t/m1" || fail "no store put count"
grep -q '^zerofs_barrier_latency_seconds{quantile="0.99"} [0-9.]*$' "$t/m1" ||
	fail "no barrier p99"
# Every line is a comment or "name[{labels}] number".
if grep -Ev '^(# (HELP|TYPE) zerofs_[a-z_]+ .+|zerofs_[a-z_]+(\{[a-z]+="[^"]*"\})? [0-9]+(\.[0-9]+)?)$' \
	"$t/m1"; then
	fail "lines above are not Prometheus text"
fi

before=$(value "$t/m1" zerofs_write_bytes_total)
dd if=/dev/urandom of="$M/file" bs=64k count=16 conv=fsync status=none
assert_eq 200 "$(metrics "$t/m2")" "GET /metrics after writing"
after=$(value "$t/m2" zerofs_write_bytes_total)
[ "$after" -ge $((before + 1048576)) ] || fail "write_bytes_total went from $before to $after"

assert_eq 404 "$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$url/other")" \
	"GET /other status"
assert_eq 405 "$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -X POST "$url/metrics")" \
	"POST /metrics status"

# A client that connects and sends nothing is dropped after the read
# timeout; the next client is served meanwhile or right after.
exec 3<>"/dev/tcp/127.0.0.1/$port"
start=$SECONDS
assert_eq 200 "$(metrics "$t/m3")" "GET /metrics behind an idle client"
[ $((SECONDS - start)) -le 5 ] || fail "an idle client held the server $((SECONDS - start)) s"
exec 3>&-

# Oversized, binary and truncated requests.
exec 3<>"/dev/tcp/127.0.0.1/$port"
if ! { head -c 100000 /dev/zero | tr '\0' A >&3 2>/dev/null; }; then :; fi
if ! { timeout 10 cat <&3 >"$t/big" 2>/dev/null; }; then :; fi
exec 3>&-
grep -q '^HTTP/1.1 431' "$t/big" || fail "oversized request answered: $(head -1 "$t/big")"
for ((i = 0; i < 20; i++)); do
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	if ! { head -c $((RANDOM % 3000)) /dev/urandom >&3 2>/dev/null; }; then :; fi
	exec 3>&-
done
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET\r\n\r\n' >&3
if ! { timeout 10 cat <&3 >"$t/bad" 2>/dev/null; }; then :; fi
exec 3>&-
grep -q '^HTTP/1.1 400' "$t/bad" || fail "request without a path answered: $(head -1 "$t/bad")"

assert_eq 200 "$(metrics "$t/m4")" "GET /metrics after garbage"
# zerofs_umount fails unless the daemon is alive and exits 0.
zerofs_umount "$M"

# The port is closed with the mount.
if curl -sS --max-time 5 -o /dev/null "$url/metrics" 2>/dev/null; then
	fail "/metrics still answers after the unmount"
fi
echo "t-metrics: ok"
