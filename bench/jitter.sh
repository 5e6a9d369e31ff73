#!/usr/bin/env bash
# Flap test: a CDN whose error rate jitters around 3-4 % (each request fails with probability
# drawn anew every minute between 3 % and 4 %) must cause 0 failovers over DURATION seconds
# (default 600). Checks run every INTERVAL seconds (default 1: 600 checks, ~21 failures, so the
# error-rate rule has data; the default 10 s interval would see only ~2 failures). Every other
# setting is steerd's default. Counts health transitions in the log and answer changes seen by
# dig every second.
#
# Usage: bench/jitter.sh [--no-build]      DURATION=600 INTERVAL=1 bench/jitter.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-1}
STEERD=${STEERD:-target/release/steerd}
[[ "${1:-}" == "--no-build" ]] || cargo build --release --locked --quiet
tmp=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pa=$(free_port); pb=$(free_port); dns=$(free_port); admin=$(free_port)
# cdn-a: a new error rate in [3 %, 4 %] every minute.
python3 bench/fakecdn.py --port "$pa" --name cdn-a --error-rate-range 0.03 0.04 >/dev/null 2>"$tmp/rates" & pids+=($!)
python3 bench/fakecdn.py --port "$pb" --name cdn-b >/dev/null 2>&1 & pids+=($!)
cat > "$tmp/jitter.toml" <<TOML
[server]
dns_listen = ["127.0.0.1:$dns"]
admin_listen = "127.0.0.1:$admin"
[geo]
database = ""
[probe]
interval = $INTERVAL
[[zones]]
name = "example.com"
ns = ["ns1.example.com"]
[zones.soa]
mname = "ns1.example.com"
rname = "hostmaster.example.com"
[[targets]]
name = "cdn-a"
a = ["192.0.2.1"]
[targets.check]
url = "http://www.example.com/health"
address = "127.0.0.1:$pa"
[[targets]]
name = "cdn-b"
a = ["192.0.2.2"]
[targets.check]
url = "http://www.example.com/health"
address = "127.0.0.1:$pb"
[[services]]
name = "www.example.com"
policy = "failover"
targets = [{ target = "cdn-a" }, { target = "cdn-b" }]
TOML
"$STEERD" --log-format json serve --config "$tmp/jitter.toml" 2>"$tmp/steerd.log" & pids+=($!)
sleep 2
if ! kill -0 "${pids[-1]}" 2>/dev/null || [[ -z $(dig @127.0.0.1 -p "$dns" www.example.com +short +tries=1 +time=1) ]]; then
  echo "steerd did not start:" >&2; tail -5 "$tmp/steerd.log" >&2; exit 1
fi
changes=0; prev=""
end=$(( $(date +%s) + DURATION ))
while [[ $(date +%s) -lt $end ]]; do
  cur=$(dig @127.0.0.1 -p "$dns" www.example.com +short +tries=1 +time=1 | head -1)
  if [[ -n "$prev" && "$cur" != "$prev" ]]; then changes=$((changes + 1)); fi
  prev=$cur
  sleep 1
done
checks_failed=$(grep -c '"check failed' "$tmp/steerd.log" || true)
confirmed=$(grep -c '"confirmed down' "$tmp/steerd.log" || true)
transitions=$(grep -c '"message":"health: ' "$tmp/steerd.log" || true)
grep '"message":"health: ' "$tmp/steerd.log" | head -5 || true
echo "jitter run: ${DURATION} s, checks every ${INTERVAL} s, cdn-a error rate per minute: $(awk '{print $3}' "$tmp/rates" | paste -sd' ')"
echo "failed checks (first failures) logged: $checks_failed"
echo "failures confirmed down by the prober: $confirmed"
echo "health transitions: $transitions"
echo "answer changes seen by dig (1/s): $changes"
