#!/usr/bin/env bash
# tests/crashloop/run-long.sh: the long crash loop (issue 5), on demand, on
# the S3 store of a single-node RADOS Gateway (tests/s3/radosgw.sh; one
# already running is reused, as tests/t-s3.sh does, else one is started and
# stopped at the end).  See tests/crashloop/crashloop.py for what a cycle
# does and checks.
#
#   tests/crashloop/run-long.sh [CYCLES [crashloop.py options...]]
#
# CYCLES defaults to 1000.  Options are passed on, e.g. --seconds 3000 (stop
# starting cycles after that), --seed N, --points a,b, -v.  The summary is
# printed at the end; the exit status is non-zero on any loss or error, and
# then the work directory (daemon log, cycles.jsonl, failure details) is
# kept and named.  Run as root from a built tree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../functions.sh"
requires_root
requires_fuse
requires curl
PY=/usr/bin/python3 # Debian's, which has python3-libnbd
[ -x "$PY" ] || PY=python3

cycles=${1:-1000}
if [ $# -gt 0 ]; then
	shift
fi

RGW="$here/../s3/radosgw.sh"
if rgw_env=$("$RGW" env 2>/dev/null); then
	echo "$0: reusing the running radosgw"
else
	cleanup_fn "$RGW" stop
	rgw_env=$("$RGW" start) || fail "radosgw did not start"
fi
eval "$rgw_env"

t=$(mktemp -d /tmp/zerofs-crashloop.XXXXXX)
cat >"$t/s3.conf" <<EOC
s3_endpoint = "$ZEROFS_S3_ENDPOINT";
s3_path_style = true;
s3_access_key = "$ZEROFS_S3_ACCESS_KEY";
s3_secret_key = "$ZEROFS_S3_SECRET_KEY";
store_timeout_ms = 60000;
EOC
chmod 600 "$t/s3.conf"
# A fresh prefix per run: the bucket may be shared with other runs.
store="s3://$ZEROFS_S3_BUCKET/crashloop-$$-$RANDOM"
echo "$0: $cycles cycles on $store, work directory $t"

rc=0
"$PY" "$here/crashloop.py" --binary "$ZEROFS" --store "$store" --config "$t/s3.conf" \
	--workdir "$t/w" --cycles "$cycles" --nbd-port "$(pick_port)" "$@" || rc=$?
if [ "$rc" -eq 0 ]; then
	rm -rf "$t"
else
	echo "$0: FAILED (status $rc); the daemon log and the details are in $t/w" >&2
fi
exit "$rc"
