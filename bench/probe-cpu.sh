#!/usr/bin/env bash
# Prober CPU cost: steerd probing N targets (default 1,000) every INTERVAL seconds (default 10),
# against local fake CDNs (bench/fakecdn.py), plain HTTP and HTTPS (a throwaway CA made with
# openssl). Reports the CPU seconds steerd used per second of wall time (1.0 = one core), from
# /proc/PID/stat, over DURATION seconds after one interval of warm-up, plus the checks it ran.
#
# Usage: bench/probe-cpu.sh [--no-build]
#   TARGETS=1000 INTERVAL=10 DURATION=60 MODES="http https" bench/probe-cpu.sh
set -euo pipefail
TARGETS=${TARGETS:-1000}
INTERVAL=${INTERVAL:-10}
DURATION=${DURATION:-60}
MODES=${MODES:-"http https"}
STEERD=${STEERD:-target/release/steerd}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"
bench_start openssl

# A CA and a leaf for www.example.com (ECDSA P-256, as most CDNs serve).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=steerd bench CA" -keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=www.example.com" -keyout "$TMP/leaf.key" -out "$TMP/leaf.csr" 2>/dev/null
printf "subjectAltName=DNS:www.example.com\n" > "$TMP/ext"
openssl x509 -req -in "$TMP/leaf.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
  -days 2 -extfile "$TMP/ext" -out "$TMP/leaf.pem" 2>/dev/null

ticks=$(getconf CLK_TCK)

echo "steerd prober: $TARGETS targets every $INTERVAL s, measured over $DURATION s ($(nproc) cores)"
printf "%-6s %14s %12s %14s %s\n" mode "CPU (cores)" "checks/s" "CPU/check" "failures"
for mode in $MODES; do
  port=$(free_port)
  if [[ $mode == https ]]; then
    python3 bench/fakecdn.py --port "$port" --cert "$TMP/leaf.pem" --key "$TMP/leaf.key" >/dev/null &
  else
    python3 bench/fakecdn.py --port "$port" >/dev/null &
  fi
  cdn=$!
  PIDS+=("$cdn")
  sleep 0.5
  dns=$(free_port)
  cfg="$TMP/$mode.toml"
  python3 - "$cfg" "$mode" "$port" "$dns" "$TARGETS" "$INTERVAL" "$TMP/ca.pem" "$(base_toml)" <<'EOF'
import sys
cfg, mode, port, dns, n, interval, ca, base = sys.argv[1:]
out = [f'''[server]
dns_listen = ["127.0.0.1:{dns}"]
udp_sockets = 1
[probe]
interval = {interval}
concurrency = 64
ca_file = "{ca}"
''', base]
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
  RUST_LOG=warn "$STEERD" serve --config "$cfg" 2>"$TMP/$mode.log" &
  sd=$!
  PIDS+=("$sd")
  sleep "$INTERVAL"
  if ! kill -0 "$sd" 2>/dev/null; then echo "steerd exited:" >&2; cat "$TMP/$mode.log" >&2; exit 1; fi
  c0=$(cpu_ticks "$sd"); t0=$(date +%s.%N)
  sleep "$DURATION"
  c1=$(cpu_ticks "$sd"); t1=$(date +%s.%N)
  fails=$(grep -c "check failed" "$TMP/$mode.log" || true)
  stop "$sd" "$cdn"
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
