#!/usr/bin/env python3
"""Failover timing: how long from a CDN dying to steerd noticing, and to the DNS answer moving.

Starts two fake CDNs (bench/fakecdn.py) and steerd with a failover service
(www.example.com: cdn-a, then cdn-b), each target checked over HTTP. Each round kills cdn-a,
polls `dig` every 50 ms and reads steerd's JSON log, then brings cdn-a back and waits for the
answer to return. Reports per round and medians:

  kill -> first failed check     (depends on where in its interval the check was)
  first failure -> confirmed     (the confirmation burst)
  kill -> confirmed down
  kill -> answer moved           (needs the policy engine; "-" when the answer did not move)
  back -> check passes again, back -> answer returned

Run through bench/failover.sh (which builds steerd first). Environment: ROUNDS (3),
INTERVAL (check interval, s; default 10 = steerd's default), CONFIRM (3), CONFIRM_GAP (0.1),
MOVE_WAIT (s to wait for the answer to move after the confirmation; 5), RETURN_WAIT (s; 30), HEALTH ([health] keys),
STEERD (binary; target/release/steerd), KEEP_TMP=1.
"""
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
INTERVAL = float(os.environ.get("INTERVAL", "10"))
CONFIRM = int(os.environ.get("CONFIRM", "3"))
CONFIRM_GAP = float(os.environ.get("CONFIRM_GAP", "0.1"))
MOVE_WAIT = float(os.environ.get("MOVE_WAIT", "5"))
RETURN_WAIT = float(os.environ.get("RETURN_WAIT", "30"))
STEERD = os.environ.get("STEERD", os.path.join(ROOT, "target/release/steerd"))
EXTRA = os.environ.get("EXTRA_CONFIG", "")
# [health] keys, e.g. "recover_for = 20\navailability_recover_for = 20\nmin_dwell = 5" to measure
# the return within a short run (the defaults hold a recovered CDN back for 10 minutes).
HEALTH = os.environ.get("HEALTH", "")


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


def main():
    if not shutil.which("dig"):
        sys.exit("dig is needed (apt-get install bind9-dnsutils)")
    tmp = tempfile.mkdtemp(prefix="steerd-failover-")
    pa, pb, dns = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    cdn_a, cdn_b = start_cdn(pa, "cdn-a"), start_cdn(pb, "cdn-b")
    cfg = os.path.join(tmp, "failover.toml")
    with open(cfg, "w") as f:
        f.write(f"""
[server]
dns_listen = ["127.0.0.1:{dns}"]
[geo]
database = ""
[probe]
interval = {INTERVAL}
timeout = {min(2.0, INTERVAL / 2)}
confirm = {CONFIRM}
confirm_gap = {CONFIRM_GAP}
{EXTRA}
[health]
{HEALTH}
[[zones]]
name = "example.com"
ns = ["ns1.example.com"]
[zones.soa]
mname = "ns1.example.com"
rname = "hostmaster.example.com"
[[zones.records]]
name = "ns1"
type = "A"
data = "127.0.0.1"
[[targets]]
name = "cdn-a"
a = ["192.0.2.1"]
[targets.check]
url = "http://www.example.com/health"
address = "127.0.0.1:{pa}"
[[targets]]
name = "cdn-b"
a = ["192.0.2.2"]
[targets.check]
url = "http://www.example.com/health"
address = "127.0.0.1:{pb}"
[[services]]
name = "www.example.com"
ttl = 5
policy = "failover"
targets = [{{ target = "cdn-a" }}, {{ target = "cdn-b" }}]
""")
    log = os.path.join(tmp, "steerd.log")
    env = dict(os.environ, RUST_LOG="info,hickory_server=warn")
    steerd = subprocess.Popen(
        [STEERD, "--log-format", "json", "serve", "--config", cfg],
        stderr=open(log, "w"),
        stdout=subprocess.DEVNULL,
        env=env,
    )
    rows = []
    try:
        if not wait_for(lambda: dig(dns), 10):
            sys.exit(f"steerd did not answer; see {log}")
        print(f"steerd {STEERD}: interval {INTERVAL} s, confirm {CONFIRM} x {CONFIRM_GAP} s; "
              f"answer before: {dig(dns)}", flush=True)
        time.sleep(min(INTERVAL, 10) + 0.5)  # every check has run at least once
        for r in range(1, ROUNDS + 1):
            before = dig(dns)
            t_kill = time.time()
            cdn_a.kill()
            cdn_a.wait()
            moved = confirmed = None
            deadline = t_kill + INTERVAL * 1.5 + 5
            while time.time() < deadline:
                if moved is None and dig(dns) != before:
                    moved = time.time()
                if confirmed is None:
                    confirmed = first_event(log, t_kill, "cdn-a", "confirmed down")
                    if confirmed:
                        deadline = min(deadline, confirmed + MOVE_WAIT)
                if moved and confirmed:
                    break
                time.sleep(0.05)
            failed = first_event(log, t_kill, "cdn-a", "check failed")
            # Bring cdn-a back and wait for the answer to return.
            t_back = time.time()
            cdn_a = start_cdn(pa, "cdn-a")
            passes = wait_for(lambda: first_event(log, t_back, "cdn-a", "passes again"), INTERVAL * 1.5 + 5)
            returned = wait_for(lambda: time.time() if dig(dns) == before else None, RETURN_WAIT)
            row = {
                "kill->failed": failed - t_kill if failed else None,
                "failed->confirmed": confirmed - failed if confirmed and failed else None,
                "kill->confirmed": confirmed - t_kill if confirmed else None,
                "kill->answer moved": moved - t_kill if moved else None,
                "back->check ok": passes - t_back if passes else None,
                "back->answer returned": returned - t_back if returned and moved else None,
            }
            rows.append(row)
            print(f"round {r}: " + ", ".join(
                f"{k} {v:.3f} s" if v is not None else f"{k} -" for k, v in row.items()), flush=True)
            time.sleep(1)
        print("\nmedians over", ROUNDS, "rounds:")
        for k in rows[0]:
            vals = [row[k] for row in rows if row[k] is not None]
            med = f"{statistics.median(vals):.3f} s" if vals else "-"
            rng = f" (min {min(vals):.3f}, max {max(vals):.3f})" if vals else ""
            print(f"  {k:24} {med}{rng}  [{len(vals)}/{len(rows)} rounds]")
    finally:
        steerd.terminate()
        steerd.wait()
        for p in (cdn_a, cdn_b):
            p.kill()
        if os.environ.get("KEEP_TMP") == "1":
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
