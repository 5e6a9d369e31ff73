#!/usr/bin/env bash
# Reflection through steerd: one (spoofable) source floods a ~1,150-byte TXT answer over UDP
# for DURATION seconds (bench/udpflood.py), once with response rate limiting off and once
# with [server.rrl] on (RATE responses per second, SLIP); prints bytes in / out and the
# amplification of each run, and steerd's steerd_rrl_* counters.
#
# Usage: bench/rrl.sh [--no-build]      DURATION=10 RATE=20 SLIP=2 QPS=0 bench/rrl.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
RATE=${RATE:-20}
SLIP=${SLIP:-2}
QPS=${QPS:-0}
STEERD=${STEERD:-target/release/steerd}
[[ "${1:-}" == "--no-build" ]] || cargo build --release --locked --quiet
tmp=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Five TXT strings of 208 bytes: a 1,149-byte answer to a 44-byte query.
txt=$(python3 -c 'print(", ".join("\"" + c * 208 + "\"" for c in "abcde"))')
run() { # $1 = label, $2 = extra [server.rrl] TOML
  local dns admin
  dns=$(free_port); admin=$(free_port)
  cat > "$tmp/rrl.toml" <<TOML
[server]
dns_listen = ["127.0.0.1:$dns"]
admin_listen = "127.0.0.1:$admin"
$2
[geo]
database = ""
[[zones]]
name = "example.com"
ns = ["ns1.example.com"]
[zones.soa]
mname = "ns1.example.com"
rname = "hostmaster.example.com"
[[zones.records]]
name = "big"
type = "TXT"
data = [$txt]
TOML
  "$STEERD" serve --config "$tmp/rrl.toml" 2>"$tmp/steerd-$1.log" & pids+=($!)
  for _ in $(seq 50); do
    dig @127.0.0.1 -p "$dns" big.example.com TXT +tries=1 +time=1 >/dev/null 2>&1 && break
    sleep 0.1
  done
  local size
  size=$(dig @127.0.0.1 -p "$dns" big.example.com TXT +bufsize=1232 +nocookie +tries=1 +time=1 | sed -n 's/.*MSG SIZE  rcvd: //p')
  echo "== $1 (answer: $size bytes)"
  python3 bench/udpflood.py --port "$dns" --duration "$DURATION" --qps "$QPS"
  curl -s "http://127.0.0.1:$admin/metrics" | grep -E '^steerd_rrl_(dropped|slipped)_total' || true
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
}
run off ""
run on "[server.rrl]
responses_per_second = $RATE
slip = $SLIP"
