#!/bin/sh
# tests/bench/deps-bench.sh: install the Debian packages the benchmarks need
# beyond the build and test ones of tests/deps.sh (run that one first): the
# peers of tests/bench/bench-peers.sh (s3fs, s3backer, rclone), PostgreSQL for
# pgbench, fio and gnuplot for the chart.  Benchmarks are not part of CI, so
# these are not in tests/deps.sh.  Debian 12, as root.
set -e

packages="
	fio s3fs s3backer rclone gnuplot-nox
	postgresql postgresql-contrib
	e2fsprogs util-linux fuse3 curl python3 tar
"

if [ "$(id -u)" -ne 0 ]; then
	echo "$0: must run as root (sudo $0)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update
# shellcheck disable=SC2086 # one word per package
apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $packages
