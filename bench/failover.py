#!/usr/bin/env python3
"""Failover timing: how long from a CDN failing to steerd noticing, and to the DNS answer moving.

Two ways for an edge to fail, measured in turn (MODES, default "dead hung"):

  dead   the edge process is killed (SIGKILL): its connections close, new ones are refused.
  hung   the edge process is stopped (SIGSTOP): connections stay open and new ones are even
         accepted by the kernel, but nothing answers. Restored with SIGCONT.

Each round starts two fake CDNs (bench/fakecdn.py) and a fresh steerd with a failover service
(www.example.com: cdn-a, then cdn-b), each target checked over HTTP with steerd's default probe
settings, waits for the checks to settle plus a random part of an interval (so the failure lands
anywhere in the check schedule), fails cdn-a, polls `dig` every 50 ms and reads steerd's JSON
log, then restores cdn-a. A fresh steerd per round keeps the rounds independent (no health
history from the round before). Reports per round, and medians per mode:

  fail -> first failed check     (the first failure steerd logs)
  first failure -> confirmed     (the confirmation burst)
  fail -> confirmed down
  fail -> answer moved           ("-" when the answer did not move)
  back -> check ok               (cdn-a restored -> steerd logs a passing check)

Run through bench/failover.sh (which builds steerd first). Environment: ROUNDS (per mode, 5),
MODES ("dead hung"), SETTLE (s after the first checks before the random wait; 3),
MOVE_WAIT (s to wait for the answer to move after the confirmation; 5), PROBE (extra [probe]
keys, e.g. "watch = false"; the defaults otherwise), HEALTH ([health] keys),
STEERD (binary; target/release/steerd), KEEP_TMP=1.
"""
import datetime
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
MODES = os.environ.get("MODES", "dead hung").split()
SETTLE = float(os.environ.get("SETTLE", "3"))
MOVE_WAIT = float(os.environ.get("MOVE_WAIT", "5"))
STEERD = os.environ.get("STEERD", os.path.join(ROOT, "target/release/steerd"))
PROBE = os.environ.get("PROBE", os.environ.get("EXTRA_CONFIG", ""))
HEALTH = os.environ.get("HEALTH", "")
# The default check interval (docs/config.md): where in it the failure lands is drawn at random.
INTERVAL = 10.0


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_cdn(port, name):
    p = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bench/fakecdn.py"), "--port", str(port), "--name", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    p.stdout.readline()  # "fakecdn ... on ..." once listening
    return p


def dig(port):
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+short", "+tries=1", "+time=1", "www.example.com", "A"],
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    answers = [line for line in out if line and not line.startswith(";")]
    return answers[0] if answers else ""


def log_events(path):
    """(unix time, message, target) of every JSON log line."""
    events = []
    with open(path) as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            ts = datetime.datetime.fromisoformat(j["timestamp"].replace("Z", "+00:00")).timestamp()
            fields = j.get("fields", {})
            events.append((ts, fields.get("message", ""), fields.get("target_name", "")))
    return events


def first_event(path, after, target, needle):
    for ts, msg, tgt in log_events(path):
        if ts >= after and tgt == target and needle in msg:
            return ts
    return None


def wait_for(pred, timeout, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


# What every bench configuration holds (as bench/lib.sh base_toml): no GeoIP database, the zone.
with open(os.path.join(ROOT, "bench/configs/base.toml")) as f:
    BASE = f.read()

def checked_target(name, address, port):
    """A target answering `address`, checked over HTTP through the fake CDN on `port` (as
    bench/lib.sh checked_target)."""
    return (f'[[targets]]\nname = "{name}"\na = ["{address}"]\n[targets.check]\n'
            f'url = "http://www.example.com/health"\naddress = "127.0.0.1:{port}"')


CONFIG = """
[server]
dns_listen = ["127.0.0.1:{dns}"]
admin_listen = "127.0.0.1:{admin}"
[probe]
{probe}
[health]
{health}
{base}
[[zones.records]]
name = "ns1"
type = "A"
data = "127.0.0.1"
{cdn_a}
{cdn_b}
[[services]]
name = "www.example.com"
ttl = 5
policy = "failover"
targets = [{{ target = "cdn-a" }}, {{ target = "cdn-b" }}]
"""


def start(mode, tmp, r):
    """Fake CDNs and steerd on fresh ports; retried when a port picked turns out to be taken."""
    for attempt in range(3):
        pa, pb, dns = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
        cdn_a, cdn_b = start_cdn(pa, "cdn-a"), start_cdn(pb, "cdn-b")
        cfg = os.path.join(tmp, f"{mode}-{r}.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(dns=dns, admin=free_port(), probe=PROBE, health=HEALTH,
                                  base=BASE, cdn_a=checked_target("cdn-a", "192.0.2.1", pa),
                                  cdn_b=checked_target("cdn-b", "192.0.2.2", pb)))
        log = os.path.join(tmp, f"{mode}-{r}.log")
        env = dict(os.environ, RUST_LOG="info,hickory_server=warn")
        steerd = subprocess.Popen(
            [STEERD, "--log-format", "json", "serve", "--config", cfg],
            stderr=open(log, "w"),
            stdout=subprocess.DEVNULL,
            env=env,
        )
        if wait_for(lambda: dig(dns) or steerd.poll() is not None, 10) and steerd.poll() is None:
            return pa, dns, cdn_a, cdn_b, steerd, log
        steerd.kill()
        steerd.wait()
        for p in (cdn_a, cdn_b):
            p.kill()
            p.wait()
        with open(log) as f:
            print(f"{mode} round {r}: steerd did not start (attempt {attempt + 1}): "
                  f"{f.read()[-400:]}", file=sys.stderr, flush=True)
    sys.exit("steerd did not start")


def one_round(mode, tmp, r):
    pa, dns, cdn_a, cdn_b, steerd, log = start(mode, tmp, r)
    try:
        before = dig(dns)
        # Every check has run (a lone new target is checked within about a second), then the
        # failure lands at a random point of the check interval.
        time.sleep(SETTLE + random.uniform(0, INTERVAL))
        if dig(dns) != before:
            sys.exit(f"the answer moved before the failure; see {log}")
        t_fail = time.time()
        if mode == "dead":
            cdn_a.kill()
            cdn_a.wait()
        else:
            cdn_a.send_signal(signal.SIGSTOP)
        moved = confirmed = None
        deadline = t_fail + 2 * INTERVAL + 15
        while time.time() < deadline:
            if moved is None and dig(dns) != before:
                moved = time.time()
            if confirmed is None:
                confirmed = first_event(log, t_fail, "cdn-a", "confirmed down")
                if confirmed:
                    deadline = min(deadline, confirmed + MOVE_WAIT)
            if moved and confirmed:
                break
            time.sleep(0.05)
        failed = first_event(log, t_fail, "cdn-a", "check failed")
        t_back = time.time()
        if mode == "dead":
            cdn_a = start_cdn(pa, "cdn-a")
        else:
            cdn_a.send_signal(signal.SIGCONT)
        passes = wait_for(lambda: first_event(log, t_back, "cdn-a", "passes again"), 2 * INTERVAL + 5)
        return {
            "fail->failed": failed - t_fail if failed else None,
            "failed->confirmed": confirmed - failed if confirmed and failed else None,
            "fail->confirmed": confirmed - t_fail if confirmed else None,
            "fail->answer moved": moved - t_fail if moved else None,
            "back->check ok": passes - t_back if passes else None,
        }
    finally:
        steerd.terminate()
        steerd.wait()
        for p in (cdn_a, cdn_b):
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()


def main():
    if not shutil.which("dig"):
        sys.exit("dig is needed (apt-get install bind9-dnsutils)")
    tmp = tempfile.mkdtemp(prefix="steerd-failover-")
    probe = PROBE.replace("\n", "; ") or "defaults"
    print(f"steerd {STEERD}: [probe] {probe}; {ROUNDS} rounds per mode", flush=True)
    results = {}
    try:
        for mode in MODES:
            rows = results.setdefault(mode, [])
            for r in range(1, ROUNDS + 1):
                row = one_round(mode, tmp, r)
                rows.append(row)
                print(f"{mode} round {r}: " + ", ".join(
                    f"{k} {v:.3f} s" if v is not None else f"{k} -" for k, v in row.items()), flush=True)
        for mode, rows in results.items():
            print(f"\n{mode} edge: medians over {len(rows)} rounds:")
            for k in rows[0]:
                vals = [row[k] for row in rows if row[k] is not None]
                med = f"{statistics.median(vals):.3f} s" if vals else "-"
                rng = f" (min {min(vals):.3f}, max {max(vals):.3f})" if vals else ""
                print(f"  {k:24} {med}{rng}  [{len(vals)}/{len(rows)} rounds]")
    finally:
        if os.environ.get("KEEP_TMP") == "1":
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
