#!/usr/bin/env bash
# DNS throughput benchmark: steerd vs gdnsd, measured with dnsperf over UDP on
# loopback. See bench/README.md.
#
# Usage: bench/dnsperf.sh [--no-build] [--gdnsd-only | --steerd-only] [--help]
#
# Environment (all optional):
#   DURATION=15        seconds of measured load per case and server
#   CLIENTS=8          dnsperf -c: client sockets
#   THREADS=2          dnsperf -T: send/receive thread pairs
#   OUTSTANDING=100    dnsperf -q: max queries in flight (dnsperf's default)
#   QPS=               dnsperf -Q: rate limit; empty = as fast as possible
#   TIMEOUT=2          dnsperf -t: seconds before a query counts as lost
#   WARMUP=2           seconds of unmeasured load before each case (0 = none)
#   PIN=1              pin the server to SERVER_CPUS and dnsperf to
#   SERVER_CPUS=0        LOADGEN_CPUS with taskset (PIN=0: let the scheduler
#   LOADGEN_CPUS=1       share both cores between them)
#   STEERD_PORT=, GDNSD_PORT=   fixed ports instead of free random ones
#   STEERD_LOG=warn    RUST_LOG for steerd (per-query logging would skew it)
#   STEERD_CONFIG=config/steerd.toml   steerd configuration (relative to the repo root)
#   GEO_MMDB=          MaxMind-schema mmdb for gdnsd's geoip plugin (www). Empty:
#                      convert geodb/geo-whois-asn-country.mmdb with
#                      examples/mmdb_to_maxmind.rs, cached in bench/results/
#   ONLY=              run only these cases (space-separated names), e.g. to
#                      rerun rows that had a high steal%
#   OUT=               also write the results table to this file
#   KEEP_TMP=1         keep the temp dir (query files, server logs, raw output)
#   STEERD_BINS=       steerd builds to compare in one run, as label=path pairs, e.g.
#                      "before=/tmp/steerd-old after=target/release/steerd"; each
#                      label is a server column (steerd-LABEL). Empty: target/release/steerd
set -euo pipefail

# --- benchmark cases: the one place to add more -----------------------------
# "name|qname|qtype|extra dnsperf flags|dig flags for the answer check"
# (the dig flags should ask what the dnsperf flags ask, e.g. the same ECS).
CASES=(
  # Static RRset: two A records.
  "static|static.example.com|A||"
  # Plain weighted 60/40 CNAME: the steered baseline without geography.
  "split-weighted|split.example.com|A||"
  # Geo policy, client located by EDNS Client Subnet (option 8: family 1,
  # source prefix 24, scope 0, address 81.2.69 = 81.2.69.0/24, GB) ->
  # Europe -> cdn-b, with an ECS scope in the answer.
  "www-geo-ecs|www.example.com|A|-E 8:00011800510245|+subnet=81.2.69.0/24"
  # Geo policy, no ECS: located by the resolver address 127.0.0.1, which is
  # in no country -> the default region (60/40 split).
  "www-geo-resolver|www.example.com|A||"
)

DURATION=${DURATION:-15}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
OUTSTANDING=${OUTSTANDING:-100}
QPS=${QPS:-}
TIMEOUT=${TIMEOUT:-2}
WARMUP=${WARMUP:-2}
PIN=${PIN:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
LOADGEN_CPUS=${LOADGEN_CPUS:-1}
STEERD_LOG=${STEERD_LOG:-warn}
STEERD_CONFIG=${STEERD_CONFIG:-config/steerd.toml}
GEO_MMDB=${GEO_MMDB:-}
ONLY=${ONLY:-}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
STEERD_BINS=${STEERD_BINS:-}

BENCH_NAME=bench
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUN_STEERD=1 RUN_GDNSD=1
bench_arg() {
  case $1 in
    --gdnsd-only) RUN_STEERD=0 BUILD=0 ;;
    --steerd-only) RUN_GDNSD=0 ;;
    *) return 1 ;;
  esac
}
bench_args "$@"

# OUT, GEO_MMDB and the STEERD_BINS paths are relative to the caller's cwd; everything else to
# the repo root.
OUT=$(abs_path "$OUT")
GEO_MMDB=$(abs_path "$GEO_MMDB")
# "label=path" pairs.
STEERD_RUNS=()
for pair in $STEERD_BINS; do
  [[ $pair == ?*=?* ]] || { echo "STEERD_BINS: '$pair' is not label=path" >&2; exit 2; }
  STEERD_RUNS+=("steerd-${pair%%=*}=$(abs_path "${pair#*=}")")
done

need dnsperf dig
if [[ $RUN_GDNSD == 1 ]] && ! command -v gdnsd >/dev/null; then
  if [[ $RUN_STEERD == 0 ]]; then die "gdnsd not found (apt-get install gdnsd)"; fi
  log "gdnsd not on PATH: benchmarking steerd only"
  RUN_GDNSD=0
fi

pin_cpus
bench_tmp

# CPU ticks of this script's reaped children: dnsperf's, once waited for.
child_ticks() { awk '{print $16 + $17}' "/proc/$$/stat"; }
# "steal total" ticks of the whole machine: time the hypervisor gave elsewhere.
steal_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t; exit}' /proc/stat; }
CLK_TCK=$(getconf CLK_TCK)

# Warn when something else is eating the CPUs: the numbers would be noise.
check_idle() {
  local a b
  read -r -a a < <(head -n1 /proc/stat)
  sleep 1
  read -r -a b < <(head -n1 /proc/stat)
  local busy
  busy=$(awk -v u="$(( (b[1]+b[2]+b[3]+b[6]+b[7]+b[8]) - (a[1]+a[2]+a[3]+a[6]+a[7]+a[8]) ))" \
             -v i="$(( (b[4]+b[5]) - (a[4]+a[5]) ))" 'BEGIN { printf "%d", (u+i) ? 100*u/(u+i) : 0 }')
  if (( busy > 10 )); then
    log "warning: the machine is already ${busy}% busy before the benchmark; results will be noisy"
  fi
}

# Query files, one per case.
declare -a CASE_NAMES=()
declare -A CASE_QNAME=() CASE_QTYPE=() CASE_FLAGS=() CASE_DIG=()
for spec in "${CASES[@]}"; do
  IFS='|' read -r name qname qtype flags digflags <<<"$spec"
  if [[ -n $ONLY && " $ONLY " != *" $name "* ]]; then continue; fi
  CASE_NAMES+=("$name")
  CASE_QNAME[$name]=$qname CASE_QTYPE[$name]=$qtype CASE_FLAGS[$name]=$flags CASE_DIG[$name]=$digflags
  printf '%s %s\n' "$qname" "$qtype" >"$TMP/$name.queries"
done
(( ${#CASE_NAMES[@]} > 0 )) || die "no case left to run (ONLY=$ONLY)"

# check_answer SERVER PORT CASE: one query like dnsperf's, printed as
# "TYPE rdata; ... [ECS addr/source/scope]". Dies when there is no answer.
check_answer() {
  local server=$1 port=$2 name=$3 out rrs ecs
  # shellcheck disable=SC2086 # dig flags are deliberately word-split
  out=$(dig @127.0.0.1 -p "$port" "${CASE_QNAME[$name]}" "${CASE_QTYPE[$name]}" ${CASE_DIG[$name]} \
    +noall +answer +comments +time=1 +tries=1 2>&1) || true
  rrs=$(awk '!/^;/ && NF >= 5 { printf "%s%s", sep, $4; for (i = 5; i <= NF; i++) printf " %s", $i; sep = "; " }' <<<"$out")
  ecs=$(sed -n 's/^; CLIENT-SUBNET: //p' <<<"$out")
  [[ -n $rrs ]] || { echo "$out" >&2; die "$server gave no answer for ${CASE_QNAME[$name]} ${CASE_QTYPE[$name]} ${CASE_DIG[$name]}"; }
  log "$server $name: ${CASE_QNAME[$name]} ${CASE_QTYPE[$name]}${CASE_DIG[$name]:+ ${CASE_DIG[$name]}} -> $rrs${ecs:+ [ECS $ecs]}"
}

dnsperf_args() { # dnsperf_args PORT CASE SECONDS
  local args=(-s 127.0.0.1 -p "$1" -d "$TMP/$2.queries" -l "$3"
    -c "$CLIENTS" -T "$THREADS" -q "$OUTSTANDING" -t "$TIMEOUT")
  [[ -n $QPS ]] && args+=(-Q "$QPS")
  # shellcheck disable=SC2206 # extra flags are deliberately word-split
  [[ -n ${CASE_FLAGS[$2]} ]] && args+=(${CASE_FLAGS[$2]})
  printf '%s\n' "${args[@]}"
}

DNSPERF_VERSION=unknown GDNSD_VERSION=
RESULTS=()  # "case|server|qps|lost|lost%|lat_us|noerror%|cpu%|cpu_us_per_q|gen_cpu%|steal%"

# bench_server NAME PORT PID: run every case against a started server.
bench_server() {
  local server=$1 port=$2 pid=$3 name args raw c0 c1 g0 g1 s0 s1
  for name in "${CASE_NAMES[@]}"; do
    check_answer "$server" "$port" "$name"
    if (( WARMUP > 0 )); then
      mapfile -t args < <(dnsperf_args "$port" "$name" "$WARMUP")
      "${GEN_PIN[@]}" dnsperf "${args[@]}" >/dev/null 2>&1 &
      PIDS+=("$!")
      wait "${PIDS[-1]}" || true
      untrack "${PIDS[-1]}"
    fi
    mapfile -t args < <(dnsperf_args "$port" "$name" "$DURATION")
    raw="$TMP/$server.$name.dnsperf"
    log "$server $name: dnsperf ${args[*]//$TMP\//} (${DURATION}s)"
    c0=$(cpu_ticks "$pid") g0=$(child_ticks) s0=$(steal_ticks)
    "${GEN_PIN[@]}" dnsperf "${args[@]}" >"$raw" 2>&1 &
    PIDS+=("$!")
    wait "${PIDS[-1]}" || { cat "$raw" >&2; die "dnsperf failed"; }
    untrack "${PIDS[-1]}"
    c1=$(cpu_ticks "$pid") g1=$(child_ticks) s1=$(steal_ticks)
    DNSPERF_VERSION=$(sed -n 's/^Version //p' "$raw" | head -n1)
    RESULTS+=("$(awk -v case="$name" -v server="$server" -v ticks=$((c1 - c0)) -v gticks=$((g1 - g0)) -v hz="$CLK_TCK" \
      -v steal=$(( ${s1% *} - ${s0% *} )) -v total=$(( ${s1#* } - ${s0#* } )) '
      /Queries completed:/   { completed = $3 }
      /Queries lost:/        { lost = $3; lostpct = $4; gsub(/[()%]/, "", lostpct) }
      /Response codes:/      { for (i = 3; i <= NF; i++) if ($i == "NOERROR") { noerr = $(i + 1) } }
      /Run time \(s\):/      { runtime = $4 }
      /Queries per second:/  { qps = $4 }
      /Average Latency \(s\):/ { lat = $4 }
      END {
        if (qps == "") { print "parse-error"; exit }
        cpu = ticks / hz; gcpu = gticks / hz
        printf "%s|%s|%.0f|%d|%.2f|%.0f|%.2f|%.0f|%.2f|%.0f|%.0f\n", case, server, qps, lost, lostpct,
          lat * 1e6, completed ? 100 * noerr / completed : 0,
          runtime ? 100 * cpu / runtime : 0, completed ? cpu * 1e6 / completed : 0,
          runtime ? 100 * gcpu / runtime : 0, total ? 100 * steal / total : 0
      }' "$raw")")
    [[ ${RESULTS[-1]} != parse-error ]] || { cat "$raw" >&2; die "could not parse dnsperf output"; }
    log "$server $name: $(cut -d'|' -f3 <<<"${RESULTS[-1]}") qps"
  done
}

if [[ $RUN_STEERD == 1 ]]; then
  build_release
  (( ${#STEERD_RUNS[@]} > 0 )) || STEERD_RUNS=("steerd=$PWD/target/release/steerd")
  for run in "${STEERD_RUNS[@]}"; do
    [[ -x ${run#*=} ]] || die "${run#*=} not found (build it, or drop --no-build)"
  done
fi

# gdnsd's geoip plugin (www) reads only the MaxMind schema: give it a converted
# copy of the shipped flat-schema database (same networks, continents from the
# country table), rebuilt only when an input or the converter changes.
if [[ $RUN_GDNSD == 1 && -z $GEO_MMDB ]]; then
  geo_src=geodb/geo-whois-asn-country.mmdb geo_csv=geodb/countries.csv
  GEO_MMDB=$PWD/bench/results/geo-maxmind.mmdb
  if [[ -f $GEO_MMDB && $GEO_MMDB -nt $geo_src && $GEO_MMDB -nt $geo_csv &&
        $GEO_MMDB -nt examples/mmdb_to_maxmind.rs ]]; then
    log "gdnsd geoip database: $GEO_MMDB (cached)"
  else
    command -v cargo >/dev/null || die "cargo not found: needed to convert $geo_src for gdnsd (or set GEO_MMDB)"
    log "converting $geo_src to the MaxMind schema for gdnsd: $GEO_MMDB"
    cargo build --release --example mmdb_to_maxmind >&2
    mkdir -p "$(dirname "$GEO_MMDB")"
    target/release/examples/mmdb_to_maxmind "$geo_src" "$geo_csv" "$GEO_MMDB.tmp" >&2 ||
      { rm -f "$GEO_MMDB.tmp"; die "mmdb_to_maxmind failed"; }
    mv "$GEO_MMDB.tmp" "$GEO_MMDB"
  fi
fi
if [[ $RUN_GDNSD == 1 ]]; then [[ -f $GEO_MMDB ]] || die "GEO_MMDB=$GEO_MMDB not found"; fi

check_idle

if [[ $RUN_STEERD == 1 ]]; then
  for run in "${STEERD_RUNS[@]}"; do
    label=${run%%=*} bin=${run#*=}
    port=${STEERD_PORT:-$(free_port)}
    log "starting $label ($bin) on 127.0.0.1:$port"
    RUST_LOG=$STEERD_LOG "${SRV_PIN[@]}" "$bin" serve --config "$STEERD_CONFIG" \
      --dns-listen "127.0.0.1:$port" >"$TMP/$label.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_dns "$label" "$port" "$pid" "$TMP/$label.log"
    bench_server "$label" "$port" "$pid"
    stop "$pid"
  done
fi

if [[ $RUN_GDNSD == 1 ]]; then
  port=${GDNSD_PORT:-$(free_port)}
  cp -r bench/gdnsd "$TMP/gdnsd"
  sed -i -e "s|^\(  listen => \).*# bench: listen|\1[ 127.0.0.1:$port ]|" \
    -e "s|^\(  run_dir => \).*# bench: run_dir|\1\"$TMP/gdnsd-run\"|" \
    -e "s|^\(  state_dir => \).*# bench: state_dir|\1\"$TMP/gdnsd-state\"|" \
    -e "s|^\([[:space:]]*geoip2_db => \).*# bench: geoip2_db|\1\"$GEO_MMDB\"|" "$TMP/gdnsd/config"
  [[ $(grep -cF -e "$TMP/gdnsd-" -e "127.0.0.1:$port" -e "\"$GEO_MMDB\"" "$TMP/gdnsd/config") == 4 ]] ||
    die "could not rewrite listen/run_dir/state_dir/geoip2_db in bench/gdnsd/config"
  GDNSD_VERSION=$( (gdnsd -h 2>&1 || true) | sed -n 's/^gdnsd version //p' | head -n1)
  log "starting gdnsd $GDNSD_VERSION on 127.0.0.1:$port"
  "${SRV_PIN[@]}" gdnsd -c "$TMP/gdnsd" start >"$TMP/gdnsd.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_dns gdnsd "$port" "$pid" "$TMP/gdnsd.log"
  bench_server gdnsd "$port" "$pid"
  stop "$pid"
fi

# --- report ------------------------------------------------------------------
report() {
  local pinning="unpinned"
  [[ $PIN == 1 ]] && pinning="server on CPU $SERVER_CPUS, dnsperf on CPU $LOADGEN_CPUS"
  echo "# steerd DNS benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
  echo "# $(nproc) CPUs, Linux $(uname -r), dnsperf $DNSPERF_VERSION${GDNSD_VERSION:+, gdnsd $GDNSD_VERSION (geoip db ${GEO_MMDB#"$PWD/"})}"
  echo "# dnsperf UDP over loopback: -l $DURATION -c $CLIENTS -T $THREADS -q $OUTSTANDING -t $TIMEOUT${QPS:+ -Q $QPS}, warmup ${WARMUP}s; $pinning"
  echo "# avg_lat_us = dnsperf average latency; srv_cpu% = server CPU (user+sys, % of one core) during the run; cpu_us/q = server CPU time per answered query"
  echo "# gen_cpu% = dnsperf's CPU (% of one core); steal% = CPU time the hypervisor took from this VM (both cores), high = noisy numbers"
  echo
  {
    echo "case|server|qps|lost|lost%|avg_lat_us|noerror%|srv_cpu%|cpu_us/q|gen_cpu%|steal%"
    local name row
    for name in "${CASE_NAMES[@]}"; do
      for row in "${RESULTS[@]}"; do [[ $row == "$name|"* ]] && echo "$row"; done
    done
  } | column -t -s'|' -R 3,4,5,6,7,8,9,10,11
}
if (( ${#RESULTS[@]} > 0 )); then
  table=$(report)
  echo "$table"
  if [[ -n $OUT ]]; then
    mkdir -p "$(dirname "$OUT")"
    echo "$table" >"$OUT"
    log "wrote $OUT"
  fi
fi
