#!/usr/bin/env bash
# TCP connection flood against the release binary: 2 × DNS_CONNS/2 idle or half-sent
# connections to the DNS port and ADMIN_CONNS to the admin port (bench/connflood.py, from
# 1,000 loopback addresses each, every closed connection reopened at once) for DURATION
# seconds, with steerd under RLIMIT_NOFILE=NOFILE and probing a stand-in CDN every second.
# Every 2 s: a TCP DNS query (dig +tcp), an admin request (curl), steerd's RSS and open
# descriptors. After: RSS, the steerd_tcp_* counters, and whether the prober ever saw the
# CDN fail.
#
# Usage: bench/connflood.sh [--no-build]     DURATION=30 NOFILE=4096 bench/connflood.sh
set -euo pipefail
DURATION=${DURATION:-30}
NOFILE=${NOFILE:-4096}
DNS_CONNS=${DNS_CONNS:-16000}
ADMIN_CONNS=${ADMIN_CONNS:-4000}
STEERD=${STEERD:-target/release/steerd}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"
bench_start dig curl prlimit
cdn=$(free_port); dns=$(free_port); admin=$(free_port)
python3 bench/fakecdn.py --port "$cdn" --name cdn-a >/dev/null 2>&1 & PIDS+=("$!")
cat > "$TMP/flood.toml" <<TOML
$(listen_toml "$dns" "$admin")
[probe]
interval = 1
$(base_toml)
$(checked_target cdn-a 192.0.2.1 "$cdn")
[[services]]
name = "www.example.com"
policy = "failover"
targets = [{ target = "cdn-a" }]
TOML
prlimit --nofile="$NOFILE" "$STEERD" --log-format json serve --config "$TMP/flood.toml" 2>"$TMP/steerd.log" & PIDS+=("$!")
spid=${PIDS[-1]}
wait_dns steerd "$dns" "$spid" "$TMP/steerd.log" www.example.com
grep -o '"message":"TCP connection cap[^"]*"[^}]*' "$TMP/steerd.log" | head -3 || true
rss() { awk '/VmRSS/ {print $2 / 1024 " MB"}' "/proc/$spid/status"; }
fds() { ls "/proc/$spid/fd" | wc -l; }
echo "before: RSS $(rss), fds $(fds)"
half=$((DNS_CONNS / 2))
python3 bench/connflood.py --port "$dns" --count "$half" --source-base 127.1.0.0 --duration "$DURATION" > "$TMP/f1" & f1=$!
python3 bench/connflood.py --port "$dns" --count "$half" --source-base 127.2.0.0 --duration "$DURATION" > "$TMP/f2" & f2=$!
python3 bench/connflood.py --port "$admin" --http --count "$ADMIN_CONNS" --source-base 127.3.0.0 --duration "$DURATION" > "$TMP/f3" & f3=$!
PIDS+=("$f1" "$f2" "$f3")
dig_fail=0; curl_fail=0; n=0; max_rss=0
end=$(( $(date +%s) + DURATION - 2 ))
sleep 2
while [[ $(date +%s) -lt $end ]]; do
  n=$((n + 1))
  t0=$(date +%s%N)
  if [[ -z $(dig @127.0.0.1 -p "$dns" +tcp www.example.com +short +tries=1 +time=2) ]]; then dig_fail=$((dig_fail + 1)); fi
  t1=$(date +%s%N)
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$admin/v1/services" || true)
  [[ "$code" == 200 ]] || curl_fail=$((curl_fail + 1))
  t2=$(date +%s%N)
  r=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$spid/status")
  (( r > max_rss )) && max_rss=$r
  echo "t+$((n * 2))s: dig +tcp $(( (t1 - t0) / 1000000 )) ms, admin $code $(( (t2 - t1) / 1000000 )) ms, RSS ${r} MB, fds $(fds)"
  sleep 1
done
wait "$f1" "$f2" "$f3" || true
untrack "$f1" "$f2" "$f3"
echo "flood DNS 1: $(cat "$TMP/f1")"; echo "flood DNS 2: $(cat "$TMP/f2")"; echo "flood admin: $(cat "$TMP/f3")"
echo "during: $n rounds, TCP DNS failures $dig_fail, admin failures $curl_fail, max RSS ${max_rss} MB"
sleep 5
echo "5 s after: RSS $(rss), fds $(fds)"
curl -s "http://127.0.0.1:$admin/metrics" | grep -E '^steerd_(tcp_connections|fd)' || true
curl -s "http://127.0.0.1:$admin/metrics" | grep -E '^steerd_probe_(checks_total|local_errors)[^ ]*(fail|cdn-a)' | head -8 || true
echo "confirmed down in the log: $(grep -c 'confirmed down' "$TMP/steerd.log" || true)"
echo "accept errors in the log: $(grep -c 'accept failed' "$TMP/steerd.log" || true)"
