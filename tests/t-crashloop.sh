#!/usr/bin/env bash
# The crash loop of issue 5, short version on a local directory store (the
# long one on S3 is tests/crashloop/run-long.sh): a mixed workload through
# FUSE and NBD, the daemon killed at named crash points or at random moments,
# then a remount (sometimes without the cache) that must show every
# acknowledged byte, name and xattr and a namespace that is a consistent
# prefix (tests/crashloop/crashloop.py).  First, the checker itself must
# catch a loss: a run that deletes the newest index object after each crash
# has to report one.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
# Debian's python3, which has python3-libnbd (another python3 earlier on
# PATH would hide it).
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if ! "$PY" -c 'import nbd' 2>/dev/null; then
	echo "$0: python3-libnbd missing: test skipped"
	exit 77
fi
LOOP="$(dirname "$0")/crashloop/crashloop.py"

t=$(mktemp -d /tmp/zerofs-crashloop.XXXXXX)
cleanup_fn rm -rf "$t"

# The page and namespace checkers on made-up histories.
"$PY" "$LOOP" --selftest || fail "the checker's self-test failed"

# The checker has teeth: lose the newest index log after every crash (no
# periodic barriers and no checkpoints, so it is mostly the last fsync's
# barrier) and expect a loss.
status=0
out=$("$PY" "$LOOP" --binary "$ZEROFS" --store "$t/s0" --workdir "$t/w0" --cycles 8 \
	--nbd-port "$(pick_port)" --barrier-ms 3600000 --checkpoint-interval 1000000 \
	--random-share 1 --sabotage) || status=$?
echo "$out"
assert_eq 1 "$status" "exit status of the sabotaged run"
grep -q '^  losses: [1-9]' <<<"$out" || fail "the sabotaged run reported no loss"

# The real loop: nothing may be lost.  Bounded in time (slower under ASan or
# valgrind), but enough cycles to mean something.
status=0
out=$("$PY" "$LOOP" --binary "$ZEROFS" --store "$t/s1" --workdir "$t/w1" --cycles 25 \
	--seconds 55 --nbd-port "$(pick_port)") || status=$?
echo "$out"
if [ "$status" -ne 0 ]; then
	echo "--- daemon log (last 60 lines) ---"
	tail -n 60 "$t/w1/zerofs.log"
	for f in "$t"/w1/failure-*; do
		[ -f "$f" ] && cat "$f"
	done
	fail "the crash loop lost something or failed (status $status)"
fi
grep -q '^  losses: 0$' <<<"$out" || fail "no loss count in the summary"
cycles=$(sed -n 's/^  cycles: \([0-9]*\) .*/\1/p' <<<"$out")
[ "${cycles:-0}" -ge 5 ] || fail "only ${cycles:-0} cycles ran"
grep -q '^  crash points reached: none' <<<"$out" && fail "no crash point was ever reached"
grep -q '^  files verified: 0,' <<<"$out" && fail "nothing was verified"
exit 0
