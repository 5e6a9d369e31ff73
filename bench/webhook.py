#!/usr/bin/env python3
"""A local alert receiver for the demo: prints every JSON body POSTed to it.

    python3 bench/webhook.py --port 9099            # answers 200
    python3 bench/webhook.py --port 9099 --fail 2   # answers 500 to the first 2 requests

Point a sink at it ([[alerts.sinks]] kind = "webhook", url = "http://127.0.0.1:9099/hook";
the demo config/steerd.toml does).
"""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=9099)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--fail", type=int, default=0, help="answer 500 to the first N requests")
    args = ap.parse_args()
    state = {"left": args.fail}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            if state["left"] > 0:
                state["left"] -= 1
                self.send_response(500)
                self.end_headers()
                print(f"-> 500 (failing on purpose, {state['left']} more)", flush=True)
                return
            try:
                shown = json.dumps(json.loads(body), indent=2)
            except ValueError:
                shown = body.decode("utf-8", "replace")
            print(f"POST {self.path}\n{shown}", flush=True)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok":true}')

        def log_message(self, *a):
            pass

    print(f"webhook receiver on http://{args.bind}:{args.port}/", file=sys.stderr, flush=True)
    ThreadingHTTPServer((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
