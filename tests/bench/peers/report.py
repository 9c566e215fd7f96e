#!/usr/bin/env python3
"""report.py FIGURES OUTDIR NOTE: the tables and the chart of bench-peers.sh.

FIGURES holds lines "status SYS TEXT" (ok, or failed: why) and
"fig SYS.METRIC VALUE" (a number, fail or n/a).  Writes OUTDIR/results.txt
(the table), OUTDIR/results.csv (one row per system and figure) and
OUTDIR/results.png (gnuplot: each figure as a ratio to its limit, log
scale).  Every figure gets its ratio to the best peer (s3fs, s3backer,
rclone) and to its limit: the raw S3 ceiling for the sequential figures and
requests per GiB, local ext4 for the rest."""
import csv
import os
import subprocess
import sys

SYSTEMS = ["zerofs", "s3fs", "s3backer", "rclone", "ext4", "fusept", "raw"]
PEERS = ["s3fs", "s3backer", "rclone"]
# metric, label, unit, higher is better, limit system
METRICS = [
    ("seqwrite", "seq write 1M, durable", "MiB/s", True, "raw"),
    ("seqread", "cold seq read 1M", "MiB/s", True, "raw"),
    ("randread_cold", "4k rand read, cold", "IOPS", True, "ext4"),
    ("randread_hot", "4k rand read, hot", "IOPS", True, "ext4"),
    ("randwrite", "4k rand write, fsync/64", "IOPS", True, "ext4"),
    ("create", "create", "ops/s", True, "ext4"),
    ("stat", "stat", "ops/s", True, "ext4"),
    ("readdir", "readdir", "entries/s", True, "ext4"),
    ("unlink", "unlink", "ops/s", True, "ext4"),
    ("untar", "tree: untar", "files/s", True, "ext4"),
    ("cp", "tree: cp -r", "files/s", True, "ext4"),
    ("rm", "tree: rm -r", "files/s", True, "ext4"),
    ("pg_select", "pgbench select-only", "tps", True, "ext4"),
    ("pg_tpcb", "pgbench TPC-B", "tps", True, "ext4"),
    ("req_gib", "S3 requests / GiB written", "req", False, "raw"),
    ("req_10k", "S3 requests / 10k creates", "req", False, None),
]


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def short(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def main():
    figs_path, out, note = sys.argv[1], sys.argv[2], sys.argv[3]
    status, figs = {}, {}
    for line in open(figs_path):
        parts = line.rstrip("\n").split(" ", 2)
        if parts[0] == "status":
            status[parts[1]] = parts[2]
        elif parts[0] == "fig":
            figs[parts[1]] = parts[2]
    systems = [s for s in SYSTEMS if s in status]

    def cell(sys_, metric):
        st = status.get(sys_, "")
        if st != "ok":
            return "FAILED"
        return figs.get(sys_ + "." + metric, "n/a")

    def best_peer(metric, higher):
        vals = [num(cell(p, metric)) for p in PEERS if p in status]
        vals = [v for v in vals if v is not None]
        if not vals:
            return None
        return max(vals) if higher else min(vals)

    def ratio(v, ref):
        if v is None or ref is None or ref == 0:
            return None
        return v / ref

    rows = []
    for metric, label, unit, higher, limsys in METRICS:
        best = best_peer(metric, higher)
        lim = num(cell(limsys, metric)) if limsys in status else None
        rows.append((metric, label, unit, higher, limsys, best, lim))

    # The CSV: one row per system and figure.
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["system", "metric", "unit", "value", "best_peer", "ratio_best_peer",
                    "limit_system", "limit", "ratio_limit", "higher_is_better", "status"])
        for metric, label, unit, higher, limsys, best, lim in rows:
            for s in systems:
                c = cell(s, metric)
                v = num(c)
                w.writerow([s, metric, unit, c, short(best), short(ratio(v, best)),
                            limsys or "", short(lim), short(ratio(v, lim)),
                            "yes" if higher else "no", status[s]])

    # The text table.
    fuse = "fusept" in systems
    head = ["workload", "unit"] + systems + ["best peer", "zerofs/peer", "zerofs/limit"]
    if fuse:
        head.append("zerofs/fusept")
    table = [head]
    for metric, label, unit, higher, limsys, best, lim in rows:
        z = num(cell("zerofs", metric)) if "zerofs" in status else None
        line = [label + ("" if higher else " (lower=better)"), unit]
        line += [cell(s, metric) for s in systems]
        line += [short(best), short(ratio(z, best)),
                 (short(ratio(z, lim)) + " of " + limsys) if ratio(z, lim) is not None else "-"]
        if fuse:
            line.append(short(ratio(z, num(cell("fusept", metric)))))
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    text = []
    text.append("bench-peers: " + note)
    text.append("limit: raw S3 ceiling (s3bench, best of 1/4/8 threads, 8 MiB objects) for the"
                " sequential rows and requests/GiB; local ext4 (loop file) for the rest")
    text.append("best peer: best of s3fs, s3backer, rclone; ratios are figure / reference")
    if fuse:
        text.append("fusept: libfuse's passthrough_ll example over local ext4: what any FUSE"
                    " filesystem reaches on this kernel")
    text.append("")
    for i, r in enumerate(table):
        text.append("  ".join(c.ljust(widths[j]) if j < 2 else c.rjust(widths[j])
                              for j, c in enumerate(r)))
        if i == 0:
            text.append("  ".join("-" * wd for wd in widths))
    text.append("")
    text.append("notes: durable = in the bucket (s3backer's time includes its unmount, rclone's the wait")
    text.append("  for its upload); rclone's and s3backer's fsync stop at their local cache, so their")
    text.append("  random-write IOPS and pgbench TPC-B are not durable; metadata and tree rates are as")
    text.append("  the application sees them (no final sync); requests are counted by radosgw for every")
    text.append("  system alike (perf counter 'req', all request types); fail = the workload failed,")
    text.append("  n/a = not applicable, FAILED = the system did not start")
    for s in systems:
        if status[s] != "ok":
            text.append("%s: %s" % (s, status[s]))
    with open(os.path.join(out, "results.txt"), "w") as f:
        f.write("\n".join(text) + "\n")

    # The chart: ratio of each figure to its limit, per system, log scale.
    chart_sys = [s for s in ["zerofs", "s3fs", "s3backer", "rclone"]
                 if s in systems and status[s] == "ok"]
    if not chart_sys:
        print("report.py: no object-store system ran: no chart", file=sys.stderr)
        return 0
    dat = os.path.join(out, "results.dat")
    bars = 0
    with open(dat, "w") as f:
        f.write("metric " + " ".join(chart_sys) + "\n")
        for metric, label, unit, higher, limsys, best, lim in rows:
            if not higher or lim is None:
                continue
            vals = []
            for s in chart_sys:
                r = ratio(num(cell(s, metric)), lim)
                vals.append("?" if r is None or r <= 0 else "%.4g" % r)
            f.write('"%s" %s\n' % (label, " ".join(vals)))
            bars += 1
    if not bars:
        print("report.py: no limit (raw, ext4) measured: no chart", file=sys.stderr)
        return 0
    gp = os.path.join(out, "results.gp")
    with open(gp, "w") as f:
        f.write("""set terminal pngcairo size 1400,700 noenhanced font ",10"
set output "%s"
set title "zerofs-fuse and its peers on one radosgw: figure / limit (raw S3 for sequential, ext4 for the rest)"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [0.0001:*]
set grid ytics
set ylabel "ratio to the limit (log)"
set xtics rotate by -35
set key top right
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2
plot for [i=2:%d] "%s" using i:xtic(1) title columnheader(i)
""" % (os.path.join(out, "results.png"), len(chart_sys) + 1, dat))
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if r.returncode != 0:
        print("report.py: gnuplot failed: " + r.stderr, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
