#!/usr/bin/env bash
# Failover timing benchmark: a CDN edge dies (kill) or hangs (kill -STOP); measure detection,
# confirmation and the DNS answer moving, at steerd's default probe settings. See
# bench/failover.py for what is measured and the environment.
#
# Usage: bench/failover.sh [--no-build]
#   ROUNDS=5 MODES="dead hung" bench/failover.sh
#   PROBE='watch = false' MODES=hung bench/failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" != "--no-build" ]]; then
  cargo build --release --locked --quiet
fi
command -v dig >/dev/null || { echo "dig is needed: apt-get install bind9-dnsutils" >&2; exit 1; }
exec python3 bench/failover.py
