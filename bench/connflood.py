#!/usr/bin/env python3
"""A TCP connection flood: --count connections to --port from --sources loopback addresses
(127.1.x.y), each idle (nothing sent) or, for the --half fraction, half a DNS message (a
length prefix of 40 then 10 bytes) or half an HTTP request head (--http). Every connection the
server closes is opened again at once, for --duration seconds. Prints how many were opened
and how many the server closed. Used by connflood.sh."""
import argparse
import errno
import select
import socket
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--sources", type=int, default=1000)
    p.add_argument("--source-base", default="127.1.0.0")
    p.add_argument("--half", type=float, default=0.5)
    p.add_argument("--http", action="store_true")
    p.add_argument("--duration", type=float, default=30)
    a = p.parse_args()
    base = int.from_bytes(socket.inet_aton(a.source_base), "big")
    partial = b"GET / HTTP/1.1\r\nHost: x\r\n" if a.http else b"\x00\x28" + b"\0" * 10
    ep = select.epoll()
    socks = {}
    opened = closed = failed = 0

    def open_one(i):
        nonlocal opened, failed
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        src = socket.inet_ntoa((base + 1 + i % a.sources).to_bytes(4, "big"))
        try:
            s.bind((src, 0))
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", a.port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, "connect")
        except OSError:
            s.close()
            failed += 1
            return
        socks[s.fileno()] = (s, i)
        ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP)
        opened += 1

    for i in range(a.count):
        open_one(i)
    sent = set()
    end = time.monotonic() + a.duration
    while time.monotonic() < end:
        for fd, ev in ep.poll(0.2):
            s, i = socks[fd]
            if ev & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
                ep.unregister(fd)
                del socks[fd]
                sent.discard(fd)
                s.close()
                closed += 1
                open_one(i)
            elif ev & select.EPOLLOUT:
                ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                if i < a.count * a.half:
                    try:
                        s.send(partial)
                    except OSError:
                        pass
    print(f"opened={opened} closed_by_server={closed} connect_failed={failed} open_at_end={len(socks)}")


if __name__ == "__main__":
    main()
