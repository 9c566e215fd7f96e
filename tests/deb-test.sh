#!/usr/bin/env bash
# tests/deb-test.sh DEB: the Debian package of zerofs-fuse (built by
# contrib/debian/build-deb.sh) installs with dpkg, puts its files where they
# belong, its /usr/sbin/zerofs-fuse makes, mounts and unmounts a local
# directory store, mount -t zerofs-fuse works through its helper, and
# dpkg --remove and --purge take everything away again.
#
# Run by the "package" phase of tests/run-all, not by make check (building
# the package is a full compile).  It installs into / and removes the
# package at the end whatever happens.  A file that is already at one of the
# package's paths (a "make install" into /sbin or /lib/systemd, an
# /etc/zerofs-fuse.conf of your own) is moved aside for the test and put
# back afterwards; an installed zerofs-fuse package makes the test skip.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires dpkg dpkg-deb dpkg-query mount umount pgrep cmp

if [ $# -ne 1 ] || [ ! -f "$1" ]; then
	echo "usage: $0 DEB" >&2
	exit 2
fi
deb=$(realpath "$1")
src=$(cd "$(dirname "$0")/.." && pwd)
pkg=$(dpkg-deb -f "$deb" Package)
assert_eq zerofs-fuse "$pkg" "package name"

# The state of a package as dpkg knows it ("not-installed" when unknown).
pkg_status()
{
	local s
	if ! s=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null); then
		s=not-installed
	fi
	echo "${s:-not-installed}"
}

status=$(pkg_status)
if [ "$status" != not-installed ]; then
	echo "$0: the $pkg package is on this machine ($status): removing it for the" \
		"test would take away yours (dpkg --purge $pkg if it is a leftover): test skipped"
	exit 77
fi

# Every program the test runs from the package is called by its path, and
# the mount helper finds zerofs-fuse in this PATH: no /usr/local here, where
# setup.sh's "make install" puts its own zerofs-fuse.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset ZEROFS_FUSE
ZEROFS=/usr/sbin/zerofs-fuse

t=$(mktemp -d /tmp/zerofs-debtest.XXXXXX)
keep_t=
remove_t()
{
	if [ -z "$keep_t" ]; then
		rm -rf "$t"
	fi
}
cleanup_fn remove_t

# The package's files (not its directories), as paths on this machine.
mapfile -t files < <(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -n 's|^\.\(/.*[^/]\)$|\1|p')
[ ${#files[@]} -gt 0 ] || fail "dpkg-deb lists no file in $deb"

# Move aside whatever is at those paths now, and put it back at the end,
# after the purge (cleanups run last registered first).
saved=()
for f in "${files[@]}"; do
	if [ -e "$f" ] || [ -L "$f" ]; then
		mkdir -p "$t/saved$(dirname "$f")"
		mv "$f" "$t/saved$f"
		saved+=("$f")
	fi
done
restore_saved()
{
	local f
	for f in "${saved[@]}"; do
		if ! mv "$t/saved$f" "$f"; then
			echo "$0: could not put $f back: it is in $t/saved$f" >&2
			keep_t=1
		fi
	done
}
cleanup_fn restore_saved
if [ ${#saved[@]} -gt 0 ]; then
	echo "moved aside until the end of the test: ${saved[*]}"
fi

# Whatever happens from here on, the package goes away again.
purge_if_installed()
{
	if [ "$(pkg_status)" != not-installed ]; then
		dpkg --purge "$pkg" >"$t/purge-cleanup.log" 2>&1 ||
			{ echo "$0: dpkg --purge $pkg failed:" >&2; cat "$t/purge-cleanup.log" >&2; }
	fi
}
cleanup_fn purge_if_installed

# The control fields: fuse3 and the shared libraries dpkg-shlibdeps found.
depends=$(dpkg-deb -f "$deb" Depends)
grep -Eq '(^|, )fuse3(,|$| )' <<<"$depends" || fail "Depends lacks fuse3: $depends"
grep -q 'libfuse3-3' <<<"$depends" || fail "Depends lacks libfuse3-3 (shlibs): $depends"
grep -q 'libsodium' <<<"$depends" || fail "Depends lacks libsodium (shlibs): $depends"

dpkg -i "$deb" >"$t/install.log" 2>&1 || { cat "$t/install.log" >&2; fail "dpkg -i $deb failed"; }
assert_eq installed "$(pkg_status)" "package status after dpkg -i"

# dpkg -L lists the files where make install puts them, and they are there.
listed=$(dpkg -L "$pkg")
for f in /usr/sbin/zerofs-fuse /sbin/mount.zerofs-fuse \
	/lib/systemd/system/zerofs-fuse@.service /etc/zerofs-fuse.conf \
	/usr/share/man/man8/zerofs-fuse.8.gz /usr/share/man/man8/mount.zerofs-fuse.8.gz \
	/usr/share/man/man5/zerofs-fuse.conf.5.gz /usr/share/doc/zerofs-fuse/copyright \
	/usr/share/doc/zerofs-fuse/README.gz; do
	grep -qx "$f" <<<"$listed" || fail "dpkg -L $pkg does not list $f"
	[ -f "$f" ] || fail "$f is listed but not installed"
done
[ -x /usr/sbin/zerofs-fuse ] || fail "/usr/sbin/zerofs-fuse is not executable"
[ -x /sbin/mount.zerofs-fuse ] || fail "/sbin/mount.zerofs-fuse is not executable"
libs=$(ldd /usr/sbin/zerofs-fuse) || fail "ldd /usr/sbin/zerofs-fuse failed"
if grep -q 'not found' <<<"$libs"; then
	echo "$libs" >&2
	fail "/usr/sbin/zerofs-fuse misses a shared library"
fi
cmp "$src/etc/zerofs-fuse.conf" /etc/zerofs-fuse.conf ||
	fail "/etc/zerofs-fuse.conf is not etc/zerofs-fuse.conf"
grep -q '^ /etc/zerofs-fuse.conf ' <<<"$(dpkg-query -W -f='${Conffiles}\n' "$pkg")" ||
	fail "/etc/zerofs-fuse.conf is not a conffile"
grep -qx 'ExecStart=/usr/sbin/zerofs-fuse .*' /lib/systemd/system/zerofs-fuse@.service ||
	fail "the unit does not start /usr/sbin/zerofs-fuse"
# An instance of the installed unit passes systemd's checks (its ExecStart
# binary and its man page exist, its directives are known), where systemd's
# tools are installed (they run without a running systemd).
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify zerofs-fuse@mnt-zfs.service >"$t/verify" 2>&1 ||
		{ cat "$t/verify" >&2; fail "systemd-analyze verify zerofs-fuse@mnt-zfs.service failed"; }
fi
"$ZEROFS" --help >"$t/help" 2>&1 || fail "/usr/sbin/zerofs-fuse --help failed"
grep -q '^Usage:' "$t/help" || fail "/usr/sbin/zerofs-fuse --help prints no usage"

# mkfs, mount, write, read, unmount with the installed daemon and the
# installed /etc/zerofs-fuse.conf (-o overrides its store and cache_dir);
# then mount the store again with an empty cache: the data came back from
# the store.
export ZEROFS_CONFIG=/etc/zerofs-fuse.conf
store="file://$t/store"
M=$t/mnt
zerofs_mkfs "$store" "$t/cache"
zerofs_mount "$store" "$t/cache" "$M" nbd_listen=
head -c 3M /dev/urandom >"$t/data"
cp "$t/data" "$M/data"
echo packaged >"$M/note"
cmp "$t/data" "$M/data" || fail "the file read back differs"
zerofs_umount "$M"
zerofs_mount "$store" "$t/cache2" "$M" nbd_listen=
cmp "$t/data" "$M/data" || fail "the file read back from the store differs"
assert_eq packaged "$(cat "$M/note")" "small file after remount"
zerofs_umount "$M"

unset ZEROFS_CONFIG

# mount -t zerofs-fuse runs the package's /sbin/mount.zerofs-fuse, which runs
# the package's daemon.  (No NBD server in these mounts: its default port may
# be another mount's.)
echo "$ZEROFS_PASSWORD" >"$t/pw"
chmod 600 "$t/pw"
umount_if_mounted()
{
	if mountpoint -q "$1"; then
		fusermount3 -uz "$1"
	fi
}
cleanup_fn umount_if_mounted "$M"
mount -t zerofs-fuse -o "cache_dir=$t/cache3,password_file=$t/pw,kdf=min,nbd_listen=" "$store" "$M"
mountpoint -q "$M" || fail "mount -t zerofs-fuse did not mount $M"
grep -q " $M fuse.zerofs-fuse " /proc/mounts || fail "$M is not fuse.zerofs-fuse in /proc/mounts"
pid=$(pgrep -f "zerofs-fuse .*$M\$") || fail "no daemon runs for $M"
assert_eq /usr/sbin/zerofs-fuse "$(readlink "/proc/$pid/exe")" "the daemon mount(8) started"
cmp "$t/data" "$M/data" || fail "the file read through mount -t zerofs-fuse differs"
echo helper >"$M/note2"
umount "$M"
for ((i = 0; i < 300; i++)); do
	_alive "$pid" || break
	sleep 0.1
done
_alive "$pid" && fail "the daemon of $M did not exit after umount"
mountpoint -q "$M" && fail "$M is still mounted after umount"

# dpkg --remove keeps the conffile, --purge takes it too.
dpkg --remove "$pkg" >"$t/remove.log" 2>&1 || { cat "$t/remove.log" >&2; fail "dpkg --remove failed"; }
assert_eq config-files "$(pkg_status)" "package status after dpkg --remove"
[ -e /usr/sbin/zerofs-fuse ] && fail "/usr/sbin/zerofs-fuse is still there after dpkg --remove"
[ -f /etc/zerofs-fuse.conf ] || fail "dpkg --remove took the conffile"
dpkg --purge "$pkg" >"$t/purge.log" 2>&1 || { cat "$t/purge.log" >&2; fail "dpkg --purge failed"; }
assert_eq not-installed "$(pkg_status)" "package status after dpkg --purge"
for f in "${files[@]}"; do
	if [ -e "$f" ] || [ -L "$f" ]; then
		fail "$f is still there after dpkg --purge"
	fi
done
# The store, which holds the user's data, is not the package's to remove.
[ -d "$t/store" ] || fail "the store went away with the package"
echo "deb-test: ok"
