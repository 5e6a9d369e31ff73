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
DURATION=${DURATION:-600}
INTERVAL=${INTERVAL:-1}
STEERD=${STEERD:-target/release/steerd}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"
bench_start dig
pa=$(free_port); pb=$(free_port); dns=$(free_port); admin=$(free_port)
# cdn-a: a new error rate in [3 %, 4 %] every minute.
python3 bench/fakecdn.py --port "$pa" --name cdn-a --error-rate-range 0.03 0.04 >/dev/null 2>"$TMP/rates" & PIDS+=("$!")
python3 bench/fakecdn.py --port "$pb" --name cdn-b >/dev/null 2>&1 & PIDS+=("$!")
cat > "$TMP/jitter.toml" <<TOML
$(listen_toml "$dns" "$admin")
[probe]
interval = $INTERVAL
$(base_toml)
$(checked_target cdn-a 192.0.2.1 "$pa")
$(checked_target cdn-b 192.0.2.2 "$pb")
[[services]]
name = "www.example.com"
policy = "failover"
targets = [{ target = "cdn-a" }, { target = "cdn-b" }]
TOML
"$STEERD" --log-format json serve --config "$TMP/jitter.toml" 2>"$TMP/steerd.log" & PIDS+=("$!")
wait_dns steerd "$dns" "${PIDS[-1]}" "$TMP/steerd.log" www.example.com
changes=0; prev=""
end=$(( $(date +%s) + DURATION ))
while [[ $(date +%s) -lt $end ]]; do
  cur=$(dig @127.0.0.1 -p "$dns" www.example.com +short +tries=1 +time=1 | head -1)
  if [[ -n "$prev" && "$cur" != "$prev" ]]; then changes=$((changes + 1)); fi
  prev=$cur
  sleep 1
done
checks_failed=$(grep -c '"check failed' "$TMP/steerd.log" || true)
confirmed=$(grep -c '"confirmed down' "$TMP/steerd.log" || true)
transitions=$(grep -c '"message":"health: ' "$TMP/steerd.log" || true)
grep '"message":"health: ' "$TMP/steerd.log" | head -5 || true
echo "jitter run: ${DURATION} s, checks every ${INTERVAL} s, cdn-a error rate per minute: $(awk '{print $3}' "$TMP/rates" | paste -sd' ')"
echo "failed checks (first failures) logged: $checks_failed"
echo "failures confirmed down by the prober: $confirmed"
echo "health transitions: $transitions"
echo "answer changes seen by dig (1/s): $changes"
