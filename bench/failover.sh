#!/usr/bin/env bash
# Failover timing benchmark: a CDN edge dies (kill) or hangs (kill -STOP); measure detection,
# confirmation and the DNS answer moving, at steerd's default probe settings. See
# bench/failover.py for what is measured and the environment.
#
# Usage: bench/failover.sh [--no-build]
#   ROUNDS=5 MODES="dead hung" bench/failover.sh
#   PROBE='watch = false' MODES=hung bench/failover.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"
need dig
build_release
exec python3 bench/failover.py
