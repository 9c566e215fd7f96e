#!/usr/bin/env python3
"""rgwreq.py ASOK: the request counters of a running radosgw, read from its
admin socket (the 'perf dump' command), printed as "REQ GET PUT": every S3
request served so far, the object GETs and the object PUTs.  The benchmark
takes differences of these around a workload to count what a system asked of
the object store."""
import json
import socket
import struct
import sys


def perf_dump(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(json.dumps({"prefix": "perf dump"}).encode() + b"\0")
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            raise OSError("admin socket closed early")
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise OSError("admin socket closed early")
        body += chunk
    s.close()
    return json.loads(body)


def main():
    if len(sys.argv) != 2:
        print("usage: rgwreq.py ASOK", file=sys.stderr)
        return 2
    rgw = perf_dump(sys.argv[1])["rgw"]
    print(rgw["req"], rgw["get"], rgw["put"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
