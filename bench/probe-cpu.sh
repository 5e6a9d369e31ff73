#!/usr/bin/env bash
# Prober CPU cost: steerd probing N targets (default 1,000) every INTERVAL seconds (default 10),
# against local fake CDNs (bench/fakecdn.py), plain HTTP and HTTPS (a throwaway CA made with
# openssl). Reports the CPU seconds steerd used per second of wall time (1.0 = one core), from
# /proc/PID/stat, over DURATION seconds after one interval of warm-up, plus the checks it ran.
#
# Usage: bench/probe-cpu.sh [--no-build]
#   TARGETS=1000 INTERVAL=10 DURATION=60 MODES="http https" bench/probe-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=${TARGETS:-1000}
INTERVAL=${INTERVAL:-10}
DURATION=${DURATION:-60}
MODES=${MODES:-"http https"}
STEERD=${STEERD:-target/release/steerd}
if [[ "${1:-}" != "--no-build" ]]; then
  cargo build --release --locked --quiet
fi
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A CA and a leaf for www.example.com (ECDSA P-256, as most CDNs serve).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=steerd bench CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=www.example.com" -keyout "$tmp/leaf.key" -out "$tmp/leaf.csr" 2>/dev/null
printf "subjectAltName=DNS:www.example.com\n" > "$tmp/ext"
openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
  -days 2 -extfile "$tmp/ext" -out "$tmp/leaf.pem" 2>/dev/null

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "steerd prober: $TARGETS targets every $INTERVAL s, measured over $DURATION s ($(nproc) cores)"
printf "%-6s %14s %12s %14s %s\n" mode "CPU (cores)" "checks/s" "CPU/check" "failures"
for mode in $MODES; do
  port=$(free_port)
  if [[ $mode == https ]]; then
    python3 bench/fakecdn.py --port "$port" --cert "$tmp/leaf.pem" --key "$tmp/leaf.key" >/dev/null &
  else
    python3 bench/fakecdn.py --port "$port" >/dev/null &
  fi
  cdn=$!
  pids+=("$cdn")
  sleep 0.5
  dns=$(free_port)
  cfg="$tmp/$mode.toml"
  python3 - "$cfg" "$mode" "$port" "$dns" "$TARGETS" "$INTERVAL" "$tmp/ca.pem" <<'EOF'
import sys
cfg, mode, port, dns, n, interval, ca = sys.argv[1:]
out = [f'''[server]
dns_listen = ["127.0.0.1:{dns}"]
udp_sockets = 1
[geo]
database = ""
[probe]
interval = {interval}
concurrency = 64
ca_file = "{ca}"
[[zones]]
name = "example.com"
ns = ["ns1.example.com"]
[zones.soa]
mname = "ns1.example.com"
rname = "hostmaster.example.com"
''']
for i in range(int(n)):
    out.append(f'''[[targets]]
name = "t{i}"
a = ["192.0.2.1"]
[targets.check]
url = "{mode}://www.example.com/health"
address = "127.0.0.1:{port}"
[targets.check.content]
contains = "ok"
[targets.check.cache]
''')
open(cfg, "w").write("\n".join(out))
EOF
  RUST_LOG=warn "$STEERD" serve --config "$cfg" 2>"$tmp/$mode.log" &
  sd=$!
  pids+=("$sd")
  sleep "$INTERVAL"
  if ! kill -0 "$sd" 2>/dev/null; then echo "steerd exited:" >&2; cat "$tmp/$mode.log" >&2; exit 1; fi
  c0=$(cpu_ticks "$sd"); t0=$(date +%s.%N)
  sleep "$DURATION"
  c1=$(cpu_ticks "$sd"); t1=$(date +%s.%N)
  fails=$(grep -c "check failed" "$tmp/$mode.log" || true)
  kill "$sd" "$cdn"; wait "$sd" "$cdn" 2>/dev/null || true
  python3 - "$c0" "$c1" "$t0" "$t1" "$ticks" "$TARGETS" "$INTERVAL" "$mode" "$fails" <<'EOF'
import sys
c0, c1, t0, t1, ticks, n, interval = map(float, sys.argv[1:8])
mode, fails = sys.argv[8], sys.argv[9]
cpu = (c1 - c0) / ticks
wall = t1 - t0
rate = n / interval
print(f"{mode:6} {cpu / wall:14.4f} {rate:12.0f} {cpu / wall / rate * 1e6:11.0f} µs {fails}")
EOF
done
