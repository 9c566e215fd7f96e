# shellcheck shell=bash
# tests/functions.sh: helpers shared by the shell tests (source it with
# "source ./tests/functions.sh" or from $srcdir).  Modelled on nbdkit's
# tests/functions.sh.
#
#   requires CMD...          skip the test (exit 77) unless every CMD exists
#   requires_root            skip unless running as root
#   requires_fuse            skip unless FUSE mounts can be made here
#   cleanup_fn FN [ARGS...]  run FN ARGS on exit, last registered first
#   pick_port                print a free TCP port on 127.0.0.1
#   fail MSG...              print MSG and exit 1
#   assert_eq WANT HAVE [MSG]
#   zerofs_mkfs STORE CACHE [OPTS]
#   zerofs_mount STORE CACHE MNT [OPTS]
#   zerofs_umount MNT        clean unmount; fails if the daemon exits non-zero
#   zerofs_kill9 MNT         simulate a crash: kill -9 and lazy unmount
#
# With ZEROFS_CONFIG set, mkfs and the daemon also get -c "$ZEROFS_CONFIG".
# The daemon runs with ZEROFS_PASSWORD=testpw and -o kdf=min,log_level=debug;
# its log goes to MNT.log, printed when something goes wrong.

: "${abs_top_builddir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
ZEROFS="$abs_top_builddir/zerofs-fuse"
FSPROBE="$abs_top_builddir/tests/helpers/fsprobe"
export ZEROFS_PASSWORD=testpw

# The options every test daemon gets.
ZEROFS_TEST_OPTS="kdf=min,log_level=debug"

# Seconds to wait for a mount to appear and for a daemon to exit.
ZEROFS_MOUNT_TIMEOUT=20
ZEROFS_EXIT_TIMEOUT=60

fail()
{
	local key
	echo "$0: FAIL: $*" >&2
	for key in "${!_zerofs_log[@]}"; do
		_zerofs_show_log "$key"
	done
	exit 1
}

requires()
{
	local cmd
	for cmd in "$@"; do
		if ! command -v "$cmd" >/dev/null 2>&1; then
			echo "$0: '$cmd' not found: test skipped"
			exit 77
		fi
	done
}

requires_root()
{
	if [ "$(id -u)" -ne 0 ]; then
		echo "$0: not running as root: test skipped"
		exit 77
	fi
}

requires_fuse()
{
	requires fusermount3 mountpoint
	if [ ! -c /dev/fuse ] || [ ! -w /dev/fuse ]; then
		echo "$0: /dev/fuse is not usable: test skipped"
		exit 77
	fi
}

# Cleanup functions run on exit (normal or not), in reverse order of
# registration, and the test keeps the exit status it had.
_cleanup_fns=()

cleanup_fn()
{
	_cleanup_fns+=("$(printf '%q ' "$@")")
}

_run_cleanups()
{
	local status=$? i
	set +e
	for ((i = ${#_cleanup_fns[@]} - 1; i >= 0; i--)); do
		eval "${_cleanup_fns[i]}"
	done
	exit "$status"
}
trap _run_cleanups EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

assert_eq()
{
	if [ "$1" != "$2" ]; then
		fail "${3:-values differ}: expected '$1', got '$2'"
	fi
}

# Is TCP port $1 in use (listening or connected) on this machine?
_port_in_use()
{
	local hex
	hex=$(printf ':%04X' "$1")
	# One process reads to the end: with pipefail, "| grep -q" could make
	# an earlier stage die of SIGPIPE and turn a match into "not in use".
	awk -v p="$hex" 'substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}

pick_port()
{
	local port i
	for ((i = 0; i < 100; i++)); do
		port=$((49152 + RANDOM % 16384))
		if ! _port_in_use "$port"; then
			echo "$port"
			return 0
		fi
	done
	fail "pick_port: no free port found"
}

# Daemon pid and log file of each mount, by absolute mountpoint.
declare -A _zerofs_pid=()
declare -A _zerofs_log=()
_zerofs_cleanup_registered=
_zerofs_status=

_zerofs_key()
{
	realpath -m "$1"
}

_zerofs_show_log()
{
	local log="${_zerofs_log[$(_zerofs_key "$1")]:-}"
	if [ -n "$log" ] && [ -f "$log" ]; then
		echo "--- $log (last 100 lines) ---" >&2
		tail -n 100 "$log" >&2
		echo "--- end of $log ---" >&2
	fi
}

# Is pid $1 a live process (not gone, not a zombie waiting to be reaped)?
_alive()
{
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ "$stat" != Z* ]]
}

zerofs_mkfs()
{
	local store="$1" cache="$2" opts="${3:-}"
	"$ZEROFS" mkfs ${ZEROFS_CONFIG:+-c "$ZEROFS_CONFIG"} \
		-o "store=$store,cache_dir=$cache,$ZEROFS_TEST_OPTS${opts:+,$opts}" ||
		fail "zerofs-fuse mkfs of $store failed"
}

# Remove every mount still up when the test exits, whatever happened.
_zerofs_cleanup()
{
	local key
	for key in "${!_zerofs_pid[@]}"; do
		kill -9 "${_zerofs_pid[$key]}" 2>/dev/null
		fusermount3 -uz "$key" 2>/dev/null
	done
}

zerofs_mount()
{
	local store="$1" cache="$2" mnt="$3" opts="${4:-}"
	local key log pid i

	mkdir -p "$mnt"
	key=$(_zerofs_key "$mnt")
	log="$key.log"
	if [ -z "$_zerofs_cleanup_registered" ]; then
		cleanup_fn _zerofs_cleanup
		_zerofs_cleanup_registered=1
	fi
	"$ZEROFS" -f ${ZEROFS_CONFIG:+-c "$ZEROFS_CONFIG"} \
		-o "store=$store,cache_dir=$cache,$ZEROFS_TEST_OPTS${opts:+,$opts}" \
		"$mnt" >>"$log" 2>&1 &
	pid=$!
	_zerofs_pid[$key]=$pid
	_zerofs_log[$key]=$log

	for ((i = 0; i < ZEROFS_MOUNT_TIMEOUT * 10; i++)); do
		if mountpoint -q "$mnt"; then
			return 0
		fi
		if ! _alive "$pid"; then
			unset "_zerofs_pid[$key]"
			fail "zerofs-fuse exited before $mnt was mounted"
		fi
		sleep 0.1
	done
	fail "$mnt was not mounted after $ZEROFS_MOUNT_TIMEOUT s"
}

# Wait for the daemon of mountpoint key $1 to exit and set _zerofs_status to
# its exit status; fail after ZEROFS_EXIT_TIMEOUT seconds.  (Not run in a
# subshell: only this shell can wait for the daemon it started.)
_zerofs_wait()
{
	local key="$1" pid="${_zerofs_pid[$1]}" i

	for ((i = 0; i < ZEROFS_EXIT_TIMEOUT * 10; i++)); do
		_alive "$pid" || break
		sleep 0.1
	done
	_alive "$pid" &&
		fail "zerofs-fuse (pid $pid) still running $ZEROFS_EXIT_TIMEOUT s after unmount"
	_zerofs_status=0
	wait "$pid" || _zerofs_status=$?
	unset "_zerofs_pid[$key]"
}

zerofs_umount()
{
	local mnt="$1" key i

	key=$(_zerofs_key "$mnt")
	[ -n "${_zerofs_pid[$key]:-}" ] || fail "zerofs_umount: $mnt was not mounted by zerofs_mount"
	# The mount can be busy for a moment after the test's last access to it.
	for ((i = 0; i < 50; i++)); do
		fusermount3 -u "$mnt" 2>/dev/null && break
		sleep 0.2
	done
	mountpoint -q "$mnt" && fail "could not unmount $mnt"
	_zerofs_wait "$key"
	[ "$_zerofs_status" -eq 0 ] ||
		fail "zerofs-fuse exited with status $_zerofs_status after unmounting $mnt"
}

zerofs_kill9()
{
	local mnt="$1" key pid

	key=$(_zerofs_key "$mnt")
	pid="${_zerofs_pid[$key]:-}"
	[ -n "$pid" ] || fail "zerofs_kill9: $mnt was not mounted by zerofs_mount"
	# A daemon that killed itself at a crash point is only reaped.
	if _alive "$pid"; then
		kill -9 "$pid"
	fi
	# Reap the daemon.  Its status is ignored: it was killed on purpose, so
	# it is always 137 (128 + SIGKILL).
	if ! wait "$pid" 2>/dev/null; then
		:
	fi
	unset "_zerofs_pid[$key]"
	# Detach the now dead mount.  A failure is ignored: the kernel may have
	# dropped the mount already when the daemon died, and a later mount on
	# this mountpoint fails loudly if it is still busy.
	if ! fusermount3 -uz "$mnt" 2>/dev/null; then
		:
	fi
}

# zerofs_term MNT: stop the daemon as systemd would (SIGTERM); it must unmount,
# run its last barrier and exit 0.
zerofs_term()
{
	local mnt="$1" key

	key=$(_zerofs_key "$mnt")
	[ -n "${_zerofs_pid[$key]:-}" ] || fail "zerofs_term: $mnt was not mounted by zerofs_mount"
	kill -TERM "${_zerofs_pid[$key]}"
	_zerofs_wait "$key"
	[ "$_zerofs_status" -eq 0 ] ||
		fail "zerofs-fuse exited with status $_zerofs_status after SIGTERM"
	mountpoint -q "$mnt" && fail "$mnt is still mounted after SIGTERM"
	return 0
}

# Loop devices: loop_attach FILE [LOSETUP-OPTIONS...] attaches FILE, prints
# the device and records it with the identity of its backing file (device
# and inode: after a FUSE daemon dies the backing path no longer reads as
# the test's path), so loop_detach_all can detach exactly the devices this
# test attached, even if the daemon died, and never one a device number was
# reused for by someone else.  Callable from $(...): the record is a file.
_loop_record=$(mktemp /tmp/zerofs-loops.XXXXXX)
loop_attach()
{
	local file="$1" dev id
	shift
	dev=$(losetup -f --show "$@" "$file") || return 1
	id=$(losetup -l -n -O BACK-MAJ:MIN,BACK-INO "$dev" | tr -s ' ' | sed 's/^ //')
	echo "$dev $id" >>"$_loop_record"
	echo "$dev"
}

loop_detach_all()
{
	local dev id now
	while read -r dev id; do
		now=$(losetup -l -n -O BACK-MAJ:MIN,BACK-INO "$dev" 2>/dev/null | tr -s ' ' |
			sed 's/^ //')
		if [ -n "$now" ] && [ "$now" = "$id" ]; then
			if ! { losetup -d "$dev" 2>/dev/null; }; then :; fi
		fi
	done <"$_loop_record"
	: >"$_loop_record"
}
cleanup_fn rm -f "$_loop_record"
