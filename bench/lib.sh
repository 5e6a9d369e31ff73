# shellcheck shell=bash
# bench/lib.sh: what the bench scripts share. Sourced, never run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # then the cwd is the repository root
#   bench_args "$@"                                  # --no-build, -h/--help, the script's own
#
# log/die, the release build, tool checks, free ports, CPU pinning, a temp dir that is removed
# with every process started into PIDS, waiting for a DNS server, the shared configuration.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The directory the script was started from: relative paths in its settings are to it.
BENCH_CALLER_DIR=$PWD
BENCH_NAME=${BENCH_NAME:-$(basename "$0" .sh)}
cd "$BENCH_ROOT"

log() { printf '[%s] %s\n' "$BENCH_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The script's help: its header comment, from line 2 to `set -euo pipefail`.
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# bench_args ARG...: --no-build sets BUILD=0, -h/--help prints the help. Any other argument
# goes to the script's `bench_arg ARG` when it has one (non-zero: unknown).
BUILD=1
bench_args() {
  local arg
  for arg in "$@"; do
    case $arg in
      --no-build) BUILD=0 ;;
      -h | --help) usage; exit 0 ;;
      *)
        if ! declare -F bench_arg >/dev/null || ! bench_arg "$arg"; then
          echo "unknown argument: $arg (see --help)" >&2
          exit 2
        fi
        ;;
    esac
  done
}

# abs_path PATH: PATH against the caller's directory (absolute and empty ones as they are).
abs_path() {
  if [[ -z $1 || $1 == /* ]]; then echo "$1"; else echo "$BENCH_CALLER_DIR/$1"; fi
}

# build_release: cargo build --release, unless --no-build.
build_release() {
  [[ $BUILD == 1 ]] || return 0
  log "cargo build --release"
  cargo build --release --locked >&2
}

# need TOOL...: die unless every TOOL is on PATH, naming the package that has it.
need() {
  local tool pkg
  for tool in "$@"; do
    case $tool in
      dig) pkg=bind9-dnsutils ;;
      taskset | prlimit) pkg=util-linux ;;
      ss) pkg=iproute2 ;;
      *) pkg=$tool ;;
    esac
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install $pkg)"
  done
}

# pin_cpus: SRV_PIN and GEN_PIN, command prefixes that put the server on SERVER_CPUS and the
# load generator on LOADGEN_CPUS with taskset when PIN=1; empty when unpinned (PIN set to 0
# when taskset or a second CPU is missing).
pin_cpus() {
  SRV_PIN=() GEN_PIN=()
  if [[ $PIN == 1 ]]; then
    if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
      SRV_PIN=(taskset -c "$SERVER_CPUS") GEN_PIN=(taskset -c "$LOADGEN_CPUS")
    else
      log "PIN=1 needs taskset and 2+ CPUs: running unpinned"
      PIN=0
    fi
  fi
}

# bench_tmp: TMP, a new temp dir. On exit every process in PIDS is stopped (the last started
# first) and TMP removed, or kept with KEEP_TMP=1.
PIDS=()
bench_tmp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/steerd-$BENCH_NAME.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
bench_cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill "${PIDS[i]}" 2>/dev/null || true
    wait "${PIDS[i]}" 2>/dev/null || true
  done
  if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}

# bench_start TOOL...: what a simple script does after bench_args: need TOOL..., build_release,
# bench_tmp.
bench_start() {
  need "$@"
  build_release
  bench_tmp
}

# untrack PID...: drop them from PIDS (they have been waited for).
untrack() {
  local kept=() p
  for p in "${PIDS[@]}"; do [[ " $* " == *" $p "* ]] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

# stop PID...: kill, reap and untrack.
stop() {
  local p
  for p in "$@"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  untrack "$@"
}

# free_port: a random port in 20000-59999 that nothing listens on, over UDP or TCP.
port_in_use() {
  ss -Hlnu "sport = :$1" 2>/dev/null | grep -q . || ss -Hlnt "sport = :$1" 2>/dev/null | grep -q .
}
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    port_in_use "$p" || { echo "$p"; return; }
  done
  die "no free port found"
}

# wait_dns NAME PORT PID LOG [QNAME [QTYPE]]: poll 127.0.0.1:PORT with dig every 0.1 s until it
# answers QNAME (static.example.com) QTYPE (A); die with the end of LOG when the process PID
# exits first or nothing answers within 20 s.
wait_dns() {
  local name=$1 port=$2 pid=$3 logf=$4 qname=${5:-static.example.com} qtype=${6:-A}
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$logf" >&2; die "$name exited during startup"; }
    # dig prints its errors (";; ... connection refused") on stdout even with +short.
    if [[ -n $(dig @127.0.0.1 -p "$port" "$qname" "$qtype" +short +time=1 +tries=1 2>/dev/null | grep -v '^;') ]]; then
      return
    fi
    sleep 0.1
  done
  tail -n 20 "$logf" >&2
  die "$name did not answer on 127.0.0.1:$port within 20s"
}

# cpu_ticks PID: CPU ticks (user+system, all threads) the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# listen_toml DNS_PORT [ADMIN_PORT]: a [server] table listening on 127.0.0.1.
listen_toml() {
  printf '[server]\ndns_listen = ["127.0.0.1:%s"]\n' "$1"
  if [[ -n ${2:-} ]]; then printf 'admin_listen = "127.0.0.1:%s"\n' "$2"; fi
}

# checked_target NAME ADDRESS CDN_PORT: a target answering ADDRESS, checked over HTTP through
# the fake CDN on 127.0.0.1:CDN_PORT.
checked_target() {
  printf '[[targets]]\nname = "%s"\na = ["%s"]\n[targets.check]\nurl = "http://www.example.com/health"\naddress = "127.0.0.1:%s"\n' "$1" "$2" "$3"
}

# base_toml: what every bench configuration holds (bench/configs/base.toml): no GeoIP
# database and the zone example.com.
base_toml() { cat "$BENCH_ROOT/bench/configs/base.toml"; }
