#!/usr/bin/env bash
# Bulk purge benchmark: 100,000 URLs and 10,000 keys across four provider stand-ins
# (Cloudflare, Fastly, Akamai, CloudFront) at their default rate limits. See bench/README.md.
#
# Usage: bench/purge.sh [--no-build]
# Environment: URLS=100000 KEYS=10000 STEERD_BIN=target/release/steerd OUT= (also write here)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--no-build" ]; then
  cargo build --release --bin steerd
fi
out=$(cargo bench --bench purge 2>/dev/null)
echo "$out"
if [ -n "${OUT:-}" ]; then echo "$out" > "$OUT"; fi
