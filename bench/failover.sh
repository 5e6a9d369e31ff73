#!/usr/bin/env bash
# Failover timing benchmark: kill a CDN, measure detection, confirmation and the DNS answer
# moving (and returning). See bench/failover.py for what is measured and the environment.
#
# Usage: bench/failover.sh [--no-build]
#   ROUNDS=3 INTERVAL=10 CONFIRM=3 CONFIRM_GAP=0.1 bench/failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" != "--no-build" ]]; then
  cargo build --release --locked --quiet
fi
command -v dig >/dev/null || { echo "dig is needed: apt-get install bind9-dnsutils" >&2; exit 1; }
exec python3 bench/failover.py
