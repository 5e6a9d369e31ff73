#!/usr/bin/env bash
# Reflection through steerd: one (spoofable) source floods a ~1,150-byte TXT answer over UDP
# for DURATION seconds (bench/udpflood.py), once with response rate limiting off and once
# with [server.rrl] on (RATE responses per second, SLIP); prints bytes in / out and the
# amplification of each run, and steerd's steerd_rrl_* counters.
#
# Usage: bench/rrl.sh [--no-build]      DURATION=10 RATE=20 SLIP=2 QPS=0 bench/rrl.sh
set -euo pipefail
DURATION=${DURATION:-10}
RATE=${RATE:-20}
SLIP=${SLIP:-2}
QPS=${QPS:-0}
STEERD=${STEERD:-target/release/steerd}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"
bench_start dig curl

# Five TXT strings of 208 bytes: a 1,149-byte answer to a 44-byte query.
txt=$(python3 -c 'print(", ".join("\"" + c * 208 + "\"" for c in "abcde"))')
run() { # $1 = label, $2 = extra [server.rrl] TOML
  local dns admin
  dns=$(free_port); admin=$(free_port)
  cat > "$TMP/rrl.toml" <<TOML
$(listen_toml "$dns" "$admin")
$2
$(base_toml)
[[zones.records]]
name = "big"
type = "TXT"
data = [$txt]
TOML
  "$STEERD" serve --config "$TMP/rrl.toml" 2>"$TMP/steerd-$1.log" & PIDS+=("$!")
  wait_dns steerd "$dns" "${PIDS[-1]}" "$TMP/steerd-$1.log" big.example.com TXT
  local size
  size=$(dig @127.0.0.1 -p "$dns" big.example.com TXT +bufsize=1232 +nocookie +tries=1 +time=1 | sed -n 's/.*MSG SIZE  rcvd: //p')
  echo "== $1 (answer: $size bytes)"
  python3 bench/udpflood.py --port "$dns" --duration "$DURATION" --qps "$QPS"
  curl -s "http://127.0.0.1:$admin/metrics" | grep -E '^steerd_rrl_(dropped|slipped)_total' || true
  stop "${PIDS[-1]}"
}
run off ""
run on "[server.rrl]
responses_per_second = $RATE
slip = $SLIP"
