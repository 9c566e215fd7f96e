#!/usr/bin/env bash
# t-man-lint.sh: every man page in man/ must pass "mandoc -T lint -W warning",
# so that what users read renders correctly everywhere.
source "${srcdir:-.}/tests/functions.sh"
set -e
set -u

requires mandoc

pages=("${abs_top_srcdir:-${srcdir:-.}}"/man/*.[1-8])
[ -e "${pages[0]}" ] || fail "no man pages found in man/"
[ -e "${abs_top_srcdir:-${srcdir:-.}}/man/zerofs-fuse.8" ] || fail "man/zerofs-fuse.8 is missing"

status=0
for page in "${pages[@]}"; do
	if mandoc -T lint -W warning "$page"; then
		echo "ok: $page"
	else
		echo "mandoc found problems in $page" >&2
		status=1
	fi
done
exit "$status"
