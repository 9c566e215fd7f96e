#!/bin/sh
# contrib/debian/build-deb.sh: build the Debian package of zerofs-fuse from a
# "make dist" tarball ("make deb" in a configured build directory does both).
#
# Usage: contrib/debian/build-deb.sh TARBALL OUTDIR
#
# dpkg-buildpackage wants debian/ at the top of the source tree, and the
# repository keeps it in contrib/debian/: the tarball is unpacked in a
# temporary directory, contrib/debian is copied to debian/ there, and
# "dpkg-buildpackage -us -uc -b" builds the binary packages (unsigned; the
# test suite is not run, see debian/rules).  The .deb files (the package and
# its -dbgsym), .buildinfo and .changes are copied to OUTDIR, and the path of
# zerofs-fuse's .deb is printed on the last line.  Needs dpkg-dev, debhelper and the Build-Depends of
# contrib/debian/control (tests/deps.sh installs them all).
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 TARBALL OUTDIR" >&2
	exit 2
fi
tarball=$1
outdir=$2
if [ ! -f "$tarball" ]; then
	echo "$0: no tarball $tarball (make dist builds it)" >&2
	exit 1
fi
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/zerofs-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tar -xf "$tarball" -C "$work"
set -- "$work"/*/
if [ $# -ne 1 ] || [ ! -d "$1/contrib/debian" ]; then
	echo "$0: $tarball does not hold one source tree with contrib/debian" >&2
	exit 1
fi
src=${1%/}
cp -R "$src/contrib/debian" "$src/debian"
rm -f "$src/debian/build-deb.sh"

# The package's version is debian/changelog's: it must be the tarball's.
pkgver=$(cd "$src" && dpkg-parsechangelog -S Version)
case ${src##*/} in
zerofs-fuse-"$pkgver") ;;
*)
	echo "$0: debian/changelog says version $pkgver but the tarball holds ${src##*/}:" \
		"add a changelog entry (dch -v VERSION)" >&2
	exit 1
	;;
esac

DEB_BUILD_OPTIONS="nocheck${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}"
export DEB_BUILD_OPTIONS
(cd "$src" && dpkg-buildpackage -us -uc -b -J"$(nproc)")

# Besides zerofs-fuse_VERSION_ARCH.deb, debhelper builds the detached debug
# symbols as zerofs-fuse-dbgsym_VERSION_ARCH.deb: both are copied.
set -- "$work"/zerofs-fuse_"$pkgver"_*.deb
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
	echo "$0: dpkg-buildpackage did not leave zerofs-fuse_${pkgver}_*.deb in $work" >&2
	exit 1
fi
deb=$1
cp "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$outdir"/
echo "$outdir/${deb##*/}"
