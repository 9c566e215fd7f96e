#!/bin/sh
# tests/deps.sh: install every Debian package needed to build zerofs-fuse
# and run its test suite (Debian 12), the Debian package of contrib/debian
# included (dpkg-dev, debhelper).  Run as root.
set -e

packages="
	build-essential autoconf automake libtool pkg-config
	libfuse3-dev fuse3 libsqlite3-dev libsodium-dev liblz4-dev libconfig-dev
	libcriterion-dev libcurl4-openssl-dev libssl-dev libexpat1-dev
	mandoc fio stress-ng attr libcap2-bin e2fsprogs xfsprogs btrfs-progs valgrind psmisc util-linux python3
	libnbd-bin nbdfuse python3-libnbd qemu-utils
	radosgw ceph-mon ceph-osd curl
	dpkg-dev debhelper
	zfs-fuse postgresql
"

if [ "$(id -u)" -ne 0 ]; then
	echo "$0: must run as root (sudo $0)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086 # one word per package
apt-get install -y --no-install-recommends $packages
