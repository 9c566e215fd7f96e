#!/usr/bin/env bash
# geo-mirror.sh: the geo-distributed mirror of zerofs-fuse on one machine.
#
# N zerofs-fuse instances (default 3), one per store: S3 buckets in N
# regions, or prefixes, or local directories ("one instance per region").
# Each instance holds one device file, and a mirror across the N device
# files makes one filesystem that survives the loss of N-1 instances
# (btrfs raid1c3, the default for 3) or of one instance (btrfs raid1):
#
#   --fs btrfs (default)  a loop device (--direct-io=on) over each device
#                         file, btrfs raid1 / raid1c3 / raid1c4 across them
#                         (data and metadata); raid1c3 and raid1c4 need
#                         Linux 5.5 (/sys/fs/btrfs/features/raid1c34)
#   --fs zfs              a ZFS mirror pool over the device files themselves,
#                         through zfs-fuse (Debian package zfs-fuse): ZFS in
#                         user space, so no loop device and no kernel ZFS.
#                         Tested on Debian 12 (zfs-fuse 0.7.0, pool version
#                         23): create, kill -9 of an instance, "zpool online"
#                         resilver, scrub.  zfs-fuse runs one daemon per
#                         machine (socket /var/run/zfs); this script starts
#                         it (--disable-block-cache: the device files are
#                         read with O_DIRECT, cached once, in ZFS's ARC)
#                         when it is not running and stops it only if it
#                         started it.  Caveat seen here: zfs-fuse counts no
#                         error on the device of a dead instance (its pool
#                         stays ONLINE), so the resilver of "up" does not
#                         know every write it missed: run "heal" (a scrub)
#                         after an instance came back.  Until then ZFS
#                         checks every read and repairs from the others.
#
# Usage: geo-mirror.sh [OPTIONS] up|down|status|heal
#
#   up      start the instances that are not running (a dead one, killed or
#           crashed, is unmounted and restarted: recovery from its store),
#           create the device files that are missing, attach the loop
#           devices, make the filesystem when every device is blank, mount
#           it.  For ZFS: import the pool (or create it) and bring every
#           device back online, which resilvers the ones that missed writes.
#   down    the teardown, in this order: unmount the mirror (btrfs) or
#           export the pool (zfs), detach the loop devices, forget them in
#           btrfs, then unmount every instance and wait for each daemon to
#           exit (its last barrier: everything is in its store).  The other
#           way round the loop devices would keep files open on mounts that
#           are going away, and the mirror's writeback would have nowhere to
#           go.  A dead instance is lazily unmounted instead.
#   status  one line per instance (running, dead or stopped; its loop
#           device), then the mirror: btrfs filesystem show and device
#           stats, or zpool status.  Exit status 0 when every instance runs
#           and the mirror is mounted with no device errors, 1 otherwise.
#   heal    scrub: read every copy, repair from a good one what is missing
#           or damaged.  btrfs: "btrfs scrub start -B" (exit 3 if something
#           could not be corrected), then, if all is correct, print the
#           devices' error counters and reset them.  zfs: bring devices online, clear the
#           error counters, "zpool scrub" and wait for it.
#
# After an instance died while the mirror was mounted, btrfs keeps running
# on the others (reads and writes succeed; the dead device collects write
# errors).  To bring it back: "down" then "up" (the restarted instance
# recovers its store's last barrier; btrfs reads around the stale copies on
# it by checksum), then "heal" to rewrite them.  With ZFS the pool stays
# imported: "up" restarts the instance and puts its device back online (a
# resilver), then "heal" scrubs (see the caveat above).  An instance whose store was lost altogether
# comes back blank: mount the btrfs with "-o degraded" and use "btrfs
# replace start DEVID LOOPDEV MNT" (or "zpool replace") instead.
#
# Options (each also read from the environment variable in brackets):
#   -n N        number of instances, 2 to 4 for btrfs (GEO_N, default 3)
#   -s STORE    store of the instances; "%i" is replaced by the instance
#               number 1..N, e.g. "s3://zerofs-geo-%i/mirror" or
#               "/srv/zerofs-%i"; or give -s once per instance, in order
#               (GEO_STORE, default DIR/store%i)
#   -c CONFIG   zerofs-fuse configuration file of the instances (S3
#               endpoint, region, credentials, password_file), "%i" replaced
#               as above so that each region has its own (GEO_CONFIG)
#   -o OPTS     more zerofs-fuse -o options for every instance (GEO_OPTS)
#   -d DIR      state directory: mountpoints, caches, logs and pid files of
#               the instances (GEO_DIR, default /var/lib/zerofs-geo)
#   -m MNT      mountpoint of the mirror (GEO_MNT, default DIR/fs)
#   -f FS       btrfs or zfs (GEO_FS, default btrfs)
#   -S SIZE     size of each device file when it is created (GEO_SIZE,
#               default 10G; sparse: only written blocks use the store)
#   -p POOL     name of the ZFS pool (GEO_POOL, default zerofsgeo)
#   -P PROFILE  btrfs profile (GEO_PROFILE; default raid1c3 for 3
#               instances when the kernel has it, raid1c4 for 4, else raid1)
#
# The password of the instances comes from password_file in the
# configuration or from $ZEROFS_PASSWORD (the daemons run without a
# terminal).  Each instance runs "zerofs-fuse -f" in the background with its
# log in DIR/I/log and its pid in DIR/I/pid; its NBD listener is off unless
# -o sets nbd_listen (each instance would need its own address).
# $ZEROFS_FUSE names the zerofs-fuse binary (default: zerofs-fuse in $PATH).
#
# Needs root, losetup, btrfs-progs (or zfs-fuse), fusermount3.
set -euo pipefail

ZEROFS=${ZEROFS_FUSE:-zerofs-fuse}
N=${GEO_N:-3}
STORE=${GEO_STORE:-}
CONFIG=${GEO_CONFIG:-}
OPTS=${GEO_OPTS:-}
DIR=${GEO_DIR:-/var/lib/zerofs-geo}
MNT=${GEO_MNT:-}
FS=${GEO_FS:-btrfs}
SIZE=${GEO_SIZE:-10G}
POOL=${GEO_POOL:-zerofsgeo}
PROFILE=${GEO_PROFILE:-}
DEVNAME=geo
stores=()

usage()
{
	sed -n 's/^# \{0,1\}//; /^Usage:/,/^Needs root/p' "$0" >&2
	exit 2
}
die()
{
	echo "geo-mirror: $*" >&2
	exit 1
}
say() { echo "geo-mirror: $*"; }

while getopts "n:s:c:o:d:m:f:S:p:P:h" opt; do
	case $opt in
	n) N=$OPTARG ;;
	s) stores+=("$OPTARG") ;;
	c) CONFIG=$OPTARG ;;
	o) OPTS=${OPTS:+$OPTS,}$OPTARG ;;
	d) DIR=$OPTARG ;;
	m) MNT=$OPTARG ;;
	f) FS=$OPTARG ;;
	S) SIZE=$OPTARG ;;
	p) POOL=$OPTARG ;;
	P) PROFILE=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
CMD=$1

if ! [[ "$N" =~ ^[0-9]+$ ]] || [ "$N" -lt 2 ]; then
	die "-n: at least 2 instances"
fi
case $FS in
btrfs) [ "$N" -le 4 ] || die "-n: btrfs mirrors keep at most 4 copies" ;;
zfs) ;;
*) die "-f: btrfs or zfs, not '$FS'" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root (loop devices, mounts)"
DIR=$(realpath -m "$DIR")
: "${MNT:=$DIR/fs}"
MNT=$(realpath -m "$MNT")
if [ ${#stores[@]} -gt 1 ]; then
	[ ${#stores[@]} -eq "$N" ] || die "-s given ${#stores[@]} times for $N instances"
elif [ ${#stores[@]} -eq 1 ]; then
	STORE=${stores[0]}
fi
: "${STORE:=$DIR/store%i}"

# Per-instance values: store_of I, config_of I, and the paths.
store_of()
{
	if [ ${#stores[@]} -gt 1 ]; then
		echo "${stores[$1 - 1]}"
	else
		echo "${STORE//%i/$1}"
	fi
}
config_of() { echo "${CONFIG//%i/$1}"; }
imnt() { echo "$DIR/$1/mnt"; }
idev() { echo "$DIR/$1/mnt/.nbd/$DEVNAME"; }
ipid() { echo "$DIR/$1/pid"; }
iloop() { echo "$DIR/$1/loop"; }

# Is process PID alive (and not a zombie)?
pid_alive()
{
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	[[ "${stat##*) }" != Z* ]]
}
# Is instance I's daemon alive?  (Its pid file names a live zerofs-fuse of
# its mountpoint.)
alive()
{
	local pid cmd
	pid=$(cat "$(ipid "$1")" 2>/dev/null) || return 1
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ "$cmd" == *zerofs-fuse* && "$cmd" == *" $(imnt "$1") "* ]] || return 1
	pid_alive "$pid"
}
mounted() { findmnt -n -M "$1" >/dev/null 2>&1; }

# Start instance I's daemon unless it runs; wait_instance waits for its
# mount.  (Started together, the instances recover from their stores at the
# same time.)
start_instance()
{
	local i=$1 m conf store opts
	m=$(imnt "$i")
	conf=$(config_of "$i")
	store=$(store_of "$i")
	mkdir -p "$m" "$DIR/$i/cache"
	if alive "$i"; then
		return 0
	fi
	if mounted "$m"; then
		# The mount of a dead daemon: take it out of the way.  A loop
		# device still attached to it keeps it alive, lazily.
		say "instance $i: its daemon is dead; unmounting its mount lazily"
		fusermount3 -uz "$m" || die "cannot unmount the dead mount $m"
	fi
	if [ -z "${ZEROFS_PASSWORD:-}" ] && [ -z "$conf" ] && [[ "$OPTS" != *password_file=* ]]; then
		die "no password: set ZEROFS_PASSWORD or password_file (-c or -o)"
	fi
	opts="store=$store,cache_dir=$DIR/$i/cache"
	[[ "$OPTS" == *nbd_listen=* ]] || opts="$opts,nbd_listen="
	say "instance $i: starting on $store"
	# setsid: the daemon outlives this script and its terminal.
	setsid "$ZEROFS" -f ${conf:+-c "$conf"} -o "$opts${OPTS:+,$OPTS}" "$m" \
		>>"$DIR/$i/log" 2>&1 </dev/null &
	echo "$!" >"$(ipid "$i")"
}

wait_instance()
{
	local i=$1 m pid t
	m=$(imnt "$i")
	pid=$(cat "$(ipid "$i")")
	for ((t = 0; t < 600; t++)); do
		if [ "$(findmnt -n -o FSTYPE -M "$m" 2>/dev/null)" = fuse.zerofs-fuse ]; then
			return 0
		fi
		# (Not "alive": until setsid has run the daemon, the
		# process has another command line.)
		pid_alive "$pid" ||
			{ tail -n 20 "$DIR/$i/log" >&2; die "instance $i exited; log: $DIR/$i/log"; }
		sleep 0.1
	done
	die "instance $i: not mounted after 60 s; log: $DIR/$i/log"
}

# Unmount instance I (lazily if its daemon is dead); wait_stopped waits for
# its daemon to exit after its last barrier.
stop_instance()
{
	local i=$1 m t
	m=$(imnt "$i")
	if ! alive "$i"; then
		if mounted "$m"; then
			say "instance $i: dead; unmounting its mount lazily"
			fusermount3 -uz "$m" || die "cannot unmount $m"
		fi
		rm -f "$(ipid "$i")"
		return 0
	fi
	# The mount can be busy for a moment after the last loop detach.
	for ((t = 0; t < 50; t++)); do
		fusermount3 -u "$m" 2>/dev/null && break
		sleep 0.2
	done
	mounted "$m" && die "instance $i: cannot unmount $m (busy: $(fuser -m "$m" 2>&1))"
	return 0
}

wait_stopped()
{
	local i=$1 t
	[ -f "$(ipid "$i")" ] || return 0
	for ((t = 0; t < 3000; t++)); do
		alive "$i" || break
		sleep 0.1
	done
	alive "$i" && die "instance $i (pid $(cat "$(ipid "$i")")) still running 300 s after its unmount"
	rm -f "$(ipid "$i")"
	say "instance $i: stopped"
}

# The loop device of instance I, as recorded when it was attached
# ("NAME MAJ:MIN INO" of its backing file), if that loop device still has
# that backing file.  After a dead mount was lazily unmounted the backing
# file has no path any more, so the path alone cannot find it.
loop_of()
{
	local rec name majmin ino cur f
	rec=$(cat "$(iloop "$1")" 2>/dev/null) || return 1
	read -r name majmin ino <<<"$rec"
	cur=$(losetup -l -n -O NAME,BACK-MAJ:MIN,BACK-INO "$name" 2>/dev/null) || return 1
	read -r -a f <<<"$cur"
	[ "${f[1]:-}" = "$majmin" ] && [ "${f[2]:-}" = "$ino" ] || return 1
	echo "$name"
}

attach()
{
	local i=$1 dev rec
	if dev=$(loop_of "$i"); then
		alive "$i" && return 0
		die "instance $i was restarted while its old loop device $dev is attached: run 'down' first"
	fi
	dev=$(losetup -f --show --direct-io=on "$(idev "$i")") || die "losetup on instance $i failed"
	rec=$(losetup -l -n -O NAME,BACK-MAJ:MIN,BACK-INO "$dev")
	echo "$rec" >"$(iloop "$i")"
	say "instance $i: $(idev "$i") on $dev"
}

detach()
{
	local i=$1 dev
	if dev=$(loop_of "$i"); then
		if [ "$FS" = btrfs ]; then
			# Drop btrfs's record of the device (a no-op if it has none).
			if ! { btrfs device scan --forget "$dev" >/dev/null 2>&1; }; then :; fi
		fi
		losetup -d "$dev" || die "cannot detach $dev (instance $i)"
		say "instance $i: $dev detached"
	fi
	rm -f "$(iloop "$i")"
}

create_devices()
{
	local i fresh=0
	for ((i = 1; i <= N; i++)); do
		if [ ! -e "$(idev "$i")" ]; then
			"$ZEROFS" device create -m "$(imnt "$i")" "$DEVNAME" "$SIZE" >&2 ||
				die "cannot create the device file of instance $i"
			fresh=$((fresh + 1))
		fi
	done
	echo "$fresh"
}

btrfs_profile()
{
	if [ -n "$PROFILE" ]; then
		echo "$PROFILE"
	elif [ "$N" -ge 3 ] && [ -e /sys/fs/btrfs/features/raid1c34 ]; then
		echo "raid1c$N"
	else
		echo raid1
	fi
}

btrfs_up()
{
	local i devs=() blank=0 opts="" prof
	for ((i = 1; i <= N; i++)); do
		attach "$i"
		devs+=("$(loop_of "$i")")
	done
	mounted "$MNT" && return 0
	for ((i = 0; i < N; i++)); do
		[ -n "$(blkid -p -o value -s TYPE "${devs[i]}" 2>/dev/null)" ] || blank=$((blank + 1))
	done
	if [ "$blank" -eq "$N" ]; then
		prof=$(btrfs_profile)
		say "mkfs.btrfs -d $prof -m $prof on ${devs[*]}"
		mkfs.btrfs -q -f -d "$prof" -m "$prof" "${devs[@]}" >"$DIR/mkfs.log" 2>&1 ||
			{ cat "$DIR/mkfs.log" >&2; die "mkfs.btrfs failed"; }
	elif [ "$blank" -gt 0 ]; then
		die "$blank of the $N devices are blank (a lost store?): mount the others with" \
			"-o degraded and use 'btrfs replace start'; see the header of $0"
	fi
	for ((i = 0; i < N; i++)); do
		opts="${opts:+$opts,}device=${devs[i]}"
	done
	mkdir -p "$MNT"
	mount -t btrfs -o "$opts" "${devs[0]}" "$MNT" || die "mount of btrfs on ${devs[*]} failed"
	say "btrfs ($(btrfs filesystem df "$MNT" | sed -n 's/^Data, \([^:]*\):.*/\1/p')) mounted on $MNT"
}

btrfs_down()
{
	local i
	if mounted "$MNT"; then
		umount "$MNT" || die "cannot unmount $MNT (busy: $(fuser -m "$MNT" 2>&1))"
		say "btrfs unmounted from $MNT"
	fi
	for ((i = 1; i <= N; i++)); do
		detach "$i"
	done
}

# zfs-fuse: one daemon per machine.
zfs_running() { zpool list >/dev/null 2>&1; }
zfs_start()
{
	local t
	command -v zfs-fuse >/dev/null || die "zfs-fuse is not installed (Debian package zfs-fuse)"
	zfs_running && return 0
	zfs-fuse --disable-block-cache -p "$DIR/zfs-fuse.pid" || die "zfs-fuse did not start"
	touch "$DIR/zfs-fuse.ours"
	for ((t = 0; t < 100; t++)); do
		zfs_running && return 0
		sleep 0.1
	done
	die "zfs-fuse does not answer"
}
zfs_stop()
{
	local pid t
	[ -e "$DIR/zfs-fuse.ours" ] || return 0
	pid=$(cat "$DIR/zfs-fuse.pid" 2>/dev/null) || pid=
	if [ -n "$pid" ] && [ -n "$(zpool list -H -o name 2>/dev/null)" ]; then
		say "zfs-fuse left running: other pools are imported"
		return 0
	fi
	if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
		for ((t = 0; t < 300; t++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	rm -f "$DIR/zfs-fuse.ours" "$DIR/zfs-fuse.pid"
}

zfs_up()
{
	local fresh=$1 i vdevs=() dirs=()
	zfs_start
	for ((i = 1; i <= N; i++)); do
		vdevs+=("$(idev "$i")")
		dirs+=(-d "$(imnt "$i")/.nbd")
	done
	if zpool list "$POOL" >/dev/null 2>&1; then
		# Imported: put back online what came back (resilvers it).
		for ((i = 0; i < N; i++)); do
			if ! zpool online "$POOL" "${vdevs[i]}" >/dev/null; then
				die "zpool online of ${vdevs[i]} failed"
			fi
		done
	elif [ "$fresh" -eq "$N" ]; then
		mkdir -p "$MNT"
		say "zpool create $POOL mirror ${vdevs[*]}"
		zpool create -f -m "$MNT" "$POOL" mirror "${vdevs[@]}" || die "zpool create failed"
	else
		zpool import "${dirs[@]}" "$POOL" || die "zpool import of $POOL failed"
	fi
	say "ZFS pool $POOL mounted on $(zfs get -H -o value mountpoint "$POOL")"
}

zfs_down()
{
	if zfs_running && zpool list "$POOL" >/dev/null 2>&1; then
		zpool export "$POOL" || die "zpool export $POOL failed"
		say "pool $POOL exported"
	fi
	zfs_stop
}

cmd_up()
{
	local i fresh
	mkdir -p "$DIR"
	for ((i = 1; i <= N; i++)); do
		start_instance "$i"
	done
	for ((i = 1; i <= N; i++)); do
		wait_instance "$i"
	done
	fresh=$(create_devices)
	case $FS in
	btrfs) btrfs_up ;;
	zfs) zfs_up "$fresh" ;;
	esac
}

cmd_down()
{
	local i
	case $FS in
	btrfs) btrfs_down ;;
	zfs) zfs_down ;;
	esac
	for ((i = 1; i <= N; i++)); do
		stop_instance "$i"
	done
	for ((i = 1; i <= N; i++)); do
		wait_stopped "$i"
	done
}

cmd_status()
{
	local i state dev ok=0 out
	for ((i = 1; i <= N; i++)); do
		if alive "$i"; then
			state="running (pid $(cat "$(ipid "$i")"))"
		elif mounted "$(imnt "$i")"; then
			state="DEAD (its mount is still there)"
			ok=1
		else
			state=stopped
			ok=1
		fi
		dev=$(loop_of "$i") || dev=-
		printf 'instance %d: %-28s store %s  loop %s\n' "$i" "$state" "$(store_of "$i")" "$dev"
	done
	case $FS in
	btrfs)
		if mounted "$MNT"; then
			btrfs filesystem show "$MNT"
			out=$(btrfs device stats "$MNT")
			echo "$out"
			if grep -qv ' 0$' <<<"$out"; then ok=1; fi
		else
			echo "btrfs: not mounted on $MNT"
			ok=1
		fi
		;;
	zfs)
		if zfs_running && zpool list "$POOL" >/dev/null 2>&1; then
			out=$(zpool status "$POOL")
			echo "$out"
			grep -q 'state: ONLINE' <<<"$out" || ok=1
		else
			echo "zfs: pool $POOL not imported"
			ok=1
		fi
		;;
	esac
	return "$ok"
}

cmd_heal()
{
	local rc=0 out i t
	case $FS in
	btrfs)
		mounted "$MNT" || die "btrfs is not mounted on $MNT: run 'up' first"
		btrfs scrub start -B "$MNT" || rc=$?
		if [ "$rc" -ne 0 ]; then
			say "scrub exit status $rc (3: errors it could not correct)"
			return "$rc"
		fi
		# Everything is correct again: print the error counters of the
		# devices and reset them, so that status reports new errors.
		btrfs device stats -z "$MNT"
		;;
	zfs)
		zpool list "$POOL" >/dev/null 2>&1 || die "pool $POOL is not imported: run 'up' first"
		for ((i = 1; i <= N; i++)); do
			if ! zpool online "$POOL" "$(idev "$i")" >/dev/null; then
				say "instance $i: its device cannot be brought online"
			fi
		done
		zpool clear "$POOL"
		# A resilver in progress must end before a scrub can start.
		for ((t = 0; t < 36000; t++)); do
			out=$(zpool status "$POOL")
			grep -q 'in progress' <<<"$out" || break
			sleep 0.1
		done
		zpool scrub "$POOL" || die "zpool scrub failed"
		for ((t = 0; t < 36000; t++)); do
			out=$(zpool status "$POOL")
			grep -q 'in progress' <<<"$out" || break
			sleep 0.1
		done
		echo "$out"
		grep -q 'state: ONLINE' <<<"$out" && grep -q 'No known data errors' <<<"$out" ||
			return 1
		;;
	esac
}

case $CMD in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
heal) cmd_heal ;;
*) usage ;;
esac
