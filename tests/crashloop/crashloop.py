#!/usr/bin/env python3
"""crashloop.py: kill zerofs-fuse again and again and prove that nothing
acknowledged is ever lost.

Each cycle:
  1. mounts the store (after a crash: the recovery mount; sometimes with the
     cache directory deleted, so the index is rebuilt from the store alone)
     and verifies what it shows against the model of the previous cycle;
  2. runs a mixed workload -- writes, overwrites, appends, truncates, hole
     punches, renames, hard links, symlinks, unlinks, mkdir/rmdir, chmod,
     xattrs, fsync/fdatasync/directory fsync, writes through descriptors
     kept open (their data lags in the kernel's writeback cache), NBD
     writes, trims and zeroes with FLUSH and FUA, and garbage collection
     when the mount has it -- keeping a model of what was acknowledged;
  3. kills the daemon: at a named crash point (ZEROFS_CRASH_AT, see
     src/common/crashpt.h) or at a random moment with SIGKILL.  A point not
     reached in a cycle ends as a random-time kill.

The model.  fsync, fdatasync, an fsync of a directory, NBD FLUSH and FUA are
barriers of the whole filesystem: when one returns, everything that had
reached the daemon before it is durable.  Metadata operations reach the
daemon synchronously; file data reaches it when the kernel writes the pages
back, at the latest at close() or fsync() of the file (FUSE flush), so a
file written through a descriptor kept open may lag.  Hence, per file, the
acknowledged content is its content at its last flush before the last
barrier.

The checks after each crash:
  (1) every file's content is, page by page (4 KiB), the acknowledged page
      or a page the file had later (or zeros where the file had no data at
      some point since); its size lies between the least and the greatest
      size it had since the acknowledgement; a file not modified since its
      acknowledgement must be exactly its acknowledged content;
  (2) the namespace (names, types, hard links, modes, xattrs, symlink
      targets) equals the model's state after some operation between the
      last acknowledgement and the last operation issued;
  (3) every file reads without error, and the daemon logged no error.

Usage: crashloop.py --binary zerofs-fuse --store STORE --workdir DIR
                    [--cycles N] [--seconds S] [--points a,b,c] ...
Exit status: 0 when nothing was lost, 1 on any loss or error, 2 on bad usage,
130 when stopped by SIGINT or SIGTERM (the summary is printed all the same).
"""

import argparse
import ctypes
import errno
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

try:
    import nbd
    NbdError = nbd.Error
except ImportError:  # python3-libnbd missing: no NBD operations
    nbd = None

    class NbdError(Exception):
        pass

PAGE = 4096
ZERO_PAGE = bytes(PAGE)

DEFAULT_POINTS = [
    "barrier.before_log",
    "barrier.after_log",
    "ckpt.after_put",
    "ckpt.mid_prune",
    "gc.after_unlink",
    "gc.before_delete",
    "gc.mid_delete",
    "gc.after_relocate",
]

FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def punch_hole(fd, off, length):
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class Died(Exception):
    """The daemon died under a workload step (the crash we wanted)."""


class Failure(Exception):
    """Something the checks must report."""


# ---------------------------------------------------------------- the model

class Inode:
    """A file, directory or symlink of the model.

    For files: cur is the content the application sees.  fl is the content
    at the last flush (the daemon had it), with fhist the page versions
    and fmin/fmax the sizes since then.  ack is the acknowledged content,
    with hist/hmin/hmax the page versions and sizes since (including the
    ones since fl at the time of the acknowledgement)."""

    _next = 1

    def __init__(self, kind, mode, content=b"", target=None):
        self.id = Inode._next
        Inode._next += 1
        self.kind = kind  # 'f', 'd', 'l'
        self.mode = mode
        self.xattrs = {}
        self.target = target
        self.cur = bytearray(content)
        self.fl = bytes(content)
        self.fhist = {}
        self.fmin = self.fmax = len(content)
        self.ack = bytes(content)
        self.hist = {}
        self.hmin = self.hmax = len(content)
        self.modified = False  # since the acknowledgement

    def _add_version(self, p):
        page = bytes(self.cur[p * PAGE:(p + 1) * PAGE])
        if len(page) < PAGE:
            page += bytes(PAGE - len(page))
        self.fhist.setdefault(p, set()).add(page)
        self.hist.setdefault(p, set()).add(page)

    def _sizes(self):
        n = len(self.cur)
        self.fmin = min(self.fmin, n)
        self.fmax = max(self.fmax, n)
        self.hmin = min(self.hmin, n)
        self.hmax = max(self.hmax, n)

    def write(self, off, data):
        if off > len(self.cur):
            self.cur.extend(bytes(off - len(self.cur)))
        self.cur[off:off + len(data)] = data
        self._touched(off, len(data))

    def truncate(self, size):
        old = len(self.cur)
        if size < old:
            del self.cur[size:]
            if size % PAGE:
                self._add_version(size // PAGE)
        else:
            self.cur.extend(bytes(size - old))
        self.modified = True
        self._sizes()

    def zero(self, off, length):
        end = min(off + length, len(self.cur))
        if end > off:
            self.cur[off:end] = bytes(end - off)
            self._touched(off, end - off)

    def _touched(self, off, length):
        for p in range(off // PAGE, (off + length + PAGE - 1) // PAGE):
            self._add_version(p)
        self.modified = True
        self._sizes()

    def flushed(self):
        """Everything of this file is at the daemon now."""
        self.fl = bytes(self.cur)
        self.fhist = {}
        self.fmin = self.fmax = len(self.cur)

    def acknowledged(self):
        """A barrier returned: what the daemon had is durable."""
        self.ack = self.fl
        self.hist = {p: set(v) for p, v in self.fhist.items()}
        self.hmin, self.hmax = self.fmin, self.fmax
        self.modified = bool(self.fhist) or self.fl != bytes(self.cur)

    def recovered(self, content):
        """The state found after a crash is the durable state."""
        self.cur = bytearray(content)
        self.fl = self.ack = bytes(content)
        self.fhist, self.hist = {}, {}
        self.fmin = self.fmax = self.hmin = self.hmax = len(content)
        self.modified = False

    def check(self, data):
        """Problems of data as the recovered content of this file (a list)."""
        errs = []
        n = len(data)
        lo, hi = min(self.hmin, len(self.ack)), max(self.hmax, len(self.ack))
        if not self.modified and not self.hist:
            if data != self.ack:
                errs.append("acknowledged content differs (size %d, acknowledged %d, first "
                            "difference at byte %d)" % (n, len(self.ack), first_diff(data, self.ack)))
            return errs
        if n < lo or n > hi:
            errs.append("size %d outside [%d, %d] (acknowledged size %d)" % (n, lo, hi, len(self.ack)))
        for p in range((n + PAGE - 1) // PAGE):
            got = data[p * PAGE:(p + 1) * PAGE]
            k = len(got)
            ackp = self.ack[p * PAGE:(p + 1) * PAGE]
            ackp += bytes(PAGE - len(ackp))
            if got == ackp[:k]:
                continue
            if p * PAGE >= lo and got == ZERO_PAGE[:k]:
                continue
            if any(got == v[:k] for v in self.hist.get(p, ())):
                continue
            what = "zeros" if got == ZERO_PAGE[:k] else "data"
            errs.append("page %d (byte %d) holds %s that is neither the acknowledged page nor "
                        "any later version (%d later versions)"
                        % (p, p * PAGE, what, len(self.hist.get(p, ()))))
            if len(errs) > 5:
                break
        return errs


def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))


class Model:
    def __init__(self):
        self.inodes = {}
        self.ns = {}  # path -> inode id ("" is the root)
        root = self._new("d", 0o755)
        self.ns[""] = root.id
        self.snaps = []  # metadata states since the acknowledgement
        self.ack_ops = 0

    def _new(self, kind, mode, content=b"", target=None):
        ino = Inode(kind, mode, content, target)
        self.inodes[ino.id] = ino
        return ino

    def snap(self):
        """Record the state after a metadata operation was issued."""
        self.snaps.append((dict(self.ns),
                           {i: (dict(o.xattrs), o.mode) for i, o in self.inodes.items()}))

    def ack_all(self):
        for ino in self.inodes.values():
            if ino.kind == "f":
                ino.acknowledged()
        self.snaps = self.snaps[-1:]

    def meta_of(self, snap):
        """The canonical metadata of a recorded state (compared with canon())."""
        ns, attrs = snap
        groups = {}
        for path, i in ns.items():
            groups.setdefault(i, []).append(path)
        out = []
        for path, i in ns.items():
            ino = self.inodes[i]
            xa, mode = attrs[i]
            out.append((path, ino.kind, min(groups[i]) if ino.kind == "f" else path,
                        mode if ino.kind != "l" else 0, tuple(sorted(xa.items())), ino.target))
        return frozenset(out)

    def files(self):
        return [p for p, i in self.ns.items() if self.inodes[i].kind == "f"]

    def dirs(self):
        return [p for p, i in self.ns.items() if self.inodes[i].kind == "d"]

    def children(self, d):
        pre = d + "/" if d else ""
        return [p for p in self.ns if p != d and p.startswith(pre) and "/" not in p[len(pre):]]

    def total_bytes(self):
        return sum(len(o.cur) for o in self.inodes.values() if o.kind == "f")


# ----------------------------------------------------------- observing a mount

def observe(mnt):
    """What the mount shows: the canonical metadata, the file contents by path,
    the inode numbers by path, and read errors."""
    entries = {}
    contents = {}
    errors = []

    def walk(rel):
        full = os.path.join(mnt, rel) if rel else mnt
        try:
            names = sorted(os.listdir(full))
        except OSError as e:
            errors.append("listing %s: %s" % (rel or "/", e))
            return
        for name in names:
            r = rel + "/" + name if rel else name
            fp = os.path.join(mnt, r)
            try:
                st = os.lstat(fp)
            except OSError as e:
                errors.append("lstat %s: %s" % (r, e))
                continue
            if stat.S_ISLNK(st.st_mode):
                try:
                    kind, target = "l", os.readlink(fp)
                except OSError as e:
                    errors.append("readlink %s: %s" % (r, e))
                    continue
            elif stat.S_ISDIR(st.st_mode):
                kind, target = "d", None
            elif stat.S_ISREG(st.st_mode):
                kind, target = "f", None
            else:
                errors.append("%s has an unexpected type %o" % (r, st.st_mode))
                continue
            xa = {}
            if kind != "l":
                try:
                    for k in os.listxattr(fp, follow_symlinks=False):
                        if k.startswith("user."):
                            xa[k] = os.getxattr(fp, k, follow_symlinks=False)
                except OSError as e:
                    errors.append("xattrs of %s: %s" % (r, e))
            entries[r] = (kind, st.st_ino, st.st_mode & 0o7777, xa, target, st.st_nlink)
            if kind == "f":
                try:
                    with open(fp, "rb") as f:
                        contents[r] = f.read()
                except OSError as e:
                    errors.append("reading %s: %s" % (r, e))
            elif kind == "d":
                walk(r)

    walk("")
    return entries, contents, errors


def canon(entries):
    groups = {}
    for path, e in entries.items():
        if e[0] == "f":
            groups.setdefault(e[1], []).append(path)
    out = []
    for path, (kind, ino, mode, xa, target, _nlink) in entries.items():
        out.append((path, kind, min(groups[ino]) if kind == "f" else path,
                    mode if kind != "l" else 0, tuple(sorted(xa.items())), target))
    out.append(("", "d", "", 0o755, (), None))
    return frozenset(out)


def diff_meta(want, have):
    a, b = want - have, have - want
    lines = ["  missing or different: %r" % (x,) for x in sorted(a, key=str)[:8]]
    lines += ["  unexpected or different: %r" % (x,) for x in sorted(b, key=str)[:8]]
    return "\n".join(lines)


# ------------------------------------------------------------------ daemon

class Daemon:
    started = []  # every daemon, so that none outlives the driver

    def __init__(self, args, mnt, cache, log, crash_at=None, barrier_ms=None):
        Daemon.started.append(self)
        self.mnt = mnt
        self.log = log
        opts = ["store=" + args.store, "cache_dir=" + cache, "kdf=min", "log_level=info",
                "nbd_listen=127.0.0.1:%d" % args.nbd_port,
                "barrier_interval_ms=%d" % barrier_ms,
                "checkpoint_interval=%d" % args.checkpoint_interval,
                "gc_grace_ms=%d" % args.gc_grace_ms,
                "segment_size=1M"]
        if args.extra_opts:
            opts.append(args.extra_opts)
        cmd = [args.binary, "-f"]
        if args.config:
            cmd += ["-c", args.config]
        cmd += ["-o", ",".join(opts), mnt]
        env = dict(os.environ)
        env.setdefault("ZEROFS_PASSWORD", "testpw")
        env.pop("ZEROFS_CRASH_AT", None)
        if crash_at:
            env["ZEROFS_CRASH_AT"] = crash_at
        self.log_start = os.path.getsize(log) if os.path.exists(log) else 0
        self.checked = self.log_start
        self.died_at_mount = False
        self.crash_at = crash_at
        with open(log, "ab") as lf:
            lf.write(("=== %s %s\n" % (time.strftime("%H:%M:%S"),
                                       "ZEROFS_CRASH_AT=" + crash_at if crash_at else "")).encode())
            lf.flush()
            self.proc = subprocess.Popen(cmd, stdout=lf, stderr=lf, env=env,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + args.mount_timeout
        while not os.path.ismount(mnt):
            if self.proc.poll() is not None:
                if crash_at and "crash point %s reached" % crash_at.split(":")[0] in self.log_text():
                    detach(mnt)
                    self.died_at_mount = True
                    return
                raise Failure("zerofs-fuse exited with status %s before mounting %s; log:\n%s"
                              % (self.proc.returncode, mnt, self.log_text()[-3000:]))
            if time.monotonic() > deadline:
                self.kill()
                raise Failure("%s not mounted after %d s; log:\n%s"
                              % (mnt, args.mount_timeout, self.log_text()[-3000:]))
            time.sleep(0.02)

    def alive(self):
        return self.proc.poll() is None

    def planned_death(self):
        """Did the daemon die (or is it dying) at its armed crash point?"""
        if not self.crash_at:
            return False
        for _ in range(100):
            if not self.alive():
                break
            time.sleep(0.02)
        return not self.alive() and ("crash point %s reached" % self.crash_at.split(":")[0]
                                     in self.log_text())

    def log_text(self, start=None):
        with open(self.log, "rb") as f:
            f.seek(self.log_start if start is None else start)
            return f.read().decode(errors="replace")

    def new_log_lines(self):
        """The lines logged since the last call."""
        with open(self.log, "rb") as f:
            f.seek(self.checked)
            text = f.read()
        # Only complete lines.
        text = text[:text.rfind(b"\n") + 1]
        self.checked += len(text)
        return text.decode(errors="replace").splitlines()

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        detach(self.mnt)

    def umount(self):
        for _ in range(100):
            r = subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        try:
            rc = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failure("zerofs-fuse still running 120 s after unmounting")
        if rc != 0:
            raise Failure("zerofs-fuse exited with status %d after a clean unmount; log:\n%s"
                          % (rc, self.log_text()[-3000:]))


def detach(mnt):
    if os.path.ismount(mnt) or mounted_dead(mnt):
        subprocess.run(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)


def mounted_dead(mnt):
    try:
        os.stat(mnt)
        return False
    except OSError as e:
        return e.errno == errno.ENOTCONN


# ---------------------------------------------------------------- workload

class Workload:
    """Runs random operations on a mount and keeps the model up to date.
    Each step updates the model whether or not it completed when the daemon
    died under it: a step in flight may or may not have happened."""

    def __init__(self, drv, daemon):
        self.d = drv
        self.m = drv.model
        self.rng = drv.rng
        self.daemon = daemon
        self.mnt = daemon.mnt
        self.held = {}  # inode id -> fd kept open (its pages may lag)
        self.nbd = None
        self.ops = 0
        self.acks = 0
        self.counts = {}

    def p(self, rel):
        return os.path.join(self.mnt, rel)

    def step(self, fn, model_update):
        """Run fn(); then update the model.  A failure while the daemon is
        dead is the crash: the model still gets the update (the step may
        have reached the daemon), then Died is raised."""
        try:
            r = fn()
        except (OSError, NbdError) as e:
            if self.wait_dead(e):
                model_update()
                raise Died()
            raise Failure("operation failed while the daemon was alive: %s" % e)
        model_update()
        return r

    def wait_dead(self, exc):
        """Is the daemon dead?  A FUSE request fails with ENOTCONN or
        ECONNABORTED when the daemon dies, an NBD request with a connection
        error: then give it a moment to finish dying.  Any other error
        counts as the crash only if the daemon is dead already (so that the
        random kill that follows a real EIO cannot hide it)."""
        conn = not isinstance(exc, OSError) or exc.errno in (errno.ENOTCONN, errno.ECONNABORTED)
        for _ in range(100 if conn else 5):
            if not self.daemon.alive():
                return True
            time.sleep(0.02)
        return False

    def name(self):
        self.d.names += 1
        return "n%d" % self.d.names

    def rdir(self):
        return self.rng.choice([d for d in self.m.dirs() if not d.startswith(".nbd")])

    def rfile(self):
        fs = [f for f in self.m.files() if not f.startswith(".nbd/")]
        return self.rng.choice(fs) if fs else None

    def data(self, n):
        return self.rng.randbytes(n)

    def size(self):
        r = self.rng.random()
        if r < 0.45:
            return self.rng.randrange(0, 8192)
        if r < 0.85:
            return self.rng.randrange(8192, 200000)
        return self.rng.randrange(500000, 1600000)

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- metadata-changing operations record a snapshot after their step

    def op_create(self):
        d = self.rdir()
        path = (d + "/" if d else "") + self.name()
        data = self.data(self.size())
        ino = None

        def mk():
            nonlocal ino
            ino = self.m._new("f", 0o644)
            self.m.ns[path] = ino.id
            self.m.snap()

        fd = self.step(lambda: os.open(self.p(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644), mk)
        try:
            self.step(lambda: os.write(fd, data) if data else 0, lambda: ino.write(0, data))
        finally:
            self.close(fd, ino)
        self.count("create")

    def close(self, fd, ino):
        """close() flushes the file's pages to the daemon (FUSE flush)."""
        try:
            os.close(fd)
        except OSError as e:
            if self.wait_dead(e):
                raise Died()
            raise Failure("close failed while the daemon was alive: %s" % e)
        ino.flushed()

    def with_file(self, path, flags, fn, model_fn, what):
        ino = self.m.inodes[self.m.ns[path]]
        fd = self.step(lambda: os.open(self.p(path), flags), lambda: None)
        try:
            self.step(lambda: fn(fd), model_fn(ino))
        finally:
            self.close(fd, ino)
        self.count(what)

    def op_overwrite(self):
        path = self.rfile()
        if not path:
            return
        ino = self.m.inodes[self.m.ns[path]]
        off = self.rng.randrange(0, len(ino.cur) + 1)
        data = self.data(self.rng.randrange(1, 70000))
        self.with_file(path, os.O_WRONLY, lambda fd: os.pwrite(fd, data, off),
                       lambda i: lambda: i.write(off, data), "overwrite")

    def op_append(self):
        path = self.rfile()
        if not path:
            return
        data = self.data(self.rng.randrange(1, 40000))
        self.with_file(path, os.O_WRONLY | os.O_APPEND, lambda fd: os.write(fd, data),
                       lambda i: lambda: i.write(len(i.cur), data), "append")

    def op_punch(self):
        path = self.rfile()
        if not path:
            return
        ino = self.m.inodes[self.m.ns[path]]
        if not ino.cur:
            return
        off = self.rng.randrange(0, len(ino.cur))
        n = self.rng.randrange(1, 200000)
        self.with_file(path, os.O_WRONLY, lambda fd: punch_hole(fd, off, n),
                       lambda i: lambda: i.zero(off, n), "punch")

    def op_truncate(self):
        path = self.rfile()
        if not path:
            return
        ino = self.m.inodes[self.m.ns[path]]
        n = len(ino.cur)
        new = self.rng.choice([0, self.rng.randrange(0, n + 1), n + self.rng.randrange(1, 100000)])

        def upd():
            ino.truncate(new)
            if ino.id not in self.held:
                ino.flushed()  # no dirty pages: the daemon has it all

        self.step(lambda: os.truncate(self.p(path), new), upd)
        self.count("truncate")

    def op_rename(self):
        cands = [p for p in self.m.ns if p and not p.startswith(".nbd")]
        if not cands:
            return
        src = self.rng.choice(cands)
        sino = self.m.inodes[self.m.ns[src]]
        dests = [d for d in self.m.dirs() if not d.startswith(".nbd")
                 and not (sino.kind == "d" and (d == src or d.startswith(src + "/")))]
        d = self.rng.choice(dests)
        # Sometimes over an existing file (it loses that name).
        over = [f for f in self.m.children(d) if self.m.inodes[self.m.ns[f]].kind == "f"]
        if sino.kind != "d" and over and self.rng.random() < 0.3:
            dst = self.rng.choice(over)
            if self.m.ns[dst] == self.m.ns[src]:
                return  # two names of one file: rename does nothing
            self.release_if_last(dst)
        else:
            dst = (d + "/" if d else "") + self.name()

        def upd():
            moved = {}
            for p in list(self.m.ns):
                if p == src or p.startswith(src + "/"):
                    moved[dst + p[len(src):]] = self.m.ns.pop(p)
            self.m.ns.update(moved)
            self.m.snap()

        self.step(lambda: os.rename(self.p(src), self.p(dst)), upd)
        self.count("rename")

    def release_if_last(self, path):
        """Close a held descriptor of the file at path before its last name
        goes (the model does not follow unlinked open files)."""
        i = self.m.ns[path]
        if i in self.held and list(self.m.ns.values()).count(i) == 1:
            fd = self.held.pop(i)
            self.close(fd, self.m.inodes[i])

    def op_link(self):
        path = self.rfile()
        if not path:
            return
        d = self.rdir()
        dst = (d + "/" if d else "") + self.name()
        self.step(lambda: os.link(self.p(path), self.p(dst)),
                  lambda: (self.m.ns.__setitem__(dst, self.m.ns[path]), self.m.snap()))
        self.count("link")

    def op_symlink(self):
        d = self.rdir()
        dst = (d + "/" if d else "") + self.name()
        target = "t-" + self.name()

        def upd():
            self.m.ns[dst] = self.m._new("l", 0o777, target=target).id
            self.m.snap()

        self.step(lambda: os.symlink(target, self.p(dst)), upd)
        self.count("symlink")

    def op_unlink(self):
        cands = [p for p in self.m.ns if p and not p.startswith(".nbd")
                 and self.m.inodes[self.m.ns[p]].kind != "d"]
        if not cands:
            return
        path = self.rng.choice(cands)
        if self.m.inodes[self.m.ns[path]].kind == "f":
            self.release_if_last(path)
        self.step(lambda: os.unlink(self.p(path)), lambda: (self.m.ns.pop(path), self.m.snap()))
        self.count("unlink")

    def op_mkdir(self):
        d = self.rdir()
        if d.count("/") >= 3:
            d = ""
        path = (d + "/" if d else "") + self.name()

        def upd():
            self.m.ns[path] = self.m._new("d", 0o755).id
            self.m.snap()

        self.step(lambda: os.mkdir(self.p(path), 0o755), upd)
        self.count("mkdir")

    def op_rmdir(self):
        empty = [d for d in self.m.dirs() if d and not d.startswith(".nbd")
                 and not self.m.children(d)]
        if not empty:
            return
        path = self.rng.choice(empty)
        self.step(lambda: os.rmdir(self.p(path)), lambda: (self.m.ns.pop(path), self.m.snap()))
        self.count("rmdir")

    def op_xattr(self):
        cands = [p for p in self.m.ns if p and not p.startswith(".nbd")
                 and self.m.inodes[self.m.ns[p]].kind != "l"]
        if not cands:
            return
        path = self.rng.choice(cands)
        ino = self.m.inodes[self.m.ns[path]]
        if ino.xattrs and self.rng.random() < 0.3:
            k = self.rng.choice(sorted(ino.xattrs))
            self.step(lambda: os.removexattr(self.p(path), k),
                      lambda: (ino.xattrs.pop(k), self.m.snap()))
            self.count("removexattr")
            return
        k = "user.k%d" % self.rng.randrange(4)
        v = self.data(self.rng.randrange(0, 300))
        self.step(lambda: os.setxattr(self.p(path), k, v),
                  lambda: (ino.xattrs.__setitem__(k, v), self.m.snap()))
        self.count("setxattr")

    def op_chmod(self):
        cands = [p for p in self.m.ns if p and not p.startswith(".nbd")
                 and self.m.inodes[self.m.ns[p]].kind == "f"]
        if not cands:
            return
        path = self.rng.choice(cands)
        ino = self.m.inodes[self.m.ns[path]]
        mode = self.rng.choice([0o600, 0o640, 0o644, 0o755, 0o700])

        def upd():
            ino.mode = mode
            self.m.snap()

        self.step(lambda: os.chmod(self.p(path), mode), upd)
        self.count("chmod")

    # -- descriptors kept open: writes whose pages lag in the kernel

    def op_held_write(self):
        cands = [i for i in set(self.m.ns.values()) if self.m.inodes[i].kind == "f"
                 and not self.is_nbd(i)]
        if not cands:
            return
        i = self.rng.choice(sorted(cands))
        ino = self.m.inodes[i]
        if i not in self.held:
            path = next(p for p, x in self.m.ns.items() if x == i)
            self.held[i] = self.step(lambda: os.open(self.p(path), os.O_RDWR), lambda: None)
        fd = self.held[i]
        off = self.rng.randrange(0, len(ino.cur) + 20000)
        data = self.data(self.rng.randrange(1, 50000))
        self.step(lambda: os.pwrite(fd, data, off), lambda: ino.write(off, data))
        self.count("held_write")

    def op_held_close(self):
        if not self.held:
            return
        i = self.rng.choice(sorted(self.held))
        self.close(self.held.pop(i), self.m.inodes[i])
        self.count("held_close")

    def is_nbd(self, i):
        return any(p.startswith(".nbd/") for p, x in self.m.ns.items() if x == i)

    # -- barriers

    def barrier_done(self):
        self.m.ack_all()
        self.m.ack_ops = self.ops
        self.acks += 1

    def op_fsync(self):
        kind = self.rng.choice(["fsync", "fdatasync", "dirfsync", "heldfsync"])
        if kind == "heldfsync" and self.held:
            i = self.rng.choice(sorted(self.held))
            ino = self.m.inodes[i]
            fn = self.rng.choice([os.fsync, os.fdatasync])
            # The kernel writes the file's pages back before FSYNC.
            self.step(lambda: fn(self.held[i]), lambda: None)
            ino.flushed()
            self.barrier_done()
        elif kind in ("fsync", "fdatasync") and self.rfile():
            path = self.rfile()
            ino = self.m.inodes[self.m.ns[path]]
            fd = self.step(lambda: os.open(self.p(path), os.O_RDONLY), lambda: None)
            try:
                self.step(lambda: (os.fsync if kind == "fsync" else os.fdatasync)(fd), lambda: None)
                ino.flushed()
                self.barrier_done()
            finally:
                self.close(fd, ino)
        else:
            d = self.rdir()
            fd = self.step(lambda: os.open(self.p(d), os.O_RDONLY | os.O_DIRECTORY), lambda: None)
            try:
                self.step(lambda: os.fsync(fd), lambda: None)
                self.barrier_done()
            finally:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.count(kind)

    # -- NBD

    def nbd_setup(self):
        name = self.d.nbd_name
        path = ".nbd/" + name
        if path not in self.m.ns:
            ino = None

            def mk():
                nonlocal ino
                ino = self.m._new("f", 0o644)
                self.m.ns[path] = ino.id
                self.m.snap()

            fd = self.step(lambda: os.open(self.p(path), os.O_CREAT | os.O_WRONLY, 0o644), mk)
            try:
                self.step(lambda: os.ftruncate(fd, self.d.nbd_size),
                          lambda: ino.truncate(self.d.nbd_size))
            finally:
                self.close(fd, ino)
        h = nbd.NBD()
        self.step(lambda: h.connect_uri("nbd://127.0.0.1:%d/%s" % (self.d.args.nbd_port, name)),
                  lambda: None)
        self.nbd = h
        self.nbd_ino = self.m.inodes[self.m.ns[path]]

    def op_nbd(self):
        if nbd is None:
            self.d.note("python3-libnbd is missing: NBD operations skipped")
            return
        if self.nbd is None:
            self.nbd_setup()
        h, ino = self.nbd, self.nbd_ino
        size = len(ino.cur)
        r = self.rng.random()
        off = self.rng.randrange(0, size // PAGE) * PAGE
        n = min(self.rng.randrange(1, 33) * PAGE, size - off)
        if r < 0.6:
            fua = self.rng.random() < 0.25
            data = self.data(n)
            self.step(lambda: h.pwrite(data, off, nbd.CMD_FLAG_FUA if fua else 0),
                      lambda: (ino.write(off, data), ino.flushed()))
            if fua:
                self.barrier_done()
            self.count("nbd_write_fua" if fua else "nbd_write")
        elif r < 0.75:
            self.step(lambda: h.trim(n, off), lambda: (ino.zero(off, n), ino.flushed()))
            self.count("nbd_trim")
        elif r < 0.85:
            self.step(lambda: h.zero(n, off), lambda: (ino.zero(off, n), ino.flushed()))
            self.count("nbd_zero")
        else:
            self.step(h.flush, lambda: None)
            self.barrier_done()
            self.count("nbd_flush")

    # -- garbage collection

    def op_gc(self):
        if not self.d.gc_supported:
            return
        try:
            os.setxattr(self.mnt, "trusted.zerofs.gc", b"run")
            try:
                stored = os.getxattr(self.mnt, "trusted.zerofs.gc")
            except OSError:
                stored = None
            if stored is not None and "trusted.zerofs.gc" in os.listxattr(self.mnt):
                os.removexattr(self.mnt, "trusted.zerofs.gc")
                self.d.gc_supported = False
                self.d.note("garbage collection: trusted.zerofs.gc was stored as an ordinary "
                            "xattr (no GC in this daemon): GC operations skipped")
                return
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                self.d.gc_supported = False
                self.d.note("garbage collection: setfattr -n trusted.zerofs.gc -v run failed "
                            "with %s: GC operations skipped" % errno.errorcode[e.errno])
                return
            if e.errno in (errno.EBUSY, errno.EAGAIN):
                self.count("gc_busy")  # one already running
                return
            if self.wait_dead(e):
                raise Died()
            raise Failure("GC failed while the daemon was alive: %s" % e)
        self.count("gc")

    OPS = [("op_create", 14), ("op_overwrite", 14), ("op_append", 8), ("op_truncate", 6),
           ("op_punch", 3), ("op_rename", 7), ("op_link", 4), ("op_symlink", 2),
           ("op_unlink", 8), ("op_mkdir", 4), ("op_rmdir", 3), ("op_xattr", 6), ("op_chmod", 2),
           ("op_held_write", 8), ("op_held_close", 3), ("op_fsync", 8), ("op_nbd", 10),
           ("op_gc", 3)]

    def pick(self):
        total = self.m.total_bytes()
        if total > self.d.args.max_bytes:
            return self.rng.choice(["op_unlink", "op_truncate", "op_fsync"])
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        return self.rng.choices(names, weights)[0]

    def run(self, deadline):
        """Operations until the daemon dies or the deadline passes.  Returns
        True when the daemon died under the workload."""
        try:
            while time.monotonic() < deadline:
                if not self.daemon.alive():
                    return True
                op = self.pick()
                self.ops += 1
                getattr(self, op)()
            return False
        except Died:
            return True
        finally:
            pass

    def drop(self):
        """After the crash: let go of descriptors and the NBD connection."""
        for fd in self.held.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.held = {}
        if self.nbd is not None:
            try:
                self.nbd.close()
            except Exception:
                pass
            self.nbd = None


# ------------------------------------------------------------------ driver

class Driver:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.model = Model()
        self.mnt = os.path.join(args.workdir, "mnt")
        self.cache = os.path.join(args.workdir, "cache")
        self.log = os.path.join(args.workdir, "zerofs.log")
        self.records = open(os.path.join(args.workdir, "cycles.jsonl"), "a")
        os.makedirs(self.mnt, exist_ok=True)
        self.gc_supported = not args.no_gc
        self.nbd_name = "disk"
        self.nbd_size = 4 << 20
        self.notes = []
        self.kills = {}
        self.reached = {}
        self.armed = {}
        self.bytes_verified = 0
        self.ack_bytes_exact = 0
        self.files_verified = 0
        self.losses = []
        self.errors = []
        self.cycles = 0
        self.ops = 0
        self.acks = 0
        self.counts = {}
        self.warnings = {}
        self.cache_drops = 0
        self.names = 0
        self.clean_bytes = 0
        self.interrupted = False

    def note(self, msg):
        if msg not in self.notes:
            self.notes.append(msg)
            print("crashloop: " + msg, flush=True)

    def barrier_ms(self):
        return self.rng.choice(self.args.barrier_ms)

    def check_log(self, daemon, when):
        for line in daemon.new_log_lines():
            # The daemon's own errors, and sanitizer reports (ASan/UBSan builds).
            if ": error: " in line or "Sanitizer" in line or "runtime error:" in line:
                self.errors.append("cycle %d: zerofs-fuse logged an error %s: %s"
                                   % (self.cycles, when, line))
            elif ": warning: " in line and "crash point" not in line:
                text = re.sub(r"[0-9]+", "N", line.split(": warning: ", 1)[1])
                self.warnings[text] = self.warnings.get(text, 0) + 1

    def verify(self, rec, daemon, clean=False):
        """Compare what the mount shows with the model; then make the model
        what was found (it is the durable state now).  After a clean
        unmount (clean=True) the model holds one state and no unacknowledged
        change, so the check is exact.  Returns True when all is well, False
        after a failure, None when the daemon reached its crash point during
        the check (a mount makes barriers of its own): no verdict then."""
        m = self.model
        entries, contents, errs = observe(self.mnt)
        have = canon(entries)
        if (errs or not any(m.meta_of(s) == have for s in m.snaps)) and daemon.planned_death():
            return None
        for e in errs:
            self.losses.append("cycle %d: %s" % (self.cycles, e))
        cands = [k for k in range(len(m.snaps) - 1, -1, -1) if m.meta_of(m.snaps[k]) == have]
        if not cands:
            self.losses.append(
                "cycle %d: the namespace is no state between the acknowledgement and the last "
                "operation (%d states); against the acknowledged state:\n%s\nagainst the last "
                "state:\n%s" % (self.cycles, len(m.snaps), diff_meta(m.meta_of(m.snaps[0]), have),
                                diff_meta(m.meta_of(m.snaps[-1]), have)))
            self.dump_failure(entries)
            return False
        rec["ns_state"] = "%d of %d" % (cands[0], len(m.snaps) - 1)
        # Content: try every candidate state with a different inode mapping.
        best = None
        for k in cands:
            ns = m.snaps[k][0]
            problems = []
            for path, content in contents.items():
                ino = m.inodes[ns[path]]
                for p in ino.check(content):
                    problems.append("%s (inode %d%s): %s" % (
                        path, ino.id, ", not modified since acknowledged" if not ino.modified
                        else "", p))
            if best is None or len(problems) < len(best[1]):
                best = (k, problems)
            if not problems:
                break
        k, problems = best
        if problems and daemon.planned_death():
            return None
        for p in problems:
            self.losses.append("cycle %d: %s" % (self.cycles, p))
        if problems:
            self.dump_failure(entries)
            return False
        # Adopt what was found.
        ns, attrs = m.snaps[k]
        m.ns = dict(ns)
        for i, (xa, mode) in attrs.items():
            m.inodes[i].xattrs = dict(xa)
            m.inodes[i].mode = mode
        live = set(m.ns.values())
        m.inodes = {i: o for i, o in m.inodes.items() if i in live}
        done = set()
        for path, content in contents.items():
            ino = m.inodes[m.ns[path]]
            if ino.id in done:
                continue
            done.add(ino.id)
            if clean:
                self.clean_bytes += len(content)
                continue
            if not ino.modified:
                self.ack_bytes_exact += len(content)
            ino.recovered(content)
            self.bytes_verified += len(content)
            rec["bytes"] = rec.get("bytes", 0) + len(content)
            self.files_verified += 1
        m.snaps = []
        m.snap()
        return True

    def sabotage(self):
        """For the test of this checker: lose the newest index log of a
        directory store (the last barrier, acknowledged or not), and the
        store's write-ahead log, whose record of it would write it back.
        Meant for runs without checkpoints (a large --checkpoint-interval):
        a log that a checkpoint replaced loses nothing."""
        newest = None
        for sub in ("meta/log",):
            d = os.path.join(self.args.store, sub)
            for name in os.listdir(d) if os.path.isdir(d) else ():
                if newest is None or int(name, 16) > newest[0]:
                    newest = (int(name, 16), os.path.join(d, name))
        if newest:
            os.unlink(newest[1])
            wal = os.path.join(self.args.store, ".tmp", ".wal")
            if os.path.exists(wal):
                os.unlink(wal)
            return newest[1]
        return None

    def dump_failure(self, entries):
        path = os.path.join(self.args.workdir, "failure-cycle%d.txt" % self.cycles)
        with open(path, "w") as f:
            f.write("observed entries:\n")
            for p in sorted(entries):
                f.write("  %s %r\n" % (p, entries[p][:3] + entries[p][4:]))
            f.write("model states (newest first):\n")
            for k in range(len(self.model.snaps) - 1, -1, -1):
                f.write("  state %d: %s\n" % (k, sorted(self.model.snaps[k][0])))
        self.note("details of the failure in %s and %s" % (path, self.log))

    def cycle(self, daemon):
        """One workload and crash on a live mount; returns the mount after
        recovery (verified), or None after a failure."""
        args = self.args
        rec = {"cycle": self.cycles}
        # Choose the kill: a crash point, or a random moment.
        point = None
        if args.points and self.rng.random() >= args.random_share:
            point = self.rng.choice(args.points)
        if point:
            n = self.rng.randrange(1, (args.max_hit if point.startswith("barrier.")
                                       else min(2, args.max_hit)) + 1)
            daemon.umount()
            self.check_log(daemon, "before a planned remount")
            daemon = Daemon(args, self.mnt, self.cache, self.log, "%s:%d" % (point, n),
                            self.barrier_ms())
            # After a clean unmount nothing at all may differ.
            if not daemon.died_at_mount:
                ok = self.verify(rec, daemon, clean=True)
                if ok is None:
                    daemon.died_at_mount = True  # while idle: a crash before any operation
                    detach(self.mnt)
                elif not ok:
                    return daemon.kill()
            rec["armed"] = "%s:%d" % (point, n)
            self.armed[point] = self.armed.get(point, 0) + 1
            duration = args.workload_seconds
            kill_at = duration * 1.5
        else:
            duration = args.workload_seconds
            kill_at = self.rng.uniform(0.05, duration)
        start = time.monotonic()
        killed = threading.Event()

        def killer():
            if not killed.wait(kill_at):
                if daemon.alive():
                    daemon.proc.send_signal(signal.SIGKILL)

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        w = Workload(self, daemon)
        if daemon.died_at_mount:
            died = True
            rec["died_before_ops"] = True
        else:
            died = w.run(start + kill_at + 5)
        if not died:
            # Deadline passed without a kill (should not happen): kill now.
            daemon.proc.send_signal(signal.SIGKILL)
        killed.set()
        t.join()
        w.drop()
        daemon.proc.wait()
        detach(self.mnt)
        text = daemon.log_text()
        how = "random"
        if point and ("crash point %s reached" % point) in text:
            how = point
            self.reached[point] = self.reached.get(point, 0) + 1
        self.kills[how] = self.kills.get(how, 0) + 1
        rec.update(kill=how, after_s=round(time.monotonic() - start, 2), ops=w.ops,
                   acks=w.acks, ops_since_ack=w.ops - self.model.ack_ops)
        self.ops += w.ops
        self.acks += w.acks
        for k, v in w.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.check_log(daemon, "while running")
        if args.sabotage:
            rec["sabotage"] = self.sabotage()
        # Recovery.
        if self.rng.random() < args.drop_cache:
            shutil.rmtree(self.cache, ignore_errors=True)
            rec["cache_deleted"] = True
            self.cache_drops += 1
        daemon = Daemon(args, self.mnt, self.cache, self.log, None, self.barrier_ms())
        ok = self.verify(rec, daemon)
        self.check_log(daemon, "on recovery")
        self.model.ack_ops = 0
        rec["ok"] = ok
        self.records.write(json.dumps(rec) + "\n")
        self.records.flush()
        if args.verbose:
            print("crashloop: cycle %d: %s" % (self.cycles, json.dumps(rec)), flush=True)
        return daemon if ok else (daemon.kill() or None)

    def run(self):
        args = self.args
        shutil.rmtree(self.cache, ignore_errors=True)
        daemon = Daemon(args, self.mnt, self.cache, self.log, None, self.barrier_ms())
        self.check_log(daemon, "at the first mount")
        # The model starts from what the new filesystem shows (.nbd).
        entries, _c, errs = observe(self.mnt)
        if errs or any(e[0] != "d" for e in entries.values()):
            raise Failure("a new filesystem is not empty: %r %r" % (entries, errs))
        for path in sorted(entries):
            self.model.ns[path] = self.model._new("d", entries[path][2]).id
        self.model.inodes[self.model.ns[""]].mode = 0o755
        self.model.snap()
        start = time.monotonic()
        interrupted = False
        try:
            while self.cycles < args.cycles and time.monotonic() - start < args.seconds:
                self.cycles += 1
                daemon = self.cycle(daemon)
                if daemon is None or self.losses or self.errors:
                    break
        except KeyboardInterrupt:
            interrupted = self.interrupted = True
            self.note("interrupted during cycle %d: that cycle is not counted as verified"
                      % self.cycles)
        finally:
            if daemon is not None:
                if not self.losses and not self.errors and not interrupted:
                    daemon.umount()
                    self.check_log(daemon, "at the last unmount")
                else:
                    daemon.kill()
            for d in Daemon.started:
                if d.alive():
                    d.kill()
        return self.summary(time.monotonic() - start)

    def summary(self, elapsed):
        out = sys.stdout
        print("crashloop summary", file=out)
        print("  store: %s" % self.args.store, file=out)
        print("  seed: %s" % self.args.seed, file=out)
        print("  cycles: %d in %.0f s" % (self.cycles, elapsed), file=out)
        print("  operations: %d, acknowledged barriers: %d" % (self.ops, self.acks), file=out)
        print("  operations by kind: %s" % ", ".join("%s=%d" % kv for kv in sorted(self.counts.items())),
              file=out)
        print("  kills: %s" % ", ".join("%s=%d" % kv for kv in sorted(self.kills.items())), file=out)
        print("  crash points armed: %s" % ", ".join("%s=%d" % kv for kv in sorted(self.armed.items())),
              file=out)
        print("  crash points reached: %s" % (", ".join("%s=%d" % kv for kv in sorted(self.reached.items()))
                                              or "none"), file=out)
        never = [p for p in self.armed if p not in self.reached]
        if never:
            print("  armed but never reached (those cycles were random-time kills): %s"
                  % ", ".join(sorted(never)), file=out)
        print("  recoveries with the cache directory deleted: %d" % self.cache_drops, file=out)
        print("  files verified: %d, bytes verified: %d (of them acknowledged and unmodified, "
              "compared exactly: %d)" % (self.files_verified, self.bytes_verified,
                                         self.ack_bytes_exact), file=out)
        print("  bytes compared exactly after clean remounts: %d" % self.clean_bytes, file=out)
        for n in self.notes:
            print("  note: %s" % n, file=out)
        for text, n in sorted(self.warnings.items()):
            print("  daemon warning (%dx): %s" % (n, text), file=out)
        print("  errors: %d" % len(self.errors), file=out)
        for e in self.errors[:20]:
            print("    " + e, file=out)
        print("  losses: %d" % len(self.losses), file=out)
        for e in self.losses[:40]:
            print("    " + e, file=out)
        if self.losses or self.errors:
            return 1
        return 130 if self.interrupted else 0


def selftest():
    """The page checker on made-up histories (no mount needed)."""
    rng = random.Random(1)
    a = rng.randbytes(3 * PAGE + 100)
    b = rng.randbytes(PAGE)
    f = Inode("f", 0o644, a)
    assert f.check(a) == []
    assert f.check(a[:-1]), "a shorter unmodified file passed"
    bad = bytearray(a)
    bad[5000] ^= 1
    assert f.check(bytes(bad)), "a flipped bit in an unmodified file passed"
    # Overwrite page 1 through a descriptor kept open, no flush, no barrier.
    f.write(PAGE, b)
    assert f.check(a) == [] and f.check(a[:PAGE] + b + a[2 * PAGE:]) == []
    z = a[:PAGE] + bytes(PAGE) + a[2 * PAGE:]
    assert f.check(z), "zeros never written passed"
    mixed = bytearray(a[:PAGE] + b + a[2 * PAGE:])
    mixed[PAGE + 10] ^= 1
    assert f.check(bytes(mixed)), "garbage in a later page version passed"
    # A barrier without a flush of this file: a is still what is acknowledged.
    f.acknowledged()
    assert f.check(a) == [] and f.check(a[:PAGE] + b + a[2 * PAGE:]) == []
    # Flush, then a barrier: only the new content is acknowledged.
    f.flushed()
    f.acknowledged()
    assert f.check(a[:PAGE] + b + a[2 * PAGE:]) == []
    assert f.check(a), "the content before an acknowledged overwrite passed"
    # Truncate to 100 bytes and extend again: the tail may be zeros (or old).
    f.truncate(100)
    f.truncate(len(a))
    cur = bytes(f.cur)
    assert f.check(cur) == [] and f.check(cur[:100]) == []
    assert f.check(a[:PAGE] + b + a[2 * PAGE:]) == []
    assert f.check(cur[:100] + bytes(50)) == []
    assert f.check(cur[:99]), "a size below every size since the acknowledgement passed"
    assert f.check(bytes(len(a))), "zeros in the first 100 bytes passed"
    # A new file: empty, a prefix of pages, or its data; never garbage.
    g = Inode("f", 0o644)
    assert g.check(b"") == []
    g.write(0, a)
    assert g.check(b"") == [] and g.check(a) == [] and g.check(a[:2 * PAGE]) == []
    assert g.check(bytes(PAGE) + a[PAGE:]) == []
    assert g.check(rng.randbytes(PAGE)), "garbage in a new file passed"
    # The namespace: hard links, modes, xattrs and symlinks are compared.
    m = Model()
    x = m._new("f", 0o644)
    m.ns["x"] = m.ns["y"] = x.id
    x.xattrs["user.k"] = b"v"
    m.snap()
    ent = {"x": ("f", 7, 0o644, {"user.k": b"v"}, None, 2),
           "y": ("f", 7, 0o644, {"user.k": b"v"}, None, 2)}
    assert m.meta_of(m.snaps[-1]) == canon(ent)
    ent2 = dict(ent, y=("f", 8, 0o644, {"user.k": b"v"}, None, 1))
    assert m.meta_of(m.snaps[-1]) != canon(ent2), "a broken hard link passed"
    ent3 = dict(ent, x=("f", 7, 0o644, {}, None, 2), y=("f", 7, 0o644, {}, None, 2))
    assert m.meta_of(m.snaps[-1]) != canon(ent3), "a lost xattr passed"
    print("crashloop: self-test passed")


def main():
    if sys.argv[1:] == ["--selftest"]:
        selftest()
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--config", help="libconfig file for the daemon (S3 settings)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--cycles", type=int, default=25)
    ap.add_argument("--seconds", type=float, default=1e9, help="stop starting cycles after this")
    ap.add_argument("--workload-seconds", type=float, default=1.5)
    ap.add_argument("--points", default=",".join(DEFAULT_POINTS),
                    help="comma-separated crash points to draw from")
    ap.add_argument("--random-share", type=float, default=0.3,
                    help="share of cycles killed at a random moment instead")
    ap.add_argument("--max-hit", type=int, default=4, help="crash at the 1st..Nth hit of a point")
    ap.add_argument("--drop-cache", type=float, default=0.3,
                    help="share of recoveries with the cache directory deleted")
    ap.add_argument("--barrier-ms", default="200,700,3600000",
                    help="barrier_interval_ms values a mount draws from")
    ap.add_argument("--checkpoint-interval", type=int, default=3)
    ap.add_argument("--max-bytes", type=int, default=12 << 20)
    ap.add_argument("--nbd-port", type=int, required=True)
    ap.add_argument("--extra-opts", default="")
    ap.add_argument("--mount-timeout", type=int, default=60)
    ap.add_argument("--no-gc", action="store_true")
    ap.add_argument("--gc-grace-ms", type=int, default=300,
                    help="the daemon's gc_grace_ms: short, so that a cycle's GC deletes "
                    "(and gc.before_delete / gc.mid_delete are reached)")
    ap.add_argument("--seed", default=None)
    ap.add_argument("--sabotage", action="store_true",
                    help="test of the checker: after each crash, delete the newest index object "
                    "of the (directory) store; the run must then report losses")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.points = [p for p in args.points.split(",") if p]
    args.barrier_ms = [int(v) for v in args.barrier_ms.split(",")]
    if args.seed is None:
        args.seed = str(random.randrange(1 << 32))
    os.makedirs(args.workdir, exist_ok=True)
    os.umask(0)

    # SIGTERM and SIGINT (even when started in the background, where SIGINT
    # comes ignored) stop the loop: the summary is still printed.
    def stop(_sig, _frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    drv = Driver(args)
    try:
        rc = drv.run()
    except Failure as e:
        drv.errors.append("cycle %d: %s" % (drv.cycles, e))
        rc = drv.summary(0)
    sys.exit(rc)


if __name__ == "__main__":
    main()
