#!/usr/bin/env python3
"""One spoofable source flooding one UDP query (the reflection case): sends the same query
from one socket as fast as it can (or at --qps) for --duration seconds, receives what comes
back, and prints bytes in/out, the amplification and the kinds of answers. Used by rrl.sh."""
import argparse
import socket
import struct
import threading
import time


def query(qid, name, qtype, cookie=None):
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 1)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    opts = b""
    if cookie:
        opts = struct.pack(">HH", 10, len(cookie)) + cookie
    # OPT: root, type 41, payload 1232, ext rcode 0, version 0, flags 0, rdlen.
    q += b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(opts)) + opts
    return q


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", default="big.example.com")
    p.add_argument("--qtype", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--qps", type=float, default=0, help="0 = as fast as possible")
    a = p.parse_args()

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.connect((a.server, a.port))
    stats = {"answers": 0, "bytes_out": 0, "full": 0, "tc": 0, "other": 0}
    done = threading.Event()

    def receive():
        s.settimeout(0.2)
        while True:
            try:
                r = s.recv(65535)
            except socket.timeout:
                if done.is_set():
                    return
                continue
            stats["answers"] += 1
            stats["bytes_out"] += len(r)
            flags, an = struct.unpack(">H", r[2:4])[0], struct.unpack(">H", r[6:8])[0]
            if flags & 0x0200:
                stats["tc"] += 1
            elif an > 0:
                stats["full"] += 1
            else:
                stats["other"] += 1

    t = threading.Thread(target=receive)
    t.start()
    sent = bytes_in = 0
    start = time.monotonic()
    end = start + a.duration
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if a.qps and sent >= (now - start) * a.qps:
            time.sleep(0.0005)
            continue
        q = query(sent & 0xFFFF, a.name, a.qtype)
        try:
            s.send(q)
        except (BlockingIOError, ConnectionRefusedError):
            continue
        sent += 1
        bytes_in += len(q)
    elapsed = time.monotonic() - start
    time.sleep(1.0)
    done.set()
    t.join()
    amp = stats["bytes_out"] / bytes_in if bytes_in else 0
    print(
        f"sent={sent} qps={sent / elapsed:.0f} answers={stats['answers']} full={stats['full']} "
        f"tc={stats['tc']} other={stats['other']} bytes_in={bytes_in} "
        f"bytes_out={stats['bytes_out']} amplification={amp:.2f} "
        f"out_MBps={stats['bytes_out'] / elapsed / 1e6:.2f}"
    )


if __name__ == "__main__":
    main()
