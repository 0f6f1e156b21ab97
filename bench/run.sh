#!/usr/bin/env bash
# bench/run.sh — `make bench`: runs every bench/*.sh (other than this one) in name order.
# Each script prints its results and the exact command behind them; docs/benchmarks.md records
# them. MOPT and PY come from the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in bench/*.sh; do
    [ "$b" = bench/run.sh ] && continue
    echo "== $b"
    bash "$b"
done
