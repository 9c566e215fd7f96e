#!/usr/bin/env bash
# Permissions behave like a local filesystem: the kernel checks them
# (default_permissions); other users reach the mount only with allow_other.
set -euo pipefail
source "$(dirname "$0")/functions.sh"
requires_root
requires_fuse
requires setpriv

t=$(mktemp -d /tmp/zerofs-perms.XXXXXX)
chmod 755 "$t"
cleanup_fn rm -rf "$t"
M=$t/mnt
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }

zerofs_mount "$t/store" "$t/cache" "$M"
echo secret >"$M/file"
if as_nobody cat "$M/file" 2>/dev/null; then fail "another user reached a mount without allow_other"; fi
zerofs_umount "$M"

zerofs_mount "$t/store" "$t/cache" "$M" "allow_other"
chmod 755 "$M"
echo public >"$M/public"
chmod 644 "$M/public"
chmod 600 "$M/file"
assert_eq public "$(as_nobody cat "$M/public")" "world-readable file"
if as_nobody cat "$M/file" 2>/dev/null; then fail "nobody read a 0600 file of root"; fi
if as_nobody touch "$M/new" 2>/dev/null; then fail "nobody created a file in root's 0755 directory"; fi
if as_nobody sh -c "echo x >>'$M/public'" 2>/dev/null; then fail "nobody wrote to a 0644 file of root"; fi
mkdir "$M/shared"
chmod 1777 "$M/shared"
as_nobody sh -c "echo mine >'$M/shared/nobodys'"
assert_eq 65534 "$(stat -c %u "$M/shared/nobodys")" "owner of a file created by nobody"
echo root >"$M/shared/roots"
if as_nobody rm -f "$M/shared/roots" 2>/dev/null; then fail "sticky bit ignored"; fi
[ -e "$M/shared/roots" ] || fail "sticky directory lost root's file"
zerofs_umount "$M"
echo "t-perms: ok"
