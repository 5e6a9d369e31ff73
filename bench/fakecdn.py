#!/usr/bin/env python3
"""A stand-in CDN edge for benchmarks and the README walk-through.

Serves every path with 200 "ok <name>\n" and CDN-style cache headers (X-Cache: HIT,
Age, X-Served-By), over HTTP or, with --cert/--key, HTTPS. Threaded; standard library only.
It is also a self-run edge to purge (steerd's `provider = "http"`): `PURGE <path>` and `BAN`
(keys in the `xkey` header) answer 200 and print what they dropped; the next GET of a purged
path answers `X-Cache: MISS`.

  python3 bench/fakecdn.py --port 8081 --name cdn-a
  python3 bench/fakecdn.py --port 8443 --cert leaf.pem --key leaf.key
"""
import argparse
import http.server
import random
import ssl
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="edge")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--error-rate", type=float, default=0.0,
                    help="answer this fraction of requests (at random) with 503")
    ap.add_argument("--error-rate-range", type=float, nargs=2, metavar=("LO", "HI"),
                    help="draw a new error rate between LO and HI every minute (logged to stderr)")
    args = ap.parse_args()
    body = f"ok {args.name}\n".encode()
    state = {"rate": args.error_rate, "minute": None}

    def error_rate():
        if not args.error_rate_range:
            return state["rate"]
        minute = int(time.time() // 60)
        if minute != state["minute"]:
            state["minute"] = minute
            state["rate"] = random.uniform(*args.error_rate_range)
            print(f"{time.time():.0f} rate {state['rate']:.4f}", file=sys.stderr, flush=True)
        return state["rate"]

    purged = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _purged(self, what):
            out = f'{{"status": "ok", "purged": "{what}"}}\n'.encode()
            print(f"{time.time():.0f} {self.command} {what}", flush=True)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_PURGE(self):
            host = self.headers.get("Host", "")
            purged.add(self.path)
            self._purged(host + self.path)

        def do_BAN(self):
            self._purged("keys " + self.headers.get("xkey", ""))

        def _head(self):
            rate = error_rate()
            fail = rate > 0 and random.random() < rate
            self.send_response(503 if fail else args.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            miss = self.path in purged
            purged.discard(self.path)
            self.send_header("X-Cache", "MISS" if miss else "HIT")
            self.send_header("Age", "0" if miss else "60")
            self.send_header("X-Served-By", f"cache-{args.name}")
            self.end_headers()

        def do_HEAD(self):
            self._head()

        def do_GET(self):
            self._head()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer((args.bind, args.port), Handler)
    srv.daemon_threads = True
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(f"fakecdn {args.name} on {args.bind}:{args.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
