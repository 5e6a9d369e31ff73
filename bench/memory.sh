#!/usr/bin/env bash
# Memory benchmark: steerd's resident set size (RSS) at start, after an idle minute, and every
# SAMPLE seconds during and after a dnsperf run over UDP on loopback, then after each of RELOADS
# configuration reloads that also swap the geo database. See bench/README.md.
#
# Usage: bench/memory.sh [--no-build] [--help]
#
# Environment (all optional):
#   DURATION=600       seconds of dnsperf load
#   SETTLE=60          idle seconds between start and the load (the "after a minute" figure)
#   COOLDOWN=30        idle seconds sampled after the load
#   SAMPLE=10          seconds between two RSS samples
#   RELOADS=15         reloads after the cooldown: each replaces the geo database (a copy, by
#                      rename) and then POST /v1/reload; 0 = none
#   CLIENTS=8 THREADS=2 OUTSTANDING=100   dnsperf -c, -T, -q (as bench/dnsperf.sh)
#   QPS=               dnsperf -Q: rate limit; empty = as fast as possible
#   ECS=1              send every query with ECS 81.2.69.0/24 (the geo path); 0 = without
#   SCRAPE=1           also read GET /metrics at every sample (the metrics path)
#   PIN=0              1: pin steerd to SERVER_CPUS and dnsperf to LOADGEN_CPUS with taskset
#   SERVER_CPUS=0 LOADGEN_CPUS=1
#   STEERD_CONFIG=config/steerd.toml   steerd configuration (relative to the repo root)
#   STEERD_BIN=target/release/steerd   the binary to measure (with --no-build, e.g. an older build)
#   STEERD_LOG=warn    RUST_LOG for steerd
#   STEERD_ENV=        extra environment for steerd, e.g. "MALLOC_ARENA_MAX=1"
#   OUT=               also write the report to this file
#   KEEP_TMP=1         keep the temp dir (query file, steerd log, dnsperf output)
set -euo pipefail

DURATION=${DURATION:-600}
SETTLE=${SETTLE:-60}
COOLDOWN=${COOLDOWN:-30}
SAMPLE=${SAMPLE:-10}
RELOADS=${RELOADS:-15}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
OUTSTANDING=${OUTSTANDING:-100}
QPS=${QPS:-}
ECS=${ECS:-1}
SCRAPE=${SCRAPE:-1}
PIN=${PIN:-0}
SERVER_CPUS=${SERVER_CPUS:-0}
LOADGEN_CPUS=${LOADGEN_CPUS:-1}
STEERD_CONFIG=${STEERD_CONFIG:-config/steerd.toml}
STEERD_BIN=${STEERD_BIN:-}
STEERD_LOG=${STEERD_LOG:-warn}
STEERD_ENV=${STEERD_ENV:-}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"

# OUT and a STEERD_BIN path are relative to the caller's cwd (a bare name is looked up on
# PATH); the default binary is the release build of this checkout.
OUT=$(abs_path "$OUT")
if [[ -z $STEERD_BIN ]]; then
  STEERD_BIN=$BENCH_ROOT/target/release/steerd
elif [[ $STEERD_BIN == */* ]]; then
  STEERD_BIN=$(abs_path "$STEERD_BIN")
fi

need dnsperf dig
if [[ $SCRAPE == 1 ]] && ! command -v curl >/dev/null; then
  log "curl not found: not scraping /metrics"; SCRAPE=0
fi

pin_cpus
bench_tmp

build_release
[[ -x $STEERD_BIN ]] || die "$STEERD_BIN not found (build it, or drop --no-build)"

# The query mix: every steered and static name of the demo zone, a delegation, and NXDOMAINs
# for 1,000 distinct random names (each a new name the server has never seen).
{
  for n in www split near assets static docs mail ns1 lab; do
    printf '%s.example.com A\n%s.example.com AAAA\n' "$n" "$n"
  done
  printf 'example.com SOA\nexample.com NS\nexample.com MX\nexample.com TXT\n'
  for i in $(seq 1000); do printf 'nx%05d-%04x.example.com A\n' "$i" "$RANDOM"; done
} >"$TMP/queries"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }
mb() { awk -v v="${1:-0}" 'BEGIN { printf "%.1f", v / 1024 }'; }

# steerd runs on a copy of the configuration and of geodb/ (relative paths resolve beside the
# configuration): the reloads replace the copy's database, and state is written in the temp dir.
[[ -f $STEERD_CONFIG ]] || die "$STEERD_CONFIG not found"
cp "$STEERD_CONFIG" "$TMP/steerd.toml"
[[ -d geodb ]] && cp -r geodb "$TMP/geodb"
GEO_DB=$(sed -n 's/^database *= *"\(.*\)".*/\1/p' "$TMP/steerd.toml" | head -n 1)
[[ -n $GEO_DB && $GEO_DB != /* ]] && GEO_DB="$TMP/$GEO_DB"

dns_port=$(free_port)
admin_port=$(free_port)
log "starting steerd on 127.0.0.1:$dns_port (admin 127.0.0.1:$admin_port)${STEERD_ENV:+ with $STEERD_ENV}"
# shellcheck disable=SC2086 # STEERD_ENV is deliberately word-split into VAR=value words
env RUST_LOG="$STEERD_LOG" $STEERD_ENV "${SRV_PIN[@]}" "$STEERD_BIN" serve \
  --config "$TMP/steerd.toml" --dns-listen "127.0.0.1:$dns_port" \
  --admin-listen "127.0.0.1:$admin_port" >"$TMP/steerd.log" 2>&1 &
PID=$!
PIDS+=("$PID")
started=$(date +%s)
wait_dns steerd "$dns_port" "$PID" "$TMP/steerd.log"

SAMPLES=()  # "t|phase|rss_kb|threads"
sample() { # sample PHASE
  if [[ $SCRAPE == 1 ]]; then
    curl -fsS "http://127.0.0.1:$admin_port/metrics" >/dev/null 2>&1 || true
  fi
  SAMPLES+=("$(( $(date +%s) - started ))|$1|$(rss_kb "$PID")|$(threads "$PID")")
}
# idle PHASE SECONDS: sample every SAMPLE seconds for SECONDS.
idle() {
  local until=$(( $(date +%s) + $2 ))
  while (( $(date +%s) < until )); do sleep "$SAMPLE"; sample "$1"; done
}

sample start
START_KB=$(rss_kb "$PID")
idle idle "$SETTLE"
SETTLED_KB=$(rss_kb "$PID")

args=(-s 127.0.0.1 -p "$dns_port" -d "$TMP/queries" -l "$DURATION"
  -c "$CLIENTS" -T "$THREADS" -q "$OUTSTANDING" -t 2)
[[ -n $QPS ]] && args+=(-Q "$QPS")
[[ $ECS == 1 ]] && args+=(-E 8:00011800510245)
log "dnsperf ${args[*]//$TMP\//} (${DURATION}s), RSS every ${SAMPLE}s"
"${GEN_PIN[@]}" dnsperf "${args[@]}" >"$TMP/dnsperf.out" 2>&1 &
LOADGEN_PID=$!
PIDS+=("$LOADGEN_PID")
while kill -0 "$LOADGEN_PID" 2>/dev/null; do
  sleep "$SAMPLE"
  kill -0 "$PID" 2>/dev/null || { tail -n 20 "$TMP/steerd.log" >&2; die "steerd died under load"; }
  sample load
done
wait "$LOADGEN_PID" || { cat "$TMP/dnsperf.out" >&2; die "dnsperf failed"; }
untrack "$LOADGEN_PID"
END_KB=$(rss_kb "$PID")
idle after "$COOLDOWN"
AFTER_KB=$(rss_kb "$PID")
RELOADED_KB=$AFTER_KB reloads_ok=0
if (( RELOADS > 0 )); then
  log "$RELOADS reloads${GEO_DB:+, each with a new copy of $(basename "$GEO_DB")}"
  for i in $(seq "$RELOADS"); do
    if [[ -n $GEO_DB && -f $GEO_DB ]]; then
      cp "$GEO_DB" "$GEO_DB.new" && mv "$GEO_DB.new" "$GEO_DB"
    fi
    if curl -fsS -X POST "http://127.0.0.1:$admin_port/v1/reload" >/dev/null 2>&1; then
      reloads_ok=$((reloads_ok + 1))
    fi
    sleep 1
    sample "reload$i"
  done
  RELOADED_KB=$(rss_kb "$PID")
fi
HWM_KB=$(hwm_kb "$PID")
ROLLUP=$(awk '/^(Anonymous|Rss|Pss_File):/ {printf "%s %s kB; ", $1, $2}' "/proc/$PID/smaps_rollup")

report() {
  local load_max=0 load_min=0 first_load= row t phase rss thr
  for row in "${SAMPLES[@]}"; do
    IFS='|' read -r t phase rss thr <<<"$row"
    [[ $phase == load ]] || continue
    [[ -n $first_load ]] || { first_load=$rss; load_min=$rss; }
    (( rss > load_max )) && load_max=$rss
    (( rss < load_min )) && load_min=$rss
  done
  echo "# steerd memory benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
  echo "# $(nproc) CPUs, Linux $(uname -r); ${STEERD_BIN#"$PWD/"}, config $STEERD_CONFIG${STEERD_ENV:+; env $STEERD_ENV}"
  echo "# dnsperf ${args[*]//$TMP\//}; RSS (VmRSS) every ${SAMPLE}s, /metrics scraped: $([[ $SCRAPE == 1 ]] && echo yes || echo no)"
  grep -E 'Queries (sent|completed|lost)|Queries per second' "$TMP/dnsperf.out" | sed 's/^ */# dnsperf: /'
  echo
  echo "t_s phase rss_mb threads"
  for row in "${SAMPLES[@]}"; do
    IFS='|' read -r t phase rss thr <<<"$row"
    printf '%s %s %s %s\n' "$t" "$phase" "$(mb "$rss")" "$thr"
  done | column -t -R 1,3,4
  echo
  printf 'RSS MB: start %s | after %ss idle %s | load: first %s, min %s, max %s, end %s | %ss after %s | after %s reloads (%s ok) %s | peak (VmHWM) %s\n' \
    "$(mb "$START_KB")" "$SETTLE" "$(mb "$SETTLED_KB")" "$(mb "$first_load")" "$(mb "$load_min")" \
    "$(mb "$load_max")" "$(mb "$END_KB")" "$COOLDOWN" "$(mb "$AFTER_KB")" "$RELOADS" "$reloads_ok" \
    "$(mb "$RELOADED_KB")" "$(mb "$HWM_KB")"
  echo "smaps_rollup at the end: $ROLLUP"
}
text=$(report)
echo "$text"
if [[ -n $OUT ]]; then
  mkdir -p "$(dirname "$OUT")"
  echo "$text" >"$OUT"
  log "wrote $OUT"
fi
