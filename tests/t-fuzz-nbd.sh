#!/usr/bin/env bash
# Fuzz the NBD server's protocol logic (tests/fuzz/fuzz_nbdproto.c over
# src/nbd/nbdproto.c) with libFuzzer, ASan and UBSan for $FUZZ_SECONDS
# (default 30) seconds, starting from a few valid client streams.  Needs
# clang; skipped without it.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires clang
: "${abs_top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"

t=$(mktemp -d /tmp/zerofs-fuzz.XXXXXX)
cleanup_fn rm -rf "$t"
if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$abs_top_srcdir/src" -I"$abs_top_builddir" \
	"$abs_top_srcdir/tests/fuzz/fuzz_nbdproto.c" "$abs_top_srcdir/src/nbd/nbdproto.c" \
	-o "$t/fuzz" 2>"$t/cc.log"; then
	if grep -q 'fuzzer' "$t/cc.log"; then
		echo "$0: clang has no libFuzzer here: test skipped"
		exit 77
	fi
	cat "$t/cc.log"
	fail "the fuzz target does not build"
fi

# Seeds: flags, GO "disk", a read; LIST then ABORT; EXPORT_NAME and a write.
mkdir "$t/corpus"
opt='IHAVEOPT'
printf "\0\0\0\3${opt}\0\0\0\7\0\0\0\12\0\0\0\4disk\0\0\x25\x60\x95\x13\0\0\0\0\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\0\0\0\2\0" \
	>"$t/corpus/go-read"
printf "\0\0\0\3${opt}\0\0\0\3\0\0\0\0${opt}\0\0\0\2\0\0\0\0" >"$t/corpus/list-abort"
printf "\0\0\0\1${opt}\0\0\0\1\0\0\0\4disk\x25\x60\x95\x13\0\1\0\1\0\0\0\0\0\0\0\1\0\0\0\0\0\0\x10\0\0\0\2\0" \
	>"$t/corpus/export-name-write"
"$t/fuzz" -max_total_time="${FUZZ_SECONDS:-30}" -max_len=8192 -timeout=10 "$t/corpus" \
	>"$t/fuzz.log" 2>&1 || { tail -50 "$t/fuzz.log"; fail "the fuzzer found a crash"; }
tail -1 "$t/fuzz.log"
echo "t-fuzz-nbd: ok"
