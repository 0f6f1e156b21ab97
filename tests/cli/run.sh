#!/usr/bin/env bash
# tests/cli/run.sh — runs every tests/cli/test_*.sh and sums their results.
set -u
# MOPT may be relative to the caller's directory (make passes build/.../bin/mopt): resolve it
# before changing directory.
MOPT=$(realpath "${MOPT:?MOPT must name the mopt binary}") || exit 1
export MOPT
cd "$(dirname "$0")"
pass=0 fail=0 failed=()
for t in test_*.sh; do
    out=$(bash "$t" 2>&1)
    rc=$?
    echo "$out" | grep -v '^$' | sed 's/^/  /' | tail -n 20
    line=$(echo "$out" | tail -n 1)
    p=$(echo "$line" | sed -nE 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1/p')
    f=$(echo "$line" | sed -nE 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\2/p')
    pass=$((pass + ${p:-0}))
    fail=$((fail + ${f:-0}))
    if [ $rc -ne 0 ]; then failed+=("$t"); [ "${f:-0}" -eq 0 ] && fail=$((fail + 1)); fi
done
echo "cli: $pass passed, $fail failed"
[ ${#failed[@]} -eq 0 ] || { echo "failing scripts: ${failed[*]}"; exit 1; }
